//! Public keys, signing algorithms and the `kid` that kube-apiserver derives.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;
use der::asn1::{AnyRef, BitString, ObjectIdentifier, UintRef};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifier, SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};

use crate::b64;

/// OID of `rsaEncryption`.
pub const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// OID of `id-ecPublicKey`.
pub const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// OID of the NIST P-256 curve (`prime256v1`).
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// OID of the NIST P-384 curve (`secp384r1`).
pub const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Smallest RSA modulus irsa accepts, in bits (kube-apiserver and AWS STS minimum).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus irsa accepts, in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// Errors about a key's content (as opposed to its file format).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The RSA modulus is shorter than 2048 bits.
    #[error("RSA key is {bits} bits; kube-apiserver and AWS STS need at least 2048: generate a new one with `irsa keys generate`")]
    RsaTooSmall {
        /// Modulus size in bits.
        bits: usize,
    },
    /// The RSA modulus is longer than 8192 bits.
    #[error("RSA key is {bits} bits; at most 8192 are supported: use a 2048-4096 bit key")]
    RsaTooLarge {
        /// Modulus size in bits.
        bits: usize,
    },
    /// The RSA public exponent is not usable.
    #[error("RSA public exponent {exponent} is not supported: use 65537")]
    BadExponent {
        /// The exponent in hex.
        exponent: String,
    },
    /// The EC curve is not one Kubernetes service-account tokens support.
    #[error("elliptic curve {curve} is not supported for service-account tokens: use P-256 (ES256) or P-384 (ES384)")]
    UnsupportedCurve {
        /// The curve's name or OID.
        curve: String,
    },
    /// The public key type is neither RSA nor EC.
    #[error("{kind} keys cannot sign Kubernetes service-account tokens: use RSA (RS256) or ECDSA P-256 (ES256)")]
    UnsupportedKeyType {
        /// The key algorithm's name or OID.
        kind: String,
    },
    /// The EC point is not an uncompressed point of the curve's size.
    #[error("EC public point for {curve} is malformed or compressed ({len} bytes): re-export the key uncompressed (`openssl ec -conv_form uncompressed`)")]
    BadEcPoint {
        /// Curve name.
        curve: Curve,
        /// Length of the point encoding.
        len: usize,
    },
    /// DER could not be decoded.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure was being decoded.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// The algorithm does not fit the key.
    #[error("algorithm {alg} cannot be used with a {key} key: use {suggestion}")]
    AlgorithmMismatch {
        /// Requested algorithm.
        alg: Algorithm,
        /// Key description.
        key: String,
        /// Algorithms that fit.
        suggestion: String,
    },
}

/// A JWS signing algorithm supported for service-account tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (what kube-apiserver uses for RSA keys).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
}

impl Algorithm {
    /// All supported algorithms.
    pub const ALL: [Algorithm; 5] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::ES256,
        Self::ES384,
    ];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
        }
    }

    /// Whether this is an RSA algorithm.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::RS256 | Self::RS384 | Self::RS512)
    }

    /// The curve an ECDSA algorithm needs.
    pub fn curve(self) -> Option<Curve> {
        match self {
            Self::ES256 => Some(Curve::P256),
            Self::ES384 => Some(Curve::P384),
            _ => None,
        }
    }

    /// Whether kube-apiserver signs with this algorithm for keys of its type.
    /// (It always uses RS256 for RSA keys and ES256/ES384 for P-256/P-384.)
    pub fn kube_apiserver_signs(self) -> bool {
        matches!(self, Self::RS256 | Self::ES256 | Self::ES384)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown algorithm name.
#[derive(Debug, thiserror::Error)]
#[error("unknown signing algorithm {0:?}: use one of RS256, RS384, RS512, ES256, ES384")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A NIST curve supported for ECDSA service-account keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// P-256 / prime256v1 / secp256r1.
    P256,
    /// P-384 / secp384r1.
    P384,
}

impl Curve {
    /// JWK `crv` name.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }
    /// Coordinate size in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
    /// Named-curve OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => OID_P256,
            Self::P384 => OID_P384,
        }
    }
    /// Curve for a named-curve OID.
    pub fn from_oid(oid: &ObjectIdentifier) -> Result<Self, KeyError> {
        if *oid == OID_P256 {
            Ok(Self::P256)
        } else if *oid == OID_P384 {
            Ok(Self::P384)
        } else {
            Err(KeyError::UnsupportedCurve {
                curve: curve_name(oid),
            })
        }
    }
    /// Curve for a JWK `crv` name.
    pub fn from_jwk_name(name: &str) -> Result<Self, KeyError> {
        match name {
            "P-256" => Ok(Self::P256),
            "P-384" => Ok(Self::P384),
            other => Err(KeyError::UnsupportedCurve {
                curve: other.to_string(),
            }),
        }
    }
    /// The ECDSA algorithm for this curve.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jwk_name())
    }
}

fn curve_name(oid: &ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.3.132.0.35" => "P-521 (secp521r1)".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1".into(),
        other => format!("OID {other}"),
    }
}

