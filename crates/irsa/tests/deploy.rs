//! The install manifests: `kubectl kustomize deploy/...` and
//! `irsa webhook manifests` render objects that parse into k8s-openapi types
//! and carry the settings the webhook relies on.
// These tests check the manifests against `irsa webhook serve` of the full build.
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use common::kustomize::{docs, kustomize};
use common::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", v["kind"]))
}

/// Parses every object into its k8s-openapi type and checks the important settings.
fn check_objects(objects: &[Value], namespace: &str) -> MutatingWebhookConfiguration {
    let mut webhook = None;
    let mut kinds = Vec::new();
    for v in objects {
        let kind = v["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Namespace" => assert_eq!(
                typed::<Namespace>(v).metadata.name.as_deref(),
                Some(namespace)
            ),
            "ServiceAccount" => drop(typed::<ServiceAccount>(v)),
            "ClusterRole" => {
                let rules = typed::<ClusterRole>(v).rules.unwrap();
                assert_eq!(rules.len(), 1);
                assert_eq!(
                    rules[0].resources.as_deref(),
                    Some(&["serviceaccounts".to_string()][..])
                );
                assert_eq!(rules[0].verbs, ["get", "list", "watch"], "minimal RBAC");
            }
            "ClusterRoleBinding" => assert_eq!(
                typed::<ClusterRoleBinding>(v).subjects.unwrap()[0]
                    .namespace
                    .as_deref(),
                Some(namespace)
            ),
            "Deployment" => {
                let d: Deployment = typed(v);
                let spec = d.spec.unwrap();
                assert_eq!(spec.replicas, Some(2));
                let pod = spec.template.spec.unwrap();
                assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
                let c = &pod.containers[0];
                let sc = c.security_context.clone().unwrap();
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert!(c.resources.as_ref().unwrap().requests.is_some());
                assert_eq!(
                    c.readiness_probe
                        .as_ref()
                        .unwrap()
                        .http_get
                        .as_ref()
                        .unwrap()
                        .path
                        .as_deref(),
                    Some("/readyz")
                );
                check_args_exist(c.args.as_ref().unwrap());
            }
            "PodDisruptionBudget" => assert!(typed::<PodDisruptionBudget>(v)
                .spec
                .unwrap()
                .min_available
                .is_some()),
            "Service" => drop(typed::<Service>(v)),
            "Secret" => {
                let s: Secret = typed(v);
                assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
                assert!(s.data.unwrap().contains_key("tls.key"));
            }
            "MutatingWebhookConfiguration" => {
                webhook = Some(typed::<MutatingWebhookConfiguration>(v))
            }
            "Issuer" | "Certificate" => assert_eq!(v["apiVersion"], "cert-manager.io/v1"),
            other => panic!("unexpected kind {other}"),
        }
        if let Some(ns) = v["metadata"]["namespace"].as_str() {
            assert_eq!(ns, namespace, "{kind} in the wrong namespace");
        }
        kinds.push(kind);
    }
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} missing");
    }
    let webhook = webhook.unwrap();
    let w = &webhook.webhooks.as_ref().unwrap()[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(w.side_effects, "None");
    assert_eq!(w.admission_review_versions, ["v1"]);
    assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(
        w.client_config.service.as_ref().unwrap().path.as_deref(),
        Some("/mutate")
    );
    let ns_sel = serde_json::to_string(&w.namespace_selector).unwrap();
    assert!(
        ns_sel.contains(namespace),
        "never blocks its own namespace: {ns_sel}"
    );
    let obj_sel = serde_json::to_string(&w.object_selector).unwrap();
    assert!(
        obj_sel.contains("eks.amazonaws.com/skip-pod-identity-webhook")
            && obj_sel.contains("DoesNotExist")
    );
    webhook
}

/// Every `--flag` in the Deployment is a flag `irsa webhook serve` knows.
fn check_args_exist(args: &[String]) {
    assert_eq!(&args[..2], ["webhook", "serve"]);
    let help = stdout(
        &irsa()
            .args(["webhook", "serve", "--help"])
            .output()
            .unwrap(),
    );
    for a in &args[2..] {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{flag} is not a flag of irsa webhook serve"
        );
    }
}

