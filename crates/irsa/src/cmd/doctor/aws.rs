//! Doctor's AWS links: the IAM OIDC provider and its client IDs, the
//! role's trust policy (evaluated by irsa), and optionally STS itself.

use anyhow::Result;
use irsa_aws::{AwsError, StsRefusal};
use irsa_core::checks::Report;
use irsa_core::trust::{self, Request};

use irsa_core::arn::RoleArn;

use super::DoctorArgs;

/// Maps an STS refusal to the link it points at and its fix.
pub fn sts_diagnosis(error: &AwsError) -> (&'static str, &'static str) {
    match error {
        AwsError::WebIdentityRefused { refusal, .. } => refusal.diagnosis(),
        _ => StsRefusal::Other.diagnosis(),
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
    let RoleLinks {
        token,
        role_arn,
        host_path,
        sub,
        aud,
        ..
    } = *links;
    let Ok(arn) = RoleArn::parse(role_arn) else {
        r.fail(
            "iam: role ARN",
            format!("{role_arn:?} is not a role ARN"),
            "use arn:aws:iam::ACCOUNT:role/[PATH/]NAME",
        );
        return Ok(());
    };
    let (partition, account, role_name) = (arn.partition(), arn.account(), arn.name());
    let provider_arn = irsa_core::arn::oidc_provider(partition, account, host_path);
    crate::net::rt::block_on(async {
        let aws = connect(a).await;
        match aws.find_provider(host_path).await {
            Ok(Some(p)) => {
                r.pass("iam: OIDC provider", format!("{} exists", p.arn));
                let missing: Vec<&String> = aud.iter().filter(|x| !p.client_ids.contains(*x)).collect();
                r.check(
                    missing.is_empty(),
                    "iam: provider client IDs",
                    format!("client IDs {:?} include the token's audience", p.client_ids),
                    format!("the token's audience {missing:?} is not among the client IDs {:?} (STS: \"Incorrect token audience\")", p.client_ids),
                    "add it: set the binding's `audience:` in irsa.yaml and `irsa apply`, or request the token with audience sts.amazonaws.com",
                );
                if p.arn != provider_arn {
                    r.warn("iam: OIDC provider", format!("the provider is {} but the role is in account {account}", p.arn), "the provider must be in the role's account");
                }
            }
            Ok(None) => r.fail(
                "iam: OIDC provider",
                format!("no IAM OIDC provider for {host_path} (STS: \"No OpenIDConnect provider found\")"),
                format!("create it: `irsa apply` (provider URL https://{host_path}, no trailing slash)"),
            ),
            Err(e) => r.warn("iam: OIDC provider", format!("cannot read IAM: {e}"), "run doctor with credentials allowed iam:ListOpenIDConnectProviders and iam:GetOpenIDConnectProvider, or pass --no-aws"),
        }
        match aws.role(role_name).await {
            Ok(Some(role)) => {
                let req = Request {
                    provider_arn: &provider_arn,
                    host_path,
                    sub,
                    aud,
                };
                match trust::evaluate(&role.trust, &req) {
                    Ok(()) => r.pass("iam: trust policy admits the token", format!("role {role_name} trusts {sub}")),
                    Err(reasons) => r.fail(
                        "iam: trust policy admits the token",
                        reasons.join("; "),
                        links.trust_fix.clone().unwrap_or_else(|| "fix the trust policy: `irsa plan` shows the repair for roles irsa manages (condition keys are host/path:sub without https://)".into()),
                    ),
                }
            }
            Ok(None) => r.fail(
                "iam: role exists",
                format!("no role {role_name}"),
                "create it: add the binding (`irsa bind`) and `irsa apply`",
            ),
            Err(e) => r.warn(
                "iam: trust policy admits the token",
                format!("cannot read the role: {e}"),
                "run doctor with iam:GetRole permission, or pass --no-aws",
            ),
        }
        if a.assume {
            match aws.assume_role_with_web_identity(role_arn, token).await {
                Ok(arn) => r.pass("sts: AssumeRoleWithWebIdentity", format!("assumed {arn}")),
                Err(e) => {
                    let (link, fix) = sts_diagnosis(&e);
                    r.fail(
                        "sts: AssumeRoleWithWebIdentity",
                        format!("{e} (broken link: {link})"),
                        fix,
                    );
                }
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
