//! `irsa cluster config`: the real binary renders every flavour from a
//! bundle made by `irsa init`, and the output is parsed back into typed
//! structures (`flavours`); bad input gets an error naming the fix (here);
//! the `flags` drive a real kube-apiserver whose tokens verify against the
//! JWKS irsa rendered (`apiserver`, needs the test bed).
#![allow(clippy::unwrap_used)]

#[path = "cluster_config/apiserver.rs"]
mod apiserver;
mod common;
#[path = "cluster_config/flavours.rs"]
mod flavours;
#[path = "cluster_config/rotation.rs"]
mod rotation;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// The issuer `irsa init --bucket irsa-cc --region eu-west-1 --prefix prod` makes.
pub const ISSUER: &str = "https://irsa-cc.s3.eu-west-1.amazonaws.com/prod";

/// A bundle in `DIR/b` and the kids of its keys (computed by OpenSSL).
pub struct TestBundle {
    /// The bundle directory, `DIR/b`.
    pub dir: PathBuf,
    /// The kid of the active key.
    pub active_kid: String,
    /// The kid of the `next` key, when the bundle was made with one.
    pub next_kid: Option<String>,
}

impl TestBundle {
    /// `DIR/b/irsa.yaml`.
    pub fn file(&self) -> String {
        self.dir.join("b/irsa.yaml").display().to_string()
    }
    /// An absolute path inside the bundle.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join("b").join(rel)
    }
}

