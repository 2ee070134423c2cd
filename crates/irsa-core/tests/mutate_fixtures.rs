//! Mutation fixtures: one directory per case under `tests/mutate/` with
//! `pod.yaml` (input), `sa.yaml` (the ServiceAccount), optional `config.yaml`
//! (webhook flags; `identities` is the Pod Identity identities file, and
//! `containerCredentials` the `--container-credentials-*` flags) and
//! `expected.yaml` (the pod after the patch). The patch is
//! applied to the input and the resulting pod compared as a JSON value, so
//! compatibility with the Go webhook is checked in effect, not byte order.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use irsa_core::mutate::{
    mutate_pod_with, Decision, Identities, Injection, MutationConfig, SaIdentity,
};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use serde_json::Value;

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The webhook flags of a case, and its identities file.
fn config(dir: &Path) -> (MutationConfig, Identities) {
    let mut cfg = MutationConfig::default();
    let mut identities = Identities::default();
    let path = dir.join("config.yaml");
    if path.exists() {
        let v = yaml(&path);
        if let Some(file) = v.get("identities").and_then(Value::as_str) {
            identities = Identities::parse(file.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        if let Some(cc) = v.get("containerCredentials") {
            let c = &mut cfg.container_credentials;
            for (key, field) in [
                ("audience", &mut c.audience),
                ("mountPath", &mut c.mount_path),
                ("volumeName", &mut c.volume_name),
                ("tokenPath", &mut c.token_path),
                ("fullUri", &mut c.full_uri),
            ] {
                if let Some(s) = cc.get(key).and_then(Value::as_str) {
                    *field = s.into();
                }
            }
        }
        if let Some(r) = v.get("region").and_then(Value::as_str) {
            cfg.region = Some(r.into());
        }
        if let Some(b) = v.get("regionalSts").and_then(Value::as_bool) {
            cfg.regional_sts = b;
        }
        if let Some(t) = v.get("tokenExpiration").and_then(Value::as_i64) {
            cfg.token_expiration = t;
        }
        if let Some(g) = v.get("fsGroup").and_then(Value::as_i64) {
            cfg.fs_group = Some(g);
        }
    }
    (cfg, identities)
}

/// The injection the webhook picks for the pod: Pod Identity when its
/// account is listed, with a zero jitter draw (as the Go webhook's fixture
/// suite draws), else IRSA.
fn injection(pod: &Value, identities: &Identities) -> Injection {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    if identities.contains(namespace, sa) {
        Injection::PodIdentity { jitter: 0 }
    } else {
        Injection::WebIdentity
    }
}

/// Lines that differ between two pretty-printed JSON values.
fn diff(expected: &Value, actual: &Value) -> String {
    let e = serde_json::to_string_pretty(expected).unwrap();
    let a = serde_json::to_string_pretty(actual).unwrap();
    let (el, al): (Vec<&str>, Vec<&str>) = (e.lines().collect(), a.lines().collect());
    let mut out = String::new();
    for i in 0..el.len().max(al.len()) {
        let (x, y) = (
            el.get(i).copied().unwrap_or(""),
            al.get(i).copied().unwrap_or(""),
        );
        if x != y {
            out.push_str(&format!("line {i}:\n  expected: {x}\n  actual:   {y}\n"));
        }
    }
    out
}

fn apply(pod: &Value, outcome: &irsa_core::mutate::Outcome<'_>) -> Value {
    let patch: json_patch::Patch = serde_json::from_slice(&outcome.patch_json()).unwrap();
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    doc
}

#[test]
fn every_fixture_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mutate");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 34, "fixtures missing");
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let pod = yaml(&dir.join("pod.yaml"));
        // Every fixture is a real Pod / ServiceAccount.
        serde_json::from_value::<Pod>(pod.clone())
            .unwrap_or_else(|e| panic!("{name}: pod.yaml: {e}"));
        // The mutation reads it exactly as k8s-openapi does.
        assert_eq!(
            common::view_agrees_with_k8s(&pod),
            Ok(true),
            "{name}: pod.yaml"
        );
        let sa: ServiceAccount = serde_json::from_value(yaml(&dir.join("sa.yaml"))).unwrap();
        let annotations: BTreeMap<String, String> = sa.metadata.annotations.unwrap_or_default();
        let (cfg, identities) = config(dir);
        let identity = SaIdentity::from_annotations(&annotations, &cfg.annotation_prefix);
        let how = injection(&pod, &identities);
        let outcome = mutate_pod_with(&pod, identity.as_ref(), how, &cfg).unwrap();
        for op in &outcome.patch {
            assert_eq!(op.op, "add", "{name}: only add operations");
            let path = op.path.to_string();
            let replaces_array = ["/spec/containers", "/spec/initContainers"]
                .contains(&path.as_str())
                || (path.ends_with("/env")
                    || path.ends_with("/volumeMounts")
                    || path == "/spec/volumes")
                    && pod.pointer(&path).is_some();
            assert!(
                !replaces_array,
                "{name}: {} would replace an existing array",
                op.path
            );
        }
        let result = apply(&pod, &outcome);
        let expected = yaml(&dir.join("expected.yaml"));
        if result != expected {
            failures.push(format!("{name}:\n{}", diff(&expected, &result)));
            continue;
        }
        // Reinvocation: the mutated pod needs nothing more.
        let again = mutate_pod_with(&result, identity.as_ref(), how, &cfg).unwrap();
        assert!(
            again.patch.is_empty(),
            "{name}: second pass not empty: {:?}",
            again.patch
        );
        if outcome.patch.is_empty() {
            assert!(
                matches!(
                    outcome.decision,
                    Decision::NoRole | Decision::AlreadyMutated
                ),
                "{name}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn not_a_pod_is_an_error_not_a_panic() {
    let identity = SaIdentity {
        role_arn: Some("arn:aws:iam::111122223333:role/x".into()),
        ..Default::default()
    };
    for bad in [
        serde_json::json!("a string"),
        serde_json::json!({"spec": {"containers": "nope"}}),
        serde_json::json!(42),
    ] {
        assert!(
            irsa_core::mutate::mutate_pod(&bad, Some(&identity), &MutationConfig::default())
                .is_err(),
            "{bad}"
        );
    }
}
