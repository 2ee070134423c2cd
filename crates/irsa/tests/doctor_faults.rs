//! `irsa doctor` names the real fault, on the real test bed: a
//! ServiceAccount annotated with the role irsa.yaml binds to another one
//! (and a token checked against another ServiceAccount's role), and a
//! registered webhook that is down and fails open, so that pods are
//! admitted unmutated without an error. Doctor must say so from a dry-run
//! create, not advise recreating pods while it lasts, and see the webhook
//! mutate once it is up; a namespace selector that leaves the namespace
//! out is named with the label that fixes it.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::testbed::{free_port, register_webhook, Testbed, WebhookRegistration};
use common::webhook::Webhook;
use common::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

const HOST: &str = "oidc.irsa.test";
const ISSUER: &str = "https://oidc.irsa.test/prod";
const ORDERS: &str = "arn:aws:iam::111122223333:role/irsa/prod/prod-app-orders-api";
const ECHOER: &str = "arn:aws:iam::111122223333:role/irsa/prod/prod-default-s3-echoer";
const WEBHOOK_LINK: &str = "webhook: mutates new pods of the ServiceAccount";
const ROLE_LINK: &str = "serviceaccount: role is the one irsa.yaml binds to it";

/// irsa.yaml binds a role to app/orders-api and one to default/s3-echoer.
fn bind_two(d: &Path) {
    let path = d.join("b/irsa.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap().replace(
        "bindings: []",
        "bindings:\n- namespace: app\n  serviceAccount: orders-api\n- namespace: default\n  serviceAccount: s3-echoer\n",
    );
    std::fs::write(path, yaml).unwrap();
}

/// `irsa doctor -f b/irsa.yaml ARGS --no-aws --output json`: the exit code
/// and every check. The issuer is not served (its links fail alike in
/// every run); the lines these tests judge do not depend on it.
fn doctor(d: &Path, kubeconfig: &Path, args: &[&str]) -> (Option<i32>, Vec<Value>) {
    let mut all = vec![
        "doctor".to_string(),
        "-f".into(),
        "b/irsa.yaml".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--resolve".into(),
        format!("{HOST}=127.0.0.1:1"),
        "--no-aws".into(),
        "--output".into(),
        "json".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = run_in(d, &refs);
    let report = json(&out.stdout);
    (
        out.status.code(),
        report["checks"].as_array().unwrap().clone(),
    )
}

/// The check named `name` (exactly one).
fn line<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = checks.iter().filter(|c| c["name"] == name).collect();
    assert_eq!(found.len(), 1, "{name}: {checks:#?}");
    found[0]
}

fn text<'a>(check: &'a Value, key: &str) -> &'a str {
    check[key].as_str().unwrap_or_default()
}

async fn create_sa(client: &kube::Client, ns: &str, name: &str, role: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name,
        "annotations": {"eks.amazonaws.com/role-arn": role}}}))
    .unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver (scripts/test provides it)"]
