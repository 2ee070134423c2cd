//! What the webhook adds to a pod create, seen from a client of the API
//! server (docs/webhook.md, "The tail of a pod create"). Printed, not
//! asserted, except that each arm really did what it is named for.
//!
//! One client creates pods one after another through the test bed's
//! kube-apiserver, in rounds that interleave three arms (this machine is
//! noisy, so the arms share its noise):
//! - `none`: no webhook registered;
//! - `replay`: the least a webhook adding irsa's patch can cost (see
//!   [`start_replay`]);
//! - `irsa h1`: `irsa webhook serve --http2=false` (the default), HTTP/1.1 only;
//! - `irsa h2`: `irsa webhook serve --http2`, offering h2 in ALPN too.
//!
//! The API server offers only http/1.1, so the two irsa arms are the same
//! server doing the same work: their difference is the noise of the
//! machine, printed beside the rest.
//!
//! Each arm's webhook configuration is put in place before its round and
//! the round starts once a warm-up pod comes back mutated (or, for
//! `none`, not). It then prints the latency percentiles of each arm, what
//! each adds to `none`, and the connections the API server opened to each
//! webhook (from the webhook's own metrics).
//!
//! ```text
//! KUBEBUILDER_ASSETS=~/.cache/irsa/kubebuilder-assets cargo bench -p irsa --bench pod_create
//! ```
//! `IRSA_BENCH_IRSA` names the irsa binary to run as the webhooks (default:
//! the one this bench was built with; give it the shipping build to measure
//! that). `IRSA_BENCH_CREATES` (default 500) sets the creates per arm and round;
//! `IRSA_BENCH_ROUNDS` (default 3) the rounds. Every loop is bounded in
//! count and time.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pods::{namespace, service_account, wait_ready};
use common::testbed::{free_port, register_webhook, Killed, Testbed, WebhookRegistration};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const NS: &str = "bench";

struct Webhook {
    _child: Killed,
    port: u16,
    metrics_port: u16,
}

fn start_webhook(dir: &Path, kubeconfig: &Path, name: &str, extra: &[&str]) -> Webhook {
    let (port, metrics_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut command = match std::env::var_os("IRSA_BENCH_IRSA") {
        Some(binary) => std::process::Command::new(binary),
        None => common::irsa(),
    };
    let child = command
        .current_dir(dir)
        .args(["webhook", "serve", "--bind-address", "127.0.0.1"])
        .args(["--tls-cert", "certs/tls.crt", "--tls-key", "certs/tls.key"])
        .args(["--port", &port.to_string()])
        .args(["--metrics-port", &metrics_port.to_string()])
        .args(["--aws-default-region", "us-west-2"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .args(["--log", "info,irsa_webhook::tls=debug"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Webhook {
        _child: Killed(child),
        port,
        metrics_port,
    }
}

/// A webhook that answers every review with the patch irsa gave for the
/// first one it saw (asked of `irsa_port` once, in the warm-up): all pods
/// of the run have the same spec, so the API server applies the same patch
/// as with irsa, while the server itself does the least a webhook can
/// (hyper + rustls, read the body, copy its uid). The floor any webhook
/// that adds this patch stands on.
async fn start_replay(dir: &Path, irsa_port: u16) -> u16 {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::{Arc, Mutex};

    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("certs/tls.crt"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("certs/tls.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(dir.join("certs/ca.crt")).unwrap()).unwrap();
    let irsa = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let patch: Arc<Mutex<Option<String>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, irsa, patch) = (acceptor.clone(), irsa.clone(), patch.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (irsa, patch) = (irsa.clone(), patch.clone());
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let review: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let known = patch.lock().unwrap().clone();
                            let p = match known {
                                Some(p) => p,
                                None => {
                                    let answer = irsa
                                        .post(format!("https://127.0.0.1:{irsa_port}/mutate"))
                                        .header("content-type", "application/json")
                                        .body(body.to_vec())
                                        .send()
                                        .await
                                        .unwrap()
                                        .bytes()
                                        .await
                                        .unwrap();
                                    let answer: serde_json::Value =
                                        serde_json::from_slice(&answer).unwrap();
                                    let p =
                                        answer["response"]["patch"].as_str().unwrap().to_string();
                                    *patch.lock().unwrap() = Some(p.clone());
                                    p
                                }
                            };
                            let answer = json!({
                                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                "response": {"uid": review["request"]["uid"], "allowed": true,
                                             "patchType": "JSONPatch", "patch": p}
                            });
                            let mut res = hyper::Response::new(Full::new(Bytes::from(
                                serde_json::to_vec(&answer).unwrap(),
                            )));
                            res.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, hyper::Error>(res)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, 5000)
}

async fn create(pods: &Api<Pod>, name: &str) -> (Duration, Pod) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"serviceAccountName": "s3", "containers": [{"name": "c", "image": "app"}]}
    }))
    .unwrap();
    let start = Instant::now();
    let stored = pods.create(&PostParams::default(), &pod).await.unwrap();
    (start.elapsed(), stored)
}

fn mutated(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.volumes
            .iter()
            .flatten()
            .any(|v| v.name == "aws-iam-token")
    })
}

