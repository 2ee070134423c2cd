//! The admission-scope overlays of `deploy/`: `opt-in` (the webhook is called
//! only for pods in namespaces labelled `irsa.dev/webhook=enabled`) and
//! `strict` (the same scope with `failurePolicy: Fail`). They render with
//! `kubectl kustomize`, change nothing but the webhook's scope and failure
//! policy, also on top of the other installs, and pass a server-side dry run.
//! On the test bed the strict one refuses a pod while the webhook is down and
//! admits it mutated once it is up; the opt-in one admits it bare while down.
// The test-bed tests run `irsa webhook serve` of the full build.
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::kustomize::{kustomize, workspace};
use common::testbed::{free_port, Testbed};
use common::webhook::{Options, Webhook};
use common::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// The label a namespace carries to be in scope of the opt-in and strict overlays.
const LABEL: (&str, &str) = ("irsa.dev/webhook", "enabled");
const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const ISSUER: &str = "https://oidc.irsa.test/scope";
const WEBHOOK: &str = "pod-identity-webhook.irsa.dev";

/// The namespaceSelector both overlays ship.
fn opt_in_selector() -> Value {
    json!({"matchExpressions": [
        {"key": LABEL.0, "operator": "In", "values": [LABEL.1]},
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": ["irsa-system", "kube-system"]},
    ]})
}

/// The rendered objects split into the MutatingWebhookConfiguration and the rest.
fn split(objects: Vec<Value>) -> (Value, Vec<Value>) {
    let (webhooks, rest): (Vec<Value>, Vec<Value>) = objects
        .into_iter()
        .partition(|o| o["kind"] == "MutatingWebhookConfiguration");
    assert_eq!(webhooks.len(), 1, "one MutatingWebhookConfiguration");
    let webhook = webhooks.into_iter().next().unwrap();
    // It parses as the API type.
    let _: MutatingWebhookConfiguration = serde_json::from_value(webhook.clone()).unwrap();
    (webhook, rest)
}

#[test]
fn opt_in_and_strict_overlays_change_only_the_webhook_scope_and_failure_policy() {
    let (base, base_rest) = split(kustomize("deploy/base"));
    let (opt_in, opt_in_rest) = split(kustomize("deploy/opt-in"));
    let (strict, strict_rest) = split(kustomize("deploy/strict"));
    assert_eq!(opt_in_rest, base_rest, "opt-in changes only the webhook");
    assert_eq!(strict_rest, base_rest, "strict changes only the webhook");

    let mut expected = base.clone();
    expected["webhooks"][0]["namespaceSelector"] = opt_in_selector();
    assert_eq!(opt_in, expected, "opt-in: the base's webhook, scoped");
    assert_eq!(opt_in["webhooks"][0]["failurePolicy"], "Ignore");

    expected["webhooks"][0]["failurePolicy"] = json!("Fail");
    assert_eq!(strict, expected, "strict: the opt-in webhook with Fail");
    // Everything else the webhook relies on is the base's.
    let w = &strict["webhooks"][0];
    assert_eq!(w["name"], WEBHOOK);
    assert_eq!(w["reinvocationPolicy"], "IfNeeded");
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(
        w["objectSelector"]["matchExpressions"][0]["key"],
        "eks.amazonaws.com/skip-pod-identity-webhook"
    );
}

/// The absolute `path` relative to the directory `dir` (kustomize refuses
/// absolute resource paths).
fn relative_from(dir: &Path, path: &Path) -> String {
    let dir = dir.canonicalize().unwrap();
    let up = "../".repeat(dir.components().count() - 1);
    format!("{up}{}", path.strip_prefix("/").unwrap().display())
}

/// Renders, in `dir`, a kustomization of `resources` with the strict component.
fn with_strict_component(dir: &Path, resources: &str) -> Vec<Value> {
    let deploy = relative_from(dir, &workspace().join("deploy"));
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("resources:\n  - {resources}\ncomponents:\n  - {deploy}/components/strict\n"),
    )
    .unwrap();
    kustomize(dir)
}

#[test]
fn strict_component_composes_with_the_cert_manager_overlay() {
    let t = tempdir();
    let deploy = relative_from(t.path(), &workspace().join("deploy"));
    let composed = with_strict_component(t.path(), &format!("{deploy}/cert-manager"));
    let (composed, composed_rest) = split(composed);
    let (cert_manager, cert_manager_rest) = split(kustomize("deploy/cert-manager"));
    let (strict, _) = split(kustomize("deploy/strict"));
    assert_eq!(composed_rest, cert_manager_rest, "Certificates etc. kept");
    assert_eq!(
        composed["metadata"], cert_manager["metadata"],
        "cainjector's annotation kept"
    );
    assert_eq!(composed["webhooks"], strict["webhooks"], "strict scope");
}

