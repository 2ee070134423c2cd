//! The Go webhook's `--kube-api`, `--enable-debugging-handlers` and
//! `--tls-cipher-suites`, on a real server on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use irsa_webhook::run;
use support::*;

/// A TLS 1.2 client offering only `suite`, trusting `dir/ca.crt`.
fn tls12_client(dir: &Path, suite: rustls::CipherSuite) -> tokio_rustls::TlsConnector {
    connector_offering(
        dir,
        Offer {
            versions: Some(&[&rustls::version::TLS12]),
            suite: Some(suite),
            ..Offer::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cipher_suites_limits_what_the_server_negotiates() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "suites");
    let aes128 = rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    let aes256 = rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;

    let mut s = settings(t.path());
    s.tls_cipher_suites = Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into());
    let running = run(s, None, Some(store_with_role())).await.unwrap();
    assert!(handshakes(running.addr, &tls12_client(t.path(), aes128)).await);
    assert!(!handshakes(running.addr, &tls12_client(t.path(), aes256)).await);
    // TLS 1.3 stays on with its own suites, as in Go: a client offering
    // every version gets 1.3 and one of its suites.
    let stream = tls(running.addr, &connector(t.path())).await;
    let session = stream.get_ref().1;
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let suite = session.negotiated_cipher_suite().expect("a suite").suite();
    assert!(
        matches!(
            suite,
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
                | rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        ),
        "{suite:?}"
    );
    running.shutdown();
    running.wait().await;

    // Without the flag, both are served.
    let running = run(settings(t.path()), None, Some(store_with_role()))
        .await
        .unwrap();
    assert!(handshakes(running.addr, &tls12_client(t.path(), aes256)).await);
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cipher_suite_rustls_lacks_stops_the_start_naming_it() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "suites");
    let mut s = settings(t.path());
    s.tls_cipher_suites = Some("TLS_RSA_WITH_AES_128_GCM_SHA256".into());
    let error = format!("{:#}", run(s, None, None).await.err().unwrap());
    assert!(
        error.contains("TLS_RSA_WITH_AES_128_GCM_SHA256 is not a cipher suite")
            && error.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        "{error}"
    );
}

async fn get(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debugging_handlers_list_the_cache_on_the_metrics_listener_only_when_enabled() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "debug");
    let running = run(settings(t.path()), None, Some(store_with_role()))
        .await
        .unwrap();
    let url = format!("http://{}/debug/alpha/cache", running.metrics_addr);
    assert_eq!(get(url).await.0, 404, "off by default");
    running.shutdown();
    running.wait().await;

    let mut s = settings(t.path());
    s.enable_debugging_handlers = true;
    s.sts_regional_endpoint = true;
    let store = store_with_role();
    store.apply("team", "plain", None);
    let running = run(s, None, Some(store)).await.unwrap();
    let (status, body) = get(format!("http://{}/debug/alpha/cache", running.metrics_addr)).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "default/s3": {"RoleARN": ROLE, "Audience": "sts.amazonaws.com", "UseRegionalSTS": true, "TokenExpiration": 86400},
            "team/plain": {"RoleARN": "", "Audience": "sts.amazonaws.com", "UseRegionalSTS": true, "TokenExpiration": 86400},
        })
    );
    running.shutdown();
    running.wait().await;
}

#[tokio::test]
async fn kube_api_replaces_the_server_and_keeps_the_kubeconfig_credentials() {
    let t = tempfile::tempdir().unwrap();
    let kubeconfig = t.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: secret-token\n",
    )
    .unwrap();
    let from = |api: Option<&'static str>| {
        let kubeconfig = kubeconfig.clone();
        async move { irsa_webhook::server::kube_config(Some(&kubeconfig), api).await }
    };
    let c = from(None).await.unwrap();
    assert_eq!(c.cluster_url.to_string(), "https://127.0.0.1:1/");
    let c = from(Some("https://127.0.0.1:6443")).await.unwrap();
    assert_eq!(c.cluster_url.to_string(), "https://127.0.0.1:6443/");
    assert!(c.auth_info.token.is_some(), "credentials kept");
    let error = format!("{:#}", from(Some("127.0.0.1:6443")).await.err().unwrap());
    assert!(
        error.contains("--kube-api") && error.contains("https://"),
        "{error}"
    );
}

/// An instance metadata stand-in on 127.0.0.1 speaking IMDSv2: a token
/// from `PUT /latest/api/token`, the identity document only with it.
/// Returns its URL and the number of requests it answered.
async fn imds(region: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        // Bounded: a test makes a handful of requests.
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(String::from)
                    };
                    let (status, body) = match (req.method().as_str(), req.uri().path()) {
                        ("PUT", "/latest/api/token")
                            if h("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
                        {
                            (200, "tok-123".to_string())
                        }
                        ("GET", "/latest/dynamic/instance-identity/document")
                            if h("x-aws-ec2-metadata-token").as_deref() == Some("tok-123") =>
                        {
                            (
                                200,
                                format!(
                                    r#"{{"accountId":"444455556666","region":"{region}","instanceId":"i-0"}}"#
                                ),
                            )
                        }
                        ("GET", _) => (401, String::new()),
                        _ => (405, String::new()),
                    };
                    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), hits)
}

