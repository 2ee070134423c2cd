//! The webhook end to end against a real kube-apiserver (the shared test
//! bed): the apiserver calls `irsa webhook serve` through a
//! MutatingWebhookConfiguration and stores the mutated pods.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pods::{
    create_pod, env_of, has_token_volume, namespace, service_account, simple_pod, wait_ready,
};
use common::testbed::{register_webhook, Testbed, WebhookRegistration};
use common::webhook::{Options, Webhook};
use common::*;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const ISSUER: &str = "https://oidc.irsa.test/e2e";

fn start_webhook(dir: &Path, kubeconfig: &Path) -> Webhook {
    Webhook::start(
        dir,
        kubeconfig,
        Options {
            flags: &[
                "--aws-default-region",
                "us-west-2",
                "--shutdown-delay-seconds",
                "2",
                // Offered so the test sees what the API server picks.
                "--http2",
                "--log",
                "info",
            ],
            ..Options::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn webhook_against_real_apiserver() {
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "e2e", ISSUER);
    let client = bed.client().await;

    // The cache-miss path on its own: an empty store asks the API server.
    namespace(&client, "e2e-lookup").await;
    service_account(&client, "e2e-lookup", "direct", Some(ROLE)).await;
    let store = irsa_webhook::cache::SaStore::new("eks.amazonaws.com");
    let found = store
        .lookup(
            Some(&client),
            "e2e-lookup",
            "direct",
            Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(found, irsa_webhook::cache::Lookup::Fetched(Some(_))),
        "{found:?}"
    );
    assert_eq!(found.identity().unwrap().role_arn.as_deref(), Some(ROLE));
    let missing = store
        .lookup(
            Some(&client),
            "e2e-lookup",
            "nobody",
            Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(missing, irsa_webhook::cache::Lookup::NotFound),
        "{missing:?}"
    );
    // Asked again at once: the NotFound is remembered, the API not asked.
    let again = store
        .lookup(
            Some(&client),
            "e2e-lookup",
            "nobody",
            Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(again, irsa_webhook::cache::Lookup::NotFoundCached),
        "{again:?}"
    );

    let webhook = start_webhook(d, &bed.kubeconfig);
    wait_ready(&d.join("certs/ca.crt"), webhook.port, || {
        std::fs::read_to_string(d.join("webhook.log")).unwrap_or_default()
    })
    .await;
    register_webhook(
        &client,
        WebhookRegistration {
            name: "irsa-e2e",
            port: webhook.port,
            ca_pem: std::fs::read(d.join("certs/ca.crt")).unwrap(),
            timeout_seconds: 5,
            reinvocation: Some("IfNeeded"),
        },
    )
    .await;
    // The apiserver picks up webhook configurations asynchronously.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 1. A pod with a role: env, volume, mount added; probes and other fields intact.
    namespace(&client, "e2e-basic").await;
    service_account(&client, "e2e-basic", "s3", Some(ROLE)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pod = create_pod(&client, "e2e-basic", json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "full", "labels": {"app": "x"}},
        "spec": {"serviceAccountName": "s3",
                 "securityContext": {"runAsNonRoot": true, "runAsUser": 1000},
                 "initContainers": [{"name": "init", "image": "busybox", "env": [{"name": "A", "value": "1"}]}],
                 "containers": [{"name": "app", "image": "busybox",
                                 "readinessProbe": {"grpc": {"port": 5000}},
                                 "startupProbe": {"exec": {"command": ["true"]}},
                                 "resources": {"limits": {"memory": "64Mi"}},
                                 "securityContext": {"readOnlyRootFilesystem": true}}]}})).await;
    let names: Vec<String> = env_of(&pod, 0).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ],
        "{pod}"
    );
    assert!(env_of(&pod, 0).contains(&("AWS_ROLE_ARN".into(), ROLE.into())));
    assert!(has_token_volume(&pod));
    let vol = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "aws-iam-token")
        .unwrap();
    assert_eq!(
        vol["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "sts.amazonaws.com"
    );
    assert_eq!(
        vol["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        86400
    );
    let mounts = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    assert!(mounts.iter().any(|m| m["name"] == "aws-iam-token"
        && m["mountPath"] == "/var/run/secrets/eks.amazonaws.com/serviceaccount"
        && m["readOnly"] == true));
    assert_eq!(
        pod["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"],
        5000
    );
    assert_eq!(
        pod["spec"]["containers"][0]["startupProbe"]["exec"]["command"],
        json!(["true"])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "64Mi"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 1000);
    let init_env: Vec<String> = pod["spec"]["initContainers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        init_env,
        [
            "A",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ]
    );
    // The apiserver's own service-account volume is still there next to ours.
    assert!(pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-")));

    // 2. The race: ServiceAccount and pod created back to back.
    namespace(&client, "e2e-race").await;
    for i in 0..5 {
        let sa = format!("racer-{i}");
        service_account(&client, "e2e-race", &sa, Some(ROLE)).await;
        let pod = create_pod(&client, "e2e-race", simple_pod(&format!("p{i}"), &sa)).await;
        assert!(has_token_volume(&pod), "race {i}: pod not mutated: {pod}");
    }

    // 3. An annotation changed on a live ServiceAccount reaches the next pod.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "e2e-basic");
    let role2 = "arn:aws:iam::111122223333:role/other";
    sas.patch(
        "s3",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": role2}}})),
    )
    .await
    .unwrap();
    let mut seen = String::new();
    for i in 0..20 {
        let pod = create_pod(
            &client,
            "e2e-basic",
            simple_pod(&format!("after-{i}"), "s3"),
        )
        .await;
        seen = env_of(&pod, 0)
            .into_iter()
            .find(|(n, _)| n == "AWS_ROLE_ARN")
            .map(|(_, v)| v)
            .unwrap_or_default();
        if seen == role2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen, role2, "the changed role never reached a new pod");

    // 4. No role: the pod is stored exactly as sent (no volume, no env).
    service_account(&client, "e2e-basic", "plain", None).await;
    let pod = create_pod(&client, "e2e-basic", simple_pod("plain", "plain")).await;
    assert!(
        !has_token_volume(&pod) && env_of(&pod, 0).is_empty(),
        "{pod}"
    );

    // 5. Metrics tell what happened.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", webhook.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Series are created at start, so a count above zero is what tells.
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert!(
        value("irsa_webhook_admissions_total{kind=\"mutated\"}") >= 7.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("irsa_webhook_admissions_total{kind=\"no_role\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("irsa_webhook_sa_cache_ready 1"),
        "{metrics}"
    );
    assert!(
        value("http_request_duration_seconds_count{verb=\"POST\",path=\"/mutate\"}") >= 8.0,
        "{metrics}"
    );
    // Offered h2 and http/1.1, the API server's webhook client takes
    // http/1.1 (it offers nothing else), which is why --http2 is off by
    // default.
    assert!(
        value("irsa_webhook_connections_served_total{kind=\"http/1.1\"}") >= 1.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains("irsa_webhook_connections_served_total{kind=\"h2\"}"),
        "{metrics}"
    );

    // 6. A bounded load run against /mutate during which the serving
    // certificate is replaced on disk and the process gets SIGTERM. Clients
    // trust both CAs and stop sending once /readyz fails (as endpoints
    // would drop the replica). Goal: no failed admission.
    let out = run_in(
        d,
        &[
            "webhook",
            "certs",
            "--ip",
            "127.0.0.1",
            "--out-dir",
            "certs2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cas: Vec<reqwest::Certificate> = ["certs/ca.crt", "certs2/ca.crt"]
        .iter()
        .map(|f| reqwest::Certificate::from_pem(&std::fs::read(d.join(f)).unwrap()).unwrap())
        .collect();
    let load_client = reqwest::Client::builder()
        .tls_certs_only(cas)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "load", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "e2e-basic",
            "operation": "CREATE", "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "load", "namespace": "e2e-basic"},
                "spec": {"serviceAccountName": "s3", "containers": [{"name": "app", "image": "nginx"}]}}}});
    let body = serde_json::to_vec(&review).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, body, stop) = (load_client.clone(), body.clone(), stop.clone());
        let url = format!("https://127.0.0.1:{}/mutate", webhook.port);
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && Instant::now() < deadline
                && ok + failed < 20_000
            {
                let answered = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let text = r.text().await.unwrap_or_default();
                        if !text.contains("\"patch\"") && failed == 0 {
                            eprintln!("unexpected answer: {text}");
                        }
                        text.contains("\"patch\"")
                    }
                    Ok(r) => {
                        if failed == 0 {
                            eprintln!("unexpected status {}", r.status());
                        }
                        false
                    }
                    Err(e) => {
                        if failed == 0 {
                            eprintln!("request failed: {e:?}");
                        }
                        false
                    }
                };
                if answered {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for f in ["tls.crt", "tls.key"] {
        let tmp = d.join(format!("certs/.{f}.new"));
        std::fs::copy(d.join("certs2").join(f), &tmp).unwrap();
        std::fs::rename(&tmp, d.join("certs").join(f)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The new certificate is in use: a client trusting only its CA connects.
    let only_new = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(d.join("certs2/ca.crt")).unwrap(),
        )
        .unwrap()])
        .build()
        .unwrap();
    let healthz = only_new
        .get(format!("https://127.0.0.1:{}/healthz", webhook.port))
        .send()
        .await;
    assert!(
        healthz.is_ok_and(|r| r.status() == 200),
        "the swapped certificate is served"
    );
    let mut webhook = webhook;
    let pid = webhook.child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The readiness probe sees the drain; the clients stop shortly after.
    let readyz = format!("https://127.0.0.1:{}/readyz", webhook.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = load_client
            .get(&readyz)
            .send()
            .await
            .map(|r| r.status().as_u16());
        if status.is_ok_and(|s| s == 503) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never failed after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0u32, 0u32);
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed += f;
    }
    println!("load run with certificate swap and SIGTERM: {ok} admissions, {failed} failed");
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(failed, 0, "failed admissions during swap and shutdown");
    let leaf = std::fs::read_to_string(d.join("webhook.log")).unwrap_or_default();
    assert!(!leaf.contains("panicked"), "{leaf}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = webhook.child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "webhook did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");

    // 7. Webhook gone + failurePolicy Ignore: pods are still admitted (unmutated).
    let pod = create_pod(&client, "e2e-basic", simple_pod("while-down", "s3")).await;
    assert!(!has_token_volume(&pod), "{pod}");
    drop(bed);
}
