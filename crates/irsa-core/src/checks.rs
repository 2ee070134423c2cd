//! Issuer-bundle checks: what `irsa validate` reports, as pure functions.

use serde::Serialize;

use crate::b64;
use crate::discovery::Discovery;
use crate::issuer::{IssuerUrl, JwksPath};
use crate::jwks::Jwks;
use crate::jwt::{self, VerifyOptions};
use crate::key::{Algorithm, PublicKey};
use crate::private::PrivateKey;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed.
    Pass,
    /// Works, but worth fixing.
    Warn,
    /// Broken.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name, e.g. `jwks: kid matches key`.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, for warnings and failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// An ordered list of checks.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Records a passing check.
    pub fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        });
    }
    /// Records a warning.
    pub fn warn(
        &mut self,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
    /// Records a failure.
    pub fn fail(
        &mut self,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
    /// Records a line with the status a judgement gave; `fix` is kept for
    /// warnings and failures only.
    pub fn record(
        &mut self,
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        match status {
            Status::Pass => self.pass(name, detail),
            Status::Warn => self.warn(name, detail, fix),
            Status::Fail => self.fail(name, detail, fix),
        }
    }
    /// Pass or fail depending on `ok`.
    pub fn check(
        &mut self,
        ok: bool,
        name: &str,
        pass: impl Into<String>,
        fail: impl Into<String>,
        fix: impl Into<String>,
    ) -> bool {
        if ok {
            self.pass(name, pass);
        } else {
            self.fail(name, fail, fix);
        }
        ok
    }
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
    /// Appends another report.
    pub fn extend(&mut self, other: Report) {
        self.checks.extend(other.checks);
    }
}

/// Checks a JWKS document on its own: parse, kid derivation, encodings, use, alg.
pub fn check_jwks(label: &str, text: &str, report: &mut Report) -> Option<Jwks> {
    let jwks = match Jwks::from_json(text) {
        Ok(j) => j,
        Err(e) => {
            report.fail(
                format!("{label}: parses"),
                e.to_string(),
                "regenerate it with `irsa render` or `irsa jwks`",
            );
            return None;
        }
    };
    if jwks.keys.is_empty() {
        report.fail(
            format!("{label}: has keys"),
            "\"keys\" is empty",
            "publish at least the active key",
        );
        return Some(jwks);
    }
    report.pass(
        format!("{label}: parses"),
        format!("{} key(s)", jwks.keys.len()),
    );
    let mut kids: Vec<&str> = Vec::new();
    for (i, jwk) in jwks.keys.iter().enumerate() {
        let kid = jwk.kid.as_deref().unwrap_or("");
        let name = format!(
            "{label}: key {} ({})",
            i + 1,
            if kid.is_empty() { "kid \"\"" } else { kid }
        );
        let key = match jwk.public_key() {
            Ok(k) => k,
            Err(e) => {
                report.fail(
                    name,
                    e.to_string(),
                    "regenerate the JWKS from the key files with `irsa jwks`",
                );
                continue;
            }
        };
        let mut problems = Vec::new();
        let expected = key.kid();
        if kid.is_empty() {
            report.warn(
                format!("{name}: legacy empty kid"),
                "kid is \"\"; only apiservers older than 1.16 sign without a kid",
                "drop --legacy-empty-kid unless such an apiserver still signs tokens",
            );
        } else if kid != expected.as_str() {
            problems.push(format!("kid {kid:?} is not SHA-256 of the key's SPKI ({expected}); tokens from kube-apiserver carry {expected}"));
        } else if kids.contains(&kid) {
            problems.push(format!("kid {kid:?} appears twice"));
        }
        kids.push(kid);
        if jwk.use_.as_deref() != Some("sig") {
            problems.push(format!(
                "use is {:?}, expected \"sig\"",
                jwk.use_.as_deref().unwrap_or("<missing>")
            ));
        }
        match jwk.alg.as_deref().map(str::parse::<Algorithm>) {
            None => problems.push("alg is missing; STS needs it to pick the verifier".into()),
            Some(Err(e)) => problems.push(e.to_string()),
            Some(Ok(alg)) => {
                if let Err(e) = key.check_algorithm(alg) {
                    problems.push(e.to_string());
                }
            }
        }
        for (field, value) in [("n", &jwk.n), ("e", &jwk.e)] {
            if let Some(v) = value {
                if v.ends_with('=') || v.contains('+') || v.contains('/') {
                    problems.push(format!("{field} is not unpadded base64url"));
                } else if b64::decode(v).ok().and_then(|b| b.first().copied()) == Some(0) {
                    problems.push(format!(
                        "{field} has a leading zero byte (a common bug of hand-written converters)"
                    ));
                }
            }
        }
        if problems.is_empty() {
            report.pass(
                name,
                format!(
                    "{} {}, kid = SHA-256(SPKI), n/e/x/y canonical",
                    key.describe(),
                    jwk.alg.as_deref().unwrap_or("")
                ),
            );
        } else {
            report.fail(
                name,
                problems.join("; "),
                "regenerate the JWKS from the key files with `irsa jwks` (or `irsa render`)",
            );
        }
    }
    Some(jwks)
}

/// Checks a discovery document against the issuer and JWKS.
pub fn check_discovery(
    label: &str,
    text: &str,
    issuer: Option<&IssuerUrl>,
    jwks_path: Option<JwksPath>,
    jwks: Option<&Jwks>,
    report: &mut Report,
) -> Option<Discovery> {
    let doc = match Discovery::from_json(text) {
        Ok(d) => d,
        Err(e) => {
            report.fail(
                format!("{label}: parses"),
                e.to_string(),
                "regenerate it with `irsa render` or `irsa discovery`",
            );
            return None;
        }
    };
    report.pass(
        format!("{label}: parses"),
        "valid JSON with issuer and jwks_uri",
    );
    match IssuerUrl::parse(&doc.issuer) {
        Ok(_) => report.pass(
            format!("{label}: issuer is a valid issuer URL"),
            doc.issuer.clone(),
        ),
        Err(e) => report.fail(
            format!("{label}: issuer is a valid issuer URL"),
            e.to_string(),
            "fix the issuer in irsa.yaml and run `irsa render`",
        ),
    }
    if let Some(issuer) = issuer {
        report.check(
            doc.issuer == issuer.as_str(),
            &format!("{label}: issuer byte-equal to expected"),
            doc.issuer.clone(),
            format!("issuer is {:?}, expected {:?}", doc.issuer, issuer.as_str()),
            "the document's issuer, --service-account-issuer and the IAM provider URL must be identical: run `irsa render`",
        );
        if let Some(path) = jwks_path {
            let want = issuer.jwks_url(path);
            report.check(
                doc.jwks_uri == want,
                &format!("{label}: jwks_uri"),
                doc.jwks_uri.clone(),
                format!("jwks_uri is {:?}, expected {want:?}", doc.jwks_uri),
                "run `irsa render` so jwks_uri points at the published JWKS",
            );
        }
    }
    if !doc.jwks_uri.starts_with("https://") {
        report.fail(
            format!("{label}: jwks_uri is https"),
            doc.jwks_uri.clone(),
            "STS fetches keys over HTTPS only",
        );
    }
    report.check(
        doc.response_types_supported.iter().any(|r| r == "id_token"),
        &format!("{label}: response_types_supported"),
        "contains id_token",
        format!("{:?} lacks \"id_token\"", doc.response_types_supported),
        "set response_types_supported to [\"id_token\"]",
    );
    report.check(
        doc.subject_types_supported.iter().any(|r| r == "public"),
        &format!("{label}: subject_types_supported"),
        "contains public",
        format!("{:?} lacks \"public\"", doc.subject_types_supported),
        "set subject_types_supported to [\"public\"]",
    );
    if let Some(jwks) = jwks {
        check_algorithms(label, &doc, jwks, report);
    }
    Some(doc)
}

/// The discovery document advertises every algorithm the JWKS's keys use
/// (`id_token_signing_alg_values_supported`), and the keys name one.
pub fn check_algorithms(label: &str, doc: &Discovery, jwks: &Jwks, report: &mut Report) {
    let algs = jwks.algorithms();
    let missing: Vec<&String> = algs
        .iter()
        .filter(|a| !doc.id_token_signing_alg_values_supported.contains(a))
        .collect();
    report.check(
        missing.is_empty() && !algs.is_empty(),
        &format!("{label}: algorithms match JWKS"),
        format!("{:?}", doc.id_token_signing_alg_values_supported),
        format!(
            "JWKS uses {algs:?} but id_token_signing_alg_values_supported is {:?}",
            doc.id_token_signing_alg_values_supported
        ),
        "run `irsa render` to list every algorithm of the published keys, and publish both documents together",
    );
}

/// Checks that every expected public key is in the JWKS with the right kid and alg.
pub fn check_keys_published(
    label: &str,
    keys: &[(String, PublicKey, Algorithm)],
    jwks: &Jwks,
    report: &mut Report,
) {
    for (name, key, alg) in keys {
        let kid = key.kid();
        let found: Vec<_> = jwks.find(kid.as_str()).collect();
        let matches = found.iter().any(|j| {
            j.public_key().ok().as_ref() == Some(key) && j.alg.as_deref() == Some(alg.as_str())
        });
        report.check(
            matches,
            &format!("{label}: publishes {name}"),
            format!("kid {kid} ({alg})"),
            if found.is_empty() {
                format!("kid {kid} is not in the JWKS")
            } else {
                format!("kid {kid} is there but with a different key or alg")
            },
            "run `irsa render` (or `irsa jwks KEY...`) and publish the result",
        );
    }
}

/// Signs a probe token with `private` and verifies it against `jwks` as STS would.
pub fn check_sign_verify(
    private: &PrivateKey,
    alg: Algorithm,
    issuer: &IssuerUrl,
    jwks: &Jwks,
    now: i64,
    report: &mut Report,
) {
    let claims = serde_json::json!({
        "iss": issuer.as_str(),
        "sub": "system:serviceaccount:irsa-validate:probe",
        "aud": [crate::config::DEFAULT_AUDIENCE],
        "iat": now, "nbf": now, "exp": now + 600,
    });
    let result = jwt::sign(private, alg, &claims).and_then(|token| {
        let opts = VerifyOptions {
            issuer: issuer.as_str().into(),
            audience: crate::config::DEFAULT_AUDIENCE.into(),
            now,
            leeway: 0,
        };
        jwt::verify(&token, jwks, &opts)
    });
    match result {
        Ok(_) => report.pass("private key: signs tokens the JWKS verifies", format!("{alg} probe token, kid {}", private.public_key().kid())),
        Err(e) => report.fail(
            "private key: signs tokens the JWKS verifies",
            e.to_string(),
            "the apiserver's signing key must be the active key in irsa.yaml; publish its public key",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_wrong_kid_padding_and_leading_zero() {
        let key = PublicKey::rsa(&[0xc3; 256], &[1, 0, 1]).expect("valid");
        let mut jwks = Jwks::build([(&key, Algorithm::RS256)], false);
        let mut report = Report::default();
        check_jwks("jwks", &jwks.to_json(), &mut report);
        assert!(!report.failed(), "{report:?}");

        jwks.keys[0].kid = Some("wrong".into());
        jwks.keys[0].n = jwks.keys[0].n.as_ref().map(|n| format!("AA{n}"));
        let mut report = Report::default();
        check_jwks("jwks", &jwks.to_json(), &mut report);
        assert!(report.failed());
        let detail = &report.checks.last().expect("check").detail;
        assert!(
            detail.contains("leading zero") && detail.contains("kid \"wrong\""),
            "{detail}"
        );
    }

    #[test]
    fn discovery_issuer_must_be_byte_equal() {
        let issuer = IssuerUrl::parse("https://a.example").expect("valid");
        let mut doc = Discovery::for_issuer(&issuer, JwksPath::OpenidV1Jwks, &["RS256".into()]);
        doc.issuer.push('/');
        let mut report = Report::default();
        check_discovery(
            "d",
            &doc.to_json(),
            Some(&issuer),
            Some(JwksPath::OpenidV1Jwks),
            None,
            &mut report,
        );
        let failed: Vec<_> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "d: issuer is a valid issuer URL",
                "d: issuer byte-equal to expected"
            ]
        );
    }
}