async fn a_role_bound_to_another_service_account_is_named_with_the_right_one() {
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "prod", ISSUER);
    bind_two(d);
    let client = bed.client().await;
    let kubectl = |args: &[&str]| {
        let out = bed.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    kubectl(&["create", "namespace", "app"]);
    create_sa(&client, "app", "orders-api", ORDERS).await;
    // default/s3-echoer annotated with app/orders-api's role.
    create_sa(&client, "default", "s3-echoer", ORDERS).await;

    let (code, checks) = doctor(d, &bed.kubeconfig, &["-n", "default", "-s", "s3-echoer"]);
    assert_eq!(code, Some(1));
    let wrong = line(&checks, ROLE_LINK);
    assert_eq!(wrong["status"], "fail", "{wrong}");
    assert!(
        text(wrong, "detail").contains("the role irsa.yaml binds to app/orders-api"),
        "{wrong}"
    );
    assert_eq!(
        text(wrong, "fix"),
        format!("annotate the ServiceAccount with its own role: kubectl annotate serviceaccount -n default s3-echoer eks.amazonaws.com/role-arn={ECHOER} --overwrite; then recreate its pods (they keep the role they were created with)")
    );

    // The fix, applied: the link holds.
    kubectl(&[
        "annotate",
        "serviceaccount",
        "-n",
        "default",
        "s3-echoer",
        &format!("eks.amazonaws.com/role-arn={ECHOER}"),
        "--overwrite",
    ]);
    let (_, checks) = doctor(d, &bed.kubeconfig, &["-n", "default", "-s", "s3-echoer"]);
    assert_eq!(line(&checks, ROLE_LINK)["status"], "pass", "{checks:#?}");

    // A token of default/s3-echoer checked against app/orders-api's role.
    let token = kubectl(&[
        "create",
        "token",
        "s3-echoer",
        "-n",
        "default",
        "--audience",
        "sts.amazonaws.com",
    ]);
    std::fs::write(d.join("token"), token.trim()).unwrap();
    let (code, checks) = doctor(
        d,
        &bed.kubeconfig,
        &["--token", "token", "--role-arn", ORDERS],
    );
    assert_eq!(code, Some(1));
    let wrong = line(&checks, ROLE_LINK);
    assert_eq!(wrong["status"], "fail", "{wrong}");
    assert!(
        text(wrong, "fix").contains(&format!("--role-arn {ECHOER}")),
        "{wrong}"
    );

    // A ServiceAccount irsa.yaml binds nothing to: said, with `irsa bind`.
    create_sa(&client, "app", "reports", ORDERS).await;
    let (_, checks) = doctor(d, &bed.kubeconfig, &["-n", "app", "-s", "reports"]);
    let unbound = line(&checks, ROLE_LINK);
    assert_eq!(unbound["status"], "fail", "{unbound}");
    assert!(
        text(unbound, "detail").contains("irsa.yaml binds no role to app/reports")
            && text(unbound, "fix").contains("irsa bind -n app -s reports"),
        "{unbound}"
    );
    drop(bed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver (scripts/test provides it)"]
async fn a_webhook_that_is_down_and_fails_open_is_named_and_no_pod_recreation_advised() {
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "prod", ISSUER);
    bind_two(d);
    let client = bed.client().await;
    create_sa(&client, "default", "s3-echoer", ECHOER).await;
    // Registered (failurePolicy Ignore) but not running.
    let port = free_port();
    register_webhook(
        &client,
        WebhookRegistration {
            name: "irsa-pod-identity",
            port,
            ca_pem: std::fs::read(d.join("certs/ca.crt")).unwrap(),
            timeout_seconds: 5,
            reinvocation: None,
        },
    )
    .await;
    // A pod created now is admitted unmutated, without an error.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "echoer"},
        "spec": {"serviceAccountName": "s3-echoer", "containers": [{"name": "app", "image": "busybox"}]}}))
    .unwrap();
    let stored = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert!(!format!("{:?}", stored.spec).contains("AWS_ROLE_ARN"));
    // What the API server answers a dry-run create meanwhile: the pod,
    // unmutated, with no warning and no error. The absence of the
    // mutation is all there is to see.
    std::fs::write(
        d.join("probe.json"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default"},
            "spec": {"serviceAccountName": "s3-echoer", "containers": [{"name": "app", "image": "busybox"}]}})
        .to_string(),
    )
    .unwrap();
    let probe = d.join("probe.json");
    let out = bed.kubectl(&[
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        probe.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("AWS_ROLE_ARN"), "{}", stdout(&out));
    assert!(
        !stderr(&out).to_lowercase().contains("warning"),
        "v1.28 says nothing of the failed call: {}",
        stderr(&out)
    );

    let (code, checks) = doctor(d, &bed.kubeconfig, &["-n", "default", "--pod", "echoer"]);
    assert_eq!(code, Some(1));
    let hook = line(&checks, WEBHOOK_LINK);
    assert_eq!(hook["status"], "fail", "{hook}");
    assert!(
        text(hook, "detail").contains("came back without the mutation")
            && text(hook, "detail").contains("failurePolicy being Ignore")
            && text(hook, "detail")
                .contains(&format!("nothing accepts connections at 127.0.0.1:{port}")),
        "{hook}"
    );
    assert!(
        text(hook, "fix").contains("recreate the ServiceAccount's pods only once"),
        "{hook}"
    );
    let unmutated = line(&checks, "pod: mutated by the webhook");
    assert!(
        text(unmutated, "fix").starts_with("first make the webhook mutate new pods"),
        "recreating now gives another unmutated pod: {unmutated}"
    );

    // Up: a dry-run pod comes back mutated, and the pod's fix is to recreate it.
    let _webhook = Webhook::on_port(d, &bed.kubeconfig, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let checks = loop {
        let (_, checks) = doctor(d, &bed.kubeconfig, &["-n", "default", "--pod", "echoer"]);
        if line(&checks, WEBHOOK_LINK)["status"] == "pass" {
            break checks;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook did not mutate within 30 s: {checks:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let unmutated = line(&checks, "pod: mutated by the webhook");
    assert!(
        text(unmutated, "fix").contains("kubectl delete pod -n default echoer"),
        "{unmutated}"
    );

    // A namespace selector that leaves `default` out: named, with the label.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut config = configs.get("irsa-pod-identity").await.unwrap();
    config.webhooks.as_mut().unwrap()[0].namespace_selector = Some(
        serde_json::from_value(json!({"matchLabels": {"irsa.dev/webhook": "enabled"}})).unwrap(),
    );
    configs
        .replace("irsa-pod-identity", &PostParams::default(), &config)
        .await
        .unwrap();
    let (_, checks) = doctor(d, &bed.kubeconfig, &["-n", "default", "-s", "s3-echoer"]);
    let hook = line(&checks, WEBHOOK_LINK);
    assert_eq!(hook["status"], "fail", "{hook}");
    assert!(
        text(hook, "detail").contains("namespaceSelector")
            && text(hook, "fix")
                .starts_with("kubectl label namespace default irsa.dev/webhook=enabled"),
        "{hook}"
    );
    drop(bed);
}
