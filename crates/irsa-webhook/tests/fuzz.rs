//! Property test of the admission handler: random bodies and valid
//! AdmissionReviews with random edits always get a well-formed
//! AdmissionReview answer (never a panic), with the request's uid echoed
//! whenever the request could be read. Run with `-- --nocapture` to see
//! the number of cases.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use irsa_core::mutate::MutationConfig;
use irsa_webhook::admission::Handler;
use irsa_webhook::cache::SaStore;
use proptest::prelude::*;
use serde_json::Value;

const CASES: u32 = 5_000;

fn review() -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0d4c8e5a-1111-2222-3333-444455556666",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-", "namespace": "default",
                    "annotations": {"eks.amazonaws.com/token-expiration": "7200"}},
                "spec": {"serviceAccountName": "s3",
                    "initContainers": [{"name": "init", "image": "busybox"}],
                    "containers": [{"name": "app", "image": "nginx",
                        "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "emptyDir": {}}]}}
        }
    })
    .to_string()
    .into_bytes()
}

fn edited(sample: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = sample.len();
    prop::collection::vec((0..len, any::<u8>(), 0u8..4), 1..6).prop_map(move |edits| {
        let mut out = sample.clone();
        for (pos, byte, op) in edits {
            let pos = pos.min(out.len());
            match op {
                0 if pos < out.len() => out[pos] = byte,
                1 => out.insert(pos, byte),
                2 if pos < out.len() => {
                    out.remove(pos);
                }
                _ => out.truncate(pos),
            }
        }
        out
    })
}

#[test]
fn every_body_gets_a_well_formed_answer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = SaStore::new("eks.amazonaws.com");
    let role: BTreeMap<String, String> = [(
        "eks.amazonaws.com/role-arn".to_string(),
        "arn:aws:iam::111122223333:role/s3-reader".to_string(),
    )]
    .into();
    store.apply("default", "s3", Some(&role));
    let handler = Handler {
        store,
        client: None,
        config: Arc::new(MutationConfig::default()),
        pod_identities: None,
        lookup_timeout: Duration::from_millis(10),
        metrics: Arc::default(),
    };
    let strategy = prop_oneof![prop::collection::vec(any::<u8>(), 0..400), edited(review()),];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let counts = std::cell::Cell::new((0usize, 0usize));
    runner
        .run(&strategy, |body| {
            let start = Instant::now();
            let answer = rt.block_on(handler.review(&body));
            prop_assert!(start.elapsed() < Duration::from_secs(2), "slow answer");
            let v: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
            prop_assert_eq!(v["kind"].as_str(), Some("AdmissionReview"));
            prop_assert!(v["apiVersion"].is_string());
            let allowed = v["response"]["allowed"].as_bool();
            prop_assert!(allowed.is_some(), "response.allowed is set: {}", v);
            prop_assert!(v["response"]["uid"].is_string(), "uid: {}", v);
            if allowed == Some(false) {
                let status = &v["response"]["status"];
                prop_assert_eq!(status["code"].as_u64(), Some(400));
                prop_assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
            let request = serde_json::from_slice::<Value>(&body).ok();
            // When the request's uid is readable, it is echoed.
            if let Some(uid) = request.as_ref().and_then(|r| r["request"]["uid"].as_str()) {
                prop_assert_eq!(v["response"]["uid"].as_str(), Some(uid));
            }
            // A patch is base64 of a JSON Patch that applies to the pod sent.
            if let Some(patch) = v["response"]["patch"].as_str() {
                prop_assert_eq!(v["response"]["patchType"].as_str(), Some("JSONPatch"));
                let bytes = irsa_core::b64::decode_std(patch).unwrap();
                let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
                let request = request.expect("a patch only ever answers a JSON body");
                let mut pod = request["request"]["object"].clone();
                let applied = json_patch::patch(&mut pod, &patch);
                prop_assert!(applied.is_ok(), "{:?}", applied);
            }
            let (m, d) = counts.get();
            counts.set((
                m + usize::from(v["response"]["patch"].is_string()),
                d + usize::from(allowed == Some(false)),
            ));
            Ok(())
        })
        .unwrap();
    let (mutated, denied) = counts.get();
    println!("fuzz AdmissionReview: {CASES} cases, no panic; {mutated} answered with a patch, {denied} refused with a message");
    assert!(mutated > 0, "some edited reviews still mutate");
}
