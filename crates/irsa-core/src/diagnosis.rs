//! Doctor's diagnoses: which link of the chain from a pod to STS a failure
//! points at, and the fix to print with it.
//!
//! The chain, in order: the pod was mutated by the webhook → the
//! ServiceAccount carries a role ARN → the TokenRequest API issues a token
//! → its `iss` is the issuer → the discovery document and the JWKS are
//! served → the JWKS verifies the token → the IAM OIDC provider lists the
//! audience → the role's trust policy admits the token → STS.

use crate::checks::Status;
use crate::jwt::{self, JwtError};
use crate::key::Algorithm;
use crate::rotation::{SigningFinding, Verdict};
use crate::verify::verify_signature;
use crate::Jwks;

mod binding;
pub mod iam;
mod job;
pub mod pod_identity;
pub mod service_account;
pub mod token;
mod webhook;

pub use binding::{judge_binding, subject_of, BindingFinding, RoleSource};
pub use job::{judge_job_pods, JobWait};
pub use webhook::{
    is_pod_identity_hook, judge_webhook, selects, DryRun, Hook, Reach, WebhookFinding,
};

/// Every link doctor reports, in the order of the chain. The enum is the
/// one place a link's report line is written: doctor, its tests and the
/// fixes that point at another link all take the name from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `--pod` names a pod that exists.
    PodExists,
    /// The webhook mutated the pod when it was created.
    PodMutated,
    /// The role the pod was given is the one its ServiceAccount names now.
    PodRoleCurrent,
    /// The ServiceAccount's unfinished pods carry its current role.
    Pods,
    /// The ServiceAccount exists.
    ServiceAccountExists,
    /// The ServiceAccount's role-arn annotation names a role ARN.
    RoleAnnotation,
    /// The role the ServiceAccount names is the one irsa.yaml binds to it.
    RoleBound,
    /// The pod identity webhook mutates new pods of the ServiceAccount.
    WebhookMutates,
    /// The TokenRequest API issues a token for the audience.
    TokenRequest,
    /// The key the cluster signs with is irsa.yaml's active key.
    SigningKey,
    /// The token decodes as a JWT.
    TokenDecodes,
    /// The token has not expired.
    TokenNotExpired,
    /// The token's times agree with this machine's clock.
    TokenClock,
    /// The token's `iss` is irsa.yaml's issuer.
    TokenIssuer,
    /// The token's `iss`, with no irsa.yaml to compare it with.
    TokenIss,
    /// A key of irsa.yaml verifies the token (nothing fetched).
    BundleKey,
    /// The token's `iss` is an issuer URL whose discovery document is
    /// reachable over HTTPS (the served walk's first line).
    DiscoveryReachable,
    /// The served JWKS holds the token's kid and verifies its signature.
    JwksVerifies,
    /// The served JWKS holds the token's kid (what STS names when it
    /// cannot fetch the keys).
    JwksKid,
    /// The issuer serves the documents irsa.yaml renders.
    Publication,
    /// The role ARN parses.
    IamRoleArn,
    /// The IAM OIDC provider exists in the role's account.
    IamProvider,
    /// The provider's client IDs hold the token's audience.
    IamClientIds,
    /// The role exists.
    IamRoleExists,
    /// The role's trust policy admits the token.
    IamTrust,
    /// STS AssumeRoleWithWebIdentity itself.
    Sts,
}