fn role_arn(running: &irsa_webhook::Running, ns: &str, name: &str, value: &str) -> String {
    let annotations = [("eks.amazonaws.com/role-arn".to_string(), value.to_string())].into();
    running.store.apply(ns, name, Some(&annotations));
    let entry = running.store.get(ns, name).unwrap().unwrap();
    entry.role_arn.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_role_arn_reads_account_and_partition_from_imdsv2() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "compose");
    let (url, hits) = imds("cn-northwest-1").await;
    let mut s = settings(t.path());
    s.compose_role_arn = true;
    s.imds_endpoint = url;
    let running = run(s, None, None).await.unwrap();
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "token, then document"
    );
    assert_eq!(
        role_arn(&running, "default", "a", "s3-reader"),
        "arn:aws-cn:iam::444455556666:role/s3-reader"
    );
    assert_eq!(
        role_arn(&running, "default", "b", "team/app/s3-reader"),
        "arn:aws-cn:iam::444455556666:role/team/app/s3-reader"
    );
    assert_eq!(
        role_arn(&running, "default", "c", ROLE),
        ROLE,
        "a full ARN is kept"
    );
    running.shutdown();
    running.wait().await;

    // Without the flag a name stays a name (and the webhook warns per pod).
    let running = run(settings(t.path()), None, None).await.unwrap();
    assert_eq!(role_arn(&running, "default", "a", "s3-reader"), "s3-reader");
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_role_arn_off_ec2_takes_the_account_from_flags() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "compose");
    let (url, hits) = imds("eu-west-1").await;
    let mut s = settings(t.path());
    s.compose_role_arn = true;
    s.imds_endpoint = url;
    s.aws_account_id = Some("111122223333".into());
    s.aws_partition = Some("aws-us-gov".into());
    let running = run(s, None, None).await.unwrap();
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "IMDS not asked"
    );
    assert_eq!(
        role_arn(&running, "default", "a", "s3-reader"),
        "arn:aws-us-gov:iam::111122223333:role/s3-reader"
    );
    running.shutdown();
    running.wait().await;

    // No metadata service and no account: the start fails saying what to pass.
    let mut s = settings(t.path());
    s.compose_role_arn = true;
    let error = format!("{:#}", run(s, None, None).await.err().unwrap());
    assert!(
        error.contains("127.0.0.1:1") && error.contains("--aws-account-id"),
        "{error}"
    );
    let mut s = settings(t.path());
    s.compose_role_arn = true;
    s.aws_account_id = Some("12345".into());
    let error = format!("{:#}", run(s, None, None).await.err().unwrap());
    assert!(error.contains("\"12345\" is not a 12-digit"), "{error}");
}

/// One region per partition (irsa-core's table is checked against
/// botocore's in `crates/irsa/tests/partitions.rs`): the instance's region
/// picks the partition of the composed ARN, and so does
/// `--aws-default-region` with `--aws-account-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_role_arn_knows_every_partition() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "compose");
    for (region, partition) in [
        ("eu-west-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
        ("eu-isoe-west-1", "aws-iso-e"),
        ("us-isof-south-1", "aws-iso-f"),
        ("eusc-de-east-1", "aws-eusc"),
    ] {
        let (url, _) = imds(region).await;
        let mut s = settings(t.path());
        s.compose_role_arn = true;
        s.imds_endpoint = url;
        let running = run(s, None, None).await.unwrap();
        assert_eq!(
            role_arn(&running, "default", "a", "s3-reader"),
            format!("arn:{partition}:iam::444455556666:role/s3-reader"),
            "{region} from instance metadata"
        );
        running.shutdown();
        running.wait().await;

        let mut s = settings(t.path());
        s.compose_role_arn = true;
        s.aws_account_id = Some("111122223333".into());
        s.aws_default_region = region.into();
        let running = run(s, None, None).await.unwrap();
        assert_eq!(
            role_arn(&running, "default", "a", "s3-reader"),
            format!("arn:{partition}:iam::111122223333:role/s3-reader"),
            "{region} from --aws-default-region"
        );
        running.shutdown();
        running.wait().await;
    }

    // A partition irsa does not know stops the start, naming the known ones.
    let mut s = settings(t.path());
    s.compose_role_arn = true;
    s.aws_account_id = Some("111122223333".into());
    s.aws_partition = Some("aws-mars".into());
    let error = format!("{:#}", run(s, None, None).await.err().unwrap());
    assert!(
        error.contains("aws-mars") && error.contains("aws-iso-f"),
        "{error}"
    );
}
