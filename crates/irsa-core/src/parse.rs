//! Reading key material in every format people have on disk.
//!
//! Accepted: PEM (`PUBLIC KEY`, `RSA PUBLIC KEY`, `RSA PRIVATE KEY`,
//! `PRIVATE KEY`, `EC PRIVATE KEY`, `CERTIFICATE`, `OPENSSH PRIVATE KEY`),
//! raw DER of the same structures, OpenSSH public keys (`ssh-rsa`,
//! `ecdsa-sha2-nistp256/384`), JWK / JWKS JSON, and a Kubernetes Secret
//! (YAML or JSON, `data` or `stringData`) such as the VKS / Cluster API
//! `{cluster}-sa` Secret holding `tls.crt` and `tls.key`.

use std::collections::BTreeMap;

use der::{Decode, Encode};
use k8s_openapi::api::core::v1::Secret;
use zeroize::Zeroizing;

use crate::jwks::Jwks;
use crate::key::{Algorithm, Curve, KeyError, PublicKey};
use crate::private::{PrivateKey, PrivateKeyError};

/// Errors while reading key material.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Input is empty.
    #[error(
        "the input is empty: pass a PEM/DER key, certificate, OpenSSH public key, JWKS or Secret"
    )]
    Empty,
    /// An encrypted private key.
    #[error("{format} private key is encrypted: irsa needs it unencrypted; decrypt a copy with `{fix}` and keep it mode 0600")]
    Encrypted {
        /// Which format.
        format: &'static str,
        /// Command that decrypts it.
        fix: &'static str,
    },
    /// A PEM block type irsa does not read.
    #[error("PEM block {tag:?} is not a key: expected PUBLIC KEY, RSA PRIVATE KEY, PRIVATE KEY, EC PRIVATE KEY or CERTIFICATE")]
    UnknownPemTag {
        /// The block's label.
        tag: String,
    },
    /// Malformed PEM armour.
    #[error("malformed PEM: {0}; check the BEGIN/END lines and the base64 body")]
    Pem(String),
    /// None of the known formats matched.
    #[error("not a key: expected PEM, DER, an OpenSSH public key (ssh-rsa/ecdsa-sha2-*), a JWKS, or a Kubernetes Secret with tls.crt/tls.key")]
    NotAKey,
    /// A structure was recognised but its key is not acceptable.
    #[error("{context}: {error}")]
    Key {
        /// Where in the input.
        context: String,
        /// What is wrong.
        error: KeyError,
    },
    /// A private key was recognised but is unusable.
    #[error("{context}: {error}")]
    Private {
        /// Where in the input.
        context: String,
        /// What is wrong.
        error: PrivateKeyError,
    },
    /// A Kubernetes Secret that cannot be used.
    #[error("Secret {name}: {problem}")]
    Secret {
        /// Secret name (or `<unnamed>`).
        name: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// An OpenSSH key that cannot be used.
    #[error("OpenSSH key: {0}")]
    OpenSsh(String),
    /// A JWK/JWKS that cannot be used.
    #[error("JWKS: {0}")]
    Jwks(String),
}

/// One key found in the input.
#[derive(Debug)]
pub struct LoadedKey {
    /// The public key.
    pub public: PublicKey,
    /// The private key, when the input held one.
    pub private: Option<PrivateKey>,
    /// The algorithm declared by the input (a JWK's `alg`), if any.
    pub declared_alg: Option<Algorithm>,
    /// Where it came from, e.g. `PEM block 2 (CERTIFICATE)`.
    pub origin: String,
}

impl LoadedKey {
    fn public(public: PublicKey, origin: String) -> Self {
        Self {
            public,
            private: None,
            declared_alg: None,
            origin,
        }
    }
    fn private(private: PrivateKey, origin: String) -> Self {
        Self {
            public: private.public_key().clone(),
            private: Some(private),
            declared_alg: None,
            origin,
        }
    }
}

/// Reads every key in `input`, deduplicated by public key, in input order.
pub fn parse_keys(input: &[u8]) -> Result<Vec<LoadedKey>, ParseError> {
    let keys = parse_any(input)?;
    let mut out: Vec<LoadedKey> = Vec::new();
    for key in keys {
        if let Some(existing) = out.iter_mut().find(|k| k.public == key.public) {
            if existing.private.is_none() && key.private.is_some() {
                existing.private = key.private;
            }
            continue;
        }
        out.push(key);
    }
    Ok(out)
}

