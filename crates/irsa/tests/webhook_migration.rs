//! Migrating from the Go webhook, on the real apiserver: `irsa webhook
//! serve` started with the arguments of the upstream Deployment, and with
//! a Helm chart's kind of argument list, mutates a pod.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::testbed::{free_port, register_webhook, Killed, Testbed, WebhookRegistration};
use common::*;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

const ISSUER: &str = "https://oidc.irsa.test/migration";
const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";

/// Starts a bed, then `irsa webhook serve GO_ARGS` (plus where to listen,
/// the certificates and the kubeconfig), and returns the env of a new pod
/// of a ServiceAccount annotated with [`ROLE`].
async fn pod_env_with(go_args: &[&str]) -> Vec<(String, String)> {
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "m", ISSUER);
    let client = bed.client().await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount = serde_json::from_value(
        json!({"metadata": {"name": "s3", "annotations": {"eks.amazonaws.com/role-arn": ROLE}}}),
    )
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "app")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();

    let (port, metrics) = (free_port(), free_port());
    let log = std::fs::File::create(d.join("webhook.log")).unwrap();
    let _webhook = Killed(
        irsa()
            .current_dir(d)
            .args(["webhook", "serve"])
            .args(go_args)
            .args([
                "--bind-address=127.0.0.1",
                "--tls-cert=certs/tls.crt",
                "--tls-key=certs/tls.key",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--metrics-port={metrics}"))
            .arg("--kubeconfig")
            .arg(&bed.kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ca = std::fs::read(d.join("certs/ca.crt")).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
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
        let log = std::fs::read_to_string(d.join("webhook.log")).unwrap();
        assert!(Instant::now() < deadline, "{go_args:?}: not ready: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    register_webhook(
        &client,
        WebhookRegistration {
            name: "irsa-migration",
            port,
            ca_pem: ca,
            timeout_seconds: 5,
            reinvocation: None,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"serviceAccountName": "s3", "containers": [{"name": "app", "image": "busybox"}]}}))
    .unwrap();
    let stored = Api::<Pod>::namespaced(client.clone(), "app")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    stored.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

fn has(env: &[(String, String)], name: &str, value: &str) -> bool {
    env.iter().any(|(n, v)| n == name && v == value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn the_upstream_deployment_arguments_start_irsa_unchanged() {
    // deploy/deployment-base.yaml of amazon-eks-pod-identity-webhook.
    let env = pod_env_with(&[
        "--in-cluster=false",
        "--namespace=default",
        "--service-name=pod-identity-webhook",
        "--annotation-prefix=eks.amazonaws.com",
        "--token-audience=sts.amazonaws.com",
        "--logtostderr",
    ])
    .await;
    assert!(has(&env, "AWS_ROLE_ARN", ROLE), "{env:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn a_helm_chart_argument_list_starts_irsa_unchanged() {
    // What Helm charts render: every value spelled out, booleans as
    // --flag=true|false, klog flags, a value after a space.
    let env = pod_env_with(&[
        "--in-cluster=false",
        "--namespace=kube-system",
        "--service-name=pod-identity-webhook",
        "--tls-secret=pod-identity-webhook",
        "--annotation-prefix=eks.amazonaws.com",
        "--token-audience=sts.amazonaws.com",
        "--token-mount-path=/var/run/secrets/eks.amazonaws.com/serviceaccount",
        "--token-expiration=86400",
        "--aws-default-region=eu-west-1",
        "--sts-regional-endpoint=true",
        "--watch-config-map=false",
        "--compose-role-arn=false",
        "--enable-debugging-handlers=false",
        "--resync-period=60s",
        "--service-account-lookup-grace-period",
        "0s",
        "--logtostderr=true",
        "--alsologtostderr=false",
        "--stderrthreshold=INFO",
        "--v=2",
    ])
    .await;
    assert!(has(&env, "AWS_ROLE_ARN", ROLE), "{env:?}");
    assert!(has(&env, "AWS_REGION", "eu-west-1"), "{env:?}");
    assert!(
        has(&env, "AWS_STS_REGIONAL_ENDPOINTS", "regional"),
        "{env:?}"
    );
}
