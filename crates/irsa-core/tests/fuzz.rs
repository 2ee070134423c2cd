//! Property tests for every parser that sees outside input: JWTs, PEM/DER
//! keys, JWKS and discovery JSON, irsa.yaml, ServiceAccount annotations and
//! pods. Inputs are random bytes and valid samples with random edits
//! (bytes changed, inserted, removed, truncated). Each must come back as a
//! value or an error with a message: never a panic, never a hang (every
//! case runs under a deadline). Run with `-- --nocapture` to see the
//! number of cases.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use irsa_core::config::IrsaConfig;
use irsa_core::mutate::{mutate_pod_with, Injection, MutationConfig, SaIdentity};
use irsa_core::{jwt, parse, Algorithm, Discovery, Jwks, PrivateKey};
use proptest::prelude::*;

const CASES: u32 = 10_000;
/// No single parse may take longer than this (no hang, no blow-up).
const DEADLINE: Duration = Duration::from_secs(2);

static RAN: AtomicUsize = AtomicUsize::new(0);
/// Edited tokens checked against the original keys.
static TOKENS_CHECKED: AtomicUsize = AtomicUsize::new(0);
/// Pods whose patch was applied and mutated again.
static PODS_PATCHED: AtomicUsize = AtomicUsize::new(0);

/// Valid samples: PEM keys, a JWT, a JWKS, irsa.yaml, a pod.
type Samples = (Vec<u8>, Vec<u8>, Vec<u8>, String, String);

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < DEADLINE,
        "{what} took {:?}",
        start.elapsed()
    );
    RAN.fetch_add(1, Ordering::Relaxed);
    out
}

