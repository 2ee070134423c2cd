//! `irsa webhook serve` as a process under hostile clients: out of file
//! descriptors, and 1,000 idle TLS connections plus stalled largest-size
//! uploads while the real API server (the test bed) sends pods and
//! a client measures ordinary admissions. Prints the figures; every loop
//! is bounded in count and time; everything talks to 127.0.0.1.
// It drives `irsa webhook serve` of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;
mod webhook_process;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::testbed::{register_webhook, Testbed, WebhookRegistration};
use common::*;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webhook_process::*;

const ROLE: &str = "arn:aws:iam::111122223333:role/attack";
const ISSUER: &str = "https://oidc.irsa.test/attack";
const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_does_not_pin_a_core() {
    let t = tempdir();
    let d = t.path();
    webhook_certs(d);
    let kubeconfig = absent_apiserver_kubeconfig(d);
    // 64 descriptors, and a connection cap above that: accept runs out of
    // descriptors with connections still waiting in the kernel's queue.
    let webhook = webhook_process::start(
        d,
        &kubeconfig,
        64,
        &[
            "--max-connections",
            "1000",
            "--tls-handshake-timeout-seconds",
            "30",
        ],
    );
    wait_healthy(d, &webhook, "/healthz").await;
    let mut hoard = Vec::new();
    for _ in 0..100 {
        hoard.push(
            tokio::net::TcpStream::connect(("127.0.0.1", webhook.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = webhook.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = webhook.cpu_seconds() - before;
    println!(
        "out of descriptors with 100 connections queued: webhook used {cpu:.2} s of CPU in 3 s"
    );
    let log = webhook.log_text();
    assert!(
        log.contains("accepting a connection failed"),
        "accept errors are logged: {log}"
    );
    assert!(
        cpu < 0.6,
        "the accept loop backs off: {cpu:.2} s of CPU in 3 s"
    );
    // Once descriptors are free again, the webhook serves.
    drop(hoard);
    wait_healthy(d, &webhook, "/healthz").await;
}

fn review(namespace: &str, sa: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "normal", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
            "operation": "CREATE", "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
                "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "nginx"}]}}}}))
    .unwrap()
}

/// Sizes of the attack (idle connections, stalled uploads, connections
/// stuffed with an unfinished 15 KiB head); `IRSA_ATTACK_IDLE`,
/// `IRSA_ATTACK_UPLOADS`, `IRSA_ATTACK_STUFFED` override them, and
/// `IRSA_ATTACK_ARGS` adds webhook flags (e.g. `--max-connections 1200`).
fn attack_size() -> (usize, usize, usize) {
    let get = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        get("IRSA_ATTACK_IDLE", 1000),
        get("IRSA_ATTACK_UPLOADS", 40),
        get("IRSA_ATTACK_STUFFED", 100),
    )
}

/// A metric's value from the webhook's /metrics.
async fn metric(webhook: &Webhook, series: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", webhook.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn idle_connections_and_stalled_uploads_leave_memory_bounded_and_admissions_flowing() {
    let (idle, uploads, stuffed) = attack_size();
    ensure_fd_limit((idle + uploads + stuffed + 512) as u64);
    let t = tempdir();
    let d = t.path();
    assert!(run_in(
        d,
        &[
            "init",
            "--cluster",
            "attack",
            "--issuer",
            ISSUER,
            "--dir",
            "b"
        ]
    )
    .status
    .success());
    let bed = Testbed::start(
        d,
        &d.join("b/keys/sa-signer.key"),
        &d.join("b/keys/sa-signer.pub"),
        ISSUER,
    );
    webhook_certs(d);
    let client = bed.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("attack".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "attack");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("app".into()),
            annotations: Some(
                [("eks.amazonaws.com/role-arn".to_string(), ROLE.to_string())].into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &sa).await.unwrap();

    // Default limits, as deployed; descriptors enough for the attack.
    let extra = std::env::var("IRSA_ATTACK_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let webhook = webhook_process::start(d, &bed.kubeconfig, 8192, &extra);
    wait_healthy(d, &webhook, "/readyz").await;
    register_webhook(
        &client,
        WebhookRegistration {
            name: "irsa-attack",
            port: webhook.port,
            ca_pem: std::fs::read(d.join("certs/ca.crt")).unwrap(),
            timeout_seconds: 10,
            reinvocation: None,
        },
    )
    .await;
    // The apiserver picks up webhook configurations asynchronously.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let normal = https_client(d);
    let url = format!("https://127.0.0.1:{}/mutate", webhook.port);
    let body = review("attack", "app");
    for _ in 0..20 {
        let r = normal
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.text().await.unwrap().contains("\"patch\""));
    }
    let (rss_before, _) = webhook.memory();

    // The RSS sampler.
    let done = Arc::new(AtomicBool::new(false));
    let peak_sampled = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak_sampled.clone());
        let pid = webhook.pid();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kib) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                {
                    peak.fetch_max(kib * 1024, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // 1. Idle TLS connections: handshake done, then silence.
    let c = connector(d);
    let started = Instant::now();
    let mut idle_conns = Vec::with_capacity(idle);
    let mut opened = 0usize;
    for chunk in 0..idle.div_ceil(50) {
        let batch: Vec<_> = (0..50.min(idle - chunk * 50))
            .map(|_| {
                let c = c.clone();
                let port = webhook.port;
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_secs(20), tls(port, &c)).await
                })
            })
            .collect();
        for b in batch {
            if let Ok(Ok(Ok(conn))) = b.await {
                idle_conns.push(conn);
                opened += 1;
            }
        }
    }
    let idle_time = started.elapsed();

    // 1b. Connections that send most of a request head and stall.
    let mut stuffed_conns = Vec::new();
    for _ in 0..stuffed {
        if let Ok(mut s) = tls(webhook.port, &c).await {
            let mut head = b"POST /mutate HTTP/1.1\r\nhost: x\r\nx-pad: ".to_vec();
            head.resize(15 * 1024, b'a');
            if s.write_all(&head).await.is_ok() {
                stuffed_conns.push(s);
            }
        }
    }

    // 2. Largest-size uploads that stall 1 KiB before the end.
    let max = 3 * MIB as usize;
    let payload = Arc::new(vec![b' '; max - 1024]);
    let upload_tasks: Vec<_> = (0..uploads)
        .map(|_| {
            let (c, payload, port) = (c.clone(), payload.clone(), webhook.port);
            tokio::spawn(async move {
                let Ok(mut s) = tls(port, &c).await else {
                    return String::from("no connection");
                };
                let head = format!("POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {max}\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = tokio::time::timeout(Duration::from_secs(20), s.write_all(&payload)).await;
                let mut seen = Vec::new();
                let mut buf = [0u8; 512];
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                        Err(_) => {}
                    }
                }
                String::from_utf8_lossy(&seen).lines().next().unwrap_or("closed").to_string()
            })
        })
        .collect();

    // 3. Ordinary admissions meanwhile, from four keep-alive clients.
    let attack_for = Duration::from_secs(15);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (normal, url, body) = (normal.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), Vec::new());
                let start = Instant::now();
                while start.elapsed() < attack_for && latencies.len() + failed.len() < 50_000 {
                    let t = Instant::now();
                    match normal
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => match r.text().await {
                            Ok(text) if text.contains("\"patch\"") => latencies.push(t.elapsed()),
                            other => failed.push(format!("{other:?}")),
                        },
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (latencies, failed)
            })
        })
        .collect();

    // 4. Pods created through the API server during the attack.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "attack");
    let mut mutated_pods = 0;
    for i in 0..5 {
        let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("during-{i}")},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "busybox"}]}}))
        .unwrap();
        let stored = pods.create(&PostParams::default(), &pod).await.unwrap();
        let volumes = stored.spec.unwrap().volumes.unwrap_or_default();
        mutated_pods += usize::from(volumes.iter().any(|v| v.name == "aws-iam-token"));
    }

    let (mut latencies, mut failed) = (Vec::new(), Vec::new());
    for w in workers {
        let (l, f) = w.await.unwrap();
        latencies.extend(l);
        failed.extend(f);
    }
    let mut answers = Vec::new();
    for u in upload_tasks {
        answers.push(u.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let (rss_after, hwm) = webhook.memory();
    let peak = peak_sampled.load(Ordering::Relaxed).max(hwm);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let cut = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 408"))
        .count();
    let evicted = metric(
        &webhook,
        "irsa_webhook_connections_cut_total{kind=\"evicted_idle\"}",
    )
    .await;
    let slow_heads = metric(
        &webhook,
        "irsa_webhook_connections_cut_total{kind=\"header_timeout\"}",
    )
    .await;
    let body_peak = metric(&webhook, "irsa_webhook_request_body_bytes_peak").await;
    println!(
        "attack: {opened}/{idle} idle TLS connections (opened in {idle_time:.1?}), {uploads} stalled uploads of {} MiB ({cut} cut at the body deadline with 408)",
        max as u64 / MIB
    );
    println!(
        "{} connections with an unfinished 15 KiB head ({slow_heads} cut at the header timeout); {evicted} idle connections closed to make room; request bodies held at most {:.1} MiB",
        stuffed_conns.len(),
        body_peak / MIB as f64
    );
    println!(
        "webhook RSS: {:.1} MiB before, peak {:.1} MiB (VmHWM {:.1} MiB), {:.1} MiB after; limit 128 MiB",
        rss_before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        hwm as f64 / MIB as f64,
        rss_after as f64 / MIB as f64
    );
    println!(
        "ordinary admissions during the attack: {} ok, {} failed; p50 {:?}, p99 {:?}, max {:?}; pods via the API server mutated: {mutated_pods}/5",
        latencies.len(),
        failed.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap()
    );
    let stalled_heads = stuffed_conns.len();
    drop((idle_conns, stuffed_conns));
    assert_eq!(opened, idle, "every idle connection was accepted");
    assert!(
        slow_heads as usize >= stalled_heads,
        "every stalled head is cut at the header timeout: {slow_heads} of {stalled_heads}"
    );
    assert!(
        failed.is_empty(),
        "failed admissions: {:?}",
        &failed[..failed.len().min(3)]
    );
    assert!(latencies.len() > 100, "the load ran");
    assert_eq!(mutated_pods, 5);
    assert_eq!(
        cut, uploads,
        "every stalled upload ended at the body deadline: {answers:?}"
    );
    assert!(peak < 128 * MIB, "peak RSS {peak} over the 128 MiB limit");
    let log = webhook.log_text();
    assert!(!log.contains("panicked"), "{log}");
    drop(bed);
}
