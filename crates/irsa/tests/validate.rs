//! `irsa validate`: local bundle checks and checks of what an HTTPS issuer serves.
#![allow(clippy::unwrap_used)]

mod common;

use common::https::{serve, Behaviour};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const HOST: &str = "oidc.irsa.test";

fn bundle(d: &Path) {
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "c",
            "--issuer",
            &format!("https://{HOST}/cluster"),
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn failed_checks(out: &std::process::Output) -> Vec<String> {
    let v = json(&out.stdout);
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn local_checks_catch_permissions_mismatched_keys_and_bad_kids() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let ok = run_in(d, &["validate", "b", "--output", "json"]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert_eq!(json(&ok.stdout)["ok"], true);

    let key = d.join("b/keys/sa-signer.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_in(d, &["validate", "b", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        failed_checks(&out),
        ["key keys/sa-signer.pub: private key permissions"]
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    // The private key on disk is not the pair of the published key.
    let original = fs::read(&key).unwrap();
    assert!(run_in(
        d,
        &[
            "keys",
            "generate",
            "--private-key",
            "b/keys/sa-signer.key",
            "--public-key",
            "other.pub",
            "--force"
        ]
    )
    .status
    .success());
    let out = run_in(d, &["validate", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("✗ key keys/sa-signer.pub: private and public key match"),
        "{}",
        stdout(&out)
    );
    fs::write(&key, original).unwrap();

    // A hand-edited kid in the JWKS.
    let jwks_path = d.join("b/issuer/openid/v1/jwks");
    let jwks = fs::read_to_string(&jwks_path).unwrap();
    let kid = json(jwks.as_bytes())["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(&jwks_path, jwks.replace(&kid, "my-key-1")).unwrap();
    let out = run_in(d, &["validate", "b"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("kid \"my-key-1\" is not SHA-256") && text.contains("fix: "),
        "{text}"
    );
    assert!(
        text.contains("✗ private key: signs tokens the JWKS verifies"),
        "{text}"
    );
}

#[test]
fn private_key_flag_finds_an_unpublished_apiserver_key() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "apiserver-sa.key",
        ],
    );
    let out = run_in(d, &["validate", "b", "--private-key", "apiserver-sa.key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("is not in the JWKS; STS will reject"),
        "{}",
        stdout(&out)
    );
    let out = run_in(
        d,
        &["validate", "b", "--private-key", "b/keys/sa-signer.key"],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    // The active key passed again signs one probe, reported once.
    assert_eq!(
        stdout(&out)
            .matches("private key: signs tokens the JWKS verifies")
            .count(),
        1,
        "{}",
        stdout(&out)
    );
}

#[test]
fn documents_directory_without_config_seed_002_style() {
    // Seed 002 publishes keys.json with a duplicate entry whose kid is "".
    let t = tempdir();
    let d = t.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "sa.key",
        ],
    );
    assert!(run_in(
        d,
        &[
            "jwks",
            "--legacy-empty-kid",
            "sa.key",
            "-o",
            "site/keys.json"
        ]
    )
    .status
    .success());
    let disc = run_in(
        d,
        &[
            "discovery",
            "--issuer",
            "https://oidc.example.com",
            "--jwks-path",
            "keys.json",
            "-o",
            "site/.well-known/openid-configuration",
        ],
    );
    assert!(disc.status.success(), "{}", stderr(&disc));
    let out = run_in(d, &["validate", "site", "--private-key", "sa.key"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("! jwks: key 2 (kid \"\"): legacy empty kid"),
        "{}",
        stdout(&out)
    );
    let out = run_in(d, &["validate", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
#[cfg_attr(
    not(feature = "online"),
    ignore = "reads the served documents over HTTPS: a full-build command"
)]
fn remote_issuer_served_over_https() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    // Served root: https://HOST/cluster/... maps to <site>/cluster/...
    let site = d.join("site");
    fs::create_dir_all(&site).unwrap();
    std::os::unix::fs::symlink(d.join("b/issuer"), site.join("cluster")).unwrap();
    let server = serve(site.clone(), &[HOST]);
    fs::write(d.join("ca.pem"), &server.ca_pem).unwrap();
    let resolve = format!("{HOST}={}", server.addr);
    let issuer = format!("https://{HOST}/cluster");
    let validate = |extra: &[&str]| {
        let mut args = vec![
            "validate",
            "b",
            "--issuer",
            &issuer,
            "--ca-cert",
            "ca.pem",
            "--resolve",
            &resolve,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        run_in(d, &args)
    };

    let out = validate(&[]);
    assert!(out.status.success(), "{}", stdout(&out));
    let v = json(&out.stdout);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "remote: TLS certificate",
        "remote discovery: Content-Type application/json",
        "remote jwks: Content-Type application/json",
        "remote jwks: has every local key",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }

    server.behaviour.lock().unwrap().content_type = "binary/octet-stream".into();
    let out = validate(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        failed_checks(&out),
        [
            "remote discovery: Content-Type application/json",
            "remote jwks: Content-Type application/json"
        ]
    );
    *server.behaviour.lock().unwrap() = Behaviour::default();

    server.behaviour.lock().unwrap().redirect = vec!["/cluster/openid/v1/jwks".into()];
    let out = validate(&[]);
    assert_eq!(failed_checks(&out), ["remote jwks: reachable over HTTPS"]);
    *server.behaviour.lock().unwrap() = Behaviour::default();

    // The served JWKS lacks the local key (stale upload).
    fs::remove_file(site.join("cluster")).unwrap();
    fs::create_dir_all(site.join("cluster/.well-known")).unwrap();
    fs::copy(
        d.join("b/issuer/.well-known/openid-configuration"),
        site.join("cluster/.well-known/openid-configuration"),
    )
    .unwrap();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "old.key",
        ],
    );
    assert!(
        run_in(d, &["jwks", "old.key", "-o", "site/cluster/openid/v1/jwks"])
            .status
            .success()
    );
    let out = validate(&[]);
    assert_eq!(failed_checks(&out), ["remote jwks: has every local key"]);

    // Issuer with a trailing slash in the served discovery document.
    let disc = fs::read_to_string(d.join("b/issuer/.well-known/openid-configuration")).unwrap();
    fs::write(
        site.join("cluster/.well-known/openid-configuration"),
        disc.replace(&format!("\"{issuer}\""), &format!("\"{issuer}/\"")),
    )
    .unwrap();
    let out = validate(&[]);
    assert!(
        failed_checks(&out)
            .contains(&"remote discovery: issuer byte-equal to expected".to_string()),
        "{}",
        stdout(&out)
    );

    // Missing document: 404 names the fix.
    fs::remove_file(site.join("cluster/.well-known/openid-configuration")).unwrap();
    let out = run_in(
        d,
        &[
            "validate",
            "b",
            "--issuer",
            &issuer,
            "--ca-cert",
            "ca.pem",
            "--resolve",
            &resolve,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("returned HTTP 404") && stdout(&out).contains("fix: upload"),
        "{}",
        stdout(&out)
    );
}

#[test]
#[cfg_attr(
    not(feature = "online"),
    ignore = "reads the served documents over HTTPS: a full-build command"
)]
fn remote_certificate_problems_are_reported() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let server = serve(d.join("b/issuer"), &["other.irsa.test"]);
    fs::write(d.join("ca.pem"), &server.ca_pem).unwrap();
    let resolve = format!("{HOST}={}", server.addr);
    let issuer = format!("https://{HOST}/cluster");
    // Certificate for another name.
    let out = run_in(
        d,
        &[
            "validate",
            "b",
            "--issuer",
            &issuer,
            "--ca-cert",
            "ca.pem",
            "--resolve",
            &resolve,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("✗ remote discovery: reachable over HTTPS")
            && text.to_lowercase().contains("certificate"),
        "{text}"
    );
    // Untrusted CA (the platform roots do not know the test CA).
    let out = run_in(
        d,
        &["validate", "b", "--issuer", &issuer, "--resolve", &resolve],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("✗ remote discovery: reachable over HTTPS"),
        "{}",
        stdout(&out)
    );
}

/// Statuses of the report lines named `name`.
fn statuses(out: &std::process::Output, name: &str) -> Vec<String> {
    json(&out.stdout)["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "online"),
    ignore = "reads the served documents over HTTPS: a full-build command"
)]
fn served_headers_are_judged_by_the_rules_doctor_shares() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let site = d.join("site");
    fs::create_dir_all(&site).unwrap();
    std::os::unix::fs::symlink(d.join("b/issuer"), site.join("cluster")).unwrap();
    let server = serve(site, &[HOST]);
    fs::write(d.join("ca.pem"), &server.ca_pem).unwrap();
    let resolve = format!("{HOST}={}", server.addr);
    let issuer = format!("https://{HOST}/cluster");
    let validate = || {
        run_in(
            d,
            &[
                "validate",
                "b",
                "--issuer",
                &issuer,
                "--ca-cert",
                "ca.pem",
                "--resolve",
                &resolve,
                "--output",
                "json",
            ],
        )
    };

    // No Cache-Control at all: a warning for each document, not a failure.
    let out = validate();
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        statuses(&out, "remote discovery: caching headers"),
        ["warn"]
    );
    assert_eq!(statuses(&out, "remote jwks: caching headers"), ["warn"]);

    // What irsa apply sets passes.
    server.behaviour.lock().unwrap().cache_control = Some("max-age=300".into());
    let out = validate();
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(statuses(&out, "remote jwks: caching headers"), ["pass"]);

    // Directives that stop reuse warn, in any case.
    for cc in ["No-Store", "no-cache", "max-age=0"] {
        server.behaviour.lock().unwrap().cache_control = Some(cc.into());
        let out = validate();
        assert!(out.status.success(), "{}", stdout(&out));
        assert_eq!(
            statuses(&out, "remote jwks: caching headers"),
            ["warn"],
            "{cc}"
        );
    }

    // The media type is compared ignoring case and parameters.
    server.behaviour.lock().unwrap().content_type = "Application/JSON; charset=utf-8".into();
    let out = validate();
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        statuses(&out, "remote jwks: Content-Type application/json"),
        ["pass"]
    );
}
