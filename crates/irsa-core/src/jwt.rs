//! JSON Web Tokens: decoding, verification with kube-apiserver/STS
//! strictness, and signing (for tests and self-checks).

use serde_json::{Map, Value};

use crate::b64;
use crate::jwks::Jwks;
use crate::key::Algorithm;
use crate::private::PrivateKey;
use crate::verify::{verify_signature, SignatureError};

/// Default clock-skew leeway in seconds.
pub const DEFAULT_LEEWAY: i64 = 60;

/// Why a token is rejected. Each variant names the field and both values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is none, HMAC, or unknown.
    #[error("header alg {0:?} is not accepted: service-account tokens are signed with RS256/ES256/ES384")]
    AlgNotAllowed(String),
    /// No key with the token's kid.
    #[error("header kid {kid:?} is not in the JWKS (kids there: {available:?}): publish the apiserver's current public key with `irsa jwks` and re-upload")]
    KidNotFound {
        /// Token kid.
        kid: String,
        /// Kids in the JWKS.
        available: Vec<String>,
    },
    /// Header alg differs from the JWK's declared alg.
    #[error("header alg {token} differs from the JWK's alg {jwk} for kid {kid:?}")]
    AlgMismatch {
        /// Token alg.
        token: String,
        /// JWK alg.
        jwk: String,
        /// The kid.
        kid: String,
    },
    /// Signature invalid.
    #[error("signature does not verify with the key {kid:?}: the token was signed by a different private key (the apiserver's --service-account-signing-key-file does not match the published JWKS)")]
    BadSignature {
        /// Kid of the key(s) tried.
        kid: String,
    },
    /// iss mismatch.
    #[error("claim iss is {actual:?} but the expected issuer is {expected:?}; they must match byte for byte (check a trailing slash)")]
    Issuer {
        /// Expected issuer.
        expected: String,
        /// Token iss.
        actual: String,
    },
    /// aud mismatch.
    #[error("claim aud is {actual:?} but {expected:?} is required: request the token with that audience (projected volume `audience:`)")]
    Audience {
        /// Required audience.
        expected: String,
        /// Token audiences.
        actual: Vec<String>,
    },
    /// Expired.
    #[error("claim exp {exp} is {ago}s in the past (now {now}, leeway {leeway}s): the token expired; kubelet refreshes projected tokens, so check the pod reads the file each time")]
    Expired {
        /// exp claim.
        exp: i64,
        /// Now.
        now: i64,
        /// Seconds since expiry.
        ago: i64,
        /// Leeway used.
        leeway: i64,
    },
    /// nbf in future.
    #[error("claim nbf {nbf} is {ahead}s in the future (now {now}): check the clocks of this machine and the apiserver")]
    NotYetValid {
        /// nbf claim.
        nbf: i64,
        /// Now.
        now: i64,
        /// Seconds ahead.
        ahead: i64,
    },
    /// iat in future.
    #[error("claim iat {iat} is {ahead}s in the future (now {now}): check the clocks of this machine and the apiserver")]
    IssuedInFuture {
        /// iat claim.
        iat: i64,
        /// Now.
        now: i64,
        /// Seconds ahead.
        ahead: i64,
    },
    /// A required claim is absent or has the wrong type.
    #[error("claim {0} is missing or not of the right type")]
    MissingClaim(&'static str),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A decoded (not yet verified) token.
#[derive(Debug, Clone)]
pub struct DecodedJwt {
    /// Header as JSON.
    pub header: Map<String, Value>,
    /// Claims as JSON.
    pub claims: Map<String, Value>,
    /// `base64(header).base64(claims)`.
    pub signing_input: String,
    /// Raw signature.
    pub signature: Vec<u8>,
}

impl DecodedJwt {
    /// Header `alg`.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }
    /// Header `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
    /// A numeric date claim.
    pub fn claim_time(&self, name: &str) -> Option<i64> {
        let v = self.claims.get(name)?;
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
    }
    /// The `aud` claim as a list (it may be a string or an array).
    pub fn audiences(&self) -> Vec<String> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Decodes a compact JWS without verifying it.
pub fn decode(token: &str) -> Result<DecodedJwt, JwtError> {
    let token = token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Malformed(format!(
            "expected 3 dot-separated parts, found {}; pass the raw token (e.g. the projected token file), not JSON",
            parts.len()
        )));
    }
    let json = |part: &str, what: &str| -> Result<Map<String, Value>, JwtError> {
        let bytes = b64::decode(part)
            .map_err(|e| JwtError::Malformed(format!("{what} is not base64url: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| JwtError::Malformed(format!("{what} is not a JSON object: {e}")))
    };
    let header = json(parts[0], "header")?;
    let claims = json(parts[1], "payload")?;
    let signature = b64::decode(parts[2])
        .map_err(|e| JwtError::Malformed(format!("signature is not base64url: {e}")))?;
    Ok(DecodedJwt {
        header,
        claims,
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature,
    })
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Expected `iss`, compared byte for byte.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Current Unix time.
    pub now: i64,
    /// Allowed clock skew in seconds.
    pub leeway: i64,
}

/// Verifies signature and claims; returns the decoded token.
pub fn verify(token: &str, jwks: &Jwks, opts: &VerifyOptions) -> Result<DecodedJwt, JwtError> {
    let jwt = decode(token)?;
    let alg_name = jwt.alg().unwrap_or("").to_string();
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| JwtError::AlgNotAllowed(alg_name.clone()))?;
    let candidates: Vec<_> = match jwt.kid() {
        Some(kid) => {
            let found: Vec<_> = jwks.find(kid).collect();
            if found.is_empty() {
                let available = jwks.keys.iter().filter_map(|k| k.kid.clone()).collect();
                return Err(JwtError::KidNotFound {
                    kid: kid.to_string(),
                    available,
                });
            }
            found
        }
        // Tokens from apiservers before 1.16 have no kid: try every key.
        None => jwks.keys.iter().collect(),
    };
    let kid_label = jwt.kid().unwrap_or("").to_string();
    let mut verified = false;
    for jwk in &candidates {
        if let Some(jwk_alg) = &jwk.alg {
            if *jwk_alg != alg_name {
                if jwt.kid().is_some() {
                    return Err(JwtError::AlgMismatch {
                        token: alg_name,
                        jwk: jwk_alg.clone(),
                        kid: kid_label,
                    });
                }
                continue;
            }
        }
        let Ok(key) = jwk.public_key() else { continue };
        match verify_signature(&key, alg, jwt.signing_input.as_bytes(), &jwt.signature) {
            Ok(()) => {
                verified = true;
                break;
            }
            Err(SignatureError::Invalid | SignatureError::Key(_)) => {}
        }
    }
    if !verified {
        return Err(JwtError::BadSignature { kid: kid_label });
    }
    check_claims(&jwt, opts)?;
    Ok(jwt)
}

fn check_claims(jwt: &DecodedJwt, opts: &VerifyOptions) -> Result<(), JwtError> {
    let iss = jwt.claim_str("iss").ok_or(JwtError::MissingClaim("iss"))?;
    if iss != opts.issuer {
        return Err(JwtError::Issuer {
            expected: opts.issuer.clone(),
            actual: iss.to_string(),
        });
    }
    let auds = jwt.audiences();
    if !auds.contains(&opts.audience) {
        return Err(JwtError::Audience {
            expected: opts.audience.clone(),
            actual: auds,
        });
    }
    jwt.claim_str("sub").ok_or(JwtError::MissingClaim("sub"))?;
    let exp = jwt.claim_time("exp").ok_or(JwtError::MissingClaim("exp"))?;
    if opts.now > exp + opts.leeway {
        return Err(JwtError::Expired {
            exp,
            now: opts.now,
            ago: opts.now - exp,
            leeway: opts.leeway,
        });
    }
    if let Some(nbf) = jwt.claim_time("nbf") {
        if nbf > opts.now + opts.leeway {
            return Err(JwtError::NotYetValid {
                nbf,
                now: opts.now,
                ahead: nbf - opts.now,
            });
        }
    }
    if let Some(iat) = jwt.claim_time("iat") {
        if iat > opts.now + opts.leeway {
            return Err(JwtError::IssuedInFuture {
                iat,
                now: opts.now,
                ahead: iat - opts.now,
            });
        }
    }
    Ok(())
}

/// Signs `claims` with `key` as kube-apiserver would (header alg, kid).
pub fn sign(key: &PrivateKey, alg: Algorithm, claims: &Value) -> Result<String, JwtError> {
    let header = serde_json::json!({ "alg": alg.as_str(), "kid": key.public_key().kid().as_str() });
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let sig = key
        .sign(alg, input.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{input}.{}", b64::encode(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup(alg: Algorithm) -> (PrivateKey, Jwks) {
        let key = PrivateKey::generate(alg, 2048).expect("generates");
        let jwks = Jwks::build([(key.public_key(), alg)], false);
        (key, jwks)
    }

    fn opts() -> VerifyOptions {
        VerifyOptions {
            issuer: "https://i.example".into(),
            audience: "sts.amazonaws.com".into(),
            now: 1_000_000,
            leeway: 60,
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://i.example", "aud": ["sts.amazonaws.com"], "sub": "system:serviceaccount:a:b", "exp": 1_000_600, "iat": 1_000_000, "nbf": 1_000_000})
    }

    #[test]
    fn round_trip_and_claim_errors_name_both_values() {
        let (key, jwks) = setup(Algorithm::ES256);
        let token = sign(&key, Algorithm::ES256, &claims()).expect("signs");
        verify(&token, &jwks, &opts()).expect("verifies");

        let bad_iss = sign(&key, Algorithm::ES256, &json!({"iss": "https://i.example/", "aud": "sts.amazonaws.com", "sub": "s", "exp": 1_000_600})).expect("signs");
        let err = verify(&bad_iss, &jwks, &opts()).expect_err("slash");
        assert_eq!(
            err,
            JwtError::Issuer {
                expected: "https://i.example".into(),
                actual: "https://i.example/".into()
            }
        );
        assert!(
            err.to_string().contains("\"https://i.example/\"")
                && err.to_string().contains("\"https://i.example\"")
        );

        let mut o = opts();
        o.audience = "other".into();
        assert!(matches!(
            verify(&token, &jwks, &o),
            Err(JwtError::Audience { .. })
        ));
        o = opts();
        o.now = 1_000_661;
        assert!(matches!(
            verify(&token, &jwks, &o),
            Err(JwtError::Expired { ago: 61, .. })
        ));
        o.now = 1_000_659;
        assert!(verify(&token, &jwks, &o).is_ok(), "within leeway");
        o.now = 999_000;
        assert!(matches!(
            verify(&token, &jwks, &o),
            Err(JwtError::NotYetValid { .. })
        ));
    }

    #[test]
    fn rejects_none_wrong_key_and_unknown_kid() {
        let (key, jwks) = setup(Algorithm::RS256);
        let (other, other_jwks) = setup(Algorithm::RS256);
        let token = sign(&key, Algorithm::RS256, &claims()).expect("signs");
        assert!(matches!(
            verify(&token, &other_jwks, &opts()),
            Err(JwtError::KidNotFound { .. })
        ));
        // Same kid, different key: re-sign with `other` but keep the header kid.
        let parts: Vec<&str> = token.split('.').collect();
        let input = format!("{}.{}", parts[0], parts[1]);
        let forged = format!(
            "{input}.{}",
            b64::encode(
                &other
                    .sign(Algorithm::RS256, input.as_bytes())
                    .expect("signs")
            )
        );
        assert!(matches!(
            verify(&forged, &jwks, &opts()),
            Err(JwtError::BadSignature { .. })
        ));
        let none = format!("{}.{}.", b64::encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(
            verify(&none, &jwks, &opts()).expect_err("none"),
            JwtError::AlgNotAllowed("none".into())
        );
        assert!(matches!(decode("a.b"), Err(JwtError::Malformed(_))));
    }
}
