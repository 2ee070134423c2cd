//! `irsa webhook serve` started, as a process, with the Go webhook's
//! command lines: every argument is read, each one irsa ignores is
//! reported once, and the run then stops only at what is really missing.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn klog_and_webhook_flags_in_pflag_syntax_start_the_server() {
    let t = tempdir();
    let out = run_in(
        t.path(),
        &[
            "webhook",
            "serve",
            "--in-cluster=false",
            "--sts-regional-endpoint=true",
            "--compose-role-arn=false",
            "--alsologtostderr",
            "--log_dir=/var/log/webhook",
            "--log_file_max_size",
            "100",
            "--stderrthreshold=WARNING",
            "-v=4",
            "--vmodule",
            "cache=5",
            "--resync-period=60s",
            "--port=18443",
            "--tls-cert=missing.crt",
            "--tls-key=missing.key",
            "--kubeconfig=missing.kubeconfig",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for name in [
        "--alsologtostderr",
        "--log_dir",
        "--log_file_max_size",
        "--stderrthreshold",
        "--vmodule",
        "--resync-period",
    ] {
        let warnings = err
            .lines()
            .filter(|l| l.starts_with(&format!("irsa webhook: warning: {name} is ignored")))
            .count();
        assert_eq!(warnings, 1, "one warning for {name}: {err}");
    }
    assert!(
        !err.contains("--in-cluster"),
        "--in-cluster=false is what irsa does: {err}"
    );
    assert!(
        err.contains("missing.kubeconfig") && !err.contains("Usage:"),
        "the flags parsed and the run failed only on the missing kubeconfig: {err}"
    );
}

#[test]
fn version_prints_the_version_in_every_boolean_syntax() {
    let t = tempdir();
    for flag in ["--version", "--version=true", "--version=1"] {
        let out = run_in(t.path(), &["webhook", "serve", flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("irsa "), "{flag}: {text}");
    }
    // =false serves: here it stops at the missing kubeconfig.
    let out = run_in(
        t.path(),
        &[
            "webhook",
            "serve",
            "--version=false",
            "--kubeconfig=missing.kubeconfig",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("missing.kubeconfig"),
        "{}",
        stderr(&out)
    );
}
