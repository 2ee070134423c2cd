//! Key rotation observes the cluster (issue 22): `keys status` and
//! `keys rotate --stage retire` ask a real kube-apiserver which key it
//! signs with (a throwaway ServiceAccount's TokenRequest token), `retire`
//! refuses while it still signs with the previous key even once the token
//! wait has passed, and without cluster access only with
//! `--assume-rolled-out`. Doctor warns about the same.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::testbed::Testbed;
use common::*;
use irsa_core::config::KeyState;
use irsa_core::IrsaConfig;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use serde_json::Value;

const ISSUER: &str = "https://oidc.irsa.test/prod";
const NO_WAIT: [&str; 4] = ["--max-token-lifetime", "0", "--margin", "0"];

/// irsa in `dir` with no way to find a cluster by itself.
fn run(dir: &Path, args: &[&str]) -> Output {
    irsa()
        .current_dir(dir)
        .args(args)
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

fn config(dir: &Path) -> IrsaConfig {
    IrsaConfig::from_yaml(&fs::read_to_string(dir.join("b/irsa.yaml")).unwrap()).unwrap()
}

fn file_of(dir: &Path, state: KeyState, private: bool) -> std::path::PathBuf {
    let cfg = config(dir);
    let k = cfg.keys.iter().find(|k| k.state == state).unwrap();
    let name = if private {
        k.private_key.clone().unwrap()
    } else {
        k.public_key.clone()
    };
    dir.join("b").join(name)
}

/// A bundle with a comment on top, published and switched (the switch's
/// JWKS check skipped with --force: that check has its own test).
fn switched_bundle(d: &Path) {
    let out = run(
        d,
        &[
            "init",
            "--cluster",
            "prod",
            "--issuer",
            ISSUER,
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(d.join("b/irsa.yaml")).unwrap();
    fs::write(
        d.join("b/irsa.yaml"),
        format!("# ops: rotate yearly\n{text}"),
    )
    .unwrap();
    let out = run(
        d,
        &["keys", "rotate", "-f", "b/irsa.yaml", "--stage", "publish"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn switch(d: &Path) -> Output {
    let out = run(
        d,
        &[
            "keys",
            "rotate",
            "-f",
            "b/irsa.yaml",
            "--stage",
            "switch",
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

fn retire(d: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["keys", "rotate", "-f", "b/irsa.yaml", "--stage", "retire"];
    args.extend_from_slice(&NO_WAIT);
    args.extend_from_slice(extra);
    run(d, &args)
}

fn status_json(d: &Path, kubeconfig: &Path) -> Value {
    let out = run(
        d,
        &[
            "keys",
            "status",
            "-f",
            "b/irsa.yaml",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out.stdout)
}

fn kid_of(d: &Path, state: KeyState) -> String {
    let cfg = config(d);
    let i = cfg.keys.iter().position(|k| k.state == state).unwrap();
    let out = run(
        d,
        &["keys", "status", "-f", "b/irsa.yaml", "--output", "json"],
    );
    json(&out.stdout)["keys"][i]["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn states(d: &Path) -> Vec<KeyState> {
    config(d).keys.iter().map(|k| k.state).collect()
}

#[test]
fn switch_says_the_rollout_is_to_do_and_retire_without_cluster_access_needs_the_flag() {
    let t = tempdir();
    let d = t.path();
    switched_bundle(d);
    let out = switch(d);
    let said = stdout(&out);
    assert!(
        said.contains("still signs with the old key until you roll the new one out"),
        "{said}"
    );
    assert!(!said.contains("signs from now on"), "{said}");
    // Unobserved: keys status says so, retire refuses although the wait is 0.
    let out = run(d, &["keys", "status", "-f", "b/irsa.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("cluster signs with: not observed"),
        "{}",
        stdout(&out)
    );
    let before = fs::read_to_string(d.join("b/irsa.yaml")).unwrap();
    let out = retire(d, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("could not observe which key the cluster signs with")
            && said.contains("--assume-rolled-out")
            && said.contains("every pod's STS call fails"),
        "{said}"
    );
    assert_eq!(fs::read_to_string(d.join("b/irsa.yaml")).unwrap(), before);
    // The flag belongs to retire only.
    let out = run(
        d,
        &[
            "keys",
            "rotate",
            "-f",
            "b/irsa.yaml",
            "--stage",
            "publish",
            "--assume-rolled-out",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // With the flag it goes ahead, saying what it did not check.
    let out = retire(d, &["--assume-rolled-out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("without having observed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(states(d), [KeyState::Retired, KeyState::Active]);
}

/// Names of the throwaway ServiceAccounts left in `default`.
fn probes_left(bed: &Testbed) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sas: Api<ServiceAccount> = Api::namespaced(bed.client().await, "default");
        sas.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|sa| sa.metadata.name)
            .filter(|n| n.starts_with("irsa-signing-probe-"))
            .collect()
    })
}

/// A kubeconfig for a ServiceAccount allowed to create and delete
/// ServiceAccounts in `default`, but not to request their tokens.
fn limited_kubeconfig(bed: &Testbed, path: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = rt.block_on(async {
        use k8s_openapi::api::authentication::v1::TokenRequest;
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        use kube::api::PostParams;
        let client = bed.client().await;
        let pp = PostParams::default();
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "limited"}})).unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .create(&pp, &sa)
            .await
            .unwrap();
        let role: Role = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "limited"},
            "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"],
                       "verbs": ["create", "delete", "get", "list"]}]
        }))
        .unwrap();
        Api::<Role>::namespaced(client.clone(), "default")
            .create(&pp, &role)
            .await
            .unwrap();
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "limited"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "limited"},
            "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": "default"}]
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(client.clone(), "default")
            .create(&pp, &binding)
            .await
            .unwrap();
        let request: TokenRequest =
            serde_json::from_value(serde_json::json!({"spec": {"audiences": []}})).unwrap();
        Api::<ServiceAccount>::namespaced(client, "default")
            .create_token_request("limited", &pp, &request)
            .await
            .unwrap()
            .status
            .unwrap()
            .token
    });
    let admin = fs::read_to_string(&bed.kubeconfig).unwrap();
    let cluster: String = admin
        .lines()
        .take_while(|l| !l.starts_with("users:"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(
        path,
        format!("{cluster}users:\n- name: limited\n  user:\n    token: {token}\ncontexts:\n- name: limited\n  context:\n    cluster: testbed\n    user: limited\ncurrent-context: limited\n"),
    )
    .unwrap();
}

#[test]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
fn retire_follows_the_key_the_cluster_signs_with() {
    let t = tempdir();
    let d = t.path();
    switched_bundle(d);
    let old_key = file_of(d, KeyState::Active, true);
    let old_pub = file_of(d, KeyState::Active, false);
    let new_key = file_of(d, KeyState::Next, true);
    let new_pub = file_of(d, KeyState::Next, false);
    let (old_kid, new_kid) = (kid_of(d, KeyState::Active), kid_of(d, KeyState::Next));
    let both = format!("{},{}", old_pub.display(), new_pub.display());

    // The apiserver verifies both keys and signs with the old one.
    fs::create_dir_all(d.join("one")).unwrap();
    let bed = Testbed::start_with(
        &d.join("one"),
        &[
            ("SA_SIGNING_KEY", old_key.display().to_string()),
            ("SA_KEY_FILES", both.clone()),
            ("SA_ISSUER", ISSUER.to_string()),
        ],
    );
    let kc = bed.kubeconfig.clone();
    let kc_arg = kc.to_str().unwrap();
    // Before the switch the old key is the active one: as expected.
    let s = status_json(d, &kc);
    assert_eq!(s["signing"]["kid"], old_kid.as_str(), "{s:#}");
    assert_eq!(s["signing"]["verdict"], "active", "{s:#}");

    switch(d);
    // After the switch, a rollout that left the old key signing is seen.
    let s = status_json(d, &kc);
    assert_eq!(s["signing"]["observed"], true, "{s:#}");
    assert_eq!(s["signing"]["kid"], old_kid.as_str(), "{s:#}");
    assert_eq!(s["signing"]["verdict"], "wrong-key", "{s:#}");
    assert_eq!(s["signing"]["key"]["state"], "previous", "{s:#}");
    let out = run(
        d,
        &[
            "keys",
            "status",
            "-f",
            "b/irsa.yaml",
            "--kubeconfig",
            kc_arg,
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!("cluster signs with: kid {old_kid} — WRONG KEY"))
            && text.contains("still signs with the previous key"),
        "{text}"
    );
    assert!(
        !fs::read_to_string(d.join("b/irsa.yaml"))
            .unwrap()
            .contains("firstObserved"),
        "nothing recorded while the old key signs"
    );

    // Doctor warns about it.
    let out = run(
        d,
        &[
            "doctor",
            "-f",
            "b/irsa.yaml",
            "-n",
            "default",
            "-s",
            "default",
            "--kubeconfig",
            kc_arg,
            "--no-aws",
            "--output",
            "json",
        ],
    );
    let report = json(&out.stdout);
    let line = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cluster: signs with irsa.yaml's active key")
        .unwrap_or_else(|| panic!("no signing-key line: {report:#}"));
    assert_eq!(line["status"], "warn", "{line:#}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap()
            .contains("still signs with the previous key"),
        "{line:#}"
    );

    // Retire refuses although the token wait (0 s) has passed.
    let out = retire(d, &["--kubeconfig", kc_arg]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("still signs with the previous key")
            && stderr(&out).contains("every pod's STS call would fail"),
        "{}",
        stderr(&out)
    );
    // ...also with --assume-rolled-out, which only stands in for an observation.
    let out = retire(d, &["--kubeconfig", kc_arg, "--assume-rolled-out"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(states(d), [KeyState::Previous, KeyState::Active]);
    assert_eq!(probes_left(&bed), Vec::<String>::new(), "probes deleted");
    drop(bed);

    // The rollout: an apiserver that signs with the new key.
    fs::create_dir_all(d.join("two")).unwrap();
    let bed = Testbed::start_with(
        &d.join("two"),
        &[
            ("SA_SIGNING_KEY", new_key.display().to_string()),
            ("SA_KEY_FILES", both),
            ("SA_ISSUER", ISSUER.to_string()),
        ],
    );
    let kc = bed.kubeconfig.clone();
    let kc_arg = kc.to_str().unwrap();

    // A TokenRequest the cluster refuses: said, and the probe still deleted.
    let limited = d.join("limited.kubeconfig");
    limited_kubeconfig(&bed, &limited);
    let s = status_json(d, &limited);
    assert_eq!(s["signing"]["verdict"], "unobserved", "{s:#}");
    assert!(
        s["signing"]["detail"]
            .as_str()
            .unwrap()
            .contains("the TokenRequest API did not issue a token"),
        "{s:#}"
    );
    assert_eq!(
        probes_left(&bed),
        Vec::<String>::new(),
        "probe deleted after a refused TokenRequest"
    );

    // keys status sees the new key and records when, keeping comments.
    let before = now();
    let s = status_json(d, &kc);
    assert_eq!(s["signing"]["kid"], new_kid.as_str(), "{s:#}");
    assert_eq!(s["signing"]["verdict"], "active", "{s:#}");
    let text = fs::read_to_string(d.join("b/irsa.yaml")).unwrap();
    assert!(
        text.starts_with("# ops: rotate yearly"),
        "comments kept: {text}"
    );
    let first = config(d).keys[1]
        .first_observed
        .expect("firstObserved recorded");
    assert!(
        first.unix() >= before - 1 && first.unix() <= now() + 1,
        "{first}"
    );
    assert_eq!(
        s["keys"][1]["firstObserved"],
        first.to_string().as_str(),
        "{s:#}"
    );
    let out = run(
        d,
        &[
            "keys",
            "status",
            "-f",
            "b/irsa.yaml",
            "--kubeconfig",
            kc_arg,
        ],
    );
    assert!(
        stdout(&out).contains(&format!("kid {new_kid}) (observed just now)")),
        "{}",
        stdout(&out)
    );

    // The wait counts from that first observation, not from the switch: a
    // wait that has passed since the switch has not since the rollout.
    let switched_at = config(d).keys[0].deactivated.unwrap();
    let since_switch = first.unix() - switched_at.unix();
    assert!(
        since_switch >= 2,
        "the second bed took {since_switch} s to start"
    );
    let lifetime = since_switch.to_string();
    let out = run(
        d,
        &[
            "keys",
            "rotate",
            "-f",
            "b/irsa.yaml",
            "--stage",
            "retire",
            "--kubeconfig",
            kc_arg,
            "--max-token-lifetime",
            &lifetime,
            "--margin",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "may be valid until {}",
            first.saturating_add(since_switch)
        )),
        "{}",
        stderr(&out)
    );

    let out = retire(d, &["--kubeconfig", kc_arg]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(states(d), [KeyState::Retired, KeyState::Active]);
    assert_eq!(config(d).keys[1].first_observed, Some(first), "record kept");
    assert_eq!(probes_left(&bed), Vec::<String>::new(), "probes deleted");
}

#[test]
#[cfg_attr(
    not(feature = "online"),
    ignore = "asks a cluster: the offline build has no Kubernetes client"
)]
fn keys_status_says_when_the_cluster_is_not_reachable() {
    let t = tempdir();
    let d = t.path();
    switched_bundle(d);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kc = d.join("gone.kubeconfig");
    fs::write(
        &kc,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\ncurrent-context: gone\n"),
    )
    .unwrap();
    let s = status_json(d, &kc);
    assert_eq!(s["signing"]["verdict"], "unobserved", "{s:#}");
    assert!(
        s["signing"]["detail"]
            .as_str()
            .unwrap()
            .contains("the cluster is not reachable"),
        "{s:#}"
    );
}
