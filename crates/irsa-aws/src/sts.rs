//! STS: who the caller is, and exchanging a web identity token for a role
//! (with the reason STS gives when it refuses, as a [`StsRefusal`]).

use crate::error::call_err;
use crate::{Aws, AwsError};

impl Aws {
    /// The caller's account ID.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        self.read();
        let who = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| call_err("sts:GetCallerIdentity", e))?;
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

/// Which link of the token-to-role chain STS named when it refused a web
/// identity token. STS gives the same code (`InvalidIdentityToken`) for
/// several causes, so the message tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsRefusal {
    /// No IAM OIDC provider for the token's issuer.
    NoProvider,
    /// STS could not fetch the issuer's keys, or they lack the token's kid.
    KeyUnavailable,
    /// The token's audience is not among the provider's client IDs.
    Audience,
    /// The role's trust policy does not admit the token.
    TrustPolicy,
    /// The token has expired.
    Expired,
    /// Anything else; the message says what.
    Other,
}

impl StsRefusal {
    /// Reads the refusal from STS's `code: message` text.
    pub fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        if m.contains("no openidconnect provider found") {
            Self::NoProvider
        } else if m.contains("couldn't retrieve verification key")
            || m.contains("could not retrieve")
        {
            Self::KeyUnavailable
        } else if m.contains("incorrect token audience") {
            Self::Audience
        } else if m.contains("not authorized to perform sts:assumerolewithwebidentity") {
            Self::TrustPolicy
        } else if m.contains("expired") {
            Self::Expired
        } else {
            Self::Other
        }
    }
}

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
