//! The shared test bed: a real kube-apiserver v1.28.7 + etcd on 127.0.0.1
//! (`../shared/testbed/start.sh`). Found through `IRSA_TESTBED`; when absent
//! the test is skipped with a message, unless `IRSA_REQUIRE_TESTBED=1`
//! (set by `.ci/run`), which turns absence into a failure.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running bed; stopped on drop (also when a test panics).
pub struct Testbed {
    script: PathBuf,
    /// Its working directory.
    pub workdir: PathBuf,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
}

fn locate() -> Option<PathBuf> {
    let candidate = std::env::var_os("IRSA_TESTBED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testbed"));
    candidate.join("start.sh").is_file().then_some(candidate)
}

impl Testbed {
    /// Starts a bed trusting `public_key` and signing with `private_key` for `issuer`,
    /// or returns None (skip) when the bed is not available and not required.
    pub fn start(
        workdir: &Path,
        private_key: &Path,
        public_key: &Path,
        issuer: &str,
    ) -> Option<Self> {
        Self::start_with(
            workdir,
            &[
                ("SA_SIGNING_KEY", private_key.display().to_string()),
                ("SA_KEY_FILES", public_key.display().to_string()),
                ("SA_ISSUER", issuer.to_string()),
            ],
        )
    }

    /// Starts a bed with `env` for start.sh (SA_SIGNING_KEY, SA_KEY_FILES,
    /// SA_ISSUER, API_AUDIENCES, EXTRA_APISERVER_ARGS, ...), or returns None
    /// (skip) when the bed is not available and not required.
    pub fn start_with(workdir: &Path, env: &[(&str, String)]) -> Option<Self> {
        let Some(dir) = locate() else {
            let required = std::env::var("IRSA_REQUIRE_TESTBED").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "IRSA_REQUIRE_TESTBED=1 but no test bed at $IRSA_TESTBED or ../shared/testbed"
            );
            eprintln!("SKIPPED: no Kubernetes test bed (set IRSA_TESTBED to the directory holding start.sh)");
            return None;
        };
        let script = dir.join("start.sh");
        let bed = workdir.join("bed");
        let out = Command::new(&script)
            .arg(&bed)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("start.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let ready = stdout.lines().rev().find_map(|l| l.strip_prefix("READY "));
        let Some(kubeconfig) = ready else {
            panic!(
                "test bed did not start:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        Some(Self {
            script,
            workdir: bed.clone(),
            kubeconfig: PathBuf::from(kubeconfig.trim()),
        })
    }

    /// A kube client with admin rights.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.workdir)
            .output();
    }
}