/// What a webhook's metrics say: connections served by protocol (h2,
/// http/1.1), and its own /mutate latency histogram (upper bound in
/// seconds, cumulative count).
struct Scraped {
    h2: f64,
    h1: f64,
    mutate: Vec<(f64, f64)>,
}

async fn scrape(metrics_port: u16) -> Scraped {
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |kind: &str| {
        let name = format!("irsa_webhook_connections_served_total{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let mutate = text
        .lines()
        .filter(|l| {
            l.starts_with("http_request_duration_seconds_bucket{") && l.contains("path=\"/mutate\"")
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    Scraped {
        h2: get("h2"),
        h1: get("http/1.1"),
        mutate,
    }
}

/// The bucket bound under which `q` of the observations between two
/// scrapes fall.
fn histogram_quantile(before: &Scraped, after: &Scraped, q: f64) -> (f64, f64) {
    let count = |s: &Scraped, le: f64| s.mutate.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
    let total =
        after.mutate.last().map_or(0.0, |b| b.1) - before.mutate.last().map_or(0.0, |b| b.1);
    let bound = after
        .mutate
        .iter()
        .find(|b| b.1 - count(before, b.0) >= q * total)
        .map_or(f64::NAN, |b| b.0);
    (bound, total)
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if let Err(why) = common::testbed::assets_available() {
        println!("pod_create: skipped: {why} (scripts/test prepares KUBEBUILDER_ASSETS)");
        return;
    }
    let creates = env_count("IRSA_BENCH_CREATES", 500);
    let rounds = env_count("IRSA_BENCH_ROUNDS", 3).min(10);
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "bench", "https://oidc.irsa.test/bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = bed.client().await;
        namespace(&client, NS).await;
        service_account(&client, NS, "s3", Some(ROLE)).await;
        let h1 = start_webhook(d, &bed.kubeconfig, "h1", &["--http2=false"]);
        let h2 = start_webhook(d, &bed.kubeconfig, "h2", &["--http2"]);
        let ca = d.join("certs/ca.crt");
        for w in [&h1, &h2] {
            wait_ready(&ca, w.port, String::new).await;
        }
        let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        let replay = start_replay(d, h1.port).await;
        let arms: [(&str, Option<u16>); 4] = [
            ("none", None),
            ("replay", Some(replay)),
            ("irsa h1", Some(h1.port)),
            ("irsa h2", Some(h2.port)),
        ];
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); arms.len()];
        let mut before = Vec::new();
        for w in [&h1, &h2] {
            before.push(scrape(w.metrics_port).await);
        }
        let mut n = 0usize;
        let started = Instant::now();
        for round in 0..rounds {
            for (arm, (name, webhook)) in arms.iter().enumerate() {
                let _ = configs.delete("bench", &DeleteParams::default()).await;
                if let Some(port) = webhook {
                    register_webhook(
                        &client,
                        WebhookRegistration {
                            name: "bench",
                            port: *port,
                            ca_pem: std::fs::read(&ca).unwrap(),
                            timeout_seconds: 10,
                            reinvocation: None,
                        },
                    )
                    .await;
                }
                // Until the API server acts on the change (at most 30 s).
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    n += 1;
                    let (_, pod) = create(&pods, &format!("warm-{n}")).await;
                    if mutated(&pod) == webhook.is_some() {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{name}: the webhook configuration did not take effect in 30 s");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                for _ in 0..20 {
                    n += 1;
                    create(&pods, &format!("warm-{n}")).await;
                }
                for i in 0..creates {
                    let (took, pod) = create(&pods, &format!("r{round}-a{arm}-{i}")).await;
                    assert_eq!(mutated(&pod), webhook.is_some(), "{name}: pod {i} of round {round}");
                    samples[arm].push(took);
                }
            }
        }
        let elapsed = started.elapsed();
        let mut after = Vec::new();
        for w in [&h1, &h2] {
            after.push(scrape(w.metrics_port).await);
        }

        println!(
            "pod creates through kube-apiserver v1.28 (test bed), one client, sequential: {rounds} interleaved rounds x {creates} creates per arm, {:.0} s",
            elapsed.as_secs_f64()
        );
        println!("{:<10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}", "arm", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "creates");
        let mut sorted = samples.clone();
        for s in &mut sorted {
            s.sort();
        }
        for ((name, _), s) in arms.iter().zip(&sorted) {
            println!(
                "{name:<10} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8}",
                ms(pct(s, 0.5)),
                ms(pct(s, 0.9)),
                ms(pct(s, 0.99)),
                ms(pct(s, 0.999)),
                ms(*s.last().unwrap()),
                s.len()
            );
        }
        for (arm, name) in [(1, "replay"), (2, "irsa h1"), (3, "irsa h2")] {
            println!(
                "{name} adds: p50 {:+.2} ms, p99 {:+.2} ms over none",
                ms(pct(&sorted[arm], 0.5)) - ms(pct(&sorted[0], 0.5)),
                ms(pct(&sorted[arm], 0.99)) - ms(pct(&sorted[0], 0.99)),
            );
        }
        for (a, b) in [(2, 1), (3, 2)] {
            println!(
                "{} vs {}: p50 {:+.2} ms, p99 {:+.2} ms, p99.9 {:+.2} ms",
                arms[a].0,
                arms[b].0,
                ms(pct(&sorted[a], 0.5)) - ms(pct(&sorted[b], 0.5)),
                ms(pct(&sorted[a], 0.99)) - ms(pct(&sorted[b], 0.99)),
                ms(pct(&sorted[a], 0.999)) - ms(pct(&sorted[b], 0.999)),
            );
        }
        for (file, name) in [("h1.log", "irsa h1"), ("h2.log", "irsa h2")] {
            let log = std::fs::read_to_string(d.join(file)).unwrap_or_default();
            let mut offers: std::collections::BTreeMap<String, usize> = Default::default();
            for line in log.lines().filter(|l| l.contains("ALPN protocols offered")) {
                let offered = line.split("offered=").nth(1).unwrap_or("?").split_whitespace().next().unwrap_or("?");
                *offers.entry(offered.to_string()).or_default() += 1;
            }
            println!("{name}: TLS client hellos by ALPN offered: {offers:?}");
        }
        for ((name, b), a) in ["irsa h1", "irsa h2"].iter().zip(&before).zip(&after) {
            println!(
                "{name}: the API server opened {} h2 and {} http/1.1 connections to it during the run",
                a.h2 - b.h2,
                a.h1 - b.h1
            );
            let (p50, n) = histogram_quantile(b, a, 0.5);
            let (p99, _) = histogram_quantile(b, a, 0.99);
            let (p999, _) = histogram_quantile(b, a, 0.999);
            println!(
                "{name}: its own time per /mutate ({n} requests, histogram bucket bounds): p50 <= {:.2} ms, p99 <= {:.2} ms, p99.9 <= {:.2} ms",
                p50 * 1000.0,
                p99 * 1000.0,
                p999 * 1000.0
            );
        }
    });
}
