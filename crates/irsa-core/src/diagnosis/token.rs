//! Doctor's token links, judged from the token alone (its claims against
//! this machine's clock and irsa.yaml's issuer) and from the JWKS the
//! issuer served. The CLI reads the token and fetches the documents; the
//! verdicts are here.

use crate::checks::Report;
use crate::diagnosis::{jwt_fix, ClockFinding, Link};
use crate::issuer::IssuerUrl;
use crate::jwt::{self, VerifyOptions, DEFAULT_LEEWAY};
use crate::Jwks;

/// The claims the later links of the chain need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `iss`, as the token has it (a trailing slash included).
    pub iss: String,
    /// `sub`.
    pub sub: String,
    /// The audiences.
    pub aud: Vec<String>,
}

impl Claims {
    /// The issuer's `host/path` as IAM and trust-policy condition keys
    /// name it: without the scheme and the trailing slash.
    pub fn host_path(&self) -> &str {
        self.iss
            .trim_start_matches("https://")
            .trim_end_matches('/')
    }
}

/// What doctor knows of the token besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// This machine's Unix time.
    pub now: i64,
    /// irsa.yaml's issuer URL, when there is an irsa.yaml.
    pub issuer: Option<&'a str>,
    /// The TokenRequest API issued the token during this run, so an
    /// expired token means the clocks disagree, not an old token.
    pub just_issued: bool,
}

/// The token's own links: it decodes, has not expired, its times agree
/// with this machine's clock (both within [`DEFAULT_LEEWAY`], the leeway
/// irsa's verifier allows), and its `iss` is irsa.yaml's issuer. The
/// claims when it decodes.
pub fn claims(report: &mut Report, token: &str, cx: Context<'_>) -> Option<Claims> {
    let decoded = match jwt::decode(token) {
        Ok(d) => d,
        Err(e) => {
            report.fail(
                Link::TokenDecodes.name(),
                e.to_string(),
                "pass the token file's content (a JWT with three dot-separated parts)",
            );
            return None;
        }
    };
    let claims = Claims {
        iss: decoded.claim_str("iss").unwrap_or_default().to_string(),
        sub: decoded.claim_str("sub").unwrap_or_default().to_string(),
        aud: decoded.audiences(),
    };
    let (iss, sub, aud) = (&claims.iss, &claims.sub, &claims.aud);
    let now = cx.now;
    let exp = decoded.claim_time("exp").unwrap_or(0);
    report.check(
        exp > now.saturating_sub(DEFAULT_LEEWAY),
        Link::TokenNotExpired.name(),
        format!(
            "{sub}, audience {aud:?}, expires in {} s",
            exp.saturating_sub(now)
        ),
        format!("expired {} s ago", now.saturating_sub(exp)),
        "use a fresh token (kubelet refreshes projected tokens; the SDK must re-read the file)",
    );
    let clock = ClockFinding::of(
        decoded.claim_time("iat"),
        decoded.claim_time("nbf"),
        decoded.claim_time("exp"),
        now,
        DEFAULT_LEEWAY,
        cx.just_issued,
    );
    match clock.explain() {
        None => report.pass(
            Link::TokenClock.name(),
            "iat and nbf are not ahead of this machine's clock",
        ),
        Some((detail, fix)) => report.fail(Link::TokenClock.name(), detail, fix),
    }
    match cx.issuer {
        Some(expected) => {
            let hint = if iss.trim_end_matches('/') == expected.trim_end_matches('/') {
                " (they differ only by a trailing slash)"
            } else {
                ""
            };
            report.check(
                iss == expected,
                Link::TokenIssuer.name(),
                format!("iss {iss}"),
                format!("the token's iss is {iss:?} but irsa.yaml's issuer is {expected:?}{hint}"),
                format!("set kube-apiserver --service-account-issuer={expected} exactly (`irsa cluster config` renders it), or fix issuer.url"),
            );
        }
        None => report.pass(
            Link::TokenIss.name(),
            format!("iss {iss} (no irsa.yaml to compare with)"),
        ),
    }
    Some(claims)
}

