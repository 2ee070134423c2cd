//! The server against clients that misbehave on purpose: slow heads, stalled
//! bodies, idle connections, too many connections, too many bytes. The real
//! server on 127.0.0.1 over real TLS; short limits so each test takes seconds.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use irsa_webhook::{run, Settings};
use support::*;
use tokio::io::AsyncWriteExt;

fn with_limits(dir: &std::path::Path, f: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = settings(dir);
    s.limits.header_read_timeout_seconds = 1;
    s.limits.body_timeout_seconds = 1;
    s.limits.idle_timeout_seconds = 30;
    f(&mut s);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_line_is_cut_at_the_header_timeout() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "slow-head");
    let running = run(with_limits(t.path(), |_| {}), None, Some(store_with_role()))
        .await
        .unwrap();

    let mut https = tls(running.addr, &connector(t.path())).await;
    https.write_all(b"POST /muta").await.unwrap();
    https.flush().await.unwrap();
    let mut seen = Vec::new();
    let cut = closed_within(&mut https, Duration::from_secs(8), &mut seen).await;
    println!("HTTPS: half a request line, then silence: cut after {cut:?}");
    let cut = cut.expect("a stalled head is disconnected");
    assert!(
        cut >= Duration::from_millis(900),
        "not before the timeout: {cut:?}"
    );
    assert!(
        cut < Duration::from_secs(3),
        "within the 1 s timeout (+ watchdog tick): {cut:?}"
    );

    // The plain-HTTP metrics listener has the same limit.
    let mut plain = tokio::net::TcpStream::connect(running.metrics_addr)
        .await
        .unwrap();
    plain.write_all(b"GET /metr").await.unwrap();
    let cut = closed_within(&mut plain, Duration::from_secs(8), &mut seen).await;
    println!("metrics: half a request line, then silence: cut after {cut:?}");
    assert!(cut.is_some_and(|c| c < Duration::from_secs(3)), "{cut:?}");

    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        series(
            &metrics,
            "irsa_webhook_connections_cut_total{kind=\"header_timeout\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_stalled_midway_is_cut_at_the_body_deadline() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "slow-body");
    let running = run(with_limits(t.path(), |_| {}), None, Some(store_with_role()))
        .await
        .unwrap();
    let mut https = tls(running.addr, &connector(t.path())).await;
    https
        .write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{\"request\":")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let cut = closed_within(&mut https, Duration::from_secs(8), &mut seen).await;
    println!("body stalled after 11 of 5000 bytes: cut after {cut:?}");
    let cut = cut.expect("a stalled body is cut");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(3),
        "{cut:?}"
    );
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "idle");
    let settings = with_limits(t.path(), |s| s.limits.idle_timeout_seconds = 3);
    let running = run(settings, None, Some(store_with_role())).await.unwrap();
    let mut https = tls(running.addr, &connector(t.path())).await;
    let body = serde_json::to_vec(&review_for("s3")).unwrap();
    let (status, _) = exchange(&mut https, &body).await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    // Idle is not a slow head: still open after twice the header timeout.
    let early = closed_within(&mut https, Duration::from_secs(2), &mut seen).await;
    assert_eq!(
        early, None,
        "an idle keep-alive connection outlives the header timeout"
    );
    // The keep-alive connection still works, and then is closed when idle.
    let (status, _) = exchange(&mut https, &body).await;
    assert_eq!(status, 200);
    let cut = closed_within(&mut https, Duration::from_secs(8), &mut seen).await;
    println!("idle keep-alive connection (idle timeout 3 s) closed after {cut:?}");
    let cut = cut.expect("an idle connection is closed");
    assert!(
        cut >= Duration::from_millis(2900) && cut < Duration::from_secs(5),
        "{cut:?}"
    );
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_evict_the_longest_idle_or_wait() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "cap");
    let settings = with_limits(t.path(), |s| {
        s.limits.max_connections = 3;
        s.limits.header_read_timeout_seconds = 3;
    });
    let running = run(settings, None, Some(store_with_role())).await.unwrap();
    let c = connector(t.path());
    let mut oldest = tls(running.addr, &c).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut held = vec![tls(running.addr, &c).await, tls(running.addr, &c).await];
    // All three slots are idle connections: a fourth client closes the oldest.
    let fourth = tokio::time::timeout(Duration::from_secs(2), tls(running.addr, &c)).await;
    held.push(fourth.expect("served by closing an idle connection"));
    let mut seen = Vec::new();
    let closed = closed_within(&mut oldest, Duration::from_secs(2), &mut seen).await;
    assert!(
        closed.is_some(),
        "the longest-idle connection was closed for the newcomer"
    );

    // Three connections in the middle of a request: nothing to close; the
    // next client waits until a slot frees (here: the header timeout).
    for conn in &mut held {
        conn.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let waiting = tokio::spawn(c.connect(name, tcp));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth connection is served over a cap of 3"
    );
    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        series(
            &metrics,
            "irsa_webhook_connections_open{listener=\"https\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        series(
            &metrics,
            "irsa_webhook_connections_cut_total{kind=\"evicted_idle\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let served = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(
        matches!(served, Ok(Ok(Ok(_)))),
        "the waiting connection is served once the slow heads are cut"
    );
    running.shutdown();
    running.wait().await;
}

