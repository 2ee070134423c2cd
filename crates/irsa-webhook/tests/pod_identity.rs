//! The Go webhook's EKS Pod Identity mode (`--watch-container-credentials-config`)
//! and `--tls-min-version`, on a real server on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use irsa_webhook::run;
use serde_json::Value;
use support::*;

/// A client speaking only `version`, trusting `dir/ca.crt`.
fn client_of(
    dir: &Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> tokio_rustls::TlsConnector {
    connector_offering(
        dir,
        Offer {
            versions: Some(&[version]),
            ..Offer::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_version_13_refuses_a_tls12_client() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "min-version");
    let tls12 = client_of(t.path(), &rustls::version::TLS12);
    let tls13 = client_of(t.path(), &rustls::version::TLS13);
    for (min, tls12_served) in [
        (Some("VersionTLS13"), false),
        (Some("1.3"), false),
        (Some("VersionTLS12"), true),
        (Some("1.1"), true),
        (None, true),
    ] {
        let mut s = settings(t.path());
        s.tls_min_version = min.map(str::to_string);
        let running = run(s, None, None).await.unwrap();
        assert_eq!(
            handshakes(running.addr, &tls12).await,
            tls12_served,
            "TLS 1.2 client, --tls-min-version={min:?}"
        );
        assert!(handshakes(running.addr, &tls13).await, "TLS 1.3, {min:?}");
        running.shutdown();
        running.wait().await;
    }
    let mut s = settings(t.path());
    s.tls_min_version = Some("TLSv1.3".into());
    let error = format!("{:#}", run(s, None, None).await.err().unwrap());
    assert!(
        error.contains("--tls-min-version=\"TLSv1.3\" is not a TLS version")
            && error.contains("VersionTLS13"),
        "{error}"
    );
}

/// The env var names the webhook adds to the first container of a pod of
/// `default/s3` (which has a role-arn annotation), and whether it labels the pod.
async fn injected(addr: std::net::SocketAddr, dir: &Path) -> (Vec<String>, bool) {
    let r = client(dir)
        .post(format!("https://{addr}/mutate"))
        .header("content-type", "application/json")
        .body(review_for("s3").to_string())
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let patch = irsa_core::b64::decode_std(v["response"]["patch"].as_str().unwrap()).unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
    let mut names = Vec::new();
    let mut labelled = false;
    for op in &ops {
        match op["path"].as_str().unwrap() {
            "/spec/containers/0/env" => names.extend(
                op["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["name"].as_str().unwrap().to_string()),
            ),
            "/metadata/labels" => {
                labelled = op["value"]["eks.amazonaws.com/pod-identity"] == "enabled"
            }
            _ => {}
        }
    }
    (names, labelled)
}

const CC: [&str; 2] = [
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];
const IRSA: [&str; 2] = ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"];

/// Waits (at most 10 s) until pods of default/s3 get `want`.
async fn until(addr: std::net::SocketAddr, dir: &Path, want: [&str; 2], labelled: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = injected(addr, dir).await;
        if got == (want.map(String::from).to_vec(), labelled) {
            return;
        }
        assert!(Instant::now() < deadline, "still {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_accounts_get_pod_identity_and_the_file_is_followed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write_certs(d, "pod-identity");
    let file = d.join("identities.json");
    let listed = r#"{"identities":[{"namespace":"default","serviceAccount":"s3"}]}"#;
    std::fs::write(&file, listed).unwrap();
    let mut s = settings(d);
    s.pod_identity.watch_container_credentials_config = Some(file.clone());
    let running = run(s, None, Some(store_with_role())).await.unwrap();

    // Listed: container credentials win over the role-arn annotation.
    assert_eq!(
        injected(running.addr, d).await,
        (CC.map(String::from).to_vec(), true)
    );
    // Unlisted (the file rewritten): back to the role.
    std::fs::write(
        &file,
        r#"{"identities":[{"namespace":"other","serviceAccount":"s3"}]}"#,
    )
    .unwrap();
    until(running.addr, d, IRSA, false).await;
    // Listed again, then a broken file: the last good list stays.
    std::fs::write(&file, listed).unwrap();
    until(running.addr, d, CC, true).await;
    std::fs::write(&file, r#"{"identities":[{"namespace":"default""#).unwrap();
    tokio::time::sleep(irsa_webhook::containercreds::POLL_INTERVAL * 2).await;
    assert_eq!(
        injected(running.addr, d).await,
        (CC.map(String::from).to_vec(), true)
    );
    // Mutated pods are counted by method, as the Go webhook counts them.
    let scrape = reqwest::get(format!("http://{}/metrics", running.metrics_addr));
    let metrics = tokio::time::timeout(std::time::Duration::from_secs(10), scrape)
        .await
        .expect("the metrics listener answers within 10 s")
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |kind: &str| {
        let series = format!("pod_identity_webhook_pod_count_total{{kind=\"{kind}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {series}in:\n{metrics}"))
    };
    assert!(count("container_credentials") >= 3, "{metrics}");
    assert!(count("sts_web_identity") >= 1, "{metrics}");
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_name_the_api_server_refuses_stops_the_start() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "pod-identity-flags");
    let mut s = settings(t.path());
    s.pod_identity.container_credentials_token_volume_name = "Pod_Identity".into();
    let error = format!("{:#}", run(s, None, None).await.err().unwrap());
    assert!(
        error.contains("--container-credentials-token-volume-name=\"Pod_Identity\""),
        "{error}"
    );
}
