//! Signature verification against a [`PublicKey`].

use aws_lc_rs::signature::{
    UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
};

use crate::key::{Algorithm, KeyError, PublicKey};

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The algorithm does not fit the key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The signature is not valid for the message and key.
    #[error("signature does not verify with this key")]
    Invalid,
}

/// Verifies a JWS signature (ECDSA signatures as fixed-size `r || s`).
pub fn verify_signature(
    key: &PublicKey,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    key.check_algorithm(alg)?;
    let (algorithm, bytes): (&'static dyn VerificationAlgorithm, Vec<u8>) = match alg {
        Algorithm::RS256 => (
            &RSA_PKCS1_2048_8192_SHA256,
            key.rsa_pkcs1_der().unwrap_or_default(),
        ),
        Algorithm::RS384 => (
            &RSA_PKCS1_2048_8192_SHA384,
            key.rsa_pkcs1_der().unwrap_or_default(),
        ),
        Algorithm::RS512 => (
            &RSA_PKCS1_2048_8192_SHA512,
            key.rsa_pkcs1_der().unwrap_or_default(),
        ),
        Algorithm::ES256 => (&ECDSA_P256_SHA256_FIXED, key.ec_point().unwrap_or_default()),
        Algorithm::ES384 => (&ECDSA_P384_SHA384_FIXED, key.ec_point().unwrap_or_default()),
    };
    UnparsedPublicKey::new(algorithm, bytes)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid)
}