/// The issuer URL doctor walks for the token's `iss` (a trailing slash is
/// [`Link::TokenIssuer`]'s fault, so it is walked without one), or the
/// failed first link of the walk when `iss` is no issuer URL STS accepts.
pub fn issuer_to_walk(report: &mut Report, iss: &str) -> Option<IssuerUrl> {
    match IssuerUrl::parse(iss.trim_end_matches('/')) {
        Ok(url) => Some(url),
        Err(e) => {
            report.fail(
                Link::DiscoveryReachable.name(),
                format!("the token's iss {iss:?} is not an issuer URL STS accepts: {e}"),
                "set the apiserver's --service-account-issuer to the https URL irsa.yaml names (`irsa cluster config`)",
            );
            None
        }
    }
}

/// Whether the JWKS the issuer served verifies the token for `claims`'
/// first audience (its kid is published, the signature and the claims
/// hold), as STS will check it.
pub fn served_jwks_verifies(
    report: &mut Report,
    token: &str,
    claims: &Claims,
    jwks: &Jwks,
    now: i64,
) -> bool {
    let opts = VerifyOptions {
        issuer: claims.iss.trim_end_matches('/').to_string(),
        audience: claims.aud.first().cloned().unwrap_or_default(),
        now,
        leeway: DEFAULT_LEEWAY,
    };
    match jwt::verify(token, jwks, &opts) {
        Ok(_) => {
            report.pass(
                Link::JwksVerifies.name(),
                "the published key verifies the token",
            );
            true
        }
        Err(e) => {
            report.fail(Link::JwksVerifies.name(), e.to_string(), jwt_fix(&e));
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checks::Status;
    use crate::key::Algorithm;
    use crate::private::PrivateKey;

    const ISS: &str = "https://oidc.example.com/prod";
    const NOW: i64 = 1_800_000_000;

    fn key() -> PrivateKey {
        PrivateKey::generate(Algorithm::ES256, 0).unwrap()
    }

    fn token(key: &PrivateKey, iss: &str, iat: i64, exp: i64) -> String {
        let claims = serde_json::json!({
            "iss": iss, "sub": "system:serviceaccount:app:web",
            "aud": ["sts.amazonaws.com"], "iat": iat, "nbf": iat, "exp": exp,
        });
        jwt::sign(key, Algorithm::ES256, &claims).unwrap()
    }

    fn lines(r: &Report) -> Vec<(&str, Status)> {
        r.checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect()
    }

    fn cx(issuer: Option<&str>, just_issued: bool) -> Context<'_> {
        Context {
            now: NOW,
            issuer,
            just_issued,
        }
    }

    #[test]
    fn a_fresh_token_of_the_configured_issuer_holds_every_link() {
        let t = token(&key(), ISS, NOW - 5, NOW + 600);
        let mut r = Report::default();
        let c = claims(&mut r, &t, cx(Some(ISS), true)).unwrap();
        assert_eq!(c.sub, "system:serviceaccount:app:web");
        assert_eq!(c.host_path(), "oidc.example.com/prod");
        assert_eq!(
            lines(&r),
            [
                (Link::TokenNotExpired.name(), Status::Pass),
                (Link::TokenClock.name(), Status::Pass),
                (Link::TokenIssuer.name(), Status::Pass),
            ]
        );
    }

    #[test]
    fn no_irsa_yaml_means_the_issuer_is_shown_not_judged() {
        let t = token(&key(), "https://elsewhere.example", NOW, NOW + 600);
        let mut r = Report::default();
        claims(&mut r, &t, cx(None, false)).unwrap();
        assert_eq!(r.checks[2].name, Link::TokenIss.name());
        assert!(!r.failed(), "{r:?}");
    }

    #[test]
    fn expiry_and_skew_are_judged_with_the_verifiers_leeway() {
        let k = key();
        // Within the leeway either way: holds.
        let t = token(&k, ISS, NOW + DEFAULT_LEEWAY, NOW - DEFAULT_LEEWAY + 1);
        let mut r = Report::default();
        claims(&mut r, &t, cx(Some(ISS), false)).unwrap();
        assert!(!r.failed(), "{r:?}");
        // Past it: expired, and issued in this machine's future.
        let t = token(&k, ISS, NOW + DEFAULT_LEEWAY + 1, NOW - DEFAULT_LEEWAY);
        let mut r = Report::default();
        claims(&mut r, &t, cx(Some(ISS), false)).unwrap();
        assert_eq!(
            lines(&r)[..2],
            [
                (Link::TokenNotExpired.name(), Status::Fail),
                (Link::TokenClock.name(), Status::Fail),
            ]
        );
        // A token issued just now that has expired is clock skew.
        let t = token(&k, ISS, NOW - 4000, NOW - 3400);
        let mut r = Report::default();
        claims(&mut r, &t, cx(Some(ISS), true)).unwrap();
        let clock = &r.checks[1];
        assert_eq!(
            (clock.name.as_str(), clock.status),
            (Link::TokenClock.name(), Status::Fail)
        );
        assert!(clock.detail.contains("issued just now"), "{clock:?}");
    }

    #[test]
    fn a_trailing_slash_is_named_as_the_only_difference() {
        let t = token(&key(), &format!("{ISS}/"), NOW, NOW + 600);
        let mut r = Report::default();
        claims(&mut r, &t, cx(Some(ISS), false)).unwrap();
        let iss = r.checks.last().unwrap();
        assert_eq!(iss.status, Status::Fail);
        assert!(iss.detail.contains("only by a trailing slash"), "{iss:?}");
        // The walk still goes to the issuer without it.
        let mut r = Report::default();
        assert_eq!(
            issuer_to_walk(&mut r, &format!("{ISS}/")).unwrap().as_str(),
            ISS
        );
        assert!(r.checks.is_empty());
    }

    #[test]
    fn garbage_is_one_failed_line_and_no_claims() {
        let mut r = Report::default();
        assert!(claims(&mut r, "not-a-jwt", cx(Some(ISS), false)).is_none());
        assert_eq!(lines(&r), [(Link::TokenDecodes.name(), Status::Fail)]);
        let mut r = Report::default();
        assert!(issuer_to_walk(&mut r, "http://oidc.example.com").is_none());
        assert_eq!(lines(&r), [(Link::DiscoveryReachable.name(), Status::Fail)]);
        // The same line the walk writes when the discovery document fails.
        assert_eq!(
            Link::DiscoveryReachable.name(),
            format!("discovery: {}", crate::served::Rule::Status.title())
        );
    }

    #[test]
    fn the_served_jwks_must_hold_the_kid_and_verify() {
        let signer = key();
        let t = token(&signer, ISS, NOW, NOW + 600);
        let c = Claims {
            iss: ISS.into(),
            sub: "system:serviceaccount:app:web".into(),
            aud: vec!["sts.amazonaws.com".into()],
        };
        let jwks = |k: &PrivateKey| Jwks {
            keys: vec![crate::Jwk::new(k.public_key(), Algorithm::ES256)],
        };
        let served = jwks(&signer);
        let mut r = Report::default();
        assert!(served_jwks_verifies(&mut r, &t, &c, &served, NOW));
        let other = jwks(&key());
        let mut r = Report::default();
        assert!(!served_jwks_verifies(&mut r, &t, &c, &other, NOW));
        assert_eq!(lines(&r), [(Link::JwksVerifies.name(), Status::Fail)]);
        assert!(r.checks[0].fix.as_deref().unwrap().contains("irsa apply"));
    }
}