/// The install without cert-manager: `irsa webhook manifests` (caBundle and
/// Secret filled in) as the resource of a kustomization with the component.
#[test]
fn strict_component_applies_to_the_output_of_webhook_manifests() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(d, &["webhook", "certs", "--out-dir", "certs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let args = ["webhook", "manifests", "--cert-dir", "certs"];
    let out = run_in(d, &[&args[..], &["--include-private-key"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let manifests = stdout(&out);
    std::fs::write(d.join("irsa-webhook.yaml"), &manifests).unwrap();
    let (composed, composed_rest) = split(with_strict_component(d, "irsa-webhook.yaml"));
    let (printed, printed_rest) = split(common::kustomize::docs(&manifests));
    // kustomize orders objects by kind; compare as sets, and never print
    // them (the Secret holds the serving key).
    let key = |o: &Value| format!("{}/{}", o["kind"], o["metadata"]["name"]);
    let sorted = |mut objects: Vec<Value>| {
        objects.sort_by_key(key);
        objects
    };
    let kinds: Vec<String> = printed_rest.iter().map(key).collect();
    assert!(
        sorted(composed_rest) == sorted(printed_rest),
        "the component changed or lost objects besides the webhook: {kinds:?}"
    );
    let ca = std::fs::read(d.join("certs/ca.crt")).unwrap();
    let w = &composed["webhooks"][0];
    assert_eq!(w["clientConfig"]["caBundle"], b64_std(&ca), "caBundle kept");
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["namespaceSelector"], opt_in_selector());
    let mut expected = printed["webhooks"][0].clone();
    expected["failurePolicy"] = json!("Fail");
    expected["namespaceSelector"] = opt_in_selector();
    assert_eq!(w, &expected, "nothing else changed");
}

/// Keys for a bed, and the bed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn base_opt_in_and_strict_pass_a_server_side_dry_run() {
    let t = tempdir();
    let bed = Testbed::for_webhook(t.path(), "scope", ISSUER);
    // A dry run stores nothing, so the namespaced objects need their
    // namespace to exist already.
    common::pods::namespace(&bed.client().await, "irsa-system").await;
    for dir in ["deploy/base", "deploy/opt-in", "deploy/strict"] {
        let objects = kustomize(dir);
        let out = bed.kubectl(&["apply", "--server-side", "--dry-run=server", "-k", dir]);
        let text = stdout(&out);
        assert!(out.status.success(), "{dir}: {}{text}", stderr(&out));
        let applied = text
            .lines()
            .filter(|l| l.ends_with("serverside-applied (server dry run)"))
            .count();
        assert_eq!(applied, objects.len(), "{dir}: every object:\n{text}");
    }
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(bed.client().await);
    assert!(
        webhooks
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a dry run stores nothing"
    );
}

/// `irsa webhook serve` on 127.0.0.1:`port`; killed on drop.
fn start_webhook(dir: &Path, kubeconfig: &Path, port: u16) -> Webhook {
    Webhook::start(
        dir,
        kubeconfig,
        Options {
            port: Some(port),
            flags: &["--aws-default-region", "us-west-2"],
            ..Options::default()
        },
    )
}

/// The overlay's rendered webhook configuration with only its clientConfig
/// changed: `https://127.0.0.1:port/mutate`, trusting `ca_pem`.
fn configuration_for(overlay: &str, port: u16, ca_pem: &[u8]) -> MutatingWebhookConfiguration {
    let (mut config, _) = split(kustomize(overlay));
    let webhooks = config["webhooks"].as_array_mut().unwrap();
    assert_eq!(webhooks.len(), 1);
    let client_config = &mut webhooks[0]["clientConfig"];
    assert_eq!(
        client_config["service"]["path"], "/mutate",
        "{client_config}"
    );
    *client_config = json!({
        "url": format!("https://127.0.0.1:{port}/mutate"),
        "caBundle": b64_std(ca_pem),
    });
    serde_json::from_value(config).unwrap()
}

fn b64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Namespace `name` with `labels` (created, or labelled if it exists) and
/// ServiceAccount `app` in it, annotated with a role.
async fn namespace_with_account(client: &kube::Client, name: &str, labels: Value) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}});
    namespaces
        .patch(name, &PatchParams::apply("irsa-test"), &Patch::Apply(ns))
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let sa = json!({"metadata": {"name": "app",
                    "annotations": {"eks.amazonaws.com/role-arn": ROLE}}});
    accounts
        .create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
        .await
        .unwrap();
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "busybox"}]}}))
    .unwrap()
}