/// A public key normalised to its mathematical content.
///
/// Integers are big-endian without leading zero bytes; EC coordinates are
/// full-length (RFC 7518 §6.2.1.2), as kube-apiserver publishes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublicKey {
    /// An RSA public key.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An EC public key on a supported curve.
    Ec {
        /// Curve.
        curve: Curve,
        /// X coordinate, full length.
        x: Vec<u8>,
        /// Y coordinate, full length.
        y: Vec<u8>,
    },
}

impl PublicKey {
    /// Builds and checks an RSA public key.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let n = b64::strip_leading_zeros(n).to_vec();
        let e = b64::strip_leading_zeros(e).to_vec();
        let bits = bit_len(&n);
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaTooSmall { bits });
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyError::RsaTooLarge { bits });
        }
        let odd = e.last().is_some_and(|b| b & 1 == 1);
        if !odd || e.len() > 4 || e == [1] {
            return Err(KeyError::BadExponent { exponent: hex(&e) });
        }
        Ok(Self::Rsa { n, e })
    }

    /// Builds an EC public key from an uncompressed SEC1 point (`04 || x || y`).
    pub fn ec_from_point(curve: Curve, point: &[u8]) -> Result<Self, KeyError> {
        let len = curve.coordinate_len();
        if point.len() != 1 + 2 * len || point[0] != 4 {
            return Err(KeyError::BadEcPoint {
                curve,
                len: point.len(),
            });
        }
        Ok(Self::Ec {
            curve,
            x: point[1..=len].to_vec(),
            y: point[1 + len..].to_vec(),
        })
    }

    /// Builds an EC public key from JWK coordinates, left-padding short ones.
    pub fn ec_from_coordinates(curve: Curve, x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        let len = curve.coordinate_len();
        let pad = |v: &[u8]| -> Result<Vec<u8>, KeyError> {
            let v = b64::strip_leading_zeros(v);
            if v.len() > len {
                return Err(KeyError::BadEcPoint {
                    curve,
                    len: 1 + 2 * v.len(),
                });
            }
            let mut out = vec![0u8; len - v.len()];
            out.extend_from_slice(v);
            Ok(out)
        };
        Ok(Self::Ec {
            curve,
            x: pad(x)?,
            y: pad(y)?,
        })
    }

    /// Uncompressed SEC1 point of an EC key.
    pub fn ec_point(&self) -> Option<Vec<u8>> {
        match self {
            Self::Ec { x, y, .. } => {
                let mut p = Vec::with_capacity(1 + x.len() + y.len());
                p.push(4);
                p.extend_from_slice(x);
                p.extend_from_slice(y);
                Some(p)
            }
            Self::Rsa { .. } => None,
        }
    }

    /// DER `RSAPublicKey` (PKCS#1) of an RSA key.
    pub fn rsa_pkcs1_der(&self) -> Option<Vec<u8>> {
        match self {
            Self::Rsa { n, e } => {
                let key = pkcs1::RsaPublicKey {
                    modulus: UintRef::new(n).ok()?,
                    public_exponent: UintRef::new(e).ok()?,
                };
                key.to_der().ok()
            }
            Self::Ec { .. } => None,
        }
    }

    /// Canonical DER SubjectPublicKeyInfo, as Go's `x509.MarshalPKIXPublicKey` writes it.
    pub fn spki_der(&self) -> Vec<u8> {
        let curve_oid = match self {
            Self::Ec { curve, .. } => curve.oid(),
            Self::Rsa { .. } => OID_P256,
        };
        let (algorithm, key_bytes) = match self {
            Self::Rsa { .. } => (
                AlgorithmIdentifier {
                    oid: OID_RSA,
                    parameters: Some(AnyRef::NULL),
                },
                self.rsa_pkcs1_der().unwrap_or_default(),
            ),
            Self::Ec { .. } => (
                AlgorithmIdentifier {
                    oid: OID_EC,
                    parameters: Some(AnyRef::from(&curve_oid)),
                },
                self.ec_point().unwrap_or_default(),
            ),
        };
        let Ok(bits) = BitString::from_bytes(&key_bytes) else {
            return Vec::new();
        };
        let info = SubjectPublicKeyInfo {
            algorithm,
            subject_public_key: bits,
        };
        info.to_der().unwrap_or_default()
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::Malformed {
            what: "SubjectPublicKeyInfo",
            detail: e.to_string(),
        })?;
        Self::from_spki(&info)
    }

    /// Converts a decoded SubjectPublicKeyInfo.
    pub fn from_spki(info: &SubjectPublicKeyInfoRef<'_>) -> Result<Self, KeyError> {
        let bits = info
            .subject_public_key
            .as_bytes()
            .ok_or(KeyError::Malformed {
                what: "SubjectPublicKeyInfo",
                detail: "public key bit string has unused bits".into(),
            })?;
        if info.algorithm.oid == OID_RSA {
            let key = pkcs1::RsaPublicKey::from_der(bits).map_err(|e| KeyError::Malformed {
                what: "RSA public key",
                detail: e.to_string(),
            })?;
            Self::rsa(key.modulus.as_bytes(), key.public_exponent.as_bytes())
        } else if info.algorithm.oid == OID_EC {
            let params = info.algorithm.parameters.ok_or(KeyError::Malformed {
                what: "EC public key",
                detail: "missing named-curve parameters".into(),
            })?;
            let oid: ObjectIdentifier =
                params.decode_as().map_err(|_| KeyError::UnsupportedCurve {
                    curve: "explicit curve parameters".into(),
                })?;
            Self::ec_from_point(Curve::from_oid(&oid)?, bits)
        } else {
            Err(KeyError::UnsupportedKeyType {
                kind: key_type_name(&info.algorithm.oid),
            })
        }
    }

    /// The `kid` kube-apiserver puts in token headers for this key.
    pub fn kid(&self) -> Kid {
        let digest = digest::digest(&digest::SHA256, &self.spki_der());
        Kid(b64::encode(digest.as_ref()))
    }

    /// The default signing algorithm for this key.
    pub fn default_algorithm(&self) -> Algorithm {
        match self {
            Self::Rsa { .. } => Algorithm::RS256,
            Self::Ec { curve, .. } => curve.algorithm(),
        }
    }

    /// Checks that `alg` can be used with this key.
    pub fn check_algorithm(&self, alg: Algorithm) -> Result<(), KeyError> {
        let ok = match self {
            Self::Rsa { .. } => alg.is_rsa(),
            Self::Ec { curve, .. } => alg.curve() == Some(*curve),
        };
        if ok {
            Ok(())
        } else {
            let suggestion = match self {
                Self::Rsa { .. } => "RS256 (or RS384/RS512)".to_string(),
                Self::Ec { curve, .. } => curve.algorithm().to_string(),
            };
            Err(KeyError::AlgorithmMismatch {
                alg,
                key: self.describe(),
                suggestion,
            })
        }
    }

    /// A short human description, e.g. `RSA 2048` or `EC P-256`.
    pub fn describe(&self) -> String {
        match self {
            Self::Rsa { n, .. } => format!("RSA {}", bit_len(n)),
            Self::Ec { curve, .. } => format!("EC {curve}"),
        }
    }

    /// PEM `PUBLIC KEY` (SPKI) encoding.
    pub fn to_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", self.spki_der()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }
}

