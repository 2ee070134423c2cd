//! The offline toolkit (`--no-default-features`): its dependency tree has no
//! network code, its commands work on a bundle as in the full build, and each
//! command it leaves out says so in one line with the build that has it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{stderr, stdout};

/// Crates that mean AWS SDK, Kubernetes client or HTTP code.
const NETWORK_CRATES: &[&str] = &[
    "aws-config",
    "aws-sdk-",
    "aws-smithy-",
    "kube",
    "kube-client",
    "hyper",
    "hyper-util",
    "reqwest",
    "h2",
    "tokio",
    "rustls",
    "tower",
];

fn is_network_crate(name: &str) -> bool {
    NETWORK_CRATES
        .iter()
        .any(|c| name == *c || (c.ends_with('-') && name.starts_with(c)))
}

/// The normal dependencies of the irsa package with `features`.
fn dependency_names(features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "irsa",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(features)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", stderr(&out));
    let mut names: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn offline_build_links_no_aws_kubernetes_or_http_crate() {
    let offline = dependency_names(&["--no-default-features"]);
    let network: Vec<&String> = offline.iter().filter(|n| is_network_crate(n)).collect();
    assert!(network.is_empty(), "network crates offline: {network:?}");
    // The check itself can fail: the full build has each kind.
    let full = dependency_names(&[]);
    for kind in ["aws-sdk-iam", "kube-client", "hyper", "reqwest"] {
        assert!(
            full.iter().any(|n| n == kind),
            "{kind} not in the full build"
        );
    }
    assert!(
        offline.len() < full.len() / 2,
        "{} vs {}",
        offline.len(),
        full.len()
    );
}

#[cfg(not(feature = "online"))]
mod offline_build {
    use super::common::{run_in, stderr, stdout, tempdir};

    /// Every command the offline build leaves out fails with exit 2 and one
    /// line that names the command and the build that has it.
    #[test]
    fn missing_commands_explain_themselves() {
        let t = tempdir();
        let d = t.path();
        assert!(run_in(d, &["demo", "--dir", "b"]).status.success());
        let cases: &[(&[&str], &str)] = &[
            (&["plan", "-f", "b/irsa.yaml"], "`irsa plan`"),
            (
                &["apply", "-f", "b/irsa.yaml", "--auto-approve"],
                "`irsa apply`",
            ),
            (&["destroy", "-f", "b/irsa.yaml"], "`irsa destroy`"),
            (&["doctor", "-n", "app", "--pod", "p"], "`irsa doctor`"),
            (&["verify", "-n", "app", "-s", "sa"], "`irsa verify`"),
            (
                &["webhook", "serve", "--port", "8443"],
                "`irsa webhook serve`",
            ),
            (
                &["agent", "serve", "--listen", "127.0.0.1:1"],
                "`irsa agent`",
            ),
            (
                &["validate", "b", "--issuer", "https://127.0.0.1:1/x"],
                "over HTTPS",
            ),
            (
                &[
                    "token",
                    "verify",
                    "--jwks",
                    "https://127.0.0.1:1/keys.json",
                    "--issuer",
                    "https://issuer.example.com",
                    "a.b.c",
                ],
                "over HTTPS",
            ),
            (
                &[
                    "bind",
                    "-f",
                    "b/irsa.yaml",
                    "-n",
                    "app",
                    "-s",
                    "web",
                    "--policy-arn",
                    "arn:aws:iam::aws:policy/ReadOnlyAccess",
                    "--account",
                    "123456789012",
                ],
                "--no-plan",
            ),
        ];
        for (args, names) in cases {
            let out = run_in(d, args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
            assert!(err.contains(names), "{args:?}: {err}");
            assert!(
                err.contains("cargo install --path crates/irsa"),
                "{args:?}: names the full build: {err}"
            );
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
    }

    /// The offline commands work on a bundle: bind and unbind with
    /// --no-plan edit irsa.yaml, export and cluster config render.
    #[test]
    fn offline_commands_work_on_a_bundle() {
        let t = tempdir();
        let d = t.path();
        assert!(run_in(d, &["demo", "--dir", "b"]).status.success());
        let bind = run_in(
            d,
            &[
                "bind",
                "-f",
                "b/irsa.yaml",
                "-n",
                "app",
                "-s",
                "web",
                "--policy-arn",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "--account",
                "123456789012",
                "--no-plan",
            ],
        );
        assert!(bind.status.success(), "{}", stderr(&bind));
        assert!(stdout(&bind).contains("arn:aws:iam::123456789012:role/"));
        let config = std::fs::read_to_string(d.join("b/irsa.yaml")).unwrap();
        assert!(config.contains("namespace: app"), "{config}");
        let export = run_in(d, &["export", "terraform", "-f", "b/irsa.yaml"]);
        assert!(export.status.success(), "{}", stderr(&export));
        assert!(stdout(&export).contains("aws_iam_openid_connect_provider"));
        let cluster = run_in(
            d,
            &[
                "cluster",
                "config",
                "-f",
                "b/irsa.yaml",
                "--flavour",
                "flags",
            ],
        );
        assert!(cluster.status.success(), "{}", stderr(&cluster));
        assert!(stdout(&cluster).contains("--service-account-issuer="));
        let unbind = run_in(
            d,
            &[
                "unbind",
                "-f",
                "b/irsa.yaml",
                "-n",
                "app",
                "-s",
                "web",
                "--no-plan",
            ],
        );
        assert!(unbind.status.success(), "{}", stderr(&unbind));
        let config = std::fs::read_to_string(d.join("b/irsa.yaml")).unwrap();
        assert!(!config.contains("namespace: app"), "{config}");
    }
}
