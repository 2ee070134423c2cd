//! `irsa webhook serve` as the tests against the test bed start it: on
//! 127.0.0.1 with the serving pair `Testbed::for_webhook` wrote into
//! `DIR/certs`, the bed's kubeconfig, its log in a file, killed and reaped
//! when dropped; and waiting until it is ready.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::testbed::{free_port, Killed};

/// A running webhook.
pub struct Webhook {
    /// The process.
    pub child: Killed,
    /// Its HTTPS port.
    pub port: u16,
    /// Its metrics port.
    pub metrics_port: u16,
    /// Its log (stderr).
    pub log: PathBuf,
    dir: PathBuf,
}

/// How to start it beyond the defaults.
pub struct Options<'a> {
    /// The HTTPS port (a free one when `None`).
    pub port: Option<u16>,
    /// The log file's name in the directory.
    pub log: &'a str,
    /// More flags, after the defaults.
    pub flags: &'a [&'a str],
    /// Its open-file limit (`ulimit -n`), when not inherited.
    pub fd_limit: Option<u32>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            port: None,
            log: "webhook.log",
            flags: &[],
            fd_limit: None,
        }
    }
}

impl Webhook {
    /// Starts `irsa webhook serve` in `dir` against `kubeconfig`.
    pub fn start(dir: &Path, kubeconfig: &Path, options: Options<'_>) -> Self {
        let port = options.port.unwrap_or_else(free_port);
        let metrics_port = free_port();
        let log = dir.join(options.log);
        let mut command = match options.fd_limit {
            None => super::irsa(),
            Some(limit) => {
                let mut sh = std::process::Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_irsa"));
                sh
            }
        };
        let child = command
            .current_dir(dir)
            .args(["webhook", "serve", "--bind-address", "127.0.0.1"])
            .args(["--tls-cert", "certs/tls.crt", "--tls-key", "certs/tls.key"])
            .args(["--port", &port.to_string()])
            .args(["--metrics-port", &metrics_port.to_string()])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(options.flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child: Killed(child),
            port,
            metrics_port,
            log,
            dir: dir.to_path_buf(),
        }
    }

    /// [`Webhook::start`] on `port` (a test that registers it first).
    pub fn on_port(dir: &Path, kubeconfig: &Path, port: u16) -> Self {
        Self::start(
            dir,
            kubeconfig,
            Options {
                port: Some(port),
                ..Options::default()
            },
        )
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 30 s for `/readyz` to answer 200 (trusting the CA of
    /// `DIR/certs`); fails the test with the log otherwise.
    pub async fn ready(&self) {
        super::pods::wait_ready(&self.dir.join("certs/ca.crt"), self.port, || self.log()).await;
    }
}

/// A TLS client trusting only `roots` (rustls's safe defaults otherwise).
pub fn tls_client(roots: rustls::RootCertStore) -> tokio_rustls::TlsConnector {
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}