/// The images the Deployments in `objects` run.
fn images(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|o| {
            typed::<Deployment>(o)
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers
        })
        .map(|c| c.image.unwrap())
        .collect()
}

/// The image of this release: its tag is the crate version.
fn release_image() -> String {
    format!("ghcr.io/irsa-dev/irsa:{}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn kustomize_base_and_cert_manager_overlay_render() {
    let base = kustomize("deploy/base");
    check_objects(&base, "irsa-system");
    let cert_manager = kustomize("deploy/cert-manager");
    check_objects(&cert_manager, "irsa-system");
    // deploy/ and the crate version agree: bumping one without the other fails here.
    assert_eq!(images(&base), [release_image()]);
    assert_eq!(images(&cert_manager), [release_image()]);
}

#[test]
fn manifests_name_this_release_or_the_image_asked_for() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(d, &["webhook", "manifests"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(images(&docs(&stdout(&out))), [release_image()]);

    let private = "registry.example.com:5000/platform/irsa:0.1.0-acme";
    let out = run_in(d, &["webhook", "manifests", "--image", private]);
    assert!(out.status.success(), "{}", stderr(&out));
    let objects = docs(&stdout(&out));
    check_objects(&objects, "irsa-system");
    assert_eq!(images(&objects), [private]);
    assert!(!stdout(&out).contains("ghcr.io"), "{}", stdout(&out));

    // A value that would edit the YAML is refused, naming the fix.
    let out = run_in(
        d,
        &[
            "webhook",
            "manifests",
            "--image",
            "irsa:1\n  hostNetwork: true",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not an image reference"),
        "{}",
        stderr(&out)
    );
}

/// The cert-manager object of `kind` called `name`.
fn cm_object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the overlay"))
}

/// Regression: the overlay signed the serving certificate with itself and
/// injected that certificate as the caBundle, so every renewal (new key)
/// broke the apiserver's trust until the kubelet remounted the Secret. Now:
/// self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate,
/// and the caBundle is the CA.
#[test]
fn cert_manager_overlay_serves_a_leaf_of_a_ca_and_injects_the_ca() {
    let objects = kustomize("deploy/cert-manager");
    let webhook = check_objects(&objects, "irsa-system");
    // The serving certificate: the Secret the Deployment mounts, from the CA issuer.
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let mounted = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .unwrap();
    let serving = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == mounted)
        .unwrap_or_else(|| panic!("no Certificate writes the mounted Secret {mounted}"));
    assert_ne!(
        serving["spec"]["isCA"], true,
        "the serving certificate is a leaf"
    );
    assert_eq!(serving["spec"]["issuerRef"]["kind"], "Issuer");
    let ca_issuer = cm_object(
        &objects,
        "Issuer",
        serving["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("the serving certificate's issuer is no CA issuer: {ca_issuer}"));
    // The CA certificate: isCA, writes the CA issuer's Secret, self-signed.
    let ca = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .unwrap_or_else(|| panic!("no Certificate writes the CA Secret {ca_secret}"));
    assert_eq!(ca["spec"]["isCA"], true, "{ca}");
    assert_ne!(ca["metadata"]["name"], serving["metadata"]["name"]);
    assert_eq!(
        ca["spec"]["privateKey"]["rotationPolicy"], "Never",
        "a renewed CA keeps its key, so leaves signed before still verify"
    );
    let root = cm_object(
        &objects,
        "Issuer",
        ca["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    assert!(root["spec"]["selfSigned"].is_object(), "{root}");
    assert_ne!(
        root["metadata"]["name"], ca_issuer["metadata"]["name"],
        "the serving certificate is not signed by the self-signed issuer"
    );
    // cainjector injects the CA certificate, not the serving one.
    let inject = webhook
        .metadata
        .annotations
        .unwrap()
        .get("cert-manager.io/inject-ca-from")
        .cloned();
    assert_eq!(
        inject,
        Some(format!(
            "irsa-system/{}",
            ca["metadata"]["name"].as_str().unwrap()
        ))
    );
}

#[test]
fn manifests_command_fills_ca_bundle_and_secret() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "webhook",
            "certs",
            "--namespace",
            "pods-iam",
            "--out-dir",
            "certs",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("certs/tls.key"))
            .unwrap()
            .permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600);
    // The serving certificate names the Service and chains to the CA (checked by OpenSSL).
    let verify = openssl(d, &["verify", "-CAfile", "certs/ca.crt", "certs/tls.crt"]);
    assert!(String::from_utf8_lossy(&verify).contains("OK"));
    let text = String::from_utf8(openssl(
        d,
        &[
            "x509",
            "-in",
            "certs/tls.crt",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    ))
    .unwrap();
    assert!(text.contains("DNS:irsa-webhook.pods-iam.svc"), "{text}");

    let out = run_in(
        d,
        &[
            "webhook",
            "manifests",
            "--cert-dir",
            "certs",
            "--namespace",
            "pods-iam",
            "--aws-default-region",
            "eu-west-1",
            "--include-private-key",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let objects = docs(&stdout(&out));
    let webhook = check_objects(&objects, "pods-iam");
    let bundle = webhook.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    assert_eq!(bundle.0, std::fs::read(d.join("certs/ca.crt")).unwrap());
    assert!(stdout(&out).contains("--aws-default-region=eu-west-1"));
    let secret = objects.iter().find(|o| o["kind"] == "Secret").unwrap();
    assert_eq!(
        secret["data"]["tls.key"].as_str().map(String::from),
        Some(b64_std(&std::fs::read(d.join("certs/tls.key")).unwrap())),
        "--include-private-key prints the serving key"
    );

    let out = run_in(d, &["webhook", "certs", "--out-dir", "certs"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "never overwrites keys without --force"
    );
}

fn b64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Regression: `manifests --cert-dir` printed the serving key in the Secret
/// without being asked to; now only with --include-private-key, as
/// `irsa cluster config` does for the signing key.
#[test]
fn manifests_print_the_serving_key_only_when_asked() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(d, &["webhook", "certs", "--out-dir", "certs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = std::fs::read(d.join("certs/tls.key")).unwrap();
    let out = run_in(d, &["webhook", "manifests", "--cert-dir", "certs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains("tls.key:")
            && !text.contains(&b64_std(&key))
            && !text.contains("PRIVATE KEY"),
        "the serving key is printed without --include-private-key:\n{text}"
    );
    let objects = docs(&text);
    let webhook = check_objects(&objects, "irsa-system");
    assert_eq!(
        webhook.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap()
            .0,
        std::fs::read(d.join("certs/ca.crt")).unwrap(),
        "the caBundle is still filled"
    );
    assert!(
        !objects.iter().any(|o| o["kind"] == "Secret"),
        "no half Secret (the apiserver rejects a kubernetes.io/tls Secret without tls.key)"
    );
    let note = stderr(&out);
    assert!(
        note.contains("kubectl -n irsa-system create secret tls irsa-webhook-tls")
            && note.contains("--key=certs/tls.key")
            && note.contains("--include-private-key"),
        "says how to create the Secret or include the key: {note}"
    );
    // The flag means nothing without a certificate directory.
    let out = run_in(d, &["webhook", "manifests", "--include-private-key"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn go_webhook_deployment_arguments_are_accepted() {
    // The arguments the Go webhook's own deploy/ passes; irsa must parse them.
    let t = tempdir();
    let out = run_in(
        t.path(),
        &[
            "webhook",
            "serve",
            "--in-cluster=false",
            "--namespace=default",
            "--service-name=pod-identity-webhook",
            "--annotation-prefix=eks.amazonaws.com",
            "--token-audience=sts.amazonaws.com",
            "--logtostderr",
            "--port=18443",
            "--tls-cert=missing.crt",
            "--tls-key=missing.key",
            "--kubeconfig=missing.kubeconfig",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--namespace is ignored") && err.contains("--logtostderr is ignored"),
        "{err}"
    );
    assert!(
        err.contains("missing.kubeconfig"),
        "the flags parsed and the run failed only on the missing kubeconfig: {err}"
    );
}
