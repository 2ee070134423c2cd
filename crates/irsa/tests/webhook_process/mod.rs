//! `irsa webhook serve` as a child process for the hostile-client tests:
//! its memory and CPU from /proc, a raised or lowered descriptor limit,
//! raw TLS clients. Everything talks to 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;

use crate::common::*;

pub use crate::common::webhook::Webhook;

/// `irsa webhook serve` under `ulimit -n fd_limit`, logging at info, with
/// `extra` flags.
pub fn start(dir: &Path, kubeconfig: &Path, fd_limit: u32, extra: &[&str]) -> Webhook {
    let mut flags = vec!["--log", "info"];
    flags.extend_from_slice(extra);
    Webhook::start(
        dir,
        kubeconfig,
        crate::common::webhook::Options {
            flags: &flags,
            fd_limit: Some(fd_limit),
            ..Default::default()
        },
    )
}

/// What the hostile-client tests read off the process.
impl Webhook {
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// (VmRSS, VmHWM) in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
    }

    /// CPU time (user + system) in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of proc(5), counted from `state` (field 3).
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / clock_ticks()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

pub fn connector(dir: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(dir.join("certs/ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    super::common::webhook::tls_client(roots)
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

pub async fn tls(port: u16, c: &tokio_rustls::TlsConnector) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    c.connect(name, tcp).await
}

pub fn https_client(dir: &Path) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(dir.join("certs/ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn wait_healthy(dir: &Path, webhook: &Webhook, path: &str) {
    let client = https_client(dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("https://127.0.0.1:{}{path}", webhook.port);
        if let Ok(r) = client.get(url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "webhook not answering {path} in 30 s: {}",
            webhook.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Soft limit on open files of this process, raised with `prlimit` to
/// `want` when lower (the hard limit permitting).
pub fn ensure_fd_limit(want: u64) {
    let soft = || -> u64 {
        std::fs::read_to_string("/proc/self/limits")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or(0)
    };
    if soft() >= want {
        return;
    }
    let _ = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string()])
        .arg(format!("--nofile={want}:"))
        .status();
    assert!(
        soft() >= want,
        "this test needs {want} open files; raise the limit (ulimit -n {want})"
    );
}

/// A kubeconfig for an API server that is not there (the webhook's watch
/// retries in the background; admissions do not need it).
pub fn absent_apiserver_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("absent.kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: none\n  user:\n    token: none\ncontexts:\n- name: none\n  context: {cluster: none, user: none}\ncurrent-context: none\n",
    )
    .unwrap();
    path
}

pub fn webhook_certs(dir: &Path) {
    let out = run_in(
        dir,
        &[
            "webhook",
            "certs",
            "--ip",
            "127.0.0.1",
            "--out-dir",
            "certs",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