/// Reads exactly one private key from `input`.
pub fn parse_private_key(input: &[u8]) -> Result<PrivateKey, ParseError> {
    let keys = parse_keys(input)?;
    let count = keys.len();
    let mut privates: Vec<PrivateKey> = keys.into_iter().filter_map(|k| k.private).collect();
    match (privates.pop(), privates.is_empty(), count) {
        (Some(key), true, 1) => Ok(key),
        (None, _, _) => Err(ParseError::Secret {
            name: "input".into(),
            problem: "holds no private key: pass the signing key (e.g. sa.key), not the public key"
                .into(),
        }),
        _ => Err(ParseError::Secret {
            name: "input".into(),
            problem: "holds more than one key: pass a file with exactly one private key".into(),
        }),
    }
}

fn parse_any(input: &[u8]) -> Result<Vec<LoadedKey>, ParseError> {
    let text = std::str::from_utf8(input).ok().map(str::trim);
    match text {
        Some("") => Err(ParseError::Empty),
        Some(t) if t.contains("-----BEGIN ") && !looks_like_secret(t) => parse_pem(t),
        Some(t) if t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") => parse_openssh_public(t),
        Some(t) if looks_like_secret(t) => parse_secret(t),
        Some(t) if t.starts_with('{') => parse_jwks(t),
        Some(_) => parse_der(input).map(|k| vec![k]),
        None if input.is_empty() => Err(ParseError::Empty),
        None => parse_der(input).map(|k| vec![k]),
    }
}

fn looks_like_secret(t: &str) -> bool {
    t.lines().any(|l| {
        let l = l.trim();
        l == "kind: Secret" || l.replace(' ', "").contains("\"kind\":\"Secret\"")
    })
}

fn parse_pem(text: &str) -> Result<Vec<LoadedKey>, ParseError> {
    let blocks = pem::parse_many(text).map_err(|e| ParseError::Pem(e.to_string()))?;
    let mut keys = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let tag = block.tag();
        let context = format!("PEM block {} ({tag})", i + 1);
        let encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
        if encrypted {
            return Err(ParseError::Encrypted {
                format: "PEM",
                fix: "openssl pkey -in KEY -out KEY.plain",
            });
        }
        let der = block.contents();
        let key = match tag {
            "PUBLIC KEY" => LoadedKey::public(public_from_spki(der, &context)?, context),
            "RSA PUBLIC KEY" => LoadedKey::public(public_from_pkcs1(der, &context)?, context),
            "CERTIFICATE" => LoadedKey::public(public_from_cert(der, &context)?, context),
            "RSA PRIVATE KEY" => {
                let key =
                    PrivateKey::from_rsa_pkcs1(Zeroizing::new(der.to_vec())).map_err(|error| {
                        ParseError::Private {
                            context: context.clone(),
                            error,
                        }
                    })?;
                LoadedKey::private(key, context)
            }
            "PRIVATE KEY" => {
                let key = PrivateKey::from_pkcs8(der).map_err(|error| ParseError::Private {
                    context: context.clone(),
                    error,
                })?;
                LoadedKey::private(key, context)
            }
            "EC PRIVATE KEY" => {
                let key =
                    PrivateKey::from_sec1(der, None).map_err(|error| ParseError::Private {
                        context: context.clone(),
                        error,
                    })?;
                LoadedKey::private(key, context)
            }
            "EC PARAMETERS" => continue,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(ParseError::Encrypted {
                    format: "PKCS#8",
                    fix: "openssl pkey -in KEY -out KEY.plain",
                })
            }
            "OPENSSH PRIVATE KEY" => parse_openssh_private(text)?,
            other => {
                return Err(ParseError::UnknownPemTag {
                    tag: other.to_string(),
                })
            }
        };
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(ParseError::NotAKey);
    }
    Ok(keys)
}

fn public_from_spki(der: &[u8], context: &str) -> Result<PublicKey, ParseError> {
    PublicKey::from_spki_der(der).map_err(|error| ParseError::Key {
        context: context.into(),
        error,
    })
}

