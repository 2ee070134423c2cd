//! `irsa doctor -f irsa.yaml` with an issuer in an S3 bucket: the token is
//! checked against the bundle's own keys even when the issuer cannot be
//! fetched, and when the public URL fails or serves other documents, the
//! copies stored in the bucket (moto, read through the AWS API) tell "not
//! published", "published but not reachable" and "reachable but stale"
//! apart. The bucket's public URL is a real rustls HTTPS server on
//! 127.0.0.1 serving a copy of the documents.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::https::{serve, Server};
use common::moto::{Ctl, Moto};
use common::*;
use serde_json::{json, Value};

/// The bucket's public host, as `irsa init --bucket` puts it in the issuer URL.
const HOST: &str = "acme-oidc.s3.eu-west-1.amazonaws.com";
const ROLE: &str = "arn:aws:iam::123456789012:role/irsa/prod/prod-app-s3-echoer";
const BUNDLE: &str = "bundle: token signed by a key of irsa.yaml";
const PUBLICATION: &str = "issuer: serves the documents irsa.yaml renders";
const DISCOVERY_PATH: &str = "/prod/.well-known/openid-configuration";
const JWKS_PATH: &str = "/prod/openid/v1/jwks";

struct Setup {
    _t: tempfile::TempDir,
    dir: PathBuf,
    /// What the public URL serves (a copy of the bundle's documents).
    site: PathBuf,
    server: Server,
    moto: Moto,
}

