//! Doctor's AWS links, gathered here and judged by
//! `irsa_core::diagnosis::iam`: the IAM OIDC provider and its client IDs,
//! the role's trust policy (evaluated by irsa), and optionally STS itself.

use anyhow::Result;
use irsa_aws::{AwsError, StsRefusal};
use irsa_core::checks::Report;
use irsa_core::diagnosis::{self, iam};

use super::DoctorArgs;

/// The refusal an STS error is (anything but a refusal is `Other`).
pub fn sts_refusal(error: &AwsError) -> StsRefusal {
    match error {
        AwsError::WebIdentityRefused { refusal, .. } => *refusal,
        _ => StsRefusal::Other,
    }
}

/// The AWS client doctor reads IAM and STS with (`--profile`, `--region`).
pub(super) async fn connect(a: &DoctorArgs) -> irsa_aws::Aws {
    irsa_aws::Aws::connect(&irsa_aws::Connect {
        profile: a.profile.clone(),
        region: a.region.clone(),
        parallelism: 1,
    })
    .await
}

/// The token and role the AWS links judge.
pub(super) struct RoleLinks<'a> {
    pub(super) token: &'a str,
    pub(super) role_arn: &'a str,
    pub(super) host_path: &'a str,
    pub(super) sub: &'a str,
    pub(super) aud: &'a [String],
    /// The trust policy's fix when an earlier link found the real fault
    /// (a role bound to another ServiceAccount).
    pub(super) trust_fix: Option<String>,
}

pub(super) fn aws_links(r: &mut Report, a: &DoctorArgs, links: &RoleLinks<'_>) -> Result<()> {
    let Some(role) = iam::role_arn(r, links.role_arn) else {
        return Ok(());
    };
    crate::net::rt::block_on(async {
        let aws = connect(a).await;
        let provider = aws.find_provider(links.host_path).await;
        iam::provider(
            r,
            &role,
            links.host_path,
            links.aud,
            provider
                .as_ref()
                .map(Option::as_ref)
                .map_err(ToString::to_string),
        );
        let actual = aws.role(role.name()).await;
        iam::role_trust(
            r,
            &role,
            iam::Token {
                host_path: links.host_path,
                sub: links.sub,
                aud: links.aud,
            },
            actual
                .as_ref()
                .map(Option::as_ref)
                .map_err(ToString::to_string),
            links.trust_fix.clone(),
        );
        if a.assume {
            let assumed = aws
                .assume_role_with_web_identity(links.role_arn, links.token)
                .await;
            match &assumed {
                Ok(arn) => diagnosis::sts(r, Ok(arn)),
                Err(e) => diagnosis::sts(r, Err((sts_refusal(e), &e.to_string()))),
            }
        }
        Ok(())
    })?
}

/// The bodies stored under `keys` in `bucket` (`None`: no such object),
/// read with doctor's AWS profile; the outer error is the runtime's, the
/// inner one AWS's.
pub(super) fn stored_objects(
    a: &DoctorArgs,
    bucket_region: &str,
    bucket: &str,
    keys: &[String],
) -> Result<Result<Vec<Option<String>>, AwsError>> {
    crate::net::rt::block_on(async {
        let aws = irsa_aws::Aws::connect(&irsa_aws::Connect {
            profile: a.profile.clone(),
            region: Some(
                a.region
                    .clone()
                    .unwrap_or_else(|| bucket_region.to_string()),
            ),
            parallelism: 1,
        })
        .await;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(aws.stored_object(bucket, key).await?);
        }
        Ok(out)
    })
}
