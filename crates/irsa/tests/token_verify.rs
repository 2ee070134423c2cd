//! `irsa token verify` against tokens signed by OpenSSL (an independent
//! implementation), including tampered, wrong-key and wrong-claim tokens.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

const ISSUER: &str = "https://oidc.example.com/cluster";

/// Signs header.claims with OpenSSL; `alg` RS256 or ES256.
fn openssl_token(dir: &Path, key: &str, alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "kid": kid});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let der = openssl_stdin(dir, &["dgst", "-sha256", "-sign", key], input.as_bytes());
    let sig = if alg == "ES256" {
        ecdsa_der_to_jose(&der, 32)
    } else {
        der
    };
    format!("{input}.{}", b64url(&sig))
}

fn claims(iss: &str, aud: &str, exp_in: i64) -> Value {
    let n = now();
    json!({"iss": iss, "aud": [aud], "sub": "system:serviceaccount:default:s3-echoer", "iat": n - 10, "nbf": n - 10, "exp": n + exp_in})
}

fn verify(dir: &Path, token: &str, issuer: &str) -> std::process::Output {
    run_in(
        dir,
        &[
            "token",
            "verify",
            "--jwks",
            "jwks.json",
            "--issuer",
            issuer,
            "--audience",
            "sts.amazonaws.com",
            token,
        ],
    )
}

fn setup(dir: &Path, algo: &[&str]) -> String {
    let mut args = vec!["genpkey"];
    args.extend_from_slice(algo);
    args.extend(["-out", "key.pem"]);
    openssl(dir, &args);
    let mut other = vec!["genpkey"];
    other.extend_from_slice(algo);
    other.extend(["-out", "other.pem"]);
    openssl(dir, &other);
    let out = run_in(dir, &["jwks", "key.pem", "-o", "jwks.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    openssl_kid(dir, "key.pem")
}

fn check_algorithm(alg: &str, gen: &[&str]) {
    let t = tempdir();
    let d = t.path();
    let kid = setup(d, gen);

    let good = openssl_token(
        d,
        "key.pem",
        alg,
        &kid,
        &claims(ISSUER, "sts.amazonaws.com", 600),
    );
    let out = verify(d, &good, ISSUER);
    assert!(
        out.status.success(),
        "{alg} valid token: {} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("system:serviceaccount:default:s3-echoer"));

    // Tampered payload: same signature, different sub.
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = claims(ISSUER, "sts.amazonaws.com", 600);
    evil["sub"] = json!("system:serviceaccount:kube-system:admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(evil.to_string().as_bytes()),
        parts[2]
    );
    let out = verify(d, &tampered, ISSUER);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("signature does not verify"),
        "{}",
        stdout(&out)
    );

    // Signed by another key but claiming the published kid.
    let forged = openssl_token(
        d,
        "other.pem",
        alg,
        &kid,
        &claims(ISSUER, "sts.amazonaws.com", 600),
    );
    let out = verify(d, &forged, ISSUER);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("signature does not verify"),
        "{}",
        stdout(&out)
    );

    // Signed by another key with its own kid: kid lookup fails, naming both sides.
    let other_kid = openssl_kid(d, "other.pem");
    let unknown = openssl_token(
        d,
        "other.pem",
        alg,
        &other_kid,
        &claims(ISSUER, "sts.amazonaws.com", 600),
    );
    let out = verify(d, &unknown, ISSUER);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(&other_kid) && text.contains(&kid), "{text}");
}

#[test]
fn rs256_tokens_signed_by_openssl() {
    check_algorithm(
        "RS256",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
}

#[test]
fn es256_tokens_signed_by_openssl() {
    check_algorithm(
        "ES256",
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ],
    );
}

#[test]
fn claim_errors_name_field_and_both_values() {
    let t = tempdir();
    let d = t.path();
    let kid = setup(
        d,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );

    let slash = openssl_token(
        d,
        "key.pem",
        "RS256",
        &kid,
        &claims(&format!("{ISSUER}/"), "sts.amazonaws.com", 600),
    );
    let out = verify(d, &slash, ISSUER);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("iss")
            && text.contains(&format!("\"{ISSUER}/\""))
            && text.contains(&format!("\"{ISSUER}\"")),
        "{text}"
    );

    let aud = openssl_token(
        d,
        "key.pem",
        "RS256",
        &kid,
        &claims(ISSUER, "https://kubernetes.default.svc", 600),
    );
    let text = stdout(&verify(d, &aud, ISSUER));
    assert!(
        text.contains("aud")
            && text.contains("kubernetes.default.svc")
            && text.contains("sts.amazonaws.com"),
        "{text}"
    );

    let expired = openssl_token(
        d,
        "key.pem",
        "RS256",
        &kid,
        &claims(ISSUER, "sts.amazonaws.com", -3600),
    );
    let text = stdout(&verify(d, &expired, ISSUER));
    assert!(
        text.contains("exp") && text.contains("in the past"),
        "{text}"
    );

    // Within the default 60 s leeway an expired token still passes; beyond it, not.
    let recent = openssl_token(
        d,
        "key.pem",
        "RS256",
        &kid,
        &claims(ISSUER, "sts.amazonaws.com", -30),
    );
    assert!(verify(d, &recent, ISSUER).status.success());

    let mut future = claims(ISSUER, "sts.amazonaws.com", 7200);
    future["nbf"] = json!(now() + 3600);
    let text = stdout(&verify(
        d,
        &openssl_token(d, "key.pem", "RS256", &kid, &future),
        ISSUER,
    ));
    assert!(
        text.contains("nbf") && text.contains("in the future"),
        "{text}"
    );

    // alg none is refused even with a valid-looking payload.
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","kid":"x"}"#),
        b64url(
            claims(ISSUER, "sts.amazonaws.com", 600)
                .to_string()
                .as_bytes()
        )
    );
    let text = stdout(&verify(d, &none, ISSUER));
    assert!(text.contains("\"none\" is not accepted"), "{text}");
}

#[test]
fn decode_shows_header_claims_and_readable_times() {
    let t = tempdir();
    let d = t.path();
    let kid = setup(
        d,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let token = openssl_token(
        d,
        "key.pem",
        "RS256",
        &kid,
        &claims(ISSUER, "sts.amazonaws.com", 600),
    );
    std::fs::write(d.join("token"), &token).unwrap();
    let out = run_in(d, &["token", "decode", "token", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out.stdout);
    assert_eq!(v["header"]["kid"], kid.as_str());
    assert_eq!(v["claims"]["iss"], ISSUER);
    assert!(v["times"]["exp"].as_str().unwrap().ends_with('Z'));
    let out = run_in(d, &["token", "decode", "not-a-token"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected 3 dot-separated parts"),
        "{}",
        stderr(&out)
    );
}
