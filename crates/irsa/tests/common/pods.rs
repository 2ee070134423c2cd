//! Kubernetes objects for the webhook tests against the test bed: namespaces,
//! ServiceAccounts with a role, pods created and read back as stored, and
//! what the webhook added to them; and waiting for a webhook to be ready.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{json, Value};

/// Creates the namespace `name`.
pub async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns).await.unwrap();
}

/// Creates ServiceAccount `ns/name`, annotated with `role` (the
/// `eks.amazonaws.com/role-arn` annotation) when given.
pub async fn service_account(client: &kube::Client, ns: &str, name: &str, role: Option<&str>) {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let mut meta = ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    if let Some(role) = role {
        meta.annotations =
            Some([("eks.amazonaws.com/role-arn".to_string(), role.to_string())].into());
    }
    api.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta,
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// Creates a pod from JSON and returns it as the apiserver stored it.
pub async fn create_pod(client: &kube::Client, ns: &str, pod: Value) -> Value {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let stored = api.create(&PostParams::default(), &pod).await.unwrap();
    serde_json::to_value(stored).unwrap()
}

/// A pod of one container running as ServiceAccount `sa`.
pub fn simple_pod(name: &str, sa: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "busybox"}]}})
}

/// The environment of container number `container`, as (name, value) pairs.
pub fn env_of(pod: &Value, container: usize) -> Vec<(String, String)> {
    pod["spec"]["containers"][container]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_string(),
                        e["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the pod has the projected token volume the webhook adds.
pub fn has_token_volume(pod: &Value) -> bool {
    pod["spec"]["volumes"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v["name"] == "aws-iam-token"))
}

/// An HTTPS client trusting only the CA in the PEM file `ca`.
pub fn https_client(ca: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Waits up to 30 s for `https://127.0.0.1:{port}/readyz` to answer 200,
/// trusting the CA in `ca`; fails the test with `log()` otherwise.
pub async fn wait_ready(ca: &Path, port: u16, log: impl Fn() -> String) {
    let client = https_client(ca);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client
            .get(format!("https://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "webhook not ready in 30 s: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
