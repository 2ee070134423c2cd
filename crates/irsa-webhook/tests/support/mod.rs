//! Helpers for the server tests: certificates, settings, raw TLS and TCP
//! clients that misbehave on purpose. Everything talks to 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use irsa_webhook::cache::SaStore;
use irsa_webhook::Settings;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";

/// Writes a CA (ca.crt) and a 127.0.0.1 serving pair (tls.crt/tls.key)
/// into `dir`; `validity` sets the leaf's notBefore/notAfter.
pub fn write_certs_valid(
    dir: &Path,
    cn: &str,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec![cn.to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params
        .subject_alt_names
        .push(SanType::IpAddress("::1".parse().unwrap()));
    if let Some((not_before, not_after)) = validity {
        params.not_before = not_before;
        params.not_after = not_after;
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

/// [`write_certs_valid`] with rcgen's default (long) validity.
pub fn write_certs(dir: &Path, cn: &str) {
    write_certs_valid(dir, cn, None);
}

pub fn settings(dir: &Path) -> Settings {
    Settings {
        port: 0,
        metrics_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        metrics_bind_address: None,
        tls_cert: dir.join("tls.crt"),
        tls_key: dir.join("tls.key"),
        tls_cipher_suites: None,
        tls_min_version: None,
        http2: false,
        enable_debugging_handlers: false,
        tls_reload_seconds: 1,
        max_request_bytes: 64 * 1024,
        limits: Default::default(),
        shutdown_seconds: 5,
        shutdown_delay_seconds: 0,
        kubeconfig: None,
        kube_api: None,
        sa_lookup_timeout_ms: 100,
        sa_lookup_concurrency: 8,
        annotation_prefix: "eks.amazonaws.com".into(),
        token_audience: "sts.amazonaws.com".into(),
        token_mount_path: "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
        token_expiration: 86400,
        aws_default_region: String::new(),
        sts_regional_endpoint: false,
        watch_config_map: false,
        compose_role_arn: false,
        aws_account_id: None,
        aws_partition: None,
        imds_endpoint: "http://127.0.0.1:1".into(),
        fs_group: None,
        pod_identity: Default::default(),
        go_compat: Default::default(),
    }
}

pub fn store_with_role() -> SaStore {
    let store = SaStore::new("eks.amazonaws.com");
    let annotations: BTreeMap<String, String> =
        [("eks.amazonaws.com/role-arn".to_string(), ROLE.to_string())].into();
    store.apply("default", "s3", Some(&annotations));
    store
}

pub fn client(ca_dir: &Path) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(ca_dir.join("ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// An AdmissionReview for a pod running as `sa` in `default`.
pub fn review_for(sa: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "918ef1dc-928f-4525-99ef-988389f263c3",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "amazonlinux"}]}}
        }
    })
}

/// What a test's TLS client offers; the default is rustls's safe
/// protocol versions, every cipher suite and no ALPN.
#[derive(Default)]
pub struct Offer<'a> {
    /// Only these protocol versions.
    pub versions: Option<&'a [&'static rustls::SupportedProtocolVersion]>,
    /// Only this cipher suite.
    pub suite: Option<rustls::CipherSuite>,
    /// The ALPN protocols, in order of preference.
    pub alpn: &'a [&'a [u8]],
}

/// A TLS client trusting only `dir/ca.crt` that offers `offer`.
pub fn connector_offering(dir: &Path, offer: Offer<'_>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(suite) = offer.suite {
        provider.cipher_suites.retain(|s| s.suite() == suite);
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider));
    let builder = match offer.versions {
        Some(versions) => builder.with_protocol_versions(versions),
        None => builder.with_safe_default_protocol_versions(),
    };
    let mut config = builder
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = offer.alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS client trusting only `dir/ca.crt`.
pub fn connector(dir: &Path) -> tokio_rustls::TlsConnector {
    connector_offering(dir, Offer::default())
}

/// Whether a TLS handshake with `addr` completes.
pub async fn handshakes(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> bool {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.is_ok()
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to `addr` with its handshake done.
pub async fn tls(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> Tls {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Reads until the server closes the connection (EOF or error); returns
/// how long that took, or `None` if it is still open after `limit`.
/// Everything read is appended to `seen`.
pub async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
    seen: &mut Vec<u8>,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one complete keep-alive POST and reads its answer (status, body).
pub async fn exchange(stream: &mut Tls, body: &[u8]) -> (u16, Vec<u8>) {
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    read_response(stream).await
}

/// Reads one HTTP/1.1 response with a Content-Length body.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let status: u16 = head[9..12].parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                return (status, data[end + 4..end + 4 + length].to_vec());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed before a whole response: {data:?}");
        data.extend_from_slice(&buf[..n]);
    }
}

/// The value of one series in an exposition text.
pub fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub async fn scrape(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