fn issuer() -> String {
    format!("https://{HOST}/prod")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A bundle for bucket acme-oidc, applied to moto; its documents served
/// over HTTPS as the bucket's public URL would serve them.
fn setup() -> Setup {
    let t = tempdir();
    let d = t.path().to_path_buf();
    let out = run_in(
        &d,
        &[
            "init",
            "--cluster",
            "prod",
            "--bucket",
            "acme-oidc",
            "--region",
            "eu-west-1",
            "--prefix",
            "prod",
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = fs::read_to_string(d.join("b/irsa.yaml")).unwrap();
    assert!(yaml.contains(&issuer()), "{yaml}");
    let yaml = yaml.replace(
        "bindings: []",
        "bindings:\n- namespace: app\n  serviceAccount: s3-echoer\n",
    );
    fs::write(d.join("b/irsa.yaml"), yaml).unwrap();
    let site = d.join("site");
    copy_dir(&d.join("b/issuer"), &site.join("prod"));
    let server = serve(site.clone(), &[HOST]);
    fs::write(d.join("ca.pem"), &server.ca_pem).unwrap();
    let moto = Moto::start();
    let out = moto.run_in(&d, &["apply", "-f", "b/irsa.yaml", "--auto-approve"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    Setup {
        _t: t,
        dir: d,
        site,
        server,
        moto,
    }
}

/// A token as kube-apiserver would issue it, signed with `key_file`.
fn token(s: &Setup, key_file: &str) -> String {
    let key =
        irsa_core::parse::parse_private_key(&fs::read(s.dir.join(key_file)).unwrap()).unwrap();
    let claims = json!({"iss": issuer(), "sub": "system:serviceaccount:app:s3-echoer",
        "aud": ["sts.amazonaws.com"], "iat": now(), "nbf": now(), "exp": now() + 3600});
    let jwt = irsa_core::jwt::sign(&key, irsa_core::Algorithm::RS256, &claims).unwrap();
    let path = s.dir.join(format!("{}.jwt", key_file.replace('/', "-")));
    fs::write(&path, &jwt).unwrap();
    path.display().to_string()
}

/// A second key pair, unknown to the bundle.
fn other_key(s: &Setup) {
    let out = run_in(
        &s.dir,
        &[
            "keys",
            "generate",
            "--private-key",
            "other.key",
            "--public-key",
            "other.pub",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Runs doctor on a token with the bundle; the issuer's host resolves to
/// `addr`. Returns the exit code and every check as (name, status,
/// detail, fix).
fn doctor(
    s: &Setup,
    token_file: &str,
    addr: &str,
    extra: &[&str],
) -> (Option<i32>, Vec<[String; 4]>) {
    let resolve = format!("{HOST}={addr}");
    let mut args = vec![
        "doctor",
        "-f",
        "b/irsa.yaml",
        "--ca-cert",
        "ca.pem",
        "--resolve",
        &resolve,
        "--output",
        "json",
        "--token",
        token_file,
        "--role-arn",
        ROLE,
    ];
    args.extend_from_slice(extra);
    let out = s.moto.run_in(&s.dir, &args);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    let checks = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            ["name", "status", "detail", "fix"].map(|k| c[k].as_str().unwrap_or("").to_string())
        })
        .collect();
    (out.status.code(), checks)
}

fn line<'a>(checks: &'a [[String; 4]], name: &str) -> &'a [String; 4] {
    checks
        .iter()
        .find(|c| c[0] == name)
        .unwrap_or_else(|| panic!("no {name:?} line: {checks:#?}"))
}

/// An address nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[test]
fn a_token_is_checked_against_the_bundle_keys_when_the_issuer_is_unreachable() {
    let s = setup();
    other_key(&s);
    let unreachable = closed_port();

    let foreign = token(&s, "other.key");
    let (code, checks) = doctor(&s, &foreign, &unreachable, &["--no-aws"]);
    assert_eq!(code, Some(1));
    let bundle = line(&checks, BUNDLE);
    assert_eq!(bundle[1], "fail", "{bundle:?}");
    assert!(bundle[2].contains("kid not in the bundle"), "{bundle:?}");
    assert!(
        bundle[3].contains("--service-account-signing-key-file"),
        "{bundle:?}"
    );
    assert_eq!(line(&checks, "discovery: reachable over HTTPS")[1], "fail");

    let ours = token(&s, "b/keys/sa-signer.key");
    let (_, checks) = doctor(&s, &ours, &unreachable, &["--no-aws"]);
    let bundle = line(&checks, BUNDLE);
    assert_eq!(bundle[1], "pass", "{bundle:?}");
    assert!(bundle[2].contains("signature verifies"), "{bundle:?}");
}

#[test]
fn documents_missing_from_the_bucket_are_not_published() {
    let s = setup();
    let ctl = Ctl::new(&s.moto);
    ctl.py("for k in ['prod/.well-known/openid-configuration', 'prod/openid/v1/jwks']:\n    s3.delete_object(Bucket='acme-oidc', Key=k)");
    fs::remove_dir_all(s.site.join("prod")).unwrap();
    let t = token(&s, "b/keys/sa-signer.key");
    let (code, checks) = doctor(&s, &t, &s.server.addr.to_string(), &[]);
    assert_eq!(code, Some(1));
    let p = line(&checks, PUBLICATION);
    assert_eq!(p[1], "fail", "{p:?}");
    assert_eq!(
        p[2],
        "not published: the bucket has no discovery document and no JWKS"
    );
    assert_eq!(p[3], "publish them: `irsa apply`");
}

#[test]
fn documents_in_the_bucket_behind_a_failing_url_are_published_but_not_reachable() {
    let s = setup();
    s.server
        .behaviour
        .lock()
        .unwrap()
        .forbidden
        .extend([DISCOVERY_PATH.to_string(), JWKS_PATH.to_string()]);
    let t = token(&s, "b/keys/sa-signer.key");
    let (code, checks) = doctor(&s, &t, &s.server.addr.to_string(), &[]);
    assert_eq!(code, Some(1));
    let p = line(&checks, PUBLICATION);
    assert_eq!(p[1], "fail", "{p:?}");
    assert!(
        p[2].starts_with("published but not reachable: the bucket holds irsa.yaml's documents"),
        "{p:?}"
    );
    assert!(
        p[3].contains("bucket policy") && p[3].contains("Block Public Access"),
        "{p:?}"
    );
    // Without the AWS links nothing is known beyond the failed URL.
    let (_, checks) = doctor(&s, &t, &s.server.addr.to_string(), &["--no-aws"]);
    assert!(!checks.iter().any(|c| c[0] == PUBLICATION), "{checks:#?}");
}

#[test]
fn an_old_jwks_served_or_stored_is_reachable_but_stale() {
    let s = setup();
    other_key(&s);
    let out = run_in(&s.dir, &["jwks", "other.pub"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let old = String::from_utf8(out.stdout).unwrap();
    let t = token(&s, "b/keys/sa-signer.key");

    // Served: the URL answers with another JWKS than the bucket holds.
    let served = s.site.join("prod/openid/v1/jwks");
    let current = fs::read_to_string(&served).unwrap();
    fs::write(&served, &old).unwrap();
    let (code, checks) = doctor(&s, &t, &s.server.addr.to_string(), &[]);
    assert_eq!(code, Some(1));
    let p = line(&checks, PUBLICATION);
    assert_eq!(p[1], "fail", "{p:?}");
    assert_eq!(
        p[2],
        "reachable but stale: the JWKS served differs from irsa.yaml's"
    );
    assert!(
        p[3].contains("`irsa apply`") && p[3].contains("cache"),
        "{p:?}"
    );

    // The same keys in another order and layout are not stale.
    let mut keys: Value = serde_json::from_str(&current).unwrap();
    keys["keys"].as_array_mut().unwrap().reverse();
    fs::write(&served, serde_json::to_string(&keys).unwrap()).unwrap();
    let (_, checks) = doctor(&s, &t, &s.server.addr.to_string(), &[]);
    assert_eq!(line(&checks, PUBLICATION)[1], "pass", "{checks:#?}");

    // Stored: the bucket holds the old JWKS and the URL fails.
    Ctl::new(&s.moto).put_object("acme-oidc", "prod/openid/v1/jwks", &old);
    s.server
        .behaviour
        .lock()
        .unwrap()
        .forbidden
        .push(JWKS_PATH.to_string());
    let (_, checks) = doctor(&s, &t, &s.server.addr.to_string(), &[]);
    let p = line(&checks, PUBLICATION);
    assert_eq!(p[1], "fail", "{p:?}");
    assert_eq!(
        p[2],
        "reachable but stale: the JWKS stored in the bucket differs from irsa.yaml's"
    );
    assert!(p[3].contains("`irsa apply`"), "{p:?}");
}
