//! AWS API calls and wall time of plan and apply against a real AWS API
//! server (moto, started here on 127.0.0.1), for 1, 10 and 100 bindings,
//! and apply of 100 bindings sequentially vs concurrently.
//!
//! Run: `cargo bench -p irsa-aws --bench aws_calls` (needs `python3 -m
//! moto.server`: `pip install 'moto[server]'`; scripts/test installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use irsa_aws::{Aws, Connect};
use irsa_core::plan::{self, Desired};
use irsa_core::{Discovery, IrsaConfig, Jwks};

struct Moto(Child, String);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto(child, format!("http://127.0.0.1:{port}")))
}

fn config(bindings: usize) -> IrsaConfig {
    let mut yaml = String::from("apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: bench\nissuer:\n  url: https://bench-oidc.s3.eu-west-1.amazonaws.com/bench\n  s3: {bucket: bench-oidc, region: eu-west-1, prefix: bench}\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\nbindings:\n");
    for i in 0..bindings {
        yaml.push_str(&format!("- {{namespace: ns{}, serviceAccount: sa{i}, policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}}\n", i % 7));
    }
    IrsaConfig::from_yaml(&yaml).expect("bench config")
}

async fn reset(endpoint: &str) {
    reqwest_like_post(endpoint).await;
}

/// POST /moto-api/reset over a plain TCP connection (no extra HTTP client crate).
async fn reqwest_like_post(endpoint: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST /moto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
}

/// A TCP proxy that holds every chunk 25 ms in each direction: a round
/// trip of ~50 ms, like a call from a laptop or CI runner to IAM, which
/// moto on 127.0.0.1 (CPU-bound, one Python process) does not have.
async fn latency_proxy(upstream: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) =
                    tokio::net::TcpStream::connect(upstream.trim_start_matches("http://")).await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                            sw.write_all(&buf[..n]).await.is_err()
                        } {
                            break;
                        }
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 || {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                            cw.write_all(&buf[..n]).await.is_err()
                        } {
                            break;
                        }
                    }
                };
                tokio::join!(up, down);
            });
        }
    });
    format!("http://{addr}")
}

struct Run {
    reads: usize,
    writes: usize,
    secs: f64,
}

async fn plan_and_apply(aws: &Aws, desired: &Desired, apply: bool) -> (Run, usize) {
    let (r0, w0) = aws.counts();
    let t = Instant::now();
    let actual = aws.read_actual(desired).await.unwrap();
    let plan = plan::diff(desired, &actual, &BTreeSet::new());
    if apply {
        let failures = aws.execute_plan(desired, &plan.changes, &|_| {}).await;
        assert!(
            failures.is_empty(),
            "{:?}",
            failures
                .iter()
                .map(|(c, e)| format!("{c}: {e}"))
                .collect::<Vec<_>>()
        );
    }
    let secs = t.elapsed().as_secs_f64();
    let (r1, w1) = aws.counts();
    (
        Run {
            reads: r1 - r0,
            writes: w1 - w0,
            secs,
        },
        plan.changes.len(),
    )
}

async fn connect(parallelism: usize) -> Aws {
    Aws::connect(&Connect {
        profile: None,
        region: Some("eu-west-1".into()),
        parallelism,
    })
    .await
}

fn main() {
    let Some(moto) = start_moto() else {
        println!("aws_calls: moto_server is not available (pip install 'moto[server]'); nothing measured");
        return;
    };
    for (k, v) in [
        ("AWS_ENDPOINT_URL", moto.1.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ] {
        // Set before any runtime or client starts.
        std::env::set_var(k, v);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("irsa AWS calls against moto on 127.0.0.1 (plan = read + diff; apply = read + diff + execute)");
        println!("{:>8}  {:>22}  {:>26}  {:>22}  {:>14}", "bindings", "plan (empty account)", "apply (fresh)", "plan (converged)", "no-op apply");
        for n in [1usize, 10, 100] {
            reset(&moto.1).await;
            let aws = connect(irsa_aws::DEFAULT_PARALLELISM).await;
            let account = aws.account_id().await.unwrap();
            let cfg = config(n);
            let desired = Desired::from_config(&cfg, &account, "eu-west-1", &Discovery::for_issuer(cfg.issuer.url().unwrap(), cfg.issuer.jwks_path, &[]), &Jwks::default());
            let (plan0, _) = plan_and_apply(&aws, &desired, false).await;
            let (apply, changes) = plan_and_apply(&aws, &desired, true).await;
            let (plan1, _) = plan_and_apply(&aws, &desired, false).await;
            let (noop, left) = plan_and_apply(&aws, &desired, true).await;
            println!(
                "{n:>8}  {:>4} reads {:>8.3} s  {:>4} writes {:>3} ch {:>6.3} s  {:>4} reads {:>8.3} s  {:>4} writes ({left} ch)",
                plan0.reads, plan0.secs, apply.writes, changes, apply.secs, plan1.reads, plan1.secs, noop.writes
            );
            let goal = if plan1.reads <= n + 10 { "met" } else { "NOT met" };
            println!("          goal plan reads <= bindings + 10: {} <= {} {goal}", plan1.reads, n + 10);
        }
        let slow = latency_proxy(moto.1.clone()).await;
        for (label, endpoint) in [("moto direct", moto.1.clone()), ("moto + ~50 ms round trip", slow)] {
            std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
            let mut times = Vec::new();
            for parallelism in [1usize, irsa_aws::DEFAULT_PARALLELISM] {
                reset(&moto.1).await;
                let aws = connect(parallelism).await;
                let account = aws.account_id().await.unwrap();
                let cfg = config(100);
            let desired = Desired::from_config(&cfg, &account, "eu-west-1", &Discovery::for_issuer(cfg.issuer.url().unwrap(), cfg.issuer.jwks_path, &[]), &Jwks::default());
                let (apply, _) = plan_and_apply(&aws, &desired, true).await;
                println!("{label}: apply 100 bindings, parallelism {parallelism}: {:.3} s ({} writes, {} reads)", apply.secs, apply.writes, apply.reads);
                times.push(apply.secs);
            }
            println!(
                "{label}: concurrent / sequential = {:.2} (goal <= 0.30)",
                times[1] / times[0]
            );
        }
    });
}
