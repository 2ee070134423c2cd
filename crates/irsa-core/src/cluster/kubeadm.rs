//! kubeadm `ClusterConfiguration` and the kind cluster config built on it.
//!
//! In `kubeadm.k8s.io/v1beta3` `extraArgs` is a map: one value per flag.
//! `--service-account-key-file` is a stringArray in kube-apiserver, so a
//! comma-joined list would be read as a single (missing) path. Instead every
//! verification key goes into one PEM file, [`super::KEY_BUNDLE_FILE`]:
//! kube-apiserver reads all keys in a key file. The same file is used with
//! v1beta4 (whose list form could repeat the flag) so that a key rotation
//! only rewrites that file and never the kubeadm configuration.
//!
//! kubeadm replaces its own default of a flag given in extraArgs (it does
//! not add to it), and v1beta4 sorts repeated args by value
//! (`ArgumentsToCommand`), which matters for the issuer order.

use std::collections::BTreeMap;

use serde::Serialize;
use zeroize::Zeroizing;

use super::apiserver::{migration_note, service_account_flags, Flag};
use super::{
    check_dns_label, join, key_dir, keys_note, node_files, rotation_note, to_yaml, ClusterError,
    DocFormat, Document, Flavour, Inputs, KubeadmApi, Rendered, KEY_BUNDLE_FILE,
};

