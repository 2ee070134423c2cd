//! JSON Web Key Sets as kube-apiserver serves them at `/openid/v1/jwks`.

use serde::{Deserialize, Serialize};

use crate::b64;
use crate::key::{Algorithm, Curve, KeyError, Kid, PublicKey};

/// One JSON Web Key. Field order matches kube-apiserver's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key use; always `sig` for service-account keys.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Key type: `RSA` or `EC`.
    pub kty: String,
    /// Key ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Signing algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC X coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC Y coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// A JWKS document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    /// The keys, in publication order.
    pub keys: Vec<Jwk>,
}

/// Errors reading a JWKS.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not valid JSON or not the JWKS shape.
    #[error("not a JWKS document ({0}); expected {{\"keys\": [...]}}")]
    Json(String),
}

impl Jwk {
    /// The JWK for `key` signing with `alg`.
    pub fn new(key: &PublicKey, alg: Algorithm) -> Self {
        let mut jwk = Jwk {
            use_: Some("sig".into()),
            kty: String::new(),
            kid: Some(key.kid().0),
            alg: Some(alg.as_str().into()),
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        };
        match key {
            PublicKey::Rsa { n, e } => {
                jwk.kty = "RSA".into();
                jwk.n = Some(b64::encode(n));
                jwk.e = Some(b64::encode(e));
            }
            PublicKey::Ec { curve, x, y } => {
                jwk.kty = "EC".into();
                jwk.crv = Some(curve.jwk_name().into());
                jwk.x = Some(b64::encode(x));
                jwk.y = Some(b64::encode(y));
            }
        }
        jwk
    }

    /// The public key this JWK describes.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        let field = |name: &'static str, v: &Option<String>| -> Result<Vec<u8>, KeyError> {
            let text = v.as_deref().ok_or(KeyError::Malformed {
                what: "JWK",
                detail: format!("missing \"{name}\""),
            })?;
            b64::decode(text).map_err(|e| KeyError::Malformed {
                what: "JWK",
                detail: format!("\"{name}\" is not base64url: {e}"),
            })
        };
        match self.kty.as_str() {
            "RSA" => PublicKey::rsa(&field("n", &self.n)?, &field("e", &self.e)?),
            "EC" => {
                let crv = self.crv.as_deref().unwrap_or_default();
                let curve = Curve::from_jwk_name(crv)?;
                PublicKey::ec_from_coordinates(curve, &field("x", &self.x)?, &field("y", &self.y)?)
            }
            other => Err(KeyError::UnsupportedKeyType {
                kind: format!("JWK kty {other:?}"),
            }),
        }
    }
}

impl Jwks {
    /// Builds a JWKS from keys in order, dropping duplicates. With
    /// `legacy_empty_kid`, each key is also published with `kid: ""` for
    /// apiservers older than 1.16 that signed tokens without a `kid`.
    pub fn build<'a>(
        keys: impl IntoIterator<Item = (&'a PublicKey, Algorithm)>,
        legacy_empty_kid: bool,
    ) -> Self {
        let mut out = Vec::new();
        let mut seen: Vec<Kid> = Vec::new();
        for (key, alg) in keys {
            let kid = key.kid();
            if seen.contains(&kid) {
                continue;
            }
            seen.push(kid);
            let jwk = Jwk::new(key, alg);
            let legacy = legacy_empty_kid.then(|| Jwk {
                kid: Some(String::new()),
                ..jwk.clone()
            });
            out.push(jwk);
            out.extend(legacy);
        }
        Jwks { keys: out }
    }

    /// Parses a JWKS document.
    pub fn from_json(text: &str) -> Result<Self, JwksError> {
        serde_json::from_str(text).map_err(|e| JwksError::Json(e.to_string()))
    }

    /// Deterministic rendering: two-space indent and a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Keys with a non-empty `kid` equal to `kid`.
    pub fn find<'a>(&'a self, kid: &'a str) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.kid.as_deref() == Some(kid))
    }

    /// The distinct signing algorithms declared, sorted.
    pub fn algorithms(&self) -> Vec<String> {
        let mut algs: Vec<String> = self.keys.iter().filter_map(|k| k.alg.clone()).collect();
        algs.sort();
        algs.dedup();
        algs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        PublicKey::rsa(&[0xc3; 256], &[1, 0, 1]).expect("valid")
    }

    #[test]
    fn field_order_matches_kube_apiserver() {
        let json = Jwks::build([(&key(), Algorithm::RS256)], false).to_json();
        let pos = |f: &str| json.find(&format!("\"{f}\"")).expect(f);
        assert!(pos("use") < pos("kty") && pos("kty") < pos("kid") && pos("kid") < pos("alg"));
        assert!(pos("alg") < pos("n") && pos("n") < pos("e"));
        assert!(json.contains("\"e\": \"AQAB\""));
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn legacy_adds_empty_kid_twin_and_dedupes() {
        let k = key();
        let jwks = Jwks::build([(&k, Algorithm::RS256), (&k, Algorithm::RS256)], true);
        assert_eq!(jwks.keys.len(), 2);
        assert_eq!(jwks.keys[1].kid.as_deref(), Some(""));
        assert_eq!(jwks.keys[0].n, jwks.keys[1].n);
    }

    #[test]
    fn jwk_round_trips_to_key() {
        let k = key();
        let jwk = Jwk::new(&k, Algorithm::RS256);
        assert_eq!(jwk.public_key().expect("parses"), k);
        let ec = PublicKey::ec_from_coordinates(Curve::P384, &[7; 48], &[0; 48]).expect("valid");
        let jwk = Jwk::new(&ec, Algorithm::ES384);
        assert_eq!(
            jwk.x.as_deref().map(str::len),
            Some(64),
            "EC coordinates stay full length"
        );
        assert_eq!(jwk.public_key().expect("parses"), ec);
    }
}
