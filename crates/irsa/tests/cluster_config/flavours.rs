//! Every flavour's output parsed back into typed structures.

use std::collections::BTreeMap;
use std::path::Path;

use irsa_core::parse::{parse_keys, parse_private_key};
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde_yaml::Value;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClusterConfiguration {
    api_version: Option<String>,
    kind: String,
    api_server: Component,
    controller_manager: Component,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Component {
    extra_args: BTreeMap<String, String>,
    extra_volumes: Vec<HostPathMount>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HostPathMount {
    name: String,
    host_path: String,
    mount_path: String,
    read_only: bool,
    path_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KindCluster {
    kind: String,
    api_version: String,
    name: String,
    nodes: Vec<KindNode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KindNode {
    role: String,
    extra_mounts: Vec<KindMount>,
    kubeadm_config_patches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KindMount {
    host_path: String,
    container_path: String,
    read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RancherConfig {
    #[serde(rename = "kube-apiserver-arg")]
    apiserver: Vec<String>,
    #[serde(rename = "kube-controller-manager-arg")]
    controller_manager: Vec<String>,
    #[serde(rename = "kube-apiserver-extra-mount", default)]
    apiserver_mounts: Vec<String>,
    #[serde(rename = "kube-controller-manager-extra-mount", default)]
    controller_manager_mounts: Vec<String>,
}

fn kid_of_pem(bytes: &[u8]) -> Vec<String> {
    parse_keys(bytes)
        .unwrap()
        .iter()
        .map(|k| k.public.kid().0)
        .collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The YAML documents of stdout.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

#[test]
fn flags_list_every_key_one_signer_and_the_issuers() {
    let t = tempdir();
    let b = bundle(t.path(), true);
    let text = ok(&b, &["--flavour", "flags"]);
    assert_eq!(text, ok(&b, &["--flavour", "flags"]), "deterministic");
    let flags = parse_flags(&text);
    let api = "kube-apiserver.flags";
    assert_eq!(flag_values(&flags, api, "service-account-issuer"), [ISSUER]);
    assert_eq!(
        flag_values(&flags, api, "service-account-key-file"),
        [
            "/etc/kubernetes/pki/irsa/sa-signer.pub",
            "/etc/kubernetes/pki/irsa/next.pub"
        ]
    );
    assert_eq!(
        flag_values(&flags, api, "service-account-signing-key-file"),
        ["/etc/kubernetes/pki/irsa/sa-signer.key"]
    );
    assert_eq!(flag_values(&flags, api, "api-audiences"), [ISSUER]);
    assert!(!text.contains("sts.amazonaws.com"), "{text}");
    assert_eq!(
        flag_values(
            &flags,
            "kube-controller-manager.flags",
            "service-account-private-key-file"
        ),
        ["/etc/kubernetes/pki/irsa/sa-signer.key"]
    );
    assert_eq!(flags.len(), 6, "{flags:?}");

    let old = "https://kubernetes.default.svc.cluster.local";
    let flags = parse_flags(&ok(&b, &["--flavour", "flags", "--previous-issuer", old]));
    assert_eq!(
        flag_values(&flags, api, "service-account-issuer"),
        [ISSUER, old]
    );
    assert_eq!(
        flag_values(&flags, api, "api-audiences"),
        [format!("{ISSUER},{old}").as_str()]
    );

    // -o lays out the key directory: the signer 0600, the public keys 0644.
    let out = b.dir.join("out");
    ok(&b, &["--flavour", "flags", "-o", out.to_str().unwrap()]);
    let signer = std::fs::read(out.join("pki/sa-signer.key")).unwrap();
    assert_eq!(mode(&out.join("pki/sa-signer.key")), 0o600);
    assert_eq!(kid_of_pem(&signer), std::slice::from_ref(&b.active_kid));
    assert_eq!(mode(&out.join("pki/next.pub")), 0o644);
    assert_eq!(
        kid_of_pem(&std::fs::read(out.join("pki/next.pub")).unwrap()),
        [b.next_kid.clone().unwrap()]
    );
    let written = parse_flags(&format!(
        "# ==> kube-apiserver.flags: x\n{}",
        std::fs::read_to_string(out.join("kube-apiserver.flags")).unwrap()
    ));
    assert_eq!(
        flag_values(&written, api, "service-account-key-file").len(),
        2
    );
    let notes = std::fs::read_to_string(out.join("NOTES.txt")).unwrap();
    assert!(notes.contains("/etc/kubernetes/pki/irsa"), "{notes}");
}

#[test]
fn kubeadm_config_is_a_cluster_configuration_with_one_key_bundle() {
    let t = tempdir();
    let b = bundle(t.path(), true);
    let out = b.dir.join("out");
    ok(&b, &["--flavour", "kubeadm", "-o", out.to_str().unwrap()]);
    let config: ClusterConfiguration =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("kubeadm-config.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        config.api_version.as_deref(),
        Some("kubeadm.k8s.io/v1beta3")
    );
    assert_eq!(config.kind, "ClusterConfiguration");
    let args = &config.api_server.extra_args;
    assert_eq!(args["service-account-issuer"], ISSUER);
    assert_eq!(
        args["service-account-key-file"],
        "/etc/kubernetes/pki/irsa/service-account-keys.pem"
    );
    assert_eq!(
        args["service-account-signing-key-file"],
        "/etc/kubernetes/pki/irsa/sa-signer.key"
    );
    assert_eq!(args["api-audiences"], ISSUER);
    assert_eq!(
        config.controller_manager.extra_args["service-account-private-key-file"],
        "/etc/kubernetes/pki/irsa/sa-signer.key"
    );
    let volume = HostPathMount {
        name: "irsa-keys".into(),
        host_path: "/etc/kubernetes/pki/irsa".into(),
        mount_path: "/etc/kubernetes/pki/irsa".into(),
        read_only: true,
        path_type: "Directory".into(),
    };
    assert_eq!(config.api_server.extra_volumes, [volume]);
    assert_eq!(config.controller_manager.extra_volumes.len(), 1);
    // Both public keys in the one file kube-apiserver is pointed at.
    let pem = std::fs::read(out.join("pki/service-account-keys.pem")).unwrap();
    assert_eq!(
        kid_of_pem(&pem),
        [b.active_kid.clone(), b.next_kid.clone().unwrap()]
    );

    // v1beta4: the list form keeps the previous issuer after the new one.
    let old = "https://kubernetes.default.svc.cluster.local";
    let docs = documents(&ok(
        &b,
        &[
            "--flavour",
            "kubeadm",
            "--kubeadm-api",
            "v1beta4",
            "--previous-issuer",
            old,
        ],
    ));
    assert_eq!(docs[0]["apiVersion"], "kubeadm.k8s.io/v1beta4");
    let issuers: Vec<&str> = docs[0]["apiServer"]["extraArgs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "service-account-issuer")
        .map(|a| a["value"].as_str().unwrap())
        .collect();
    assert_eq!(issuers, [ISSUER, old]);
}

#[test]
fn kind_config_mounts_the_key_directory_it_wrote() {
    let t = tempdir();
    let b = bundle(t.path(), false);
    let out = b.dir.join("kind");
    ok(&b, &["--flavour", "kind", "-o", out.to_str().unwrap()]);
    let kind: KindCluster =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("kind-config.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        (
            kind.kind.as_str(),
            kind.api_version.as_str(),
            kind.name.as_str()
        ),
        ("Cluster", "kind.x-k8s.io/v1alpha4", "prod")
    );
    let node = &kind.nodes[0];
    assert_eq!(node.role, "control-plane");
    let mount = &node.extra_mounts[0];
    assert_eq!(Path::new(&mount.host_path), out.join("pki"));
    assert!(Path::new(&mount.host_path).is_absolute());
    assert_eq!(mount.container_path, "/etc/kubernetes/pki/irsa");
    assert!(mount.read_only);
    for file in ["sa-signer.key", "service-account-keys.pem"] {
        assert!(out.join("pki").join(file).is_file(), "{file}");
    }
    let patch: ClusterConfiguration =
        serde_yaml::from_str(&node.kubeadm_config_patches[0]).unwrap();
    assert_eq!(patch.api_version, None, "kind matches patches by kind");
    assert_eq!(patch.kind, "ClusterConfiguration");
    assert_eq!(
        patch.api_server.extra_args["service-account-issuer"],
        ISSUER
    );
    assert_eq!(
        patch.api_server.extra_args["service-account-key-file"],
        "/etc/kubernetes/pki/irsa/service-account-keys.pem"
    );
}

#[test]
fn k3s_and_rke2_config_entries() {
    let t = tempdir();
    let b = bundle(t.path(), false);
    let k3s: RancherConfig = serde_yaml::from_str(&ok(&b, &["--flavour", "k3s"])).unwrap();
    assert_eq!(
        k3s.apiserver,
        [
            format!("service-account-issuer={ISSUER}"),
            "service-account-key-file=/etc/rancher/k3s/irsa/sa-signer.pub".into(),
            "service-account-signing-key-file=/etc/rancher/k3s/irsa/sa-signer.key".into(),
        ]
    );
    assert_eq!(
        k3s.controller_manager,
        ["service-account-private-key-file=/etc/rancher/k3s/irsa/sa-signer.key"]
    );
    assert!(k3s.apiserver_mounts.is_empty());
    // --output json carries the same document, the key file names and the notes.
    let j = json(ok(&b, &["--flavour", "k3s", "--output", "json"]).as_bytes());
    assert_eq!(j["documents"][0]["file"], "k3s-config.yaml");
    let same: RancherConfig =
        serde_yaml::from_str(j["documents"][0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(same.apiserver, k3s.apiserver);
    assert_eq!(j["keyDir"], "/etc/rancher/k3s/irsa");
    assert_eq!(j["keyFiles"][0]["name"], "sa-signer.key");
    assert_eq!(j["keyFiles"][0]["private"], true);
    assert!(j["keyFiles"][0].get("content").is_none(), "no key material");
    let rke2: RancherConfig = serde_yaml::from_str(&ok(
        &b,
        &["--flavour", "rke2", "--key-dir", "/var/lib/irsa"],
    ))
    .unwrap();
    assert_eq!(
        rke2.apiserver[1],
        "service-account-key-file=/var/lib/irsa/sa-signer.pub"
    );
    assert_eq!(rke2.apiserver_mounts, ["/var/lib/irsa:/var/lib/irsa:ro"]);
    assert_eq!(
        rke2.controller_manager_mounts,
        ["/var/lib/irsa:/var/lib/irsa:ro"]
    );
}

#[test]
fn vks_secret_is_a_kubernetes_secret_named_after_the_cluster() {
    let t = tempdir();
    let b = bundle(t.path(), false);
    let out = b.dir.join("vks");
    ok(
        &b,
        &[
            "--flavour",
            "vks",
            "--namespace",
            "aws-irsa-ns",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let file = out.join("prod-sa-secret.yaml");
    assert_eq!(mode(&file), 0o600);
    let secret: Secret = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some("prod-sa"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("aws-irsa-ns"));
    assert_eq!(secret.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
    assert_eq!(
        secret.metadata.labels.unwrap()["cluster.x-k8s.io/cluster-name"],
        "prod"
    );
    let data = secret.data.unwrap();
    assert_eq!(
        kid_of_pem(&data["tls.crt"].0),
        std::slice::from_ref(&b.active_kid)
    );
    let key = parse_private_key(&data["tls.key"].0).unwrap();
    assert_eq!(key.public_key().kid().0, b.active_kid);

    let patch: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("clusterclass-patch.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(patch[0]["path"], "/spec/variables/-");
    assert_eq!(patch[0]["value"]["name"], "serviceAccountIssuer");
    let def = &patch[1]["value"]["definitions"][0];
    assert_eq!(def["selector"]["kind"], "KubeadmControlPlaneTemplate");
    assert_eq!(
        def["jsonPatches"][0]["path"],
        "/spec/template/spec/kubeadmConfigSpec/clusterConfiguration/apiServer/extraArgs/service-account-issuer"
    );
    assert_eq!(
        def["jsonPatches"][0]["valueFrom"]["variable"],
        "serviceAccountIssuer"
    );
    let cluster: Value =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("cluster-variables.yaml")).unwrap())
            .unwrap();
    assert_eq!(cluster["metadata"]["namespace"], "aws-irsa-ns");
    assert_eq!(
        cluster["spec"]["topology"]["variables"][0]["name"],
        "serviceAccountIssuer"
    );
    assert_eq!(cluster["spec"]["topology"]["variables"][0]["value"], ISSUER);

    // Printed only when asked; then the Secret is one of the YAML documents.
    let docs = documents(&ok(
        &b,
        &[
            "--flavour",
            "vks",
            "--namespace",
            "aws-irsa-ns",
            "--include-private-key",
        ],
    ));
    assert_eq!(docs.len(), 3);
    let printed: Secret = serde_yaml::from_value(docs[2].clone()).unwrap();
    assert_eq!(printed.metadata.name.as_deref(), Some("prod-sa"));
}

#[test]
fn eks_anywhere_cluster_spec_sets_the_issuer() {
    let t = tempdir();
    let b = bundle(t.path(), false);
    let docs = documents(&ok(
        &b,
        &["--flavour", "eks-anywhere", "--cluster-name", "edge-1"],
    ));
    assert_eq!(docs.len(), 1);
    let c = &docs[0];
    assert_eq!(c["apiVersion"], "anywhere.eks.amazonaws.com/v1alpha1");
    assert_eq!(c["kind"], "Cluster");
    assert_eq!(c["metadata"]["name"], "edge-1");
    assert_eq!(c["spec"]["podIamConfig"]["serviceAccountIssuer"], ISSUER);
}

#[test]
fn talos_patch_holds_the_base64_signing_key() {
    let t = tempdir();
    let b = bundle(t.path(), true);
    let out = b.dir.join("talos");
    let o = cluster_config(&b, &["--flavour", "talos", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = out.join("talos-controlplane-patch.yaml");
    assert_eq!(mode(&file), 0o600);
    let patch: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let key =
        irsa_core::b64::decode_std(patch["cluster"]["serviceAccount"]["key"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        parse_private_key(&key).unwrap().public_key().kid().0,
        b.active_kid
    );
    let args = &patch["cluster"]["apiServer"]["extraArgs"];
    assert_eq!(args["service-account-issuer"], ISSUER);
    assert_eq!(args["api-audiences"], ISSUER);
    // Talos cannot verify with the next key, and says so.
    let notes = std::fs::read_to_string(out.join("NOTES.txt")).unwrap();
    assert!(
        notes.contains("keys/next.pub") && notes.contains("cannot verify"),
        "{notes}"
    );
}