/// `irsa init` in `d/b`; with `next`, a second key pair listed as `state: next`
/// and the documents rendered again.
pub fn bundle(d: &Path, next: bool) -> TestBundle {
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "prod",
            "--bucket",
            "irsa-cc",
            "--region",
            "eu-west-1",
            "--prefix",
            "prod",
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let active_kid = openssl_kid(d, "b/keys/sa-signer.key");
    let mut next_kid = None;
    if next {
        let out = run_in(
            d,
            &[
                "keys",
                "generate",
                "--private-key",
                "b/keys/next.key",
                "--public-key",
                "b/keys/next.pub",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let path = d.join("b/irsa.yaml");
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let entry: serde_yaml::Value = serde_yaml::from_str(
            "{publicKey: keys/next.pub, privateKey: keys/next.key, algorithm: RS256, state: next}",
        )
        .unwrap();
        config["keys"].as_sequence_mut().unwrap().push(entry);
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        let out = run_in(d, &["render", "b"]);
        assert!(out.status.success(), "{}", stderr(&out));
        next_kid = Some(openssl_kid(d, "b/keys/next.key"));
    }
    TestBundle {
        dir: d.to_path_buf(),
        active_kid,
        next_kid,
    }
}

/// Runs `irsa cluster config -f BUNDLE ARGS...` in the bundle's parent.
pub fn cluster_config(b: &TestBundle, args: &[&str]) -> Output {
    let file = b.file();
    let mut all = vec!["cluster", "config", "-f", &file];
    all.extend_from_slice(args);
    run_in(&b.dir, &all)
}

/// Runs and expects success, returning stdout.
pub fn ok(b: &TestBundle, args: &[&str]) -> String {
    let out = cluster_config(b, args);
    assert!(
        out.status.success(),
        "irsa cluster config {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs and expects a usage/input error (exit 2), returning stderr.
pub fn fails(b: &TestBundle, args: &[&str]) -> String {
    let out = cluster_config(b, args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2 for {args:?}; stdout: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "nothing on stdout on error: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// `--name=value` lines per `# ==> FILE` section of the flags output.
pub fn parse_flags(text: &str) -> Vec<(String, String, String)> {
    let mut file = String::new();
    let mut flags = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ==> ") {
            file = rest.split(':').next().unwrap().to_string();
        } else if let Some(flag) = line.strip_prefix("--") {
            let (name, value) = flag
                .split_once('=')
                .unwrap_or_else(|| panic!("flag without value: {line}"));
            flags.push((file.clone(), name.to_string(), value.to_string()));
        } else {
            assert!(line.is_empty(), "unexpected line in flags output: {line:?}");
        }
    }
    flags
}

/// Values of flag `name` in section `file`.
pub fn flag_values<'a>(
    flags: &'a [(String, String, String)],
    file: &str,
    name: &str,
) -> Vec<&'a str> {
    flags
        .iter()
        .filter(|(f, n, _)| f == file && n == name)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

#[test]
fn bad_input_names_the_problem_and_the_fix() {
    let t = tempdir();
    let b = bundle(t.path(), false);

    let err = fails(&b, &["--flavour", "openshift"]);
    assert!(err.contains("invalid value 'openshift'"), "{err}");
    assert!(
        err.contains("eks-anywhere") && err.contains("talos"),
        "{err}"
    );

    let err = fails(&b, &["--flavour", "vks"]);
    assert!(err.contains("--namespace"), "{err}");
    let err = fails(
        &b,
        &[
            "--flavour",
            "vks",
            "--namespace",
            "ns",
            "--cluster-name",
            "Prod_1",
        ],
    );
    assert!(
        err.contains("\"Prod_1\"") && err.contains("DNS label"),
        "{err}"
    );
    let err = fails(&b, &["--flavour", "vks", "--namespace", "ns"]);
    assert!(
        err.contains("-o DIR") && err.contains("--include-private-key"),
        "{err}"
    );
    let err = fails(
        &b,
        &["--flavour", "vks", "--namespace", "ns", "--output", "json"],
    );
    assert!(err.contains("--include-private-key"), "{err}");
    let err = fails(&b, &["--flavour", "talos"]);
    assert!(err.contains("--include-private-key"), "{err}");

    let copy = b.dir.join("other.yaml");
    std::fs::copy(b.path("irsa.yaml"), &copy).unwrap();
    let out = run_in(
        &b.dir,
        &[
            "cluster",
            "config",
            "--flavour",
            "flags",
            "-f",
            copy.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pass -f DIR/irsa.yaml"),
        "{}",
        stderr(&out)
    );

    let err = fails(&b, &["--flavour", "flags", "--key-dir", "pki/irsa"]);
    assert!(err.contains("not absolute"), "{err}");
    let err = fails(&b, &["--flavour", "kind"]);
    assert!(err.contains("--host-key-dir"), "{err}");
    let err = fails(
        &b,
        &[
            "--flavour",
            "kubeadm",
            "--previous-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ],
    );
    assert!(err.contains("--kubeadm-api v1beta4"), "{err}");

    // Refuses to overwrite, names the files and the fix, writes nothing.
    let out = b.dir.join("out");
    let o = out.display().to_string();
    ok(&b, &["--flavour", "flags", "-o", &o]);
    let before = std::fs::read(out.join("kube-apiserver.flags")).unwrap();
    let err = fails(&b, &["--flavour", "flags", "-o", &o, "--key-dir", "/srv/k"]);
    assert!(
        err.contains("kube-apiserver.flags") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.join("kube-apiserver.flags")).unwrap(),
        before
    );
    ok(
        &b,
        &[
            "--flavour",
            "flags",
            "-o",
            &o,
            "--key-dir",
            "/srv/k",
            "--force",
        ],
    );
    assert_ne!(
        std::fs::read(out.join("kube-apiserver.flags")).unwrap(),
        before
    );

    // The active key without its private half: the apiserver could not sign.
    let path = b.path("irsa.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("  privateKey: keys/sa-signer.key\n", ""),
    )
    .unwrap();
    let err = fails(&b, &["--flavour", "flags"]);
    assert!(
        err.contains("keys/sa-signer.pub") && err.contains("privateKey"),
        "{err}"
    );
    // ... which EKS Anywhere does not need: it makes its own key.
    ok(&b, &["--flavour", "eks-anywhere"]);
}
