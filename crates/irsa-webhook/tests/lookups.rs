//! ServiceAccount lookups a hostile review could abuse: names that are not
//! Kubernetes names, floods of cache misses, and what the pod's creator is
//! told when the account could not be read.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use irsa_webhook::cache::{Lookup, SaStore};
use irsa_webhook::run;
use serde_json::Value;
use support::*;

/// Connections made to a [`silent_server`]: in all, and most open at once.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

/// A server on 127.0.0.1 that accepts connections and never answers (an
/// API server too busy to reply); counts the connections made to it.
async fn silent_server() -> (kube::Client, Arc<Seen>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counter.accepted.fetch_add(1, Ordering::SeqCst);
            let open = counter.open.fetch_add(1, Ordering::SeqCst) + 1;
            counter.most_open.fetch_max(open, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read (and ignore) until the client gives up and closes.
                let mut buf = [0u8; 1024];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                }
                counter.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let config = kube::Config::new(url.parse().unwrap());
    (kube::Client::try_from(config).unwrap(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_never_reach_the_api_server() {
    let (client, seen) = silent_server().await;
    let store = SaStore::new("eks.amazonaws.com");
    for (ns, name) in [
        ("default", "../../../api/v1/secrets"),
        ("default", "a/b"),
        ("default", "UPPER"),
        ("default", &"x".repeat(300)),
        ("kube-system/..", "sa"),
        ("", "sa"),
    ] {
        let got = store
            .lookup(Some(&client), ns, name, Duration::from_millis(300))
            .await;
        assert!(matches!(got, Lookup::Invalid(_)), "{ns}/{name}: {got:?}");
    }
    // A valid name is asked for (and the silent server makes it fail).
    let got = store
        .lookup(
            Some(&client),
            "default",
            "valid",
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(got, Lookup::Failed(_)), "{got:?}");
    assert_eq!(
        seen.accepted.load(Ordering::SeqCst),
        1,
        "only the valid name was looked up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_gets_are_bounded_in_concurrency() {
    let (client, seen) = silent_server().await;
    let store = SaStore::new("eks.amazonaws.com");
    store.set_lookup_concurrency(3);
    let started = Instant::now();
    let spawn = |i: usize, timeout_ms: u64| {
        let (store, client) = (store.clone(), client.clone());
        tokio::spawn(async move {
            let name = format!("missing-{i}");
            let timeout = Duration::from_millis(timeout_ms);
            store.lookup(Some(&client), "default", &name, timeout).await
        })
    };
    // Three lookups take the three slots (and hang on the silent server)...
    let mut lookups: Vec<_> = (0..3).map(|i| spawn(i, 2000)).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so seventeen more wait for a slot and give up at their timeout.
    lookups.extend((3..20).map(|i| spawn(i, 500)));
    for l in lookups {
        let got = l.await.unwrap();
        assert!(matches!(got, Lookup::Failed(_)), "{got:?}");
    }
    let most = seen.most_open.load(Ordering::SeqCst);
    println!(
        "20 misses, 3 hanging, --sa-lookup-concurrency 3: {} API connections, at most {most} at once, all answered in {:?}",
        seen.accepted.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert_eq!(most, 3, "at most 3 GETs at once");
    assert_eq!(
        seen.accepted.load(Ordering::SeqCst),
        3,
        "the waiting lookups sent nothing"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "every lookup kept its timeout"
    );
}

async fn answer(running: &irsa_webhook::Running, dir: &std::path::Path, sa: &str) -> Value {
    let r = client(dir)
        .post(format!("https://{}/mutate", running.addr))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review_for(sa)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_without_credentials_carry_a_warning() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "warnings");
    let running = run(settings(t.path()), None, Some(store_with_role()))
        .await
        .unwrap();

    // Not cached and the API cannot be asked (here: no client at all).
    let v = answer(&running, t.path(), "unknown").await;
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none(), "{v}");
    let warnings = v["response"]["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{v}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("default/unknown") && warning.contains("without AWS credentials"),
        "{warning}"
    );
    assert!(
        warning.len() <= 120,
        "kubectl shows it whole: {}",
        warning.len()
    );

    // A name that cannot exist: warned, never looked up.
    let v = answer(&running, t.path(), "Not_A_Name").await;
    let warning = v["response"]["warnings"][0].as_str().expect("warning");
    assert!(warning.contains("not a valid Kubernetes name"), "{warning}");

    // A pod that gets its credentials has no warning.
    let v = answer(&running, t.path(), "s3").await;
    assert!(v["response"].get("patch").is_some(), "{v}");
    assert!(v["response"].get("warnings").is_none(), "{v}");

    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        series(
            &metrics,
            "irsa_webhook_sa_api_lookups_total{kind=\"invalid\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    running.shutdown();
    running.wait().await;
}
