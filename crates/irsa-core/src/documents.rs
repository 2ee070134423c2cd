//! The two issuer documents of a configuration, rendered together so the
//! discovery document advertises exactly the JWKS's algorithms.

use crate::config::IrsaConfig;
use crate::discovery::Discovery;
use crate::hosting::PendingUrl;
use crate::jwks::Jwks;
use crate::key::{Algorithm, PublicKey};

/// The two rendered documents, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documents {
    /// Discovery document JSON.
    pub discovery: String,
    /// JWKS JSON.
    pub jwks: String,
}

/// Renders both documents for `config` and the keys to publish,
/// deterministically: the same inputs give byte-identical output.
/// Errs while the issuer URL is not known ([`PendingUrl`]): no document is
/// ever rendered with an issuer that is not the real one.
pub fn render(
    config: &IrsaConfig,
    keys: &[(PublicKey, Algorithm)],
) -> Result<Documents, PendingUrl> {
    let (discovery, jwks) = documents(config, keys)?;
    Ok(Documents {
        discovery: discovery.to_json(),
        jwks: jwks.to_json(),
    })
}

/// Both documents for `config` and the keys to publish, as values (what
/// [`crate::plan::Desired::from_config`] takes).
/// Errs while the issuer URL is not known ([`PendingUrl`]).
pub fn documents(
    config: &IrsaConfig,
    keys: &[(PublicKey, Algorithm)],
) -> Result<(Discovery, Jwks), PendingUrl> {
    let jwks = Jwks::build(keys.iter().map(|(k, a)| (k, *a)), false);
    let discovery = Discovery::for_issuer(
        config.issuer.url()?,
        config.issuer.jwks_path,
        &jwks.algorithms(),
    );
    Ok((discovery, jwks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::PrivateKey;

    const CONFIG: &str = "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://oidc.example.com/demo\nkeys:\n- {publicKey: a.pub, algorithm: RS256, state: active}\n- {publicKey: b.pub, algorithm: ES256, state: next}\nbindings: []\n";

    #[test]
    fn discovery_advertises_the_jwks_algorithms_and_output_is_stable() {
        let config = IrsaConfig::from_yaml(CONFIG).expect("valid");
        let rsa = PrivateKey::generate(Algorithm::RS256, 2048).expect("rsa");
        let ec = PrivateKey::generate(Algorithm::ES256, 256).expect("ec");
        let keys = [
            (rsa.public_key().clone(), Algorithm::RS256),
            (ec.public_key().clone(), Algorithm::ES256),
        ];
        let docs = render(&config, &keys).expect("url");
        assert_eq!(
            render(&config, &keys).ok(),
            Some(docs.clone()),
            "deterministic"
        );
        let jwks = Jwks::from_json(&docs.jwks).expect("jwks");
        assert_eq!(jwks.keys.len(), 2);
        let disc: serde_json::Value = serde_json::from_str(&docs.discovery).expect("json");
        assert_eq!(disc["issuer"], "https://oidc.example.com/demo");
        assert_eq!(
            disc["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256"])
        );
        let only_rsa = render(&config, &keys[..1]).expect("url");
        let disc: serde_json::Value = serde_json::from_str(&only_rsa.discovery).expect("json");
        assert_eq!(
            disc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
    }
}
