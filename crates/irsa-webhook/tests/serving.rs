//! The serving certificate's validity, its expiry metric, and where the
//! metrics listener listens.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::path::Path;
use std::time::Duration;

use irsa_webhook::run;
use support::*;
use time::OffsetDateTime;

/// The DER of the leaf a fresh TLS connection receives (trusting `ca_dir`).
async fn served_leaf(addr: std::net::SocketAddr, ca_dir: &Path) -> Vec<u8> {
    let tls = tls(addr, &connector(ca_dir)).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Replaces the served pair in `live` with the one in `from` (file renames).
fn swap_in(from: &Path, live: &Path) {
    for f in ["tls.crt", "tls.key"] {
        let tmp = live.join(format!(".{f}.new"));
        std::fs::copy(from.join(f), &tmp).unwrap();
        std::fs::rename(&tmp, live.join(f)).unwrap();
    }
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_or_not_yet_valid_certificates_are_not_swapped_in() {
    let t = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let (live, expired, future, renewed) = (
        t.path().join("live"),
        t.path().join("expired"),
        t.path().join("future"),
        t.path().join("renewed"),
    );
    for d in [&live, &expired, &future, &renewed] {
        std::fs::create_dir(d).unwrap();
    }
    let first_end = now + days(30);
    write_certs_valid(&live, "first", Some((now - days(1), first_end)));
    write_certs_valid(&expired, "expired", Some((now - days(30), now - days(1))));
    write_certs_valid(&future, "future", Some((now + days(1), now + days(60))));
    let renewed_end = now + days(90);
    write_certs_valid(&renewed, "renewed", Some((now - days(1), renewed_end)));
    let first = pem_der(&live.join("tls.crt"));
    let running = run(settings(&live), None, Some(store_with_role()))
        .await
        .unwrap();
    let expiry = |metrics: &str| {
        series(metrics, "irsa_webhook_certificate_expiry_timestamp_seconds").unwrap()
    };
    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        expiry(&metrics),
        first_end.unix_timestamp() as f64,
        "{metrics}"
    );

    // An expired pair, then a not-yet-valid one: both refused, the first kept.
    for bad in [&expired, &future] {
        swap_in(bad, &live);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            served_leaf(running.addr, &live).await,
            first,
            "{} pair refused; the current one still served",
            bad.display()
        );
    }
    let metrics = scrape(running.metrics_addr).await;
    assert!(
        series(&metrics, "irsa_webhook_tls_reloads_total{kind=\"error\"}").unwrap() >= 2.0,
        "{metrics}"
    );
    assert_eq!(expiry(&metrics), first_end.unix_timestamp() as f64);
    assert_eq!(
        series(&metrics, "irsa_webhook_tls_reloads_total{kind=\"ok\"}"),
        None,
        "{metrics}"
    );

    // A current pair is taken, and the metric follows it.
    swap_in(&renewed, &live);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        served_leaf(running.addr, &renewed).await,
        pem_der(&renewed.join("tls.crt"))
    );
    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        expiry(&metrics),
        renewed_end.unix_timestamp() as f64,
        "{metrics}"
    );
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_at_start() {
    let t = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    write_certs_valid(t.path(), "old", Some((now - days(30), now - days(1))));
    let error = match run(settings(t.path()), None, None).await {
        Ok(_) => panic!("an expired certificate was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("expired") && error.contains("tls.crt"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_on_their_own_address() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "split");
    let mut s = settings(t.path());
    s.bind_address = "::1".parse().unwrap();
    s.metrics_bind_address = Some("127.0.0.1".parse().unwrap());
    let running = run(s, None, Some(store_with_role())).await.unwrap();
    assert_eq!(running.addr.ip().to_string(), "::1");
    assert_eq!(running.metrics_addr.ip().to_string(), "127.0.0.1");
    assert!(scrape(running.metrics_addr)
        .await
        .contains("irsa_webhook_sa_cache_ready"));
    // Nothing answers /metrics on the admission address's host.
    let other = format!("[::1]:{}", running.metrics_addr.port());
    assert!(tokio::net::TcpStream::connect(other).await.is_err());
    running.shutdown();
    running.wait().await;

    // Without it, metrics follow --bind-address, as before.
    let mut s = settings(t.path());
    s.bind_address = "::1".parse().unwrap();
    let running = run(s, None, Some(store_with_role())).await.unwrap();
    assert_eq!(running.metrics_addr.ip().to_string(), "::1");
    running.shutdown();
    running.wait().await;
}
