//! Mutation fixtures: one directory per case under `tests/mutate/` with
//! `pod.yaml` (input), `sa.yaml` (the ServiceAccount), optional `config.yaml`
//! (webhook flags) and `expected.yaml` (the pod after the patch). The patch is
//! applied to the input and the resulting pod compared as a JSON value, so
//! compatibility with the Go webhook is checked in effect, not byte order.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use irsa_core::mutate::{mutate_pod, Decision, MutationConfig, SaIdentity};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use serde_json::Value;

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config(dir: &Path) -> MutationConfig {
    let mut cfg = MutationConfig::default();
    let path = dir.join("config.yaml");
    if path.exists() {
        let v = yaml(&path);
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
    cfg
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
    assert!(dirs.len() >= 28, "fixtures missing");
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
        let cfg = config(dir);
        let identity = SaIdentity::from_annotations(&annotations, &cfg.annotation_prefix);
        let outcome = mutate_pod(&pod, identity.as_ref(), &cfg).unwrap();
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
        let again = mutate_pod(&result, identity.as_ref(), &cfg).unwrap();
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
            mutate_pod(&bad, Some(&identity), &MutationConfig::default()).is_err(),
            "{bad}"
        );
    }
}
