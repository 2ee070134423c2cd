//! Private signing keys: generation, signing and PEM export.
//!
//! Keys are held as DER in [`Zeroizing`] buffers and written as PKCS#1
//! `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY` (with the named curve), the
//! formats kubeadm, Cluster API and Talos read.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512,
};
use der::{Decode, Encode};
use zeroize::Zeroizing;

use crate::key::{Algorithm, Curve, KeyError, PublicKey};

/// Errors while generating or using a private key.
#[derive(Debug, thiserror::Error)]
pub enum PrivateKeyError {
    /// The key material is inconsistent or rejected by the crypto library.
    #[error("private key rejected: {0}")]
    Rejected(String),
    /// The key's content is not acceptable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Generation failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// RSA size not supported for generation.
    #[error("unsupported RSA size {0}: use 2048, 3072 or 4096")]
    Bits(usize),
}

/// A private signing key and its public half.
pub struct PrivateKey {
    inner: Inner,
    public: PublicKey,
}

enum Inner {
    /// PKCS#1 `RSAPrivateKey` DER.
    Rsa(Zeroizing<Vec<u8>>),
    /// SEC1 `ECPrivateKey` DER with parameters and public key.
    Ec(Curve, Zeroizing<Vec<u8>>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(
            f,
            "PrivateKey({}, kid {})",
            self.public.describe(),
            self.public.kid()
        )
    }
}

fn ec_signing(curve: Curve) -> &'static aws_lc_rs::signature::EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
        Curve::P384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
    }
}

impl PrivateKey {
    /// Generates a key for `alg`; `bits` applies to RSA (2048, 3072, 4096).
    pub fn generate(alg: Algorithm, bits: usize) -> Result<Self, PrivateKeyError> {
        match alg.curve() {
            None => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    other => return Err(PrivateKeyError::Bits(other)),
                };
                let pair = RsaKeyPair::generate(size)
                    .map_err(|e| PrivateKeyError::Generate(e.to_string()))?;
                let pkcs8: Pkcs8V1Der<'static> = pair
                    .as_der()
                    .map_err(|e| PrivateKeyError::Generate(e.to_string()))?;
                let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref())?;
                Self::from_rsa_pkcs1(pkcs1)
            }
            Some(curve) => {
                let pair = EcdsaKeyPair::generate(ec_signing(curve))
                    .map_err(|e| PrivateKeyError::Generate(e.to_string()))?;
                let doc = pair
                    .to_pkcs8v1()
                    .map_err(|e| PrivateKeyError::Generate(e.to_string()))?;
                Self::from_pkcs8(doc.as_ref())
            }
        }
    }

    /// Loads a PKCS#1 `RSAPrivateKey`.
    pub fn from_rsa_pkcs1(der: Zeroizing<Vec<u8>>) -> Result<Self, PrivateKeyError> {
        let parsed = pkcs1::RsaPrivateKey::from_der(&der).map_err(|e| KeyError::Malformed {
            what: "RSA private key",
            detail: e.to_string(),
        })?;
        let public = PublicKey::rsa(parsed.modulus.as_bytes(), parsed.public_exponent.as_bytes())?;
        RsaKeyPair::from_der(&der).map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        Ok(Self {
            inner: Inner::Rsa(der),
            public,
        })
    }

    /// Loads a SEC1 `ECPrivateKey`; `curve` is required when the key omits its parameters.
    pub fn from_sec1(der: &[u8], curve: Option<Curve>) -> Result<Self, PrivateKeyError> {
        let parsed = sec1::EcPrivateKey::from_der(der).map_err(|e| KeyError::Malformed {
            what: "EC private key",
            detail: e.to_string(),
        })?;
        let named = parsed
            .parameters
            .and_then(|p| p.named_curve())
            .map(|oid| Curve::from_oid(&oid))
            .transpose()?;
        let curve = named.or(curve).ok_or(KeyError::Malformed {
            what: "EC private key",
            detail: "no curve parameters".into(),
        })?;
        let pair = EcdsaKeyPair::from_private_key_der(ec_signing(curve), der)
            .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        let public = PublicKey::ec_from_point(curve, pair.public_key().as_ref())?;
        if let Some(given) = parsed.public_key {
            if given != pair.public_key().as_ref() {
                return Err(PrivateKeyError::Rejected(
                    "the embedded public key does not match the private scalar".into(),
                ));
            }
        }
        // Re-encode with named curve and public key so the file is self-describing.
        let point = pair.public_key().as_ref().to_vec();
        let canonical = sec1::EcPrivateKey {
            private_key: parsed.private_key,
            parameters: Some(sec1::EcParameters::NamedCurve(curve.oid())),
            public_key: Some(&point),
        }
        .to_der()
        .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        Ok(Self {
            inner: Inner::Ec(curve, Zeroizing::new(canonical)),
            public,
        })
    }

    /// Loads a PKCS#8 `PrivateKeyInfo` (RSA or EC).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, PrivateKeyError> {
        let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| KeyError::Malformed {
            what: "PKCS#8 private key",
            detail: e.to_string(),
        })?;
        if info.algorithm.oid == crate::key::OID_RSA {
            Self::from_rsa_pkcs1(Zeroizing::new(info.private_key.to_vec()))
        } else if info.algorithm.oid == crate::key::OID_EC {
            let oid = info
                .algorithm
                .parameters_oid()
                .map_err(|_| KeyError::UnsupportedCurve {
                    curve: "explicit curve parameters".into(),
                })?;
            Self::from_sec1(info.private_key, Some(Curve::from_oid(&oid)?))
        } else {
            let kind = spki_kind(&info.algorithm.oid);
            Err(KeyError::UnsupportedKeyType { kind }.into())
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// PEM encoding (`RSA PRIVATE KEY` or `EC PRIVATE KEY`), zeroized on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let (tag, der) = match &self.inner {
            Inner::Rsa(der) => ("RSA PRIVATE KEY", der),
            Inner::Ec(_, der) => ("EC PRIVATE KEY", der),
        };
        let block = pem::Pem::new(tag, der.to_vec());
        let text = pem::encode_config(
            &block,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        let mut contents = block.into_contents();
        zeroize::Zeroize::zeroize(&mut contents);
        Zeroizing::new(text)
    }

    /// Signs `message` with `alg`, returning a JWS signature (ECDSA as fixed `r || s`).
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, PrivateKeyError> {
        self.public.check_algorithm(alg)?;
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Rsa(der) => {
                let pair = RsaKeyPair::from_der(der)
                    .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
                let padding = match alg {
                    Algorithm::RS384 => &RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &RSA_PKCS1_SHA512,
                    _ => &RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut sig)
                    .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
                Ok(sig)
            }
            Inner::Ec(curve, der) => {
                let pair = EcdsaKeyPair::from_private_key_der(ec_signing(*curve), der)
                    .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
                let sig = pair
                    .sign(&rng, message)
                    .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
                Ok(sig.as_ref().to_vec())
            }
        }
    }
}

fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, PrivateKeyError> {
    let info = pkcs8::PrivateKeyInfo::from_der(pkcs8)
        .map_err(|e| PrivateKeyError::Generate(e.to_string()))?;
    Ok(Zeroizing::new(info.private_key.to_vec()))
}

fn spki_kind(oid: &der::asn1::ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.3.101.112" => "Ed25519".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        other => format!("OID {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verify_signature;

    #[test]
    fn generated_keys_sign_and_verify() {
        for alg in [
            Algorithm::RS256,
            Algorithm::RS512,
            Algorithm::ES256,
            Algorithm::ES384,
        ] {
            let key = PrivateKey::generate(alg, 2048).expect("generates");
            let sig = key.sign(alg, b"payload").expect("signs");
            verify_signature(key.public_key(), alg, b"payload", &sig).expect("verifies");
            assert!(verify_signature(key.public_key(), alg, b"other", &sig).is_err());
        }
    }

    #[test]
    fn pem_round_trips_and_debug_hides_material() {
        let key = PrivateKey::generate(Algorithm::ES256, 0).expect("generates");
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let block = pem::parse(pem.as_bytes()).expect("pem");
        let again = PrivateKey::from_sec1(block.contents(), None).expect("parses");
        assert_eq!(again.public_key(), key.public_key());
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    #[test]
    fn refuses_odd_rsa_sizes() {
        assert!(matches!(
            PrivateKey::generate(Algorithm::RS256, 1024),
            Err(PrivateKeyError::Bits(1024))
        ));
    }
}