fn public_from_pkcs1(der: &[u8], context: &str) -> Result<PublicKey, ParseError> {
    let key = pkcs1::RsaPublicKey::from_der(der).map_err(|e| ParseError::Key {
        context: context.into(),
        error: KeyError::Malformed {
            what: "RSA public key",
            detail: e.to_string(),
        },
    })?;
    PublicKey::rsa(key.modulus.as_bytes(), key.public_exponent.as_bytes()).map_err(|error| {
        ParseError::Key {
            context: context.into(),
            error,
        }
    })
}

fn public_from_cert(der: &[u8], context: &str) -> Result<PublicKey, ParseError> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| ParseError::Key {
        context: context.into(),
        error: KeyError::Malformed {
            what: "X.509 certificate",
            detail: e.to_string(),
        },
    })?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| ParseError::Key {
            context: context.into(),
            error: KeyError::Malformed {
                what: "certificate public key",
                detail: e.to_string(),
            },
        })?;
    public_from_spki(&spki, context)
}

fn parse_der(der: &[u8]) -> Result<LoadedKey, ParseError> {
    let context = "DER input".to_string();
    if let Ok(k) = PublicKey::from_spki_der(der) {
        return Ok(LoadedKey::public(k, context));
    }
    if x509_cert::Certificate::from_der(der).is_ok() {
        return Ok(LoadedKey::public(public_from_cert(der, &context)?, context));
    }
    if pkcs8::PrivateKeyInfo::from_der(der).is_ok() {
        let key = PrivateKey::from_pkcs8(der).map_err(|error| ParseError::Private {
            context: context.clone(),
            error,
        })?;
        return Ok(LoadedKey::private(key, context));
    }
    if pkcs1::RsaPrivateKey::from_der(der).is_ok() {
        let key = PrivateKey::from_rsa_pkcs1(Zeroizing::new(der.to_vec())).map_err(|error| {
            ParseError::Private {
                context: context.clone(),
                error,
            }
        })?;
        return Ok(LoadedKey::private(key, context));
    }
    if sec1::EcPrivateKey::from_der(der).is_ok() {
        let key = PrivateKey::from_sec1(der, None).map_err(|error| ParseError::Private {
            context: context.clone(),
            error,
        })?;
        return Ok(LoadedKey::private(key, context));
    }
    if pkcs1::RsaPublicKey::from_der(der).is_ok() {
        return Ok(LoadedKey::public(
            public_from_pkcs1(der, &context)?,
            context,
        ));
    }
    // A well-formed SPKI whose key is unacceptable deserves its specific error.
    if spki::SubjectPublicKeyInfoRef::from_der(der).is_ok() {
        return Ok(LoadedKey::public(public_from_spki(der, &context)?, context));
    }
    Err(ParseError::NotAKey)
}

fn from_ssh_key_data(data: &ssh_key::public::KeyData) -> Result<PublicKey, ParseError> {
    use ssh_key::public::{EcdsaPublicKey, KeyData};
    let key = match data {
        KeyData::Rsa(rsa) => {
            let n = rsa
                .n
                .as_positive_bytes()
                .ok_or_else(|| ParseError::OpenSsh("negative RSA modulus".into()))?;
            let e = rsa
                .e
                .as_positive_bytes()
                .ok_or_else(|| ParseError::OpenSsh("negative RSA exponent".into()))?;
            PublicKey::rsa(n, e)
        }
        KeyData::Ecdsa(ec) => {
            let curve = match ec {
                EcdsaPublicKey::NistP256(_) => Curve::P256,
                EcdsaPublicKey::NistP384(_) => Curve::P384,
                EcdsaPublicKey::NistP521(_) => {
                    return Err(ParseError::OpenSsh(
                        KeyError::UnsupportedCurve {
                            curve: "P-521 (nistp521)".into(),
                        }
                        .to_string(),
                    ))
                }
            };
            PublicKey::ec_from_point(curve, ec.as_sec1_bytes())
        }
        other => Err(KeyError::UnsupportedKeyType {
            kind: other.algorithm().to_string(),
        }),
    };
    key.map_err(|error| ParseError::Key {
        context: "OpenSSH public key".into(),
        error,
    })
}