fn key_type_name(oid: &ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
        other => format!("OID {other}"),
    }
}

/// Number of significant bits in a big-endian integer.
pub fn bit_len(bytes: &[u8]) -> usize {
    let v = b64::strip_leading_zeros(bytes);
    match v.first() {
        None | Some(0) => 0,
        Some(first) => (v.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A key ID: base64url (no padding) of SHA-256 over the DER SubjectPublicKeyInfo.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Kid(pub String);

impl Kid {
    /// The kid as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_2048() -> PublicKey {
        let mut n = vec![0xc5u8; 256];
        n[255] = 0x01;
        PublicKey::rsa(&n, &[1, 0, 1]).expect("valid key")
    }

    #[test]
    fn rejects_small_rsa_with_fix() {
        let err = PublicKey::rsa(&[0xc5; 128], &[1, 0, 1]).expect_err("1024 bits");
        assert_eq!(err, KeyError::RsaTooSmall { bits: 1024 });
        assert!(err.to_string().contains("irsa keys generate"));
    }

    #[test]
    fn rejects_even_exponent() {
        assert!(matches!(
            PublicKey::rsa(&[0xc5; 256], &[2]),
            Err(KeyError::BadExponent { .. })
        ));
    }

    #[test]
    fn spki_round_trips() {
        let key = rsa_2048();
        assert_eq!(
            PublicKey::from_spki_der(&key.spki_der()).expect("parses"),
            key
        );
        let ec = PublicKey::ec_from_coordinates(Curve::P256, &[1; 32], &[0, 2]).expect("valid");
        assert_eq!(
            PublicKey::from_spki_der(&ec.spki_der()).expect("parses"),
            ec
        );
    }

    #[test]
    fn kid_is_43_char_base64url() {
        let kid = rsa_2048().kid();
        assert_eq!(kid.as_str().len(), 43);
        assert!(kid
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn leading_zero_in_modulus_does_not_change_key() {
        let key = rsa_2048();
        let PublicKey::Rsa { n, e } = &key else {
            panic!("rsa")
        };
        let mut padded = vec![0u8];
        padded.extend_from_slice(n);
        assert_eq!(PublicKey::rsa(&padded, e).expect("valid"), key);
    }

    #[test]
    fn algorithm_must_fit_key() {
        assert!(rsa_2048().check_algorithm(Algorithm::ES256).is_err());
        assert!(rsa_2048().check_algorithm(Algorithm::RS512).is_ok());
        assert_eq!(
            "es256".parse::<Algorithm>().expect("parses"),
            Algorithm::ES256
        );
        assert!("HS256".parse::<Algorithm>().is_err());
    }
}