impl Link {
    /// The report line's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::PodExists => "pod: exists",
            Self::PodMutated => "pod: mutated by the webhook",
            Self::PodRoleCurrent => "pod: role is the ServiceAccount's current one",
            Self::Pods => "pods: of the ServiceAccount carry its current role",
            Self::ServiceAccountExists => "serviceaccount: exists",
            Self::RoleAnnotation => "serviceaccount: role-arn annotation",
            Self::RoleBound => "serviceaccount: role is the one irsa.yaml binds to it",
            Self::WebhookMutates => "webhook: mutates new pods of the ServiceAccount",
            Self::TokenRequest => "token: TokenRequest",
            Self::SigningKey => "cluster: signs with irsa.yaml's active key",
            Self::TokenDecodes => "token: decodes",
            Self::TokenNotExpired => "token: not expired",
            Self::TokenClock => "token: clocks of the apiserver and this machine agree",
            Self::TokenIssuer => "token: iss is the configured issuer",
            Self::TokenIss => "token: iss",
            Self::BundleKey => "bundle: token signed by a key of irsa.yaml",
            Self::DiscoveryReachable => "discovery: reachable over HTTPS",
            Self::JwksVerifies => "jwks: token kid published and signature verifies",
            Self::JwksKid => "jwks: token kid published",
            Self::Publication => "issuer: serves the documents irsa.yaml renders",
            Self::IamRoleArn => "iam: role ARN",
            Self::IamProvider => "iam: OIDC provider",
            Self::IamClientIds => "iam: provider client IDs",
            Self::IamRoleExists => "iam: role exists",
            Self::IamTrust => "iam: trust policy admits the token",
            Self::Sts => "sts: AssumeRoleWithWebIdentity",
        }
    }

    /// Every link, in the order of the chain.
    pub const ALL: [Link; 26] = [
        Self::PodExists,
        Self::PodMutated,
        Self::PodRoleCurrent,
        Self::Pods,
        Self::ServiceAccountExists,
        Self::RoleAnnotation,
        Self::RoleBound,
        Self::WebhookMutates,
        Self::TokenRequest,
        Self::SigningKey,
        Self::TokenDecodes,
        Self::TokenNotExpired,
        Self::TokenClock,
        Self::TokenIssuer,
        Self::TokenIss,
        Self::BundleKey,
        Self::DiscoveryReachable,
        Self::JwksVerifies,
        Self::JwksKid,
        Self::Publication,
        Self::IamRoleArn,
        Self::IamProvider,
        Self::IamClientIds,
        Self::IamRoleExists,
        Self::IamTrust,
        Self::Sts,
    ];
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
    /// The token is not valid yet (its `nbf` or `iat` is ahead of AWS's
    /// clock): the apiserver's clock runs ahead.
    NotYetValid,
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
        } else if m.contains("not yet valid") || m.contains("issued in the future") {
            Self::NotYetValid
        } else if m.contains("expired") {
            Self::Expired
        } else {
            Self::Other
        }
    }

    /// The broken link this refusal points at, and its fix.
    pub fn diagnosis(self) -> (Link, &'static str) {
        match self {
            Self::NoProvider => (
                Link::IamProvider,
                "create the provider for the token's issuer host/path: `irsa apply`",
            ),
            Self::KeyUnavailable => (Link::JwksKid, "STS cannot fetch the JWKS or it lacks the kid: publish it publicly (`irsa apply`) and check the discovery document's jwks_uri"),
            Self::Audience => (Link::IamClientIds, "add the token's audience to the provider's client IDs (`audience:` in irsa.yaml, then `irsa apply`)"),
            Self::TrustPolicy => (Link::IamTrust, "the trust policy's Federated principal, :sub or :aud condition does not match: `irsa plan` shows the repair"),
            Self::Expired => (
                Link::TokenNotExpired,
                "use a fresh token; kubelet refreshes projected tokens",
            ),
            Self::NotYetValid => (
                Link::TokenClock,
                "the token's nbf/iat is ahead of AWS's clock: the apiserver host's clock runs ahead; sync it (NTP, chrony)",
            ),
            Self::Other => (Link::Sts, "see the message"),
        }
    }
}

/// The STS link: the role STS gave (`Ok`), or its refusal and message,
/// with the link the refusal points at.
pub fn sts(report: &mut crate::checks::Report, outcome: Result<&str, (StsRefusal, &str)>) {
    match outcome {
        Ok(assumed) => report.pass(Link::Sts.name(), format!("assumed {assumed}")),
        Err((refusal, message)) => {
            let (link, fix) = refusal.diagnosis();
            report.fail(
                Link::Sts.name(),
                format!("{message} (broken link: {})", link.name()),
                fix,
            );
        }
    }
}

/// What a token's times say about the clocks of the apiserver that signed it
/// and of this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockFinding {
    /// Nothing points at skew.
    Agree,
    /// `iat` or `nbf` is `ahead` seconds past this machine's now (beyond
    /// the leeway): one of the two clocks is wrong.
    FromTheFuture {
        /// Seconds ahead.
        ahead: i64,
    },
    /// A token the apiserver issued just now had already expired `ago`
    /// seconds before this machine's now: one of the two clocks is wrong.
    ExpiredOnArrival {
        /// Seconds since `exp`.
        ago: i64,
    },
}

