//! STS: who the caller is, and exchanging a web identity token for a role
//! (with the reason STS gives when it refuses, as a [`StsRefusal`]).

use crate::error::call_err;
use crate::{Aws, AwsError};

impl Aws {
    /// The caller's account ID.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        let who = self
            .get(
                "sts:GetCallerIdentity",
                self.sts.get_caller_identity().send(),
            )
            .await?;
        who.account()
            .map(String::from)
            .ok_or_else(|| AwsError::Unexpected("GetCallerIdentity returned no account".into()))
    }

    /// STS AssumeRoleWithWebIdentity (used by tests and `doctor`).
    pub async fn assume_role_with_web_identity(
        &self,
        role_arn: &str,
        token: &str,
    ) -> Result<String, AwsError> {
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name("irsa-check")
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| refused(call_err("sts:AssumeRoleWithWebIdentity", e)))?;
        out.assumed_role_user()
            .map(|u| u.arn().to_string())
            .ok_or_else(|| AwsError::Unexpected("no assumed role user".into()))
    }
}

pub use irsa_core::diagnosis::StsRefusal;

/// A failed AssumeRoleWithWebIdentity call as a [`AwsError::WebIdentityRefused`].
fn refused(e: AwsError) -> AwsError {
    match e {
        AwsError::Call { code, message, .. } => AwsError::WebIdentityRefused {
            refusal: StsRefusal::classify(&message),
            code,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal_of(code: &str, message: &str) -> AwsError {
        refused(AwsError::Call {
            operation: "sts:AssumeRoleWithWebIdentity",
            code: Some(code.into()),
            message: format!("{code}: {message}"),
        })
    }

    #[test]
    fn each_sts_refusal_names_its_link() {
        for (code, message, want) in [
            ("InvalidIdentityToken", "No OpenIDConnect provider found in your account for https://x/y", StsRefusal::NoProvider),
            ("InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements", StsRefusal::KeyUnavailable),
            ("IDPCommunicationError", "Could not retrieve the JWKS", StsRefusal::KeyUnavailable),
            ("InvalidIdentityToken", "Incorrect token audience", StsRefusal::Audience),
            ("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", StsRefusal::TrustPolicy),
            ("ExpiredTokenException", "Token expired: current date/time 1 must be before the expiration date/time 0", StsRefusal::Expired),
            ("InvalidIdentityToken", "Token is not valid", StsRefusal::Other),
        ] {
            let e = refusal_of(code, message);
            assert!(
                matches!(&e, AwsError::WebIdentityRefused { refusal, .. } if *refusal == want),
                "{code}: {message} -> {e:?}"
            );
            assert_eq!(e.code(), Some(code));
            assert_eq!(
                e.to_string(),
                format!("sts:AssumeRoleWithWebIdentity failed: {code}: {message}")
            );
        }
    }

    #[test]
    fn a_denied_refusal_is_still_denied() {
        assert!(refusal_of(
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity"
        )
        .denied());
    }

    #[test]
    fn errors_that_are_not_calls_pass_through() {
        let e = refused(AwsError::Unexpected("no assumed role user".into()));
        assert!(matches!(e, AwsError::Unexpected(m) if m == "no assumed role user"));
    }
}
