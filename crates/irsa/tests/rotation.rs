//! Staged key rotation: `irsa keys rotate --stage publish|switch|retire`
//! and `irsa keys status`. Tokens signed with the old key verify at every
//! stage until retirement, tokens signed with the new key from the switch
//! on; the switch refuses until the JWKS served over HTTPS holds the new
//! key; retirement waits for the old key's tokens to expire.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::https::serve;
use common::*;
use irsa_core::config::KeyState;
use irsa_core::jwt::{self, VerifyOptions};
use irsa_core::{IrsaConfig, Jwks};
use serde_json::json;

const HOST: &str = "oidc.irsa.test";

fn issuer() -> String {
    format!("https://{HOST}/prod")
}

fn sign(dir: &Path, key_file: &str) -> String {
    let key = irsa_core::parse::parse_private_key(&fs::read(dir.join(key_file)).unwrap()).unwrap();
    let claims = json!({"iss": issuer(), "sub": "system:serviceaccount:app:web",
        "aud": ["sts.amazonaws.com"], "iat": now(), "exp": now() + 3600});
    jwt::sign(&key, irsa_core::Algorithm::RS256, &claims).unwrap()
}

fn verifies(dir: &Path, token: &str) -> bool {
    let jwks =
        Jwks::from_json(&fs::read_to_string(dir.join("b/issuer/openid/v1/jwks")).unwrap()).unwrap();
    let opts = VerifyOptions {
        issuer: issuer(),
        audience: "sts.amazonaws.com".into(),
        now: now(),
        leeway: 0,
    };
    jwt::verify(token, &jwks, &opts).is_ok()
}

fn config(dir: &Path) -> IrsaConfig {
    IrsaConfig::from_yaml(&fs::read_to_string(dir.join("b/irsa.yaml")).unwrap()).unwrap()
}

fn key_file(dir: &Path, state: KeyState) -> String {
    let cfg = config(dir);
    let k = cfg.keys.iter().find(|k| k.state == state).unwrap();
    format!("b/{}", k.private_key.as_ref().unwrap())
}

/// The public key files `irsa cluster config --flavour flags` gives the apiserver.
fn apiserver_key_files(dir: &Path) -> Vec<String> {
    let out = run_in(
        dir,
        &[
            "cluster",
            "config",
            "-f",
            "b/irsa.yaml",
            "--flavour",
            "flags",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--service-account-key-file="))
        .map(String::from)
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "online"),
    ignore = "reads the served documents over HTTPS: a full-build command"
)]
fn rotation_keeps_every_valid_token_verifiable() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "prod",
            "--issuer",
            &issuer(),
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    fs::write(
        d.join("b/irsa.yaml"),
        format!(
            "# ops: rotate yearly\n{}",
            fs::read_to_string(d.join("b/irsa.yaml")).unwrap()
        ),
    )
    .unwrap();
    // What the issuer host serves: a copy, updated only when "published".
    let site = d.join("site");
    let publish = || {
        let _ = fs::remove_dir_all(site.join("prod"));
        fs::create_dir_all(site.join("prod/openid/v1")).unwrap();
        fs::copy(
            d.join("b/issuer/openid/v1/jwks"),
            site.join("prod/openid/v1/jwks"),
        )
        .unwrap();
    };
    publish();
    let server = serve(site.clone(), &[HOST]);
    fs::write(d.join("ca.pem"), &server.ca_pem).unwrap();
    let resolve = format!("{HOST}={}", server.addr);
    let net = ["--ca-cert", "ca.pem", "--resolve", resolve.as_str()];
    // No cluster to observe: retire goes ahead on --assume-rolled-out
    // (tests/rotation_observed.rs observes a real apiserver).
    let rotate = |stage: &str, extra: &[&str]| {
        let mut args = vec!["keys", "rotate", "-f", "b/irsa.yaml", "--stage", stage];
        args.extend_from_slice(extra);
        irsa()
            .current_dir(d)
            .args(&args)
            .env("KUBECONFIG", d.join("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    };
    let old_token = sign(d, &key_file(d, KeyState::Active));
    assert!(verifies(d, &old_token));
    assert_eq!(apiserver_key_files(d).len(), 1);

    // Nothing to switch to or retire yet.
    assert_eq!(rotate("switch", &net).status.code(), Some(2));
    assert_eq!(rotate("retire", &[]).status.code(), Some(2));

    // 1. publish: both keys in the JWKS and in the apiserver's key files.
    let out = rotate("publish", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("irsa apply"), "{}", stdout(&out));
    let next_key = key_file(d, KeyState::Next);
    assert_eq!(mode(&d.join(&next_key)), 0o600, "private key 0600");
    assert!(
        fs::read_to_string(d.join("b/irsa.yaml"))
            .unwrap()
            .starts_with("# ops: rotate yearly"),
        "comments kept"
    );
    assert!(verifies(d, &old_token), "old key verifies after publish");
    assert_eq!(
        Jwks::from_json(&fs::read_to_string(d.join("b/issuer/openid/v1/jwks")).unwrap())
            .unwrap()
            .keys
            .len(),
        2
    );
    assert_eq!(
        apiserver_key_files(d).len(),
        2,
        "the apiserver verifies both keys"
    );
    let out = run_in(d, &["keys", "status", "-f", "b/irsa.yaml"]);
    assert!(
        stdout(&out).contains("stage publish done"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        rotate("publish", &[]).status.code(),
        Some(2),
        "one rotation at a time"
    );

    // 2. switch refuses while the served JWKS lacks the next key...
    let out = rotate("switch", &net);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("does not publish the next key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        config(d)
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Next)
            .count(),
        1,
        "nothing changed"
    );
    // ...and goes ahead once it is published.
    publish();
    let out = rotate("switch", &net);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_token = sign(d, &key_file(d, KeyState::Active));
    assert_eq!(key_file(d, KeyState::Active), next_key);
    assert!(verifies(d, &old_token), "old key verifies after the switch");
    assert!(
        verifies(d, &new_token),
        "new key verifies from the switch on"
    );
    assert_eq!(apiserver_key_files(d).len(), 2);

    // 3. retire waits for the old key's tokens to expire.
    let out = rotate("retire", &["--assume-rolled-out"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("may be valid until"),
        "{}",
        stderr(&out)
    );
    assert!(verifies(d, &old_token));
    let out = rotate(
        "retire",
        &[
            "--max-token-lifetime",
            "0",
            "--margin",
            "0",
            "--assume-rolled-out",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!verifies(d, &old_token), "retired key no longer verifies");
    assert!(verifies(d, &new_token));
    assert_eq!(
        apiserver_key_files(d).len(),
        1,
        "the apiserver drops the old key"
    );
    let cfg = config(d);
    assert_eq!(
        cfg.keys
            .iter()
            .filter(|k| k.state == KeyState::Retired)
            .count(),
        1,
        "kept as a record"
    );
    assert!(
        d.join("b/keys/sa-signer.key").exists(),
        "key files stay on disk"
    );
    let out = run_in(d, &["keys", "status", "-f", "b/irsa.yaml"]);
    assert!(
        stdout(&out).contains("no rotation in progress"),
        "{}",
        stdout(&out)
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}