impl ClockFinding {
    /// Judges a token's `iat`, `nbf` and `exp` against `now`. With
    /// `just_issued` (the token came from the TokenRequest API a moment
    /// ago), an expired token means skew rather than an old token.
    pub fn of(
        iat: Option<i64>,
        nbf: Option<i64>,
        exp: Option<i64>,
        now: i64,
        leeway: i64,
        just_issued: bool,
    ) -> Self {
        let ahead = [iat, nbf]
            .into_iter()
            .flatten()
            .map(|t| t.saturating_sub(now))
            .max()
            .unwrap_or(0);
        if ahead > leeway {
            return Self::FromTheFuture { ahead };
        }
        match exp {
            Some(exp) if just_issued && now.saturating_sub(exp) > leeway => {
                Self::ExpiredOnArrival {
                    ago: now.saturating_sub(exp),
                }
            }
            _ => Self::Agree,
        }
    }

    /// The finding's detail and fix, or `None` when the clocks agree.
    pub fn explain(self) -> Option<(String, &'static str)> {
        let fix = "sync the clocks of the apiserver hosts and of this machine (NTP, chrony); STS judges tokens by AWS's clock";
        match self {
            Self::Agree => None,
            Self::FromTheFuture { ahead } => Some((
                format!("the token was issued {ahead} s in this machine's future: the apiserver's clock runs ahead of this one (or this one behind)"),
                fix,
            )),
            Self::ExpiredOnArrival { ago } => Some((
                format!("a token issued just now expired {ago} s ago by this machine's clock: the clocks disagree by at least the token's lifetime"),
                fix,
            )),
        }
    }
}

/// The fix for a token the published JWKS does not verify.
pub fn jwt_fix(error: &JwtError) -> &'static str {
    match error {
        JwtError::KidNotFound { .. } => "publish the apiserver's current public key: `irsa render` then `irsa apply` (keep old keys until their tokens expire)",
        JwtError::BadSignature { .. } => "the apiserver signs with a key whose public half is not the one published under this kid: check --service-account-signing-key-file",
        JwtError::Expired { .. } => "the token expired: kubelet refreshes projected tokens; make sure the SDK re-reads the file (recent AWS SDKs do)",
        JwtError::NotYetValid { .. } | JwtError::IssuedInFuture { .. } => "the clocks of the apiserver and this machine disagree: sync them (NTP, chrony)",
        _ => "see the detail",
    }
}

/// What the bundle's own JWKS says about a token's `kid` and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleKeyFinding {
    /// A key of the bundle verifies the signature.
    Verifies {
        /// The key's kid.
        kid: String,
    },
    /// No key of the bundle has the token's kid (or, for a token without
    /// one, verifies it): the cluster signs with a key irsa does not know.
    UnknownKid {
        /// The token's kid (empty when it has none).
        kid: String,
        /// The bundle's kids.
        known: Vec<String>,
    },
    /// The bundle has the kid, but its key does not verify the signature.
    BadSignature {
        /// The kid.
        kid: String,
    },
    /// The token cannot be judged: it does not decode or its `alg` is not
    /// one service-account tokens use.
    Unreadable(String),
}

impl BundleKeyFinding {
    /// Checks `token`'s kid and signature against `jwks` (claims are other
    /// links' business).
    pub fn of(token: &str, jwks: &Jwks) -> Self {
        let decoded = match jwt::decode(token) {
            Ok(d) => d,
            Err(e) => return Self::Unreadable(e.to_string()),
        };
        let alg_name = decoded.alg().unwrap_or_default();
        let Ok(alg) = alg_name.parse::<Algorithm>() else {
            return Self::Unreadable(JwtError::AlgNotAllowed(alg_name.to_string()).to_string());
        };
        let kid = decoded.kid().unwrap_or_default().to_string();
        let candidates: Vec<_> = if kid.is_empty() {
            jwks.keys.iter().collect()
        } else {
            jwks.find(&kid).collect()
        };
        if candidates.is_empty() {
            return Self::UnknownKid {
                kid,
                known: jwks.keys.iter().filter_map(|k| k.kid.clone()).collect(),
            };
        }
        let verifying = candidates.iter().find(|jwk| {
            jwk.public_key().is_ok_and(|key| {
                verify_signature(
                    &key,
                    alg,
                    decoded.signing_input.as_bytes(),
                    &decoded.signature,
                )
                .is_ok()
            })
        });
        match verifying {
            Some(jwk) => Self::Verifies {
                kid: jwk.kid.clone().unwrap_or_default(),
            },
            None if kid.is_empty() => Self::UnknownKid {
                kid,
                known: jwks.keys.iter().filter_map(|k| k.kid.clone()).collect(),
            },
            None => Self::BadSignature { kid },
        }
    }