/// Applies random edits to a valid sample.
fn edited(sample: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = sample.len().max(1);
    prop::collection::vec((0..len, any::<u8>(), 0u8..4), 1..8).prop_map(move |edits| {
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

fn samples() -> Samples {
    let key = PrivateKey::generate(Algorithm::RS256, 2048).unwrap();
    let ec = PrivateKey::generate(Algorithm::ES256, 0).unwrap();
    let pem = format!("{}{}", key.public_key().to_pem(), ec.to_pem().as_str()).into_bytes();
    let token = jwt::sign(
        &key,
        Algorithm::RS256,
        &serde_json::json!({"iss": "https://o.example.com/c", "sub": "system:serviceaccount:a:b",
            "aud": ["sts.amazonaws.com"], "exp": 4_000_000_000i64, "iat": 1}),
    )
    .unwrap()
    .into_bytes();
    let jwks = Jwks::build(
        [
            (key.public_key(), Algorithm::RS256),
            (ec.public_key(), Algorithm::ES256),
        ],
        false,
    )
    .to_json()
    .into_bytes();
    let yaml = "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://b.s3.us-east-1.amazonaws.com/demo\n  s3: {bucket: b, region: us-east-1, prefix: demo}\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\nbindings:\n- {namespace: default, serviceAccount: 'app-*', policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}\n".to_string();
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","annotations":{"eks.amazonaws.com/token-expiration":"3600","eks.amazonaws.com/skip-containers":"b"}},"spec":{"serviceAccountName":"s","nodeSelector":{"kubernetes.io/os":"windows"},"initContainers":[{"name":"i","image":"x"}],"containers":[{"name":"a","image":"x","env":[{"name":"AWS_REGION","value":"x"}]},{"name":"b","image":"y"}]}}"#.to_string();
    (pem, token, jwks, yaml, pod)
}

fn check_all(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    timed("parse_keys", || {
        let _ = parse::parse_keys(bytes);
    });
    timed("parse_private_key", || {
        let _ = parse::parse_private_key(bytes);
    });
    timed("jwt::decode", || {
        if let Err(e) = jwt::decode(&text) {
            assert!(!e.to_string().is_empty());
        }
    });
    timed("Jwks::from_json", || {
        if let Ok(jwks) = Jwks::from_json(&text) {
            let _ = jwks.to_json();
        }
    });
    timed("Discovery::from_json", || {
        let _ = Discovery::from_json(&text);
    });
    timed("IrsaConfig::from_yaml", || {
        if let Err(e) = IrsaConfig::from_yaml(&text) {
            assert!(!e.to_string().is_empty());
        }
    });
}

fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let before = RAN.load(Ordering::Relaxed);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    println!(
        "fuzz {name}: {CASES} cases, {} parser calls, no panic, no hang",
        RAN.load(Ordering::Relaxed) - before
    );
}

/// The options the edited-token check verifies with.
fn token_options() -> jwt::VerifyOptions {
    jwt::VerifyOptions {
        issuer: "https://o.example.com/c".into(),
        audience: "sts.amazonaws.com".into(),
        now: 2,
        leeway: 0,
    }
}

#[test]
fn parsers_never_panic_or_hang() {
    // Positive control: the unedited token verifies with these keys and
    // options, so an edited one failing is the edit's doing.
    let (_, token, jwks, _, _) = samples_cached();
    let set = Jwks::from_json(std::str::from_utf8(&jwks).unwrap()).unwrap();
    let original = String::from_utf8(token).unwrap();
    assert!(
        jwt::verify(&original, &set, &token_options()).is_ok(),
        "the sample token verifies before any edit"
    );
    run(
        "random bytes",
        prop::collection::vec(any::<u8>(), 0..600),
        |bytes| {
            check_all(&bytes);
            Ok(())
        },
    );
    run(
        "edited keys, tokens, JWKS, irsa.yaml",
        (0usize..4).prop_flat_map(|which| {
            let (pem, token, jwks, yaml, _) = samples_cached();
            let sample = [pem, token, jwks, yaml.into_bytes()][which].clone();
            (Just(which), edited(sample))
        }),
        |(which, input)| {
            let (_, token, jwks, _, _) = samples_cached();
            check_all(&input);
            if which == 1 && input != token {
                // A token changed anywhere never verifies with the original keys.
                let set = Jwks::from_json(std::str::from_utf8(&jwks).unwrap()).unwrap();
                let opts = token_options();
                let text = String::from_utf8_lossy(&input).into_owned();
                let verified = timed("jwt::verify", || jwt::verify(&text, &set, &opts).is_ok());
                TOKENS_CHECKED.fetch_add(1, Ordering::Relaxed);
                prop_assert!(!verified, "an edited token verified: {text}");
            }
            Ok(())
        },
    );
    run(
        "annotations and pods",
        (
            prop::collection::vec(".{0,40}", 5),
            edited(samples_cached().4.into_bytes()),
            // None: IRSA (role-arn); Some(jitter): EKS Pod Identity.
            any::<Option<u64>>(),
        ),
        |(values, input, pod_identity)| {
            let injection = match pod_identity {
                Some(jitter) => Injection::PodIdentity { jitter },
                None => Injection::WebIdentity,
            };
            let mut annotations = BTreeMap::new();
            for (name, v) in [
                "role-arn",
                "audience",
                "sts-regional-endpoints",
                "token-expiration",
                "skip-containers",
            ]
            .iter()
            .zip(&values)
            {
                annotations.insert(format!("eks.amazonaws.com/{name}"), v.clone());
            }
            let identity = timed("SaIdentity::from_annotations", || {
                SaIdentity::from_annotations(&annotations, "eks.amazonaws.com")
            });
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&input) {
                let cfg = MutationConfig::default();
                let outcome = timed("mutate_pod", || {
                    mutate_pod_with(&value, identity.as_ref(), injection, &cfg)
                });
                // Every pod k8s-openapi reads, the mutation reads the same way.
                let is_pod = common::view_agrees_with_k8s(&value);
                prop_assert!(
                    is_pod.is_ok(),
                    "{}: {}",
                    String::from_utf8_lossy(&input),
                    is_pod.unwrap_err()
                );
                // Its patch applies, and the patched pod needs nothing more
                // (the apiserver always sends a spec object).
                let has_spec = value
                    .pointer("/spec")
                    .is_some_and(serde_json::Value::is_object);
                if let (Ok(true), Ok(outcome), true) = (is_pod, outcome, has_spec) {
                    let patch: json_patch::Patch =
                        serde_json::from_slice(&outcome.patch_json()).unwrap();
                    let mut patched = value.clone();
                    let applied = json_patch::patch(&mut patched, &patch);
                    prop_assert!(applied.is_ok(), "patch does not apply: {applied:?}");
                    let again =
                        mutate_pod_with(&patched, identity.as_ref(), injection, &cfg).unwrap();
                    prop_assert!(again.patch.is_empty(), "second pass: {:?}", again.patch);
                    PODS_PATCHED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        },
    );
    // The properties ran on the inputs they are about, not only on noise.
    let (tokens, pods) = (
        TOKENS_CHECKED.load(Ordering::Relaxed),
        PODS_PATCHED.load(Ordering::Relaxed),
    );
    println!("fuzz: {tokens} edited tokens refused by the original keys; {pods} mutated pods patched and stable");
    assert!(tokens > 100, "edited tokens checked: {tokens}");
    assert!(pods > 100, "pods patched and mutated again: {pods}");
}

fn samples_cached() -> Samples {
    static CELL: std::sync::OnceLock<Samples> = std::sync::OnceLock::new();
    CELL.get_or_init(samples).clone()
}
