//! Every accepted key input format, and a clear error for each bad one.
#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use std::fs;
use std::path::Path;

fn rsa(d: &Path, name: &str, bits: u32) {
    let arg = format!("rsa_keygen_bits:{bits}");
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &arg,
            "-out",
            name,
        ],
    );
}

fn jwks_err(d: &Path, file: &str) -> String {
    let out = run_in(d, &["jwks", file]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "irsa jwks {file} should fail: {}",
        stdout(&out)
    );
    assert!(out.stdout.is_empty(), "no partial JWKS on stdout");
    stderr(&out)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn vks_secret_with_data_and_string_data() {
    let t = tempdir();
    let d = t.path();
    rsa(d, "k.pem", 2048);
    let private = String::from_utf8(openssl(d, &["rsa", "-in", "k.pem", "-traditional"])).unwrap();
    let public = String::from_utf8(openssl(d, &["rsa", "-in", "k.pem", "-pubout"])).unwrap();
    let kid = openssl_kid(d, "k.pem");

    let data = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: prod-sa\n  namespace: prod-ns\ntype: Opaque\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        STANDARD.encode(&public),
        STANDARD.encode(&private)
    );
    fs::write(d.join("data.yaml"), &data).unwrap();
    let string_data = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: prod-sa\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&public),
        indent(&private)
    );
    fs::write(d.join("stringdata.yaml"), &string_data).unwrap();
    for file in ["data.yaml", "stringdata.yaml"] {
        let out = run_in(d, &["jwks", file]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let v = json(&out.stdout);
        assert_eq!(
            v["keys"].as_array().unwrap().len(),
            1,
            "{file}: tls.crt and tls.key are one key"
        );
        assert_eq!(v["keys"][0]["kid"], kid.as_str(), "{file}");
    }

    // tls.crt and tls.key from different keys.
    rsa(d, "other.pem", 2048);
    let other_public =
        String::from_utf8(openssl(d, &["rsa", "-in", "other.pem", "-pubout"])).unwrap();
    fs::write(
        d.join("mismatch.yaml"),
        data.replace(&STANDARD.encode(&public), &STANDARD.encode(&other_public)),
    )
    .unwrap();
    let err = jwks_err(d, "mismatch.yaml");
    assert!(
        err.contains("Secret prod-sa") && err.contains("different keys"),
        "{err}"
    );

    // Bad base64 and missing entries.
    fs::write(
        d.join("badb64.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  tls.key: '!!!not base64'\n",
    )
    .unwrap();
    let err = jwks_err(d, "badb64.yaml");
    assert!(
        err.contains("not a valid Kubernetes Secret") && err.contains("base64"),
        "{err}"
    );
    fs::write(
        d.join("empty.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  ca.crt: eA==\n",
    )
    .unwrap();
    let err = jwks_err(d, "empty.yaml");
    assert!(
        err.contains("Secret s") && err.contains("tls.crt") && err.contains("ca.crt"),
        "{err}"
    );
    fs::write(
        d.join("garbage.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  tls.key: hello\n",
    )
    .unwrap();
    let err = jwks_err(d, "garbage.yaml");
    assert!(
        err.contains("entry \"tls.key\"") && err.contains("not a key"),
        "{err}"
    );
}

/// Builds an OpenSSH `ssh-rsa` line from OpenSSL's view of the key (RFC 4253 §6.6).
fn ssh_rsa_line(d: &Path, key: &str) -> String {
    let modulus =
        String::from_utf8(openssl(d, &["rsa", "-in", key, "-noout", "-modulus"])).unwrap();
    let mut n = unhex(modulus.trim().strip_prefix("Modulus=").unwrap());
    if n[0] & 0x80 != 0 {
        n.insert(0, 0);
    }
    let mut blob = Vec::new();
    for field in [b"ssh-rsa".to_vec(), vec![1, 0, 1], n] {
        blob.extend((field.len() as u32).to_be_bytes());
        blob.extend(field);
    }
    format!("ssh-rsa {} user@host\n", STANDARD.encode(blob))
}

#[test]
fn openssh_public_key_and_legacy_empty_kid() {
    let t = tempdir();
    let d = t.path();
    rsa(d, "k.pem", 2048);
    fs::write(d.join("k.pub"), ssh_rsa_line(d, "k.pem")).unwrap();
    let out = run_in(d, &["jwks", "--legacy-empty-kid", "k.pub"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out.stdout);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], openssl_kid(d, "k.pem").as_str());
    assert_eq!(keys[1]["kid"], "");
    assert_eq!(keys[0]["n"], keys[1]["n"]);

    // JWKS input is accepted too (merging an existing JWKS during rotation).
    fs::write(d.join("old.json"), &out.stdout).unwrap();
    rsa(d, "new.pem", 2048);
    let out = run_in(d, &["jwks", "new.pem", "old.json"]);
    let v = json(&out.stdout);
    assert_eq!(
        v["keys"].as_array().unwrap().len(),
        2,
        "the legacy twin collapses into its key"
    );
    assert_eq!(v["keys"][0]["kid"], openssl_kid(d, "new.pem").as_str());
}

#[test]
fn bad_inputs_name_the_problem_and_the_fix() {
    let t = tempdir();
    let d = t.path();
    fs::write(d.join("notes.txt"), "hello world\n").unwrap();
    assert!(jwks_err(d, "notes.txt").contains("not a key"));
    fs::write(d.join("empty.pem"), "").unwrap();
    assert!(jwks_err(d, "empty.pem").contains("empty"));

    rsa(d, "small.pem", 1024);
    let err = jwks_err(d, "small.pem");
    assert!(
        err.contains("1024 bits") && err.contains("at least 2048"),
        "{err}"
    );

    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-aes256",
            "-pass",
            "pass:secret",
            "-out",
            "enc8.pem",
        ],
    );
    let err = jwks_err(d, "enc8.pem");
    assert!(
        err.contains("encrypted") && err.contains("openssl pkey"),
        "{err}"
    );
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "enc8.pem",
            "-passin",
            "pass:secret",
            "-traditional",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "enc1.pem",
        ],
    );
    assert!(jwks_err(d, "enc1.pem").contains("encrypted"));

    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp521r1",
            "-out",
            "p521.pem",
        ],
    );
    let err = jwks_err(d, "p521.pem");
    assert!(err.contains("P-521") && err.contains("P-256"), "{err}");
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
            "-out",
            "k1.pem",
        ],
    );
    assert!(jwks_err(d, "k1.pem").contains("secp256k1"));
    openssl(d, &["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"]);
    let err = jwks_err(d, "ed.pem");
    assert!(err.contains("Ed25519") && err.contains("RS256"), "{err}");

    fs::write(
        d.join("csr.pem"),
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    assert!(jwks_err(d, "csr.pem").contains("CERTIFICATE REQUEST"));
    assert!(jwks_err(d, "missing.pem").contains("cannot read missing.pem"));

    // The error for one bad file leaves an existing output untouched.
    rsa(d, "good.pem", 2048);
    assert!(run_in(d, &["jwks", "good.pem", "-o", "out.json"])
        .status
        .success());
    let before = fs::read(d.join("out.json")).unwrap();
    let out = run_in(d, &["jwks", "good.pem", "small.pem", "-o", "out.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fs::read(d.join("out.json")).unwrap(), before);
}
