//! kid, n, e, x, y cross-checked against OpenSSL for every key size and
//! input format the issue names, and irsa's keys read back by OpenSSL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::Path;

/// JWKS that `irsa jwks FILE` prints, as JSON.
fn irsa_jwks(dir: &Path, file: &str) -> serde_json::Value {
    let out = run_in(dir, &["jwks", file]);
    assert!(out.status.success(), "irsa jwks {file}: {}", stderr(&out));
    json(&out.stdout)
}

fn assert_single_key(jwks: &serde_json::Value) -> &serde_json::Value {
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    &keys[0]
}

fn check_rsa(bits: u32) {
    let t = tempdir();
    let d = t.path();
    let bits_arg = format!("rsa_keygen_bits:{bits}");
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &bits_arg,
            "-out",
            "pkcs8.pem",
        ],
    );
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "pkcs8.pem",
            "-traditional",
            "-out",
            "pkcs1.pem",
        ],
    );
    openssl(
        d,
        &["rsa", "-in", "pkcs8.pem", "-pubout", "-out", "spki.pem"],
    );
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "pkcs8.pem",
            "-RSAPublicKey_out",
            "-out",
            "pkcs1pub.pem",
        ],
    );
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "pkcs8.pem",
            "-outform",
            "DER",
            "-out",
            "pkcs1.der",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "pkcs8.pem",
            "-subj",
            "/CN=sa",
            "-days",
            "1",
            "-out",
            "cert.pem",
        ],
    );

    let kid = openssl_kid(d, "pkcs8.pem");
    let modulus = String::from_utf8(openssl(
        d,
        &["rsa", "-in", "pkcs8.pem", "-noout", "-modulus"],
    ))
    .unwrap();
    let n_hex = modulus.trim().strip_prefix("Modulus=").unwrap();
    let mut n = unhex(n_hex);
    while n[0] == 0 {
        n.remove(0);
    }
    let expected_n = b64url(&n);

    for file in [
        "pkcs8.pem",
        "pkcs1.pem",
        "spki.pem",
        "pkcs1pub.pem",
        "pkcs1.der",
        "cert.pem",
    ] {
        let jwks = irsa_jwks(d, file);
        let k = assert_single_key(&jwks);
        assert_eq!(k["kid"], kid, "RSA-{bits} {file}: kid");
        assert_eq!(k["n"], expected_n.as_str(), "RSA-{bits} {file}: n");
        assert_eq!(k["e"], "AQAB", "RSA-{bits} {file}: e");
        assert_eq!(k["kty"], "RSA");
        assert_eq!(k["alg"], "RS256");
        assert_eq!(k["use"], "sig");
    }
}

#[test]
fn rsa_2048_matches_openssl() {
    check_rsa(2048);
}

#[test]
fn rsa_3072_matches_openssl() {
    check_rsa(3072);
}

#[test]
fn rsa_4096_matches_openssl() {
    check_rsa(4096);
}

fn check_ec(curve: &str, crv: &str, len: usize, alg: &str) {
    let t = tempdir();
    let d = t.path();
    let curve_arg = format!("ec_paramgen_curve:{curve}");
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &curve_arg,
            "-out",
            "pkcs8.pem",
        ],
    );
    openssl(d, &["ec", "-in", "pkcs8.pem", "-out", "sec1.pem"]);
    openssl(
        d,
        &["ec", "-in", "pkcs8.pem", "-pubout", "-out", "spki.pem"],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "pkcs8.pem",
            "-subj",
            "/CN=sa",
            "-days",
            "1",
            "-out",
            "cert.pem",
        ],
    );
    // `openssl ecparam -genkey` output: an EC PARAMETERS block before the key.
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            curve,
            "-genkey",
            "-out",
            "withparams.pem",
        ],
    );

    let kid = openssl_kid(d, "pkcs8.pem");
    let spki = openssl(
        d,
        &["pkey", "-in", "pkcs8.pem", "-pubout", "-outform", "DER"],
    );
    let point = &spki[spki.len() - (1 + 2 * len)..];
    assert_eq!(point[0], 4, "uncompressed point");
    let (x, y) = (b64url(&point[1..=len]), b64url(&point[1 + len..]));

    for file in ["pkcs8.pem", "sec1.pem", "spki.pem", "cert.pem"] {
        let jwks = irsa_jwks(d, file);
        let k = assert_single_key(&jwks);
        assert_eq!(k["kid"], kid, "{curve} {file}: kid");
        assert_eq!(k["x"], x.as_str(), "{curve} {file}: x");
        assert_eq!(k["y"], y.as_str(), "{curve} {file}: y");
        assert_eq!(k["crv"], crv);
        assert_eq!(k["alg"], alg);
    }
    let jwks = irsa_jwks(d, "withparams.pem");
    assert_eq!(
        assert_single_key(&jwks)["kid"],
        openssl_kid(d, "withparams.pem")
    );
}

#[test]
fn p256_matches_openssl() {
    check_ec("prime256v1", "P-256", 32, "ES256");
}

#[test]
fn p384_matches_openssl() {
    check_ec("secp384r1", "P-384", 48, "ES384");
}

#[test]
fn openssl_reads_irsa_generated_keys() {
    let t = tempdir();
    let d = t.path();
    for (alg, extra) in [
        ("RS256", vec!["--bits", "2048"]),
        ("RS256", vec!["--bits", "4096"]),
        ("ES256", vec![]),
        ("ES384", vec![]),
    ] {
        let mut args = vec![
            "keys",
            "generate",
            "--private-key",
            "k.key",
            "--public-key",
            "k.pub",
            "--algorithm",
            alg,
            "--force",
        ];
        args.extend(extra);
        let out = run_in(d, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        // OpenSSL validates the private key and derives the same public key.
        if alg.starts_with("RS") {
            openssl(d, &["rsa", "-in", "k.key", "-check", "-noout"]);
            assert!(std::fs::read_to_string(d.join("k.key"))
                .unwrap()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        } else {
            openssl(d, &["ec", "-in", "k.key", "-check", "-noout"]);
            assert!(std::fs::read_to_string(d.join("k.key"))
                .unwrap()
                .starts_with("-----BEGIN EC PRIVATE KEY-----"));
        }
        let from_private = openssl(d, &["pkey", "-in", "k.key", "-pubout", "-outform", "DER"]);
        let from_public = openssl(d, &["pkey", "-pubin", "-in", "k.pub", "-outform", "DER"]);
        assert_eq!(
            from_private, from_public,
            "{alg}: public file is the private key's public half"
        );
        let kid = stdout(&out)
            .split("kid ")
            .nth(1)
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(kid, openssl_kid(d, "k.key"), "{alg}: printed kid");
    }
}

#[test]
fn openssl_verifies_irsa_signatures() {
    // The reverse of token_verify.rs: OpenSSL verifies a JWS signed by irsa-core
    // with the key `irsa init` wrote.
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "x",
            "--issuer",
            "https://oidc.example.com",
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let key = irsa_core::parse::parse_private_key(
        &std::fs::read(d.join("b/keys/sa-signer.key")).unwrap(),
    )
    .unwrap();
    let token = irsa_core::jwt::sign(
        &key,
        irsa_core::Algorithm::RS256,
        &serde_json::json!({"sub": "s"}),
    )
    .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    std::fs::write(d.join("input"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(d.join("sig"), irsa_core::b64::decode(parts[2]).unwrap()).unwrap();
    let verified = openssl(
        d,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "b/keys/sa-signer.pub",
            "-signature",
            "sig",
            "input",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&verified).trim(), "Verified OK");
}