/// Whether the webhook mutated `pod`: the role's env var and the token volume.
fn mutated(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref().unwrap();
    let role = spec.containers[0]
        .env
        .iter()
        .flatten()
        .any(|e| e.name == "AWS_ROLE_ARN" && e.value.as_deref() == Some(ROLE));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == "aws-iam-token");
    assert_eq!(role, volume, "half a mutation: {spec:?}");
    role
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn strict_overlay_refuses_a_pod_while_the_webhook_is_down_and_mutates_it_once_up() {
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "scope", ISSUER);
    let client = bed.client().await;
    let labelled = json!({LABEL.0: LABEL.1});
    namespace_with_account(&client, "team", labelled.clone()).await;
    namespace_with_account(&client, "other", json!({})).await;
    // Labelled by mistake: still out of scope, so the webhook's own pods and
    // the cluster's system pods start while it is down.
    namespace_with_account(&client, "irsa-system", labelled.clone()).await;
    namespace_with_account(&client, "kube-system", labelled).await;

    // The shipped configuration, pointed at a port nothing listens on yet.
    let port = free_port();
    let ca = std::fs::read(d.join("certs/ca.crt")).unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &configuration_for("deploy/strict", port, &ca),
        )
        .await
        .unwrap();

    // The apiserver loads webhook configurations asynchronously: wait (with
    // dry runs, which store nothing) until it calls this one.
    let team: Api<Pod> = Api::namespaced(client.clone(), "team");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while team.create(&dry_run, &pod("probe")).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the strict configuration was not in force within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Webhook down: the labelled namespace's pod is refused, not admitted bare.
    match team.create(&PostParams::default(), &pod("web")).await {
        Err(kube::Error::Api(e)) => assert!(
            e.message
                .contains(&format!("failed calling webhook \"{WEBHOOK}\"")),
            "refused for another reason: {e:?}"
        ),
        other => panic!("admitted (or failed otherwise) while the webhook is down: {other:?}"),
    }
    for ns in ["other", "irsa-system", "kube-system"] {
        let stored = Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &pod("web"))
            .await
            .unwrap_or_else(|e| panic!("{ns}: out of scope, yet refused: {e}"));
        assert!(!mutated(&stored), "{ns}: out of scope, yet mutated");
    }

    // Webhook up: the same pod is admitted, mutated.
    let webhook = start_webhook(d, &bed.kubeconfig, port);
    webhook.ready().await;
    let stored = team
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "refused with the webhook up: {e}\n{}",
                std::fs::read_to_string(d.join("webhook.log")).unwrap_or_default()
            )
        });
    assert!(mutated(&stored), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn opt_in_overlay_mutates_only_labelled_namespaces_and_admits_bare_pods_while_down() {
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "scope", ISSUER);
    let client = bed.client().await;
    namespace_with_account(&client, "team", json!({LABEL.0: LABEL.1})).await;
    namespace_with_account(&client, "other", json!({})).await;
    let port = free_port();
    let webhook = start_webhook(d, &bed.kubeconfig, port);
    webhook.ready().await;
    let ca = std::fs::read(d.join("certs/ca.crt")).unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &configuration_for("deploy/opt-in", port, &ca),
        )
        .await
        .unwrap();

    // Wait (with dry runs, which store nothing but are mutated) until the
    // apiserver calls the webhook.
    let team: Api<Pod> = Api::namespaced(client.clone(), "team");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mutated(&team.create(&dry_run, &pod("probe")).await.unwrap()) {
        assert!(
            Instant::now() < deadline,
            "the opt-in configuration was not in force within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = Api::<Pod>::namespaced(client.clone(), "other")
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    assert!(!mutated(&stored), "unlabelled namespace, yet mutated");

    // Webhook down: failurePolicy Ignore admits the pod, without credentials.
    drop(webhook);
    let stored = team
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap_or_else(|e| panic!("opt-in refused a pod while the webhook is down: {e}"));
    assert!(!mutated(&stored), "mutated with the webhook down?");
}
