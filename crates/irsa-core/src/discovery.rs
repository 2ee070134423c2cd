//! The OIDC discovery document (`/.well-known/openid-configuration`).

use serde::{Deserialize, Serialize};

use crate::issuer::{IssuerUrl, JwksPath};

/// A discovery document with the fields kube-apiserver serves, in its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// Must equal the token `iss` byte for byte.
    pub issuer: String,
    /// Where the JWKS is served.
    pub jwks_uri: String,
    /// Always `["id_token"]`.
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    /// Always `["public"]`.
    #[serde(default)]
    pub subject_types_supported: Vec<String>,
    /// The algorithms of the published keys, sorted.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

impl Discovery {
    /// Builds the document for `issuer`, a JWKS URL and the algorithms in use.
    pub fn new(issuer: &IssuerUrl, jwks_uri: String, algorithms: &[String]) -> Self {
        let mut algs = algorithms.to_vec();
        algs.sort();
        algs.dedup();
        Self {
            issuer: issuer.as_str().to_string(),
            jwks_uri,
            response_types_supported: vec!["id_token".into()],
            subject_types_supported: vec!["public".into()],
            id_token_signing_alg_values_supported: algs,
        }
    }

    /// Builds the document with the JWKS at `path` under the issuer.
    pub fn for_issuer(issuer: &IssuerUrl, path: JwksPath, algorithms: &[String]) -> Self {
        Self::new(issuer, issuer.jwks_url(path), algorithms)
    }

    /// Parses a document, ignoring extra fields.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Deterministic rendering: two-space indent and a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_kube_apiserver_shape() {
        let issuer = IssuerUrl::parse("https://oidc.example.com").expect("valid");
        let d = Discovery::for_issuer(
            &issuer,
            JwksPath::OpenidV1Jwks,
            &["RS256".into(), "ES256".into(), "RS256".into()],
        );
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).expect("json");
        assert_eq!(v["jwks_uri"], "https://oidc.example.com/openid/v1/jwks");
        assert_eq!(
            v["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256"])
        );
        assert_eq!(
            v["response_types_supported"],
            serde_json::json!(["id_token"])
        );
        assert_eq!(v["subject_types_supported"], serde_json::json!(["public"]));
    }
}