fn parse_openssh_public(text: &str) -> Result<Vec<LoadedKey>, ParseError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = ssh_key::PublicKey::from_openssh(line)
            .map_err(|e| ParseError::OpenSsh(format!("line {}: {e}", i + 1)))?;
        keys.push(LoadedKey::public(
            from_ssh_key_data(key.key_data())?,
            format!("OpenSSH line {}", i + 1),
        ));
    }
    Ok(keys)
}

fn parse_openssh_private(text: &str) -> Result<LoadedKey, ParseError> {
    let key =
        ssh_key::PrivateKey::from_openssh(text).map_err(|e| ParseError::OpenSsh(e.to_string()))?;
    if key.is_encrypted() {
        return Err(ParseError::Encrypted {
            format: "OpenSSH",
            fix: "ssh-keygen -p -N '' -m PEM -f KEY",
        });
    }
    let public = from_ssh_key_data(key.public_key().key_data())?;
    // The public half is enough for a JWKS; signing needs PEM.
    Ok(LoadedKey::public(
        public,
        "OpenSSH private key (public half; convert with `ssh-keygen -p -m PEM` to sign)".into(),
    ))
}

fn parse_jwks(text: &str) -> Result<Vec<LoadedKey>, ParseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ParseError::Jwks(e.to_string()))?;
    let jwks = if value.get("keys").is_some() {
        Jwks::from_json(text).map_err(|e| ParseError::Jwks(e.to_string()))?
    } else {
        Jwks::from_json(&format!("{{\"keys\":[{text}]}}"))
            .map_err(|e| ParseError::Jwks(e.to_string()))?
    };
    let mut out = Vec::new();
    for (i, jwk) in jwks.keys.iter().enumerate() {
        let public = jwk.public_key().map_err(|error| ParseError::Key {
            context: format!("JWK {}", i + 1),
            error,
        })?;
        out.push(LoadedKey {
            public,
            private: None,
            declared_alg: jwk.alg.as_deref().and_then(|a| a.parse().ok()),
            origin: format!("JWK {} (kid {:?})", i + 1, jwk.kid.as_deref().unwrap_or("")),
        });
    }
    if out.is_empty() {
        return Err(ParseError::Jwks("no keys in \"keys\"".into()));
    }
    Ok(out)
}

fn parse_secret(text: &str) -> Result<Vec<LoadedKey>, ParseError> {
    let secret: Secret = serde_yaml::from_str(text).map_err(|e| ParseError::Secret {
        name: "(unparsed)".into(),
        problem: format!("not a valid Kubernetes Secret ({e}); `data` values must be base64, `stringData` values plain text"),
    })?;
    let name = secret
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "<unnamed>".into());
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        entries.insert(k, v.0);
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        entries.insert(k, v.into_bytes());
    }
    let wanted = [
        "tls.key", "tls.crt", "sa.key", "sa.pub", "key.pem", "cert.pem",
    ];
    let mut keys = Vec::new();
    for entry in wanted {
        let Some(bytes) = entries.get(entry) else {
            continue;
        };
        let found = parse_any(bytes).map_err(|e| ParseError::Secret {
            name: name.clone(),
            problem: format!("entry {entry:?}: {e}"),
        })?;
        for mut k in found {
            k.origin = format!("Secret {name} {entry}");
            keys.push(k);
        }
    }
    if keys.is_empty() {
        let have: Vec<&str> = entries.keys().map(String::as_str).collect();
        return Err(ParseError::Secret {
            name,
            problem: format!(
                "has no key entry (found {have:?}); the service-account Secret holds the public key in tls.crt and the private key in tls.key"
            ),
        });
    }
    let distinct: Vec<&PublicKey> =
        keys.iter()
            .map(|k| &k.public)
            .fold(Vec::new(), |mut acc, k| {
                if !acc.contains(&k) {
                    acc.push(k);
                }
                acc
            });
    if distinct.len() > 1 && keys.iter().any(|k| k.private.is_some()) {
        return Err(ParseError::Secret {
            name,
            problem: "tls.crt and tls.key hold different keys; the apiserver would sign with one and publish the other: regenerate the pair".into(),
        });
    }
    Ok(keys)
}