    /// The link's status, its detail, and the fix when it does not hold.
    pub fn explain(&self) -> (Status, String, &'static str) {
        match self {
            Self::Verifies { kid } => (
                Status::Pass,
                format!("kid {kid:?} is a key of irsa.yaml and the signature verifies"),
                "",
            ),
            Self::UnknownKid { kid, known } => (
                Status::Fail,
                format!("kid not in the bundle: the token's kid {kid:?} is none of irsa.yaml's keys {known:?}, so the JWKS irsa publishes cannot verify it"),
                "the cluster signs with a key irsa does not know: point kube-apiserver's --service-account-signing-key-file at the bundle's active private key (`irsa cluster config` prints the flags), or add the cluster's public key to irsa.yaml's keys and `irsa apply`",
            ),
            Self::BadSignature { kid } => (
                Status::Fail,
                format!("irsa.yaml has a key with kid {kid:?}, but it does not verify the token's signature"),
                "the token was signed by another private key under the same kid: check --service-account-signing-key-file and the public key irsa.yaml lists",
            ),
            Self::Unreadable(why) => (
                Status::Fail,
                why.clone(),
                "pass a service-account token (a JWT signed with RS256, ES256 or ES384)",
            ),
        }
    }
}

/// The signing-key link's status, detail and fix. Anything but the active
/// key signing (a `previous` key after the switch, a `next` key before it,
/// a retired or unknown key), or no observation, is a warning: pods may
/// still get credentials, but a rotation is not where irsa.yaml says it is.
pub fn signing_key(finding: &SigningFinding) -> (Status, String, String) {
    match finding.verdict {
        Verdict::Expected => (Status::Pass, finding.detail.clone(), String::new()),
        Verdict::Unexpected | Verdict::Unobserved => {
            (Status::Warn, finding.detail.clone(), finding.fix.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_link_holds_only_for_the_active_key() {
        use crate::config::{KeyConfig, KeyState};
        use crate::rotation::{judge, Observation};
        let key = |name: &str, state| KeyConfig {
            public_key: format!("keys/{name}.pub"),
            private_key: None,
            algorithm: Algorithm::RS256,
            state,
            created: None,
            activated: None,
            deactivated: None,
            first_observed: None,
        };
        let keys = [key("old", KeyState::Previous), key("new", KeyState::Active)];
        let now = crate::Timestamp::saturating_from_unix(0);
        let link = |o: Observation| signing_key(&judge(&keys, &["k-old", "k-new"], &o, now));
        let (status, detail, _) = link(Observation::Kid("k-new".into()));
        assert_eq!(status, Status::Pass, "{detail}");
        let (status, detail, fix) = link(Observation::Kid("k-old".into()));
        assert_eq!(status, Status::Warn);
        assert!(
            detail.contains("still signs with the previous key keys/old.pub"),
            "{detail}"
        );
        assert!(fix.contains("kube-apiserver"), "{fix}");
        let (status, detail, _) = link(Observation::Unobserved("forbidden".into()));
        assert_eq!(status, Status::Warn);
        assert!(detail.contains("could not observe"), "{detail}");
    }

    #[test]
    fn every_link_has_a_line_of_its_own() {
        let names: std::collections::BTreeSet<&str> = Link::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names.len(), Link::ALL.len());
        for link in Link::ALL {
            let (area, what) = link.name().split_once(": ").expect("area: what");
            assert!(!area.is_empty() && !what.is_empty(), "{link:?}");
        }
    }

    #[test]
    fn sts_names_the_broken_link_in_its_line() {
        let mut r = crate::checks::Report::default();
        sts(&mut r, Ok("arn:aws:sts::111122223333:assumed-role/app/s"));
        sts(
            &mut r,
            Err((
                StsRefusal::Audience,
                "InvalidIdentityToken: Incorrect token audience",
            )),
        );
        assert_eq!(r.checks[0].status, Status::Pass);
        assert_eq!(r.checks[1].status, Status::Fail);
        assert!(
            r.checks[1]
                .detail
                .ends_with("(broken link: iam: provider client IDs)"),
            "{:?}",
            r.checks[1]
        );
    }

    #[test]
    fn each_refusal_points_at_its_link() {
        for (refusal, link, fix) in [
            (StsRefusal::NoProvider, Link::IamProvider, "irsa apply"),
            (StsRefusal::KeyUnavailable, Link::JwksKid, "jwks_uri"),
            (StsRefusal::Audience, Link::IamClientIds, "audience:"),
            (StsRefusal::TrustPolicy, Link::IamTrust, "irsa plan"),
            (StsRefusal::Expired, Link::TokenNotExpired, "fresh token"),
            (StsRefusal::NotYetValid, Link::TokenClock, "clock"),
            (StsRefusal::Other, Link::Sts, "see the message"),
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
            ("InvalidIdentityToken: Token is not yet valid", StsRefusal::NotYetValid),
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

    #[test]
    fn token_times_tell_clock_skew_from_an_old_token() {
        let now = 1_000_000;
        let f = |iat, nbf, exp, fresh| ClockFinding::of(iat, nbf, exp, now, 60, fresh);
        // A token from now on agrees, with or without iat/nbf.
        assert_eq!(
            f(Some(now), Some(now), Some(now + 3600), true),
            ClockFinding::Agree
        );
        assert_eq!(f(None, None, None, true), ClockFinding::Agree);
        // Within the leeway is not skew.
        assert_eq!(
            f(Some(now + 60), None, Some(now + 3660), true),
            ClockFinding::Agree
        );
        // iat or nbf ahead beyond the leeway is skew, whichever is larger.
        assert_eq!(
            f(Some(now + 61), Some(now + 300), Some(now + 4000), false),
            ClockFinding::FromTheFuture { ahead: 300 }
        );
        // An expired token read from a file is just old; one the apiserver
        // issued a moment ago is skew.
        assert_eq!(
            f(Some(now - 7200), None, Some(now - 3600), false),
            ClockFinding::Agree
        );
        assert_eq!(
            f(Some(now - 7200), None, Some(now - 3600), true),
            ClockFinding::ExpiredOnArrival { ago: 3600 }
        );
        // Extreme claims neither overflow nor panic.
        assert_eq!(
            ClockFinding::of(Some(i64::MAX), None, Some(i64::MIN), i64::MIN, 0, true),
            ClockFinding::FromTheFuture { ahead: i64::MAX }
        );
        assert!(ClockFinding::Agree.explain().is_none());
        let (detail, fix) = ClockFinding::FromTheFuture { ahead: 300 }
            .explain()
            .expect("skew");
        assert!(
            detail.contains("300 s") && fix.contains("NTP"),
            "{detail} / {fix}"
        );
    }

    #[test]
    fn the_bundle_tells_an_unknown_kid_from_a_bad_signature() {
        let ours = crate::PrivateKey::generate(Algorithm::ES256, 0).expect("a key");
        let theirs = crate::PrivateKey::generate(Algorithm::ES256, 0).expect("a key");
        let jwks = Jwks::build([(ours.public_key(), Algorithm::ES256)], false);
        let claims = serde_json::json!({"iss": "https://x/y", "sub": "s"});
        let sign = |k: &crate::PrivateKey| jwt::sign(k, Algorithm::ES256, &claims).expect("signed");
        let our_kid = ours.public_key().kid().to_string();

        let good = BundleKeyFinding::of(&sign(&ours), &jwks);
        assert_eq!(
            good,
            BundleKeyFinding::Verifies {
                kid: our_kid.clone()
            }
        );
        assert_eq!(good.explain().0, Status::Pass);

        let foreign = BundleKeyFinding::of(&sign(&theirs), &jwks);
        assert_eq!(
            foreign,
            BundleKeyFinding::UnknownKid {
                kid: theirs.public_key().kid().to_string(),
                known: vec![our_kid.clone()],
            }
        );
        let (status, detail, fix) = foreign.explain();
        assert_eq!(status, Status::Fail);
        assert!(detail.contains("kid not in the bundle"), "{detail}");
        assert!(fix.contains("--service-account-signing-key-file"), "{fix}");

        // Our header (our kid) over a signature made by another key.
        let (ours_t, theirs_t) = (sign(&ours), sign(&theirs));
        let header = ours_t.split('.').next().expect("header");
        let rest: Vec<&str> = theirs_t.split('.').skip(1).collect();
        let forged = format!("{header}.{}", rest.join("."));
        let bad = BundleKeyFinding::of(&forged, &jwks);
        assert_eq!(bad, BundleKeyFinding::BadSignature { kid: our_kid });
        assert_eq!(bad.explain().0, Status::Fail);

        assert!(matches!(
            BundleKeyFinding::of("not a token", &jwks),
            BundleKeyFinding::Unreadable(_)
        ));
    }
}
