//! Figures for `irsa agent` (docs/pod-identity.md), printed, not asserted:
//! the test bed's API server reviews the tokens, moto on 127.0.0.1 plays
//! STS, and requests go node agent → broker (TLS) as a pod's SDK sends them.
//!
//! ```text
//! KUBEBUILDER_ASSETS=~/.cache/irsa/kubebuilder-assets cargo bench -p irsa --bench agent
//! ```
//! `IRSA_BENCH_PODS` (default 10000) sets the number of pods cached for
//! the memory figure. Every loop is bounded in count and time.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::agent::{get, Env};
use common::testbed::Killed;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

const AUD: &str = common::agent::AUD;

/// Creates pods `PREFIX-0..n` of ServiceAccount s3 on node-a and returns a
/// pod-bound token for each (32 requests at a time).
fn pods_and_tokens(env: &Env, prefix: &str, n: usize) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = env.bed.client().await;
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (client, limit) = (client.clone(), limit.clone());
            let name = format!("{prefix}-{i}");
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": "app"},
                    "spec": {"serviceAccountName": "s3", "nodeName": "node-a",
                             "containers": [{"name": "c", "image": "app"}]}
                }))
                .unwrap();
                let pods = Api::<Pod>::namespaced(client.clone(), "app");
                let uid = pods
                    .create(&PostParams::default(), &pod)
                    .await
                    .unwrap()
                    .metadata
                    .uid
                    .unwrap();
                let request = TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec![AUD.into()],
                        expiration_seconds: Some(3600),
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Pod".into()),
                            name: Some(name),
                            uid: Some(uid),
                        }),
                    },
                    ..Default::default()
                };
                Api::<ServiceAccount>::namespaced(client, "app")
                    .create_token_request("s3", &PostParams::default(), &request)
                    .await
                    .unwrap()
                    .status
                    .unwrap()
                    .token
            }));
        }
        let mut tokens = Vec::with_capacity(n);
        for t in tasks {
            tokens.push(t.await.unwrap());
        }
        tokens
    })
}

/// A sample of the broker's /metrics (`NAME VALUE` lines), 0 if absent.
fn metric(ca: &std::path::Path, port: u16, name: &str) -> f64 {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The sum and count of a histogram on the broker's /metrics.
fn histogram(ca: &std::path::Path, port: u16, name: &str) -> (f64, f64) {
    (
        metric(ca, port, &format!("{name}_sum")),
        metric(ca, port, &format!("{name}_count")),
    )
}

fn rss_kib(child: &Killed) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Fetches `tokens` through the node agent from 16 threads, each token once.
fn fetch_all(port: u16, host: &str, tokens: &[String]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { return };
                let (code, body) = get(port, host, "/v1/credentials", Some(token));
                assert_eq!(code, 200, "{body}");
            });
        }
    });
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pods: usize = std::env::var("IRSA_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let env = Env::start();
    let broker = env.broker(&[]);
    let node_agent = env.node(&broker, &[]);
    let (broker_port, node_port, node) = (broker.port, node_agent.port, node_agent.listen.clone());
    let ca = env.path("certs/ca.crt");
    println!("irsa agent bench: node agent → broker (TLS) → test bed TokenReview, moto STS; 16 client threads, a new connection per request");

    // Cold fetches, one after another: each makes one TokenReview and one AssumeRole.
    let cold_tokens = pods_and_tokens(&env, "cold", 20);
    let review0 = histogram(&ca, broker_port, "irsa_agent_token_review_seconds");
    let assume0 = histogram(&ca, broker_port, "irsa_agent_sts_assume_role_seconds");
    let mut cold = Vec::new();
    for t in &cold_tokens {
        let start = Instant::now();
        let (code, body) = get(node_port, &node, "/v1/credentials", Some(t));
        cold.push(start.elapsed());
        assert_eq!(code, 200, "{body}");
    }
    let review1 = histogram(&ca, broker_port, "irsa_agent_token_review_seconds");
    let assume1 = histogram(&ca, broker_port, "irsa_agent_sts_assume_role_seconds");
    let mean = |d: &[Duration]| d.iter().sum::<Duration>().as_secs_f64() / d.len() as f64;
    let review = (review1.0 - review0.0) / (review1.1 - review0.1).max(1.0);
    let assume = (assume1.0 - assume0.0) / (assume1.1 - assume0.1).max(1.0);
    let cold_mean = mean(&cold);
    println!(
        "cold fetch: {:.2} ms mean over {} pods = TokenReview {:.2} ms + AssumeRole {:.2} ms + {:.2} ms added by node agent and broker",
        cold_mean * 1e3,
        cold.len(),
        review * 1e3,
        assume * 1e3,
        (cold_mean - review - assume) * 1e3
    );

    // Cached fetches of one pod at concurrency 16: at most 16 × 2,000
    // requests or 20 s.
    let token = &cold_tokens[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    for _ in 0..2_000 {
                        if Instant::now() > deadline {
                            break;
                        }
                        let t = Instant::now();
                        let (code, _) = get(node_port, &node, "/v1/credentials", Some(token));
                        mine.push(t.elapsed());
                        assert_eq!(code, 200);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed();
    latencies.sort();
    println!(
        "cached fetch, concurrency 16: {} requests in {:.1} s = {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );

    // 200 pods × 16 concurrent fetches each: one AssumeRole per pod.
    let burst = pods_and_tokens(&env, "burst", 200);
    let before = env.assume_roles().len();
    for t in &burst {
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    barrier.wait();
                    let (code, body) = get(node_port, &node, "/v1/credentials", Some(t));
                    assert_eq!(code, 200, "{body}");
                });
            }
        });
    }
    let calls = env
        .assume_roles()
        .iter()
        .skip(before)
        .filter(|c| c["RoleSessionName"].starts_with("app.burst-"))
        .count();
    println!("200 pods × 16 concurrent fetches: {calls} AssumeRole calls (moto's recording)");

    // Memory with many cached sessions.
    let rss_before = (rss_kib(&broker.process), rss_kib(&node_agent.process));
    let t = Instant::now();
    let many = pods_and_tokens(&env, "many", pods);
    let made = t.elapsed();
    let t = Instant::now();
    fetch_all(node_port, &node, &many);
    println!(
        "{pods} pods: created with tokens in {:.0} s, each fetched once in {:.0} s",
        made.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let rss_after = (rss_kib(&broker.process), rss_kib(&node_agent.process));
    println!(
        "RSS: broker {} KiB → {} KiB with {} cached sessions; node agent {} KiB → {} KiB",
        rss_before.0,
        rss_after.0,
        metric(&ca, broker_port, "irsa_agent_cached_credentials"),
        rss_before.1,
        rss_after.1
    );
}
