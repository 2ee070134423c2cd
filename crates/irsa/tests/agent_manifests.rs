//! `irsa agent manifests`: the kustomize base rendered from irsa.yaml, as
//! kubectl renders it and the API server admits it (server-side dry run on
//! the test bed), and `irsa agent link` adding the node agent's address in
//! a network namespace of its own.
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::kustomize::{kustomize, workspace};
use common::testbed::Testbed;
use common::*;
use irsa_core::mutate::Identities;
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";

fn bundle(d: &Path) {
    let out = init_prod(d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for sa in ["reader", "writer"] {
        bind_pod_identity(d, "app", sa);
    }
}

fn render(d: &Path, out_dir: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "agent",
        "manifests",
        "-f",
        "irsa.yaml",
        "-o",
        out_dir,
        "--account",
        ACCOUNT,
    ];
    args.extend_from_slice(extra);
    run_in(d, &args)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_base_renders_from_irsa_yaml_and_keeps_foreign_files() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let out = render(d, "pi", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("irsa-agent-broker-tls"),
        "names the Secret to create: {}",
        stderr(&out)
    );
    let top = d.join("pi");
    let base = top.join("base");
    let objects = kustomize(&top);
    assert_eq!(
        kustomize(&base).len(),
        objects.len(),
        "the top installs the base as is"
    );
    // The associations: the broker's own parser reads them.
    let cm = find(&objects, "ConfigMap", "irsa-agent-associations");
    let text = cm["data"]["associations.json"].as_str().unwrap();
    let ids = Identities::parse(text.as_bytes()).unwrap();
    assert_eq!(ids.len(), 2, "{text}");
    assert!(
        text.contains(&format!(
            "arn:aws:iam::{ACCOUNT}:role/irsa/prod/prod-app-reader"
        )),
        "{text}"
    );
    // The broker: IRSA for its own role, 2 replicas, node binding.
    let sa = find(&objects, "ServiceAccount", "irsa-agent-broker");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        format!("arn:aws:iam::{ACCOUNT}:role/irsa/prod/prod-irsa-agent-broker")
    );
    let broker = find(&objects, "Deployment", "irsa-agent-broker");
    assert_eq!(broker["spec"]["replicas"], 2);
    let args = broker["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--require-node-binding") && args.contains("--cluster-name=prod"),
        "{args}"
    );
    find(&objects, "PodDisruptionBudget", "irsa-agent-broker");
    let delegator = find(
        &objects,
        "ClusterRoleBinding",
        "irsa-agent-broker-tokenreview",
    );
    assert_eq!(delegator["roleRef"]["name"], "system:auth-delegator");
    // The node agents: only the init container may change the network; the
    // agent may bind port 80 and nothing more.
    let ds = find(&objects, "DaemonSet", "irsa-agent-node");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(
        spec["initContainers"][0]["securityContext"]["capabilities"],
        json!({"drop": ["ALL"], "add": ["NET_ADMIN"]})
    );
    let node = &spec["containers"][0];
    assert_eq!(
        node["securityContext"]["capabilities"],
        json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})
    );
    assert_eq!(node["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(node["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        spec["volumes"][0]["secret"]["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "the node agents see the CA, not the key"
    );
    // The cert-manager overlay renders on top of the base.
    let with_cm = kustomize(top.join("cert-manager"));
    assert_eq!(with_cm.len(), objects.len() + 4);

    // Re-rendering after a new binding replaces what irsa wrote.
    bind_pod_identity(d, "app", "auditor");
    let out = render(d, "pi", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cm = std::fs::read_to_string(base.join("associations.yaml")).unwrap();
    assert!(cm.contains("auditor"), "{cm}");
    // A file irsa did not write is kept unless --force, and nothing is written.
    std::fs::write(base.join("node.yaml"), "# mine\n").unwrap();
    let before = std::fs::read_to_string(base.join("broker.yaml")).unwrap();
    std::fs::remove_file(base.join("namespace.yaml")).unwrap();
    let out = render(d, "pi", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("node.yaml") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(base.join("node.yaml")).unwrap(),
        "# mine\n"
    );
    assert!(!base.join("namespace.yaml").exists(), "nothing written");
    assert_eq!(
        std::fs::read_to_string(base.join("broker.yaml")).unwrap(),
        before
    );
    let out = render(d, "pi", &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(
        std::fs::read_to_string(base.join("node.yaml")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn without_an_account_the_placeholder_is_named() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    // No credentials anywhere: the account stays unknown.
    let out = irsa()
        .current_dir(d)
        .args(["agent", "manifests", "-f", "irsa.yaml", "-o", "pi"])
        .env("AWS_ACCESS_KEY_ID", "")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", d.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", d.join("none"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("replace <AWS_ACCOUNT_ID>"),
        "{}",
        stderr(&out)
    );
    let cm = std::fs::read_to_string(d.join("pi/base/associations.yaml")).unwrap();
    assert!(cm.contains("<AWS_ACCOUNT_ID>"), "{cm}");
}

#[test]
fn link_adds_the_address_to_loopback_once() {
    // A network namespace of the test's own: the host's is never touched.
    let probe = Command::new("unshare").args(["-n", "true"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test needs `unshare -n` (util-linux, run as root)"
    );
    let irsa = env!("CARGO_BIN_EXE_irsa");
    let script = format!(
        "{irsa} agent link --address 169.254.170.23 && {irsa} agent link --address 169.254.170.23 && ip -o addr show dev lo"
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("added 169.254.170.23 to lo"), "{err}");
    assert!(err.contains("169.254.170.23 is already on lo"), "{err}");
    let addrs = String::from_utf8_lossy(&out.stdout);
    assert!(addrs.contains("inet 169.254.170.23/32"), "{addrs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn the_rendered_base_passes_server_side_dry_run() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let out = render(d, "pi", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bed = Testbed::for_webhook(t.path(), "prod", "https://oidc.irsa.test/prod");
    common::pods::namespace(&bed.client().await, "irsa-system").await;
    let dir = d.join("pi");
    let objects = kustomize(&dir);
    let out = bed.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-k",
        dir.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}{text}", stderr(&out));
    let applied = text
        .lines()
        .filter(|l| l.ends_with("serverside-applied (server dry run)"))
        .count();
    assert_eq!(applied, objects.len(), "every object:\n{text}");
    // The webhook patch applies to deploy/base as kustomize reads it.
    let webhook_base = d.join("webhook-base");
    std::fs::create_dir(&webhook_base).unwrap();
    for f in std::fs::read_dir(workspace().join("deploy/base")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), webhook_base.join(f.file_name())).unwrap();
    }
    let overlay = d.join("webhook");
    std::fs::create_dir(&overlay).unwrap();
    std::fs::copy(
        dir.join("webhook-associations-patch.yaml"),
        overlay.join("patch.yaml"),
    )
    .unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../webhook-base\npatches:\n  - path: patch.yaml\n",
    )
    .unwrap();
    let patched = kustomize(&overlay);
    let webhook = find(&patched, "Deployment", "irsa-webhook");
    let args = webhook["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains(
            "--watch-container-credentials-config=/etc/irsa-agent/associations/associations.json"
        ),
        "{args}"
    );
}