/// Name of the extra volume holding the key directory.
const VOLUME: &str = "irsa-keys";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    kind: &'static str,
    api_server: Component,
    controller_manager: Component,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Component {
    extra_args: ExtraArgs,
    extra_volumes: Vec<HostPathMount>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ExtraArgs {
    Map(BTreeMap<String, String>),
    List(Vec<Arg>),
}

#[derive(Serialize)]
struct Arg {
    name: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostPathMount {
    name: &'static str,
    host_path: String,
    mount_path: String,
    read_only: bool,
    path_type: &'static str,
}

fn extra_args(api: KubeadmApi, flags: Vec<Flag>) -> ExtraArgs {
    match api {
        KubeadmApi::V1beta3 => ExtraArgs::Map(flags.into_iter().collect()),
        KubeadmApi::V1beta4 => ExtraArgs::List(
            flags
                .into_iter()
                .map(|(name, value)| Arg { name, value })
                .collect(),
        ),
    }
}

/// The ClusterConfiguration for key files in `dir`; also returns the node files.
fn cluster_configuration(
    inputs: &Inputs,
    api: KubeadmApi,
    api_version: Option<&'static str>,
    dir: &str,
) -> Result<(ClusterConfiguration, Vec<super::NodeFile>), ClusterError> {
    check_issuers(inputs, api)?;
    let (sign, verify) = node_files(inputs, dir, true)?;
    let verify_paths: Vec<String> = verify.iter().map(|f| join(dir, &f.name)).collect();
    let flags = service_account_flags(inputs, &verify_paths, &join(dir, &sign.name), true);
    let volume = || {
        vec![HostPathMount {
            name: VOLUME,
            host_path: dir.to_string(),
            mount_path: dir.to_string(),
            read_only: true,
            path_type: "Directory",
        }]
    };
    let config = ClusterConfiguration {
        api_version,
        kind: "ClusterConfiguration",
        api_server: Component {
            extra_args: extra_args(api, flags.apiserver),
            extra_volumes: volume(),
        },
        controller_manager: Component {
            extra_args: extra_args(api, flags.controller_manager),
            extra_volumes: volume(),
        },
    };
    let mut node = vec![sign];
    node.extend(verify);
    Ok((config, node))
}

fn check_issuers(inputs: &Inputs, api: KubeadmApi) -> Result<(), ClusterError> {
    let previous = inputs.issuers.previous();
    if previous.is_empty() {
        return Ok(());
    }
    match (inputs.flavour, api) {
        (Flavour::Kind, _) => Err(ClusterError::SingleIssuer {
            flavour: Flavour::Kind,
            how: "kind builds its kubeadm configuration as v1beta3, whose extraArgs map holds one value per flag",
            previous: previous.to_vec(),
            fix: "a kind cluster is created fresh with the new issuer; drop --previous-issuer",
        }),
        (_, KubeadmApi::V1beta3) => Err(ClusterError::SingleIssuer {
            flavour: Flavour::Kubeadm,
            how: "kubeadm.k8s.io/v1beta3 extraArgs is a map with one value per flag",
            previous: previous.to_vec(),
            fix: "render --kubeadm-api v1beta4 (kubeadm 1.31+), or --flavour flags and edit /etc/kubernetes/manifests/kube-apiserver.yaml",
        }),
        (_, KubeadmApi::V1beta4) => {
            let all = inputs.issuers.all();
            let first = all.iter().min().cloned().unwrap_or_default();
            let wanted = inputs.issuers.current().as_str().to_string();
            if first != wanted {
                return Err(ClusterError::IssuerOrder { wanted, first });
            }
            Ok(())
        }
    }
}

/// `--flavour kubeadm`.
pub(super) fn kubeadm(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    let dir = key_dir(inputs)?;
    let api = inputs.kubeadm_api;
    let version = match api {
        KubeadmApi::V1beta3 => "kubeadm.k8s.io/v1beta3",
        KubeadmApi::V1beta4 => "kubeadm.k8s.io/v1beta4",
    };
    let (config, node) = cluster_configuration(inputs, api, Some(version), &dir)?;
    let documents = vec![Document {
        file_name: "kubeadm-config.yaml".into(),
        title: format!("{version} ClusterConfiguration: merge into the one you give kubeadm"),
        format: DocFormat::Yaml,
        content: Zeroizing::new(to_yaml("the kubeadm ClusterConfiguration", &config)?),
        private: false,
    }];
    let sign = node.first().map(|f| f.name.clone()).unwrap_or_default();
    let notes = vec![
        format!("Copy the key files to {dir}/ on every control-plane node before kubeadm runs there ({sign} mode 0600, root): kubeadm does not distribute them, not even with --upload-certs."),
        "New cluster: merge apiServer and controllerManager into your ClusterConfiguration and run `kubeadm init --config <file>`. Running cluster: put the same into the ClusterConfiguration of ConfigMap kube-system/kubeadm-config (so upgrades keep it) and regenerate the static pods on each control-plane node with `kubeadm init phase control-plane all --config <file>`.".into(),
        format!("All verification keys are in one file, {KEY_BUNDLE_FILE}: a kubeadm extraArgs map holds one value per flag and kube-apiserver takes no comma list for --service-account-key-file, but it reads every key in that file."),
        rotation_note(&dir, true),
        keys_note(inputs),
        format!("--api-audiences stays the issuer ({}); do not put sts.amazonaws.com there.", inputs.issuers.api_audiences().join(",")),
        migration_note(inputs, &format!("kubeadm's key in the bundle (`cat /etc/kubernetes/pki/sa.pub >> {dir}/{KEY_BUNDLE_FILE}`), since extraArgs replaces kubeadm's --service-account-key-file=/etc/kubernetes/pki/sa.pub instead of adding to it,")),
    ];
    Ok(Rendered {
        documents,
        node_files: node,
        key_dir: Some(dir),
        notes,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KindCluster {
    kind: &'static str,
    api_version: &'static str,
    name: String,
    nodes: Vec<KindNode>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KindNode {
    role: &'static str,
    extra_mounts: Vec<KindMount>,
    kubeadm_config_patches: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KindMount {
    host_path: String,
    container_path: String,
    read_only: bool,
}

/// `--flavour kind`.
pub(super) fn kind(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    check_dns_label("kind cluster name", &inputs.cluster)?;
    let Some(host_dir) = inputs.host_key_dir.clone() else {
        return Err(ClusterError::Missing {
            flavour: Flavour::Kind,
            what: "a directory on this machine to mount into the node",
            fix: "pass -o DIR (irsa writes the key files to DIR/pki and mounts that) or --host-key-dir DIR (you put the key files there)",
        });
    };
    if !host_dir.starts_with('/') {
        return Err(ClusterError::KeyDir {
            dir: host_dir,
            problem: "(--host-key-dir) is not absolute: kind mounts absolute host paths",
        });
    }
    let dir = key_dir(inputs)?;
    // kind generates kubeadm v1beta3 and merges patches matched by kind.
    let (config, node) = cluster_configuration(inputs, KubeadmApi::V1beta3, None, &dir)?;
    let patch = to_yaml("the kind kubeadm patch", &config)?;
    let cluster = KindCluster {
        kind: "Cluster",
        api_version: "kind.x-k8s.io/v1alpha4",
        name: inputs.cluster.clone(),
        nodes: vec![KindNode {
            role: "control-plane",
            extra_mounts: vec![KindMount {
                host_path: host_dir.clone(),
                container_path: dir.clone(),
                read_only: true,
            }],
            kubeadm_config_patches: vec![patch],
        }],
    };
    let documents = vec![Document {
        file_name: "kind-config.yaml".into(),
        title: "kind cluster config: `kind create cluster --config kind-config.yaml`".into(),
        format: DocFormat::Yaml,
        content: Zeroizing::new(to_yaml("the kind config", &cluster)?),
        private: false,
    }];
    let names: Vec<String> = node.iter().map(|f| f.name.clone()).collect();
    let notes = vec![
        format!("{host_dir} on this machine must hold {} when the cluster is created; it is mounted read-only at {dir} in the control-plane node.", names.join(" and ")),
        "Create the cluster with `kind create cluster --config kind-config.yaml`; add worker nodes to `nodes` as usual (they need no keys). One control-plane node is rendered: give any extra one the same extraMounts and patch.".into(),
        format!("All verification keys are in {KEY_BUNDLE_FILE} because the kubeadm v1beta3 extraArgs map holds one value per flag."),
        rotation_note(&dir, true),
        keys_note(inputs),
    ];
    Ok(Rendered {
        documents,
        node_files: node,
        key_dir: Some(dir),
        notes,
    })
}
