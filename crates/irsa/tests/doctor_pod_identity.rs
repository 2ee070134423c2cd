//! `irsa doctor` on a `mode: pod-identity` binding: the test bed's API
//! server and moto after a real `irsa apply`; each link is broken and
//! repaired in turn and must be judged from what doctor read.
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::agent::Env;
use common::moto::Ctl;
use serde_json::{json, Value};

use common::succeeded as ok;

/// The doctor report's checks by name: (status, detail, fix).
fn doctor(env: &Env, bundle: &Path) -> Vec<(String, String, String, String)> {
    let kubeconfig = env.bed.kubeconfig.display().to_string();
    let out = env.moto.run_in(
        bundle,
        &[
            "doctor",
            "-f",
            "irsa.yaml",
            "-n",
            "app",
            "-s",
            "s3",
            "--kubeconfig",
            &kubeconfig,
            "--output",
            "json",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", common::stdout(&out), common::stderr(&out)));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("name"), s("status"), s("detail"), s("fix"))
        })
        .collect()
}

fn link<'a>(
    checks: &'a [(String, String, String, String)],
    prefix: &str,
) -> &'a (String, String, String, String) {
    checks
        .iter()
        .find(|c| c.0.starts_with(prefix))
        .unwrap_or_else(|| panic!("no link {prefix}: {checks:#?}"))
}

#[test]
#[ignore = "needs kube-apiserver and etcd (the test bed) and moto_server; scripts/test runs it"]
fn doctor_walks_a_pod_identity_binding_link_by_link() {
    let env = Env::start();
    let bundle = env.path("bundle");
    std::fs::create_dir(&bundle).unwrap();
    ok(common::init_prod(&bundle, &[]));
    common::bind_pod_identity(&bundle, "app", "s3");
    ok(env.moto.run_in(&bundle, &["apply", "--auto-approve"]));
    ok(env.moto.run_in(
        &bundle,
        &["agent", "manifests", "-f", "irsa.yaml", "-o", "k8s"],
    ));

    // Nothing installed in the cluster yet.
    let checks = doctor(&env, &bundle);
    let assoc = link(&checks, "pod-identity: association");
    assert_eq!(assoc.1, "fail", "{assoc:?}");
    assert!(
        assoc
            .2
            .contains("no ConfigMap irsa-system/irsa-agent-associations")
            && assoc.3.contains("irsa agent manifests"),
        "{assoc:?}"
    );
    let broker = link(&checks, "pod-identity: broker running");
    assert_eq!(broker.1, "fail");
    assert!(
        broker
            .2
            .contains("no Deployment irsa-system/irsa-agent-broker"),
        "{broker:?}"
    );
    let webhook = link(&checks, "pod-identity: webhook injects");
    assert_eq!(webhook.1, "fail", "no webhook runs on the bed: {webhook:?}");
    assert!(
        webhook
            .2
            .contains("admitted without AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        "{webhook:?}"
    );
    assert_eq!(link(&checks, "pod-identity: pods have").1, "warn");
    let trust = link(&checks, "iam: broker role may assume");
    assert_eq!(trust.1, "pass", "{trust:?}");

    // The rendered associations ConfigMap, applied for real.
    let kubectl = |args: &[&str]| ok(env.bed.kubectl(args));
    kubectl(&["create", "namespace", "irsa-system"]);
    kubectl(&[
        "apply",
        "-f",
        bundle.join("k8s/base/associations.yaml").to_str().unwrap(),
    ]);
    // A pod of the ServiceAccount with the variables (as the webhook gives them).
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "app"},
        "spec": {"serviceAccountName": "s3", "nodeName": "node-a", "containers": [{"name": "c", "image": "app", "env": [
            {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
            {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"}]}]}});
    let pod_file = env.path("pod.json");
    std::fs::write(&pod_file, pod.to_string()).unwrap();
    kubectl(&["apply", "-f", pod_file.to_str().unwrap()]);
    // The role's trust loses sts:TagSession.
    let ctl = Ctl::new(&env.moto);
    ctl.py("doc = json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Principal': {'AWS': 'arn:aws:iam::123456789012:role/irsa/prod/prod-irsa-agent-broker'}, 'Action': 'sts:AssumeRole'}]})\niam.update_assume_role_policy(RoleName='prod-app-s3', PolicyDocument=doc)");

    let checks = doctor(&env, &bundle);
    let assoc = link(&checks, "pod-identity: association");
    assert_eq!(assoc.1, "pass", "{assoc:?}");
    assert!(
        assoc
            .2
            .contains("app/s3 → arn:aws:iam::123456789012:role/irsa/prod/prod-app-s3"),
        "{assoc:?}"
    );
    assert_eq!(link(&checks, "pod-identity: pods have").1, "pass");
    let trust = link(&checks, "iam: broker role may assume");
    assert_eq!(trust.1, "fail", "{trust:?}");
    assert!(
        trust.2.contains("without sts:TagSession") && trust.3.contains("irsa apply"),
        "{trust:?}"
    );
    // `irsa apply` repairs it, and doctor sees the repair.
    ok(env.moto.run_in(&bundle, &["apply", "--auto-approve"]));
    assert_eq!(
        link(&doctor(&env, &bundle), "iam: broker role may assume").1,
        "pass"
    );
}
