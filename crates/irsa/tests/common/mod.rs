//! Helpers shared by the integration tests: the irsa binary, OpenSSL, files.
#![allow(dead_code, clippy::unwrap_used)]

pub mod agent;
pub mod faults;
pub mod https;
pub mod image;
pub mod kustomize;
pub mod moto;
pub mod pods;
pub mod testbed;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `irsa init` in `dir` of the bundle most tests share: cluster `prod`,
/// bucket `acme-oidc` in eu-west-1, prefix `prod`; `extra` flags follow.
pub fn init_prod(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
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
        ".",
    ];
    args.extend_from_slice(extra);
    run_in(dir, &args)
}

/// A command running the irsa binary built for this test run.
pub fn irsa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_irsa"))
}

/// Runs irsa with `args` in `dir`, returning the output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    irsa()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("irsa runs")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `out`, after failing the test with its stdout and stderr unless it
/// succeeded.
pub fn succeeded(out: Output) -> Output {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// `irsa bind -f irsa.yaml -n NS -s SA --pod-identity --no-plan` in `dir`,
/// which must succeed.
pub fn bind_pod_identity(dir: &Path, namespace: &str, service_account: &str) -> Output {
    succeeded(run_in(
        dir,
        &[
            "bind",
            "-f",
            "irsa.yaml",
            "-n",
            namespace,
            "-s",
            service_account,
            "--pod-identity",
            "--no-plan",
        ],
    ))
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The kid OpenSSL's view of `key_file` implies: SHA-256 of its DER SPKI.
pub fn openssl_kid(dir: &Path, key_file: &str) -> String {
    let der = openssl(
        dir,
        &["pkey", "-in", key_file, "-pubout", "-outform", "DER"],
    );
    let digest = openssl_stdin(dir, &["dgst", "-sha256", "-binary"], &der);
    b64url(&digest)
}

/// Runs openssl with `input` on stdin.
pub fn openssl_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Decodes hex (as printed by `openssl rsa -modulus`).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Path helper.
pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Parses a JSON document.
pub fn json(text: &[u8]) -> serde_json::Value {
    serde_json::from_slice(text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(text)))
}

/// Converts an ASN.1 DER ECDSA signature to JOSE `r || s` of `len`-byte integers.
pub fn ecdsa_der_to_jose(der: &[u8], len: usize) -> Vec<u8> {
    fn read_len(b: &[u8], i: &mut usize) -> usize {
        let first = b[*i] as usize;
        *i += 1;
        if first < 0x80 {
            return first;
        }
        let n = first & 0x7f;
        let mut v = 0;
        for _ in 0..n {
            v = (v << 8) | b[*i] as usize;
            *i += 1;
        }
        v
    }
    let mut i = 0;
    assert_eq!(der[i], 0x30);
    i += 1;
    read_len(der, &mut i);
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        i += 1;
        let l = read_len(der, &mut i);
        let mut int = &der[i..i + l];
        i += l;
        while int.len() > len && int[0] == 0 {
            int = &int[1..];
        }
        out.extend(std::iter::repeat_n(0u8, len - int.len()));
        out.extend_from_slice(int);
    }
    out
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
