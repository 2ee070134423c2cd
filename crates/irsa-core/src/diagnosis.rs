//! Doctor's diagnoses: which link of the chain from a pod to STS a failure
//! points at, and the fix to print with it.
//!
//! The chain, in order: the pod was mutated by the webhook → the
//! ServiceAccount carries a role ARN → the TokenRequest API issues a token
//! → its `iss` is the issuer → the discovery document and the JWKS are
//! served → the JWKS verifies the token → the IAM OIDC provider lists the
//! audience → the role's trust policy admits the token → STS.

use crate::jwt::JwtError;

/// Report line of the JWKS link: the token's kid is published and its
/// signature verifies.
pub const JWKS_VERIFIES: &str = "jwks: token kid published and signature verifies";
/// Report line of the IAM OIDC provider.
pub const IAM_PROVIDER: &str = "iam: OIDC provider";
/// Report line of the provider's client IDs (the audiences it accepts).
pub const IAM_CLIENT_IDS: &str = "iam: provider client IDs";
/// Report line of the role's trust policy.
pub const IAM_TRUST: &str = "iam: trust policy admits the token";
/// Report line of the token's expiry.
pub const TOKEN_NOT_EXPIRED: &str = "token: not expired";
/// Report line of the STS call itself.
pub const STS: &str = "sts: AssumeRoleWithWebIdentity";
/// The link STS names when it cannot fetch the keys or they lack the kid.
pub const JWKS_KID: &str = "jwks: token kid published";

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

    /// The broken link this refusal points at, and its fix.
    pub fn diagnosis(self) -> (&'static str, &'static str) {
        match self {
            Self::NoProvider => (
                IAM_PROVIDER,
                "create the provider for the token's issuer host/path: `irsa apply`",
            ),
            Self::KeyUnavailable => (JWKS_KID, "STS cannot fetch the JWKS or it lacks the kid: publish it publicly (`irsa apply`) and check the discovery document's jwks_uri"),
            Self::Audience => (IAM_CLIENT_IDS, "add the token's audience to the provider's client IDs (`audience:` in irsa.yaml, then `irsa apply`)"),
            Self::TrustPolicy => (IAM_TRUST, "the trust policy's Federated principal, :sub or :aud condition does not match: `irsa plan` shows the repair"),
            Self::Expired => (
                TOKEN_NOT_EXPIRED,
                "use a fresh token; kubelet refreshes projected tokens",
            ),
            Self::Other => (STS, "see the message"),
        }
    }
}

/// The fix for a token the published JWKS does not verify.
pub fn jwt_fix(error: &JwtError) -> &'static str {
    match error {
        JwtError::KidNotFound { .. } => "publish the apiserver's current public key: `irsa render` then `irsa apply` (keep old keys until their tokens expire)",
        JwtError::BadSignature { .. } => "the apiserver signs with a key whose public half is not the one published under this kid: check --service-account-signing-key-file",
        JwtError::Expired { .. } => "the token expired: kubelet refreshes projected tokens; make sure the SDK re-reads the file (recent AWS SDKs do)",
        _ => "see the detail",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_points_at_its_link() {
        for (refusal, link, fix) in [
            (StsRefusal::NoProvider, IAM_PROVIDER, "irsa apply"),
            (StsRefusal::KeyUnavailable, JWKS_KID, "jwks_uri"),
            (StsRefusal::Audience, IAM_CLIENT_IDS, "audience:"),
            (StsRefusal::TrustPolicy, IAM_TRUST, "irsa plan"),
            (StsRefusal::Expired, TOKEN_NOT_EXPIRED, "fresh token"),
            (StsRefusal::Other, STS, "see the message"),
        ] {
            let (l, f) = refusal.diagnosis();
            assert_eq!(l, link, "{refusal:?}");
            assert!(f.contains(fix), "{refusal:?}: {f}");
        }
    }

    #[test]
    fn sts_messages_are_classified() {
        for (message, want) in [
            ("InvalidIdentityToken: No OpenIDConnect provider found in your account for https://x/y", StsRefusal::NoProvider),
            ("IDPCommunicationError: Could not retrieve the JWKS", StsRefusal::KeyUnavailable),
            ("InvalidIdentityToken: Incorrect token audience", StsRefusal::Audience),
            ("AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity", StsRefusal::TrustPolicy),
            ("ExpiredTokenException: Token expired", StsRefusal::Expired),
            ("InvalidIdentityToken: Token is not valid", StsRefusal::Other),
        ] {
            assert_eq!(StsRefusal::classify(message), want, "{message}");
        }
    }

    #[test]
    fn jwt_failures_have_specific_fixes() {
        let kid = JwtError::KidNotFound {
            kid: "k".into(),
            available: vec![],
        };
        assert!(jwt_fix(&kid).contains("irsa apply"));
        let sig = JwtError::BadSignature { kid: "k".into() };
        assert!(jwt_fix(&sig).contains("--service-account-signing-key-file"));
        assert_eq!(jwt_fix(&JwtError::Malformed("x".into())), "see the detail");
    }
}
