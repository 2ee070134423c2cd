//! Records the git commit the binary is built from, for `irsa --version`:
//! `git rev-parse` in the source tree when it answers, else the environment
//! variable `IRSA_GIT_COMMIT` (a build from a source archive), else
//! `unknown`. The result is the compile-time variable `IRSA_GIT_COMMIT`.

use std::path::Path;
use std::process::Command;

/// What `git ARGS` prints in this crate's directory, trimmed; None when git
/// is missing, fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A commit id as given by a person: hex digits only, 7 to 64 of them.
fn plausible(commit: &str) -> bool {
    (7..=64).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Asks cargo to run this script again when HEAD moves: HEAD itself, the
/// branch it names (a loose ref or packed-refs). Only files that exist are
/// named: cargo takes a missing one as changed and would rebuild every time.
fn watch_head() {
    let mut paths = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    for path in paths {
        if let Some(file) = git(&["rev-parse", "--git-path", &path]) {
            // Relative paths are relative to the directory git ran in.
            let file = Path::new(&dir).join(file);
            if file.is_file() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=IRSA_GIT_COMMIT");
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            watch_head();
            commit
        }
        None => match std::env::var("IRSA_GIT_COMMIT") {
            Ok(commit) if plausible(&commit) => commit,
            Ok(commit) => panic!(
                "IRSA_GIT_COMMIT={commit:?} is not a commit id: set it to the hex id of the \
                 commit being built (git rev-parse HEAD), or unset it"
            ),
            Err(_) => "unknown".to_string(),
        },
    };
    println!("cargo:rustc-env=IRSA_GIT_COMMIT={commit}");
}
