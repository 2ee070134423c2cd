//! `/mutate` over TLS with keep-alive at fixed concurrency, next to a bare
//! hyper+rustls server answering a canned AdmissionReview and next to the
//! webhook with its connection limits, deadlines and byte budget switched
//! off (what the hardening costs), in the same run, interleaved; then
//! resident memory with 100k ServiceAccounts in the cache.
//! Run with `cargo bench -p irsa-webhook --bench admission`.
//! Everything listens on 127.0.0.1; every loop is bounded in count and time.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use irsa_webhook::cache::SaStore;
use irsa_webhook::Settings;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;

const CONCURRENCY: usize = 16;
const DURATION: Duration = Duration::from_secs(3);
/// Rounds per server (`BENCH_ROUNDS` overrides).
const ROUNDS: usize = 3;
const MAX_REQUESTS: usize = 2_000_000;

fn certs(dir: &Path) {
    let mut params = CertificateParams::new(vec!["bench".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

fn review() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "918ef1dc-928f-4525-99ef-988389f263c3",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE", "userInfo": {"username": "admin"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"serviceAccountName": "s3", "containers": [
                    {"name": "app", "image": "amazonlinux", "env": [{"name": "A", "value": "1"}],
                     "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]},
                    {"name": "sidecar", "image": "envoy"}],
                    "volumes": [{"name": "kube-api-access", "projected": {"sources": []}}]}}
        }
    }))
    .unwrap()
}

