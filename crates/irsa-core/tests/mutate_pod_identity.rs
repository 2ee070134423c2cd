//! The Pod Identity (container credentials) injection beyond the fixture
//! cases: the exact bytes of what it adds, its token lifetime rule, and
//! pods with no metadata or labels.
#![allow(clippy::unwrap_used, missing_docs)]

use irsa_core::mutate::{
    mutate_with, ContainerCredentials, Decision, Injection, MutationConfig, PodView, SaIdentity,
};
use serde_json::Value;

fn cc_config() -> MutationConfig {
    MutationConfig {
        container_credentials: ContainerCredentials {
            audience: "con-creds-aud".into(),
            mount_path: "/con-creds-mount-path".into(),
            volume_name: "con-creds-volume-name".into(),
            token_path: "con-creds-token-path".into(),
            full_uri: "con-creds-uri".into(),
        },
        ..Default::default()
    }
}

fn patch(pod: &str, sa: Option<&SaIdentity>, jitter: u64, cfg: &MutationConfig) -> String {
    let view = PodView::from_json(pod).unwrap();
    let outcome = mutate_with(&view, sa, Injection::PodIdentity { jitter }, cfg);
    String::from_utf8(outcome.patch_json()).unwrap()
}

/// The label and volume operations are byte for byte those of the Go
/// webhook's rawPodNeedsAll case (which then replaces the whole containers
/// list, where irsa adds to each container).
#[test]
fn label_and_volume_bytes_are_the_go_webhooks() {
    let sa = SaIdentity {
        regional_sts: Some(true),
        token_expiration: Some(10000),
        ..Default::default()
    };
    let got = patch(
        r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}"#,
        Some(&sa),
        0,
        &cc_config(),
    );
    let go = r#"[{"op":"add","path":"/metadata/labels","value":{"eks.amazonaws.com/pod-identity":"enabled"}},{"op":"add","path":"/spec/volumes","value":[{"name":"con-creds-volume-name","projected":{"sources":[{"serviceAccountToken":{"audience":"con-creds-aud","expirationSeconds":10000,"path":"con-creds-token-path"}}]}}]},"#;
    assert!(got.starts_with(go), "{got}");
    let rest = r#"{"op":"add","path":"/spec/containers/0/env","value":[{"name":"AWS_STS_REGIONAL_ENDPOINTS","value":"regional"},{"name":"AWS_CONTAINER_CREDENTIALS_FULL_URI","value":"con-creds-uri"},{"name":"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE","value":"/con-creds-mount-path/con-creds-token-path"}]},{"op":"add","path":"/spec/containers/0/volumeMounts","value":[{"name":"con-creds-volume-name","mountPath":"/con-creds-mount-path","readOnly":true}]}]"#;
    assert_eq!(&got[go.len()..], rest);
}

/// Only the default 86400 s lifetime is jittered, into 79200..=86400 s,
/// as the Go webhook draws it; any other lifetime is kept.
#[test]
fn only_the_default_lifetime_is_jittered() {
    let pod = r#"{"metadata":{},"spec":{"containers":[{"name":"c"}]}}"#;
    let expiration = |sa: Option<&SaIdentity>, jitter: u64| -> i64 {
        let ops: Value = serde_json::from_str(&patch(pod, sa, jitter, &cc_config())).unwrap();
        let volume = ops
            .as_array()
            .unwrap()
            .iter()
            .find(|op| op["path"] == "/spec/volumes")
            .unwrap();
        volume["value"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(expiration(None, 0), 79200);
    assert_eq!(expiration(None, 7200), 86400);
    assert_eq!(expiration(None, 7201), 79200);
    assert_eq!(expiration(None, u64::MAX), 79200 + (u64::MAX % 7201) as i64);
    for jitter in (0..50_000).step_by(97) {
        assert!((79200..=86400).contains(&expiration(None, jitter)));
    }
    let short = SaIdentity {
        token_expiration: Some(3600),
        ..Default::default()
    };
    assert_eq!(expiration(Some(&short), 12345), 3600);
    let flag = MutationConfig {
        token_expiration: 7200,
        ..cc_config()
    };
    let ops: Value = serde_json::from_str(&patch(pod, None, 5, &flag)).unwrap();
    assert!(
        ops.to_string().contains("\"expirationSeconds\":7200"),
        "{ops}"
    );
}

/// A pod without metadata, or with `labels: null`, still gets a patch
/// that applies; a labelled, mutated pod gets none.
#[test]
fn missing_metadata_or_labels_are_created_and_a_second_pass_is_empty() {
    let cfg = MutationConfig::default();
    for pod in [
        r#"{"spec":{"containers":[{"name":"c"}]}}"#,
        r#"{"metadata":{"labels":null},"spec":{"containers":[{"name":"c"}]}}"#,
        r#"{"metadata":{"labels":{"a":"b","eks.amazonaws.com/pod-identity":"no"}},"spec":{"containers":[{"name":"c"}]}}"#,
    ] {
        let ops: json_patch::Patch = serde_json::from_str(&patch(pod, None, 3, &cfg)).unwrap();
        let mut doc: Value = serde_json::from_str(pod).unwrap();
        json_patch::patch(&mut doc, &ops).unwrap_or_else(|e| panic!("{pod}: {e}"));
        assert_eq!(
            doc["metadata"]["labels"]["eks.amazonaws.com/pod-identity"], "enabled",
            "{pod}"
        );
        let text = doc.to_string();
        let view = PodView::from_json(&text).unwrap();
        let again = mutate_with(&view, None, Injection::PodIdentity { jitter: 3 }, &cfg);
        assert!(again.patch.is_empty(), "{pod}: {:?}", again.patch);
        assert_eq!(again.decision, Decision::AlreadyMutated);
    }
}
