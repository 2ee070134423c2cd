//! `--watch-config-map` on the real apiserver: the webhook, started with
//! the Go webhook's arguments, reads ServiceAccount roles from the
//! ConfigMap `pod-identity-webhook`, follows its updates, and lets an
//! account's own annotation win.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::testbed::{free_port, register_webhook, Killed, Testbed, WebhookRegistration};
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

const ISSUER: &str = "https://oidc.irsa.test/cm";
const OWN: &str = "arn:aws:iam::111122223333:role/own";
const FROM_CM: &str = "arn:aws:iam::111122223333:role/from-config-map";
const ANY_NS: &str = "arn:aws:iam::111122223333:role/any-namespace";

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

fn config_map(entries: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"name": "pod-identity-webhook"}, "data": {"config": entries.to_string()}})
}

/// The role the webhook gave a new pod of `ns/sa`, if any.
async fn role_of_new_pod(client: &kube::Client, ns: &str, sa: &str, name: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "busybox"}]}}))
    .unwrap();
    let stored = api.create(&PostParams::default(), &pod).await.unwrap();
    stored.spec?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == "AWS_ROLE_ARN")
        .and_then(|e| e.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn roles_come_from_the_watched_config_map_and_annotations_win() {
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "cm", ISSUER);
    let client = bed.client().await;
    for ns in ["eks", "app", "other"] {
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": ns}}),
        )
        .await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "eks");
    create(&cms, config_map(json!({
        "app/s3": {"RoleARN": FROM_CM, "Audience": "sts.amazonaws.com", "UseRegionalSTS": true, "TokenExpiration": 0},
        "app/own": {"RoleARN": FROM_CM},
        "*/any": {"RoleARN": ANY_NS},
    }))).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "app");
    create(&sas, json!({"metadata": {"name": "s3"}})).await;
    create(&sas, json!({"metadata": {"name": "plain"}})).await;
    create(
        &sas,
        json!({"metadata": {"name": "own", "annotations": {"eks.amazonaws.com/role-arn": OWN}}}),
    )
    .await;
    create(
        &Api::<ServiceAccount>::namespaced(client.clone(), "other"),
        json!({"metadata": {"name": "any"}}),
    )
    .await;

    // The Go webhook's own arguments, in pflag syntax.
    let (port, metrics) = (free_port(), free_port());
    let log = std::fs::File::create(d.join("webhook.log")).unwrap();
    let _webhook = Killed(
        irsa()
            .current_dir(d)
            .args([
                "webhook",
                "serve",
                "--in-cluster=false",
                "--namespace=eks",
                "--watch-config-map=true",
            ])
            .args([
                "--sts-regional-endpoint",
                "--logtostderr",
                "-v=2",
                "--bind-address=127.0.0.1",
            ])
            .args(["--tls-cert=certs/tls.crt", "--tls-key=certs/tls.key"])
            .arg(format!("--port={port}"))
            .arg(format!("--metrics-port={metrics}"))
            .arg("--kubeconfig")
            .arg(&bed.kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(d.join("certs/ca.crt")).unwrap(),
        )
        .unwrap()])
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = https
            .get(format!("https://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            std::fs::read_to_string(d.join("webhook.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    register_webhook(
        &client,
        WebhookRegistration {
            name: "irsa-cm",
            port,
            ca_pem: std::fs::read(d.join("certs/ca.crt")).unwrap(),
            timeout_seconds: 5,
            reinvocation: None,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(
        role_of_new_pod(&client, "app", "s3", "p1").await.as_deref(),
        Some(FROM_CM)
    );
    assert_eq!(
        role_of_new_pod(&client, "app", "own", "p2")
            .await
            .as_deref(),
        Some(OWN),
        "annotation wins"
    );
    assert_eq!(
        role_of_new_pod(&client, "other", "any", "p3")
            .await
            .as_deref(),
        Some(ANY_NS),
        "*/name"
    );
    assert_eq!(role_of_new_pod(&client, "app", "plain", "p4").await, None);

    // An update is followed: app/s3 removed, app/plain added.
    let mut cm = cms.get("pod-identity-webhook").await.unwrap();
    cm.data = Some(
        [(
            "config".to_string(),
            json!({"app/plain": {"RoleARN": FROM_CM}}).to_string(),
        )]
        .into(),
    );
    cms.replace("pod-identity-webhook", &PostParams::default(), &cm)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let s3 = role_of_new_pod(&client, "app", "s3", &format!("u{n}")).await;
        let plain = role_of_new_pod(&client, "app", "plain", &format!("v{n}")).await;
        if s3.is_none() && plain.as_deref() == Some(FROM_CM) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "update not followed: {s3:?} {plain:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A ConfigMap that does not parse: reported, the previous entries kept.
    let mut cm = cms.get("pod-identity-webhook").await.unwrap();
    cm.data = Some([("config".to_string(), "{not json".to_string())].into());
    cms.replace("pod-identity-webhook", &PostParams::default(), &cm)
        .await
        .unwrap();
    let log = || std::fs::read_to_string(d.join("webhook.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log().contains("pod-identity-webhook ConfigMap not used; keeping the previous entries") {
        assert!(
            Instant::now() < deadline,
            "the bad ConfigMap was not reported: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        role_of_new_pod(&client, "app", "plain", "w1")
            .await
            .as_deref(),
        Some(FROM_CM),
        "the entries from before are still used"
    );

    // Deleted: its entries are dropped.
    cms.delete("pod-identity-webhook", &Default::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        if role_of_new_pod(&client, "app", "plain", &format!("x{n}"))
            .await
            .is_none()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted ConfigMap's entries are still used"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(bed);
}
