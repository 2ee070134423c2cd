//! Serving-certificate renewal under load, against a real kube-apiserver
//! (the test bed), the way the cert-manager overlay sets it up: the
//! webhook's caBundle is a CA, and a renewal puts a new leaf (new key)
//! signed by that CA into the mounted Secret, swapped in as the kubelet
//! does it (`..data` symlink). No admission may fail or go unmutated.
//!
//! A control run then swaps in a leaf of another CA, which is what a
//! renewal amounts to when the caBundle is the serving certificate itself
//! (the overlay's former design): admissions then go through unmutated,
//! which shows that the load really made the apiserver connect anew.
// It drives `irsa webhook serve` of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::testbed::{register_webhook, Testbed, WebhookRegistration};
use common::*;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const ISSUER: &str = "https://oidc.irsa.test/rotation";
const NS: &str = "rotation";

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(30);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A serving certificate for 127.0.0.1 with a fresh key: (cert PEM, key PEM, cert DER).
fn new_leaf(ca: &Ca) -> (String, String, Vec<u8>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(7);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// Publishes a certificate pair in `dir` the way the kubelet updates a
/// mounted Secret: files in a new hidden directory, `..data` switched to it
/// by one rename, `tls.crt`/`tls.key` being symlinks through `..data`.
fn publish(dir: &Path, generation: u32, cert: &str, key: &str) {
    let data = format!("..gen_{generation}");
    std::fs::create_dir_all(dir.join(&data)).unwrap();
    std::fs::write(dir.join(&data).join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join(&data).join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&data, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

/// The certificate the webhook serves now (DER), trusting `cas`.
async fn served(port: u16, cas: &[&Ca]) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.der().clone()).unwrap();
    }
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = common::webhook::tls_client(roots)
        .connect(name, tcp)
        .await
        .ok()?;
    let chain: &[CertificateDer<'_>] = tls.get_ref().1.peer_certificates()?;
    chain.first().map(|c| c.to_vec())
}

async fn wait_served(port: u16, cas: &[&Ca], want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while served(port, cas).await.as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "the webhook never served the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Webhook(Child);

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default, Debug)]
struct Tally {
    mutated: u32,
    unmutated: u32,
    failed: u32,
}

/// Creates pods through the apiserver from `workers` tasks until `count`
/// pods or `limit` time, whichever comes first.
async fn load(
    client: &kube::Client,
    tag: &str,
    workers: u32,
    count: u32,
    limit: Duration,
) -> Tally {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let api: Api<Pod> = Api::namespaced(client.clone(), NS);
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let deadline = Instant::now() + limit;
            for i in 0..count / workers {
                if Instant::now() >= deadline {
                    break;
                }
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{tag}-{w}-{i}")},
                    "spec": {"serviceAccountName": "s3",
                             "containers": [{"name": "app", "image": "busybox"}]}}))
                .unwrap();
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        let mutated = p
                            .spec
                            .and_then(|s| s.volumes)
                            .is_some_and(|v| v.iter().any(|v| v.name == "aws-iam-token"));
                        if mutated {
                            t.mutated += 1
                        } else {
                            t.unmutated += 1
                        }
                    }
                    Err(e) => {
                        if t.failed == 0 {
                            eprintln!("create failed: {e}");
                        }
                        t.failed += 1
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        all.mutated += t.mutated;
        all.unmutated += t.unmutated;
        all.failed += t.failed;
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn leaf_renewal_under_the_same_ca_loses_no_admission() {
    let t = tempdir();
    let d = t.path();
    assert!(run_in(
        d,
        &["init", "--cluster", "rot", "--issuer", ISSUER, "--dir", "b"]
    )
    .status
    .success());
    let bed = Testbed::start(
        d,
        &d.join("b/keys/sa-signer.key"),
        &d.join("b/keys/sa-signer.pub"),
        ISSUER,
    );
    let client = bed.client().await;
    let certs = d.join("certs");
    let ca = new_ca("irsa-webhook-ca");
    let (crt1, key1, der1) = new_leaf(&ca);
    publish(&certs, 1, &crt1, &key1);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(d.join("webhook.log")).unwrap();
    let _webhook = Webhook(
        irsa()
            .current_dir(d)
            .args(["webhook", "serve", "--bind-address", "127.0.0.1"])
            .args(["--tls-cert", "certs/tls.crt", "--tls-key", "certs/tls.key"])
            .args(["--tls-reload-seconds", "1", "--port", &port.to_string()])
            .args(["--metrics-port", &metrics_port.to_string()])
            .args(["--aws-default-region", "us-west-2"])
            .arg("--kubeconfig")
            .arg(&bed.kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_served(port, &[&ca], &der1).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(NS.into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("s3".into()),
            annotations: Some(
                [("eks.amazonaws.com/role-arn".to_string(), ROLE.to_string())].into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &sa).await.unwrap();
    // The apiserver trusts the CA, not the serving certificate.
    register_webhook(
        &client,
        WebhookRegistration {
            name: "irsa-rotation",
            port,
            ca_pem: ca.pem().into_bytes(),
            timeout_seconds: 5,
            reinvocation: None,
        },
    )
    .await;
    // Wait until the apiserver calls the webhook (it loads configurations asynchronously).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probe = 0;
    loop {
        probe += 1;
        let t = load(
            &client,
            &format!("probe{probe}"),
            1,
            1,
            Duration::from_secs(5),
        )
        .await;
        if t.mutated == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "webhook never called: {t:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Renewal under load: steady load, the new leaf swapped in meanwhile,
    // then more concurrent requests than before, so the apiserver opens
    // connections that handshake with the new leaf.
    let (crt2, key2, der2) = new_leaf(&ca);
    let steady = {
        let client = client.clone();
        tokio::spawn(async move { load(&client, "steady", 2, 600, Duration::from_secs(12)).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    publish(&certs, 2, &crt2, &key2);
    wait_served(port, &[&ca], &der2).await;
    let burst = load(&client, "burst", 8, 400, Duration::from_secs(10)).await;
    let steady = steady.await.unwrap();
    println!("leaf renewal under the same CA: steady {steady:?}, after the swap {burst:?}");
    assert!(
        steady.mutated >= 20 && burst.mutated >= 40,
        "the load ran: {steady:?} {burst:?}"
    );
    for (phase, t) in [("steady", &steady), ("burst", &burst)] {
        assert_eq!(t.failed, 0, "{phase}: failed admissions");
        assert_eq!(t.unmutated, 0, "{phase}: pods admitted without credentials");
    }

    // Control: a leaf of another CA (the caBundle no longer matches), with
    // more concurrency again: new connections fail verification and, with
    // failurePolicy Ignore, pods go through unmutated.
    let other = new_ca("another-ca");
    let (crt3, key3, der3) = new_leaf(&other);
    publish(&certs, 3, &crt3, &key3);
    wait_served(port, &[&ca, &other], &der3).await;
    let mut control = Tally::default();
    for (round, workers) in [24, 48, 96].into_iter().enumerate() {
        let t = load(
            &client,
            &format!("control{round}"),
            workers,
            workers * 5,
            Duration::from_secs(15),
        )
        .await;
        println!("control, leaf of another CA, {workers} at once: {t:?}");
        control.mutated += t.mutated;
        control.unmutated += t.unmutated;
        control.failed += t.failed;
        if control.unmutated > 0 {
            break;
        }
    }
    assert!(
        control.unmutated > 0,
        "a leaf the caBundle does not trust went unnoticed: the load never made the apiserver connect anew ({control:?})"
    );
    let log = std::fs::read_to_string(d.join("webhook.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
    drop(bed);
}
