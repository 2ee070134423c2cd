//! `--tls-cipher-suites`: the Go webhook's comma-separated list of IANA
//! suite names (as Go's `crypto/tls` spells them), mapped to the suites of
//! irsa's rustls provider.
//!
//! As in Go, the list restricts the TLS 1.2 suites; TLS 1.3 stays on with
//! all its suites unless the list names TLS 1.3 suites too, which then
//! restricts those as well. A name rustls does not implement (CBC, RSA key
//! exchange, 3DES, RC4: all suites Go itself calls insecure or legacy) is
//! refused at start-up with the list of the names that work.

use rustls::crypto::CryptoProvider;
use rustls::SupportedCipherSuite;

/// A `--tls-cipher-suites` list irsa cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// A name rustls does not offer.
    #[error("--tls-cipher-suites: {name} is not a cipher suite irsa (rustls) offers; use some of: {supported}")]
    Unsupported {
        /// The name as given.
        name: String,
        /// The names that work, comma-separated.
        supported: String,
    },
    /// The list names no TLS 1.2 suite, or none at all.
    #[error("--tls-cipher-suites={list:?} leaves no TLS 1.2 cipher suite; name at least one of: {supported}")]
    NoTls12 {
        /// The list as given.
        list: String,
        /// The TLS 1.2 names that work, comma-separated.
        supported: String,
    },
}

/// The name Go's `crypto/tls` gives `suite`: IANA's, with TLS 1.3 suites
/// as `TLS_AES_128_GCM_SHA256` (rustls prefixes those with `TLS13_`).
pub fn go_name(suite: &SupportedCipherSuite) -> Option<String> {
    let name = suite.suite().as_str()?;
    Some(match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    })
}

/// Go also accepts the pre-RFC 7905 names of the ChaCha20 suites.
fn canonical(name: &str) -> String {
    match name {
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            format!("{name}_SHA256")
        }
        _ => name.to_string(),
    }
}

fn names(suites: &[SupportedCipherSuite], tls13: Option<bool>) -> String {
    suites
        .iter()
        .filter(|s| tls13.is_none_or(|want| s.tls13().is_some() == want))
        .filter_map(go_name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `provider` serving only the suites `list` allows (see the module docs);
/// an empty list leaves it unchanged.
pub fn restrict(mut provider: CryptoProvider, list: &str) -> Result<CryptoProvider, CipherError> {
    let wanted: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(canonical)
        .collect();
    if wanted.is_empty() {
        return Ok(provider);
    }
    let all = provider.cipher_suites.clone();
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in &wanted {
        let Some(suite) = all.iter().find(|s| go_name(s).as_deref() == Some(name)) else {
            return Err(CipherError::Unsupported {
                name: name.clone(),
                supported: names(&all, None),
            });
        };
        if !chosen.iter().any(|c| c.suite() == suite.suite()) {
            chosen.push(*suite);
        }
    }
    if !chosen.iter().any(|s| s.tls13().is_none()) {
        return Err(CipherError::NoTls12 {
            list: list.to_string(),
            supported: names(&all, Some(false)),
        });
    }
    if !chosen.iter().any(|s| s.tls13().is_some()) {
        chosen.extend(all.iter().filter(|s| s.tls13().is_some()).copied());
    }
    provider.cipher_suites = chosen;
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn chosen(list: &str) -> Vec<String> {
        restrict(provider(), list)
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"))
            .cipher_suites
            .iter()
            .filter_map(go_name)
            .collect()
    }

    #[test]
    fn go_names_map_to_rustls_suites_and_keep_tls13_as_go_does() {
        let got = chosen(
            " TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        );
        assert_eq!(
            got[..2],
            [
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
            ]
        );
        assert!(
            got.contains(&"TLS_AES_256_GCM_SHA384".to_string()),
            "{got:?}"
        );
        assert!(!got.contains(&"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string()));
    }

    #[test]
    fn naming_a_tls13_suite_restricts_tls13_too() {
        let got = chosen("TLS_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(
            got,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]
        );
    }

    #[test]
    fn an_empty_list_changes_nothing() {
        assert_eq!(
            chosen(""),
            chosen(&names(&provider().cipher_suites, None).replace(' ', ""))
        );
    }

    #[test]
    fn a_suite_rustls_lacks_is_named_with_the_ones_it_offers() {
        let error = restrict(
            provider(),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            error.contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not"),
            "{error}"
        );
        assert!(
            error.contains("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
            "{error}"
        );
        let error = restrict(provider(), "TLS_AES_128_GCM_SHA256")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("leaves no TLS 1.2 cipher suite"), "{error}");
    }
}