fn settings(dir: &Path) -> Settings {
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
        tls_reload_seconds: 60,
        max_request_bytes: 3 << 20,
        limits: Default::default(),
        shutdown_seconds: 1,
        shutdown_delay_seconds: 0,
        kubeconfig: None,
        kube_api: None,
        sa_lookup_timeout_ms: 100,
        sa_lookup_concurrency: 8,
        annotation_prefix: "eks.amazonaws.com".into(),
        token_audience: "sts.amazonaws.com".into(),
        token_mount_path: "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
        token_expiration: 86400,
        aws_default_region: "us-west-2".into(),
        sts_regional_endpoint: true,
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

/// A bare server: TLS + HTTP/1.1 + a fixed response body, nothing else;
/// with `parse`, it also reads the body into a `serde_json::Value` (the
/// least any webhook must do), to show what JSON alone costs.
async fn bare_server(dir: &Path, canned: Bytes, parse: bool) -> SocketAddr {
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("tls.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, canned) = (acceptor.clone(), canned.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let canned = canned.clone();
                        async move {
                            let body = req.into_body().collect().await;
                            if let (true, Ok(body)) = (parse, body) {
                                let review: Result<serde_json::Value, _> =
                                    serde_json::from_slice(&body.to_bytes());
                                std::hint::black_box(review.is_ok());
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(canned)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

struct Result_ {
    /// Process CPU time (user + system, client included) per admission.
    cpu_us: f64,
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// Median throughput, p99 and CPU per admission of several rounds.
fn median(runs: &[Result_]) -> (f64, Duration, f64) {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut p99: Vec<Duration> = runs.iter().map(|r| r.p99).collect();
    p99.sort();
    (
        mid(runs.iter().map(|r| r.rps).collect()),
        p99[p99.len() / 2],
        mid(runs.iter().map(|r| r.cpu_us).collect()),
    )
}

async fn load(addr: SocketAddr, body: Bytes, duration: Duration) -> Result_ {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NoVerify))
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (connector, body) = (connector.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let tls = connector
                .connect(
                    rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                    tcp,
                )
                .await
                .unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while start.elapsed() < duration && lat.len() < MAX_REQUESTS / CONCURRENCY {
                let req = hyper::Request::post("/mutate")
                    .header("content-type", "application/json")
                    .header("host", "127.0.0.1")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let t = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = resp.into_body().collect().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - cpu_start;
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Result_ {
        cpu_us: cpu * 1e6 / all.len().max(1) as f64,
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    }
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// CPU time of the process's live threads, in seconds (the first field of
/// each `/proc/self/task/*/schedstat` is nanoseconds on a CPU).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        certs(dir.path());
        let store = SaStore::new("eks.amazonaws.com");
        let role: BTreeMap<String, String> = [("eks.amazonaws.com/role-arn".to_string(), "arn:aws:iam::111122223333:role/s3-reader".to_string())].into();
        store.apply("default", "s3", Some(&role));
        let ours = irsa_webhook::run(settings(dir.path()), None, Some(store.clone())).await.unwrap();
        let unlimited = irsa_webhook::server::start(settings(dir.path()), None, Some(store.clone()), irsa_webhook::server::Hardening::Off).await.unwrap();
        let body = Bytes::from(review());

        // The canned answer is the webhook's real answer, so both send the same bytes.
        let canned = {
            let h = irsa_webhook::admission::Handler {
                store: store.clone(),
                client: None,
                config: Arc::new(settings(dir.path()).mutation()),
                pod_identities: None,
                lookup_timeout: Duration::from_millis(100),
                metrics: Arc::default(),
            };
            let t = Instant::now();
            let n = 20_000;
            for _ in 0..n {
                std::hint::black_box(h.review(&body).await);
            }
            println!("Handler::review alone: {:.1} µs per admission (single thread, {n} runs)", t.elapsed().as_secs_f64() * 1e6 / n as f64);
            let t = Instant::now();
            for _ in 0..n {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                std::hint::black_box(irsa_core::mutate::mutate_pod(&v["request"]["object"], store.get("default", "s3").unwrap().as_deref(), &settings(dir.path()).mutation()).unwrap());
            }
            println!("parse + mutate_pod alone: {:.1} µs per admission", t.elapsed().as_secs_f64() * 1e6 / n as f64);
            Bytes::from(h.review(&body).await)
        };
        let bare = bare_server(dir.path(), canned.clone(), false).await;
        let parsing = bare_server(dir.path(), canned, true).await;

        println!(
            "POST /mutate over TLS, keep-alive, {CONCURRENCY} connections, 127.0.0.1; rounds of {}s per server, interleaved; medians",
            DURATION.as_secs()
        );
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let servers = [
            ("bare hyper+rustls", bare),
            ("bare + serde_json::Value", parsing),
            ("irsa webhook, limits off", unlimited.addr),
            ("irsa webhook", ours.addr),
        ];
        let wanted: Vec<_> = servers
            .iter()
            .filter(|(name, _)| only.is_empty() || name.contains(only.as_str()))
            .collect();
        for (_, addr) in &wanted {
            let _warm = load(*addr, body.clone(), Duration::from_secs(1)).await;
        }
        let mut runs: Vec<Vec<Result_>> = wanted.iter().map(|_| Vec::new()).collect();
        let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS).clamp(1, 20);
        for _ in 0..rounds {
            for (i, (_, addr)) in wanted.iter().enumerate() {
                runs[i].push(load(*addr, body.clone(), DURATION).await);
            }
        }
        println!("{:<26} {:>12} {:>9} {:>9} {:>13} {:>7}", "server", "admissions/s", "p50 (µs)", "p99 (µs)", "CPU µs/adm.", "errors");
        for ((name, _), rounds) in wanted.iter().zip(&runs) {
            for r in rounds {
                println!("{name:<26} {:>12.0} {:>9} {:>9} {:>13.1} {:>7}", r.rps, r.p50.as_micros(), r.p99.as_micros(), r.cpu_us, r.errors);
            }
        }
        let medians: Vec<_> = runs.iter().map(|r| median(r)).collect();
        for ((name, _), m) in wanted.iter().zip(&medians) {
            println!("median {name:<26} {:>8.0}/s  p99 {:>5} µs  CPU {:>5.1} µs per admission (client included)", m.0, m.1.as_micros(), m.2);
        }
        if let (Some(off), Some(on)) = (
            wanted.iter().position(|(n, _)| *n == "irsa webhook, limits off"),
            wanted.iter().position(|(n, _)| *n == "irsa webhook"),
        ) {
            let (off, on) = (&medians[off], &medians[on]);
            let throughput = on.0 / off.0;
            println!("limits on vs off:          throughput {throughput:.3}x (goal >= 0.95x: {}), p99 {:.2}x, CPU per admission {:.3}x", goal(throughput >= 0.95), on.1.as_secs_f64() / off.1.as_secs_f64(), on.2 / off.2);
        }
        if wanted.len() == servers.len() {
            let (b, p, o) = (&medians[0], &medians[1], &medians[3]);
            let (throughput, p99) = (o.0 / b.0, o.1.as_secs_f64() / b.1.as_secs_f64());
            println!("ratio to bare:            throughput {throughput:.2}x (goal >= 0.9x: {}), p99 {p99:.2}x (goal <= 1.2x: {}), CPU per admission {:.2}x", goal(throughput >= 0.9), goal(p99 <= 1.2), o.2 / b.2);
            println!("ratio to bare + JSON read: throughput {:.2}x, p99 {:.2}x, CPU per admission {:.2}x", o.0 / p.0, o.1.as_secs_f64() / p.1.as_secs_f64(), o.2 / p.2);
        }

        let before = rss_kib();
        let annotations: BTreeMap<String, String> = [
            ("eks.amazonaws.com/role-arn".to_string(), "arn:aws:iam::111122223333:role/some-application-role".to_string()),
            ("eks.amazonaws.com/token-expiration".to_string(), "3600".to_string()),
        ]
        .into();
        for i in 0..100_000 {
            let ns = format!("namespace-{:04}", i % 2000);
            let name = format!("service-account-{i:06}");
            store.apply(&ns, &name, (i % 4 == 0).then_some(&annotations));
        }
        let after = rss_kib();
        println!(
            "ServiceAccount cache: {} entries (1 in 4 with a role); RSS of this whole bench process (servers and load client) {:.1} MiB, of which the cache added {:.1} MiB (goal for the cache <= 64 MiB: {})",
            store.len(),
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / 1024.0,
            goal(after.saturating_sub(before) <= 64 * 1024)
        );
        ours.shutdown();
        ours.wait().await;
        unlimited.shutdown();
        unlimited.wait().await;
    });
}

/// How a figure stands against its goal, printed beside it.
fn goal(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}
