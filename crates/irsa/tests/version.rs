//! `irsa --version` names the crate version and the git commit the binary
//! was built from, in every place that prints a version.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

/// The commit build.rs should have found: git's answer in this checkout,
/// else `IRSA_GIT_COMMIT`, else `unknown`.
fn expected_commit() -> String {
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match git {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap().trim().into(),
        _ => std::env::var("IRSA_GIT_COMMIT").unwrap_or_else(|_| "unknown".into()),
    }
}

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let want = format!(
        "irsa {} (commit {})\n",
        env!("CARGO_PKG_VERSION"),
        expected_commit()
    );
    let t = tempdir();
    let out = run_in(t.path(), &["--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), want);
    // Subcommands print the same after their own name.
    let out = run_in(t.path(), &["webhook", "--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let version = want.strip_prefix("irsa").unwrap();
    assert!(stdout(&out).ends_with(version), "{}", stdout(&out));
}

#[cfg(feature = "online")]
#[test]
fn the_go_webhook_version_flag_prints_the_same() {
    let t = tempdir();
    let out = run_in(t.path(), &["webhook", "serve", "--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "irsa {} (commit {})\n",
            env!("CARGO_PKG_VERSION"),
            expected_commit()
        )
    );
}