/// Uploads declaring `declared` bytes that send `sent` bytes and stall.
async fn stalled_upload(
    addr: std::net::SocketAddr,
    c: tokio_rustls::TlsConnector,
    declared: usize,
    sent: usize,
    hold: Duration,
) -> Vec<u8> {
    let mut s = tls(addr, &c).await;
    let head = format!("POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may stop reading (budget spent): the write then blocks.
    let _ = tokio::time::timeout(hold, s.write_all(&vec![b' '; sent])).await;
    let mut seen = Vec::new();
    closed_within(&mut s, hold, &mut seen).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_stay_within_the_byte_budget_and_admissions_go_on() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "budget");
    const KIB: usize = 1024;
    let settings = with_limits(t.path(), |s| {
        s.max_request_bytes = 256 * KIB;
        s.limits.max_buffered_bytes = 512 * KIB;
        s.limits.body_timeout_seconds = 4;
    });
    let running = run(settings, None, Some(store_with_role())).await.unwrap();
    let c = connector(t.path());
    // Six uploads of 200 KiB toward 256 KiB each: 1.2 MiB sent, 1.5 MiB declared.
    let uploads: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(stalled_upload(
                running.addr,
                c.clone(),
                256 * KIB,
                200 * KIB,
                Duration::from_secs(8),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = scrape(running.metrics_addr).await;
    let held = series(&during, "irsa_webhook_request_body_bytes").unwrap();
    println!("6 stalled uploads of 200 KiB: {held} body bytes held (budget 512 KiB)");
    assert!(held <= (512 * KIB) as f64, "{during}");
    assert!(
        held >= (256 * KIB) as f64,
        "the uploads were read up to the budget: {during}"
    );

    // An ordinary admission is still answered, from the reserved part.
    let started = std::time::Instant::now();
    let r = client(t.path())
        .post(format!("https://{}/mutate", running.addr))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review_for("s3")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"patch\""));
    println!(
        "admission during the stalled uploads took {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    for u in uploads {
        let seen = u.await.unwrap();
        let answer = String::from_utf8_lossy(&seen);
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "stalled uploads end at the body deadline: {answer}"
        );
    }
    let after = scrape(running.metrics_addr).await;
    assert_eq!(
        series(&after, "irsa_webhook_request_body_bytes"),
        Some(0.0),
        "{after}"
    );
    let peak = series(&after, "irsa_webhook_request_body_bytes_peak").unwrap();
    assert!(peak <= (512 * KIB) as f64, "{after}");
    running.shutdown();
    running.wait().await;
}
