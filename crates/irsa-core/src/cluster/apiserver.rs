//! Flavours that pass flags one by one: plain flags, k3s and RKE2.
//!
//! All of them can repeat a flag, so every verification key gets its own
//! `--service-account-key-file` and every issuer its own
//! `--service-account-issuer` (k3s/RKE2 keep repeated `*-arg` entries in
//! order and let them replace the distribution's default for that flag).

use serde::Serialize;
use zeroize::Zeroizing;

use super::{
    join, key_dir, keys_note, node_files, rotation_note, to_yaml, ClusterError, DocFormat,
    Document, Flavour, Inputs, Rendered,
};

/// One `name=value` flag.
pub(super) type Flag = (String, String);

/// The service-account flags of kube-apiserver and kube-controller-manager.
pub(super) struct ServiceAccountFlags {
    pub apiserver: Vec<Flag>,
    pub controller_manager: Vec<Flag>,
}

/// Builds the flags for key files in `dir`; `api_audiences` says whether to
/// set `--api-audiences` (not where the distribution sets its own).
pub(super) fn service_account_flags(
    inputs: &Inputs,
    verify_files: &[String],
    sign_file: &str,
    api_audiences: bool,
) -> ServiceAccountFlags {
    let mut apiserver: Vec<Flag> = inputs
        .issuers
        .all()
        .into_iter()
        .map(|i| ("service-account-issuer".to_string(), i))
        .collect();
    for f in verify_files {
        apiserver.push(("service-account-key-file".into(), f.clone()));
    }
    apiserver.push(("service-account-signing-key-file".into(), sign_file.into()));
    if api_audiences {
        apiserver.push((
            "api-audiences".into(),
            inputs.issuers.api_audiences().join(","),
        ));
    }
    ServiceAccountFlags {
        apiserver,
        controller_manager: vec![("service-account-private-key-file".into(), sign_file.into())],
    }
}

fn flag_lines(flags: &[Flag]) -> String {
    flags.iter().map(|(n, v)| format!("--{n}={v}\n")).collect()
}

/// `--flavour flags`.
pub(super) fn flags(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    let dir = key_dir(inputs)?;
    let (sign, verify) = node_files(inputs, &dir, false)?;
    let verify_paths: Vec<String> = verify.iter().map(|f| join(&dir, &f.name)).collect();
    let sign_path = join(&dir, &sign.name);
    let flags = service_account_flags(inputs, &verify_paths, &sign_path, true);
    let documents = vec![
        Document {
            file_name: "kube-apiserver.flags".into(),
            title:
                "kube-apiserver flags (replace its --service-account-* and --api-audiences flags)"
                    .into(),
            format: DocFormat::Text,
            content: Zeroizing::new(flag_lines(&flags.apiserver)),
            private: false,
        },
        Document {
            file_name: "kube-controller-manager.flags".into(),
            title: "kube-controller-manager flag (replace its --service-account-private-key-file)"
                .into(),
            format: DocFormat::Text,
            content: Zeroizing::new(flag_lines(&flags.controller_manager)),
            private: false,
        },
    ];
    let mut notes = vec![
        format!("Copy the key files to {dir}/ on every control-plane node ({} mode 0600, owned by the user the apiserver runs as), then set these flags on kube-apiserver and kube-controller-manager (for static pods: /etc/kubernetes/manifests/*.yaml; a hostPath volume must make {dir} visible in the pod) and restart both.", sign.name),
        rotation_note(&dir, false),
        keys_note(inputs),
        format!("--api-audiences is the apiserver's own audience and stays the issuer ({}); do not put sts.amazonaws.com there: pods ask for that audience in their projected token, and listing it would let every default pod token through STS.", inputs.issuers.api_audiences().join(",")),
    ];
    notes.push(migration_note(inputs, "the key file it verifies with today (kubeadm: /etc/kubernetes/pki/sa.pub) as one more --service-account-key-file"));
    let mut node = vec![sign];
    node.extend(verify);
    Ok(Rendered {
        documents,
        node_files: node,
        key_dir: Some(dir),
        notes,
    })
}

/// What to keep while a running cluster moves to the new issuer and key.
pub(super) fn migration_note(inputs: &Inputs, old_key: &str) -> String {
    if inputs.issuers.previous().is_empty() {
        format!("Running cluster? Tokens issued so far carry its old issuer and key: render again with --previous-issuer <its current --service-account-issuer> and keep {old_key} until every pod has a fresh token (about an hour; the kubelet refreshes projected tokens).")
    } else {
        format!(
            "Previous issuer(s) {} stay accepted after the new one; also keep {old_key} until every pod has a fresh token, then drop both.",
            inputs.issuers.previous().join(", ")
        )
    }
}

/// The `config.yaml` keys k3s and RKE2 read.
#[derive(Serialize)]
struct RancherConfig {
    #[serde(rename = "kube-apiserver-arg")]
    apiserver_args: Vec<String>,
    #[serde(rename = "kube-controller-manager-arg")]
    controller_manager_args: Vec<String>,
    #[serde(
        rename = "kube-apiserver-extra-mount",
        skip_serializing_if = "Vec::is_empty"
    )]
    apiserver_mounts: Vec<String>,
    #[serde(
        rename = "kube-controller-manager-extra-mount",
        skip_serializing_if = "Vec::is_empty"
    )]
    controller_manager_mounts: Vec<String>,
}

fn arg_list(flags: &[Flag]) -> Vec<String> {
    flags.iter().map(|(n, v)| format!("{n}={v}")).collect()
}

/// `--flavour k3s` and `--flavour rke2`.
pub(super) fn rancher(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    let program = match inputs.flavour {
        Flavour::Rke2 => "rke2",
        _ => "k3s",
    };
    let dir = key_dir(inputs)?;
    let (sign, verify) = node_files(inputs, &dir, false)?;
    let verify_paths: Vec<String> = verify.iter().map(|f| join(&dir, &f.name)).collect();
    let sign_path = join(&dir, &sign.name);
    // k3s and RKE2 set --api-audiences themselves
    // (https://kubernetes.default.svc.<domain>,<program>): leave it to them.
    let flags = service_account_flags(inputs, &verify_paths, &sign_path, false);
    // RKE2 runs the control plane as static pods: the key directory must be
    // mounted into them. k3s runs it in-process and reads host paths.
    let mounts = if inputs.flavour == Flavour::Rke2 {
        vec![format!("{dir}:{dir}:ro")]
    } else {
        Vec::new()
    };
    let config = RancherConfig {
        apiserver_args: arg_list(&flags.apiserver),
        controller_manager_args: arg_list(&flags.controller_manager),
        apiserver_mounts: mounts.clone(),
        controller_manager_mounts: mounts,
    };
    let documents = vec![Document {
        file_name: format!("{program}-config.yaml"),
        title: format!("merge into /etc/rancher/{program}/config.yaml on every server node"),
        format: DocFormat::Yaml,
        content: Zeroizing::new(to_yaml("the config.yaml entries", &config)?),
        private: false,
    }];
    let notes = vec![
        format!("Copy the key files to {dir}/ on every server node ({} mode 0600, root), merge the entries into /etc/rancher/{program}/config.yaml (a file in /etc/rancher/{program}/config.yaml.d/ works too, but there a list replaces the same key of config.yaml unless the key ends in '+'), then `systemctl restart {unit}` one server at a time.", sign.name, unit = if program == "k3s" { "k3s" } else { "rke2-server" }),
        rotation_note(&dir, false),
        keys_note(inputs),
        format!("--api-audiences is left to {program}, which sets its own (https://kubernetes.default.svc.cluster.local,{program}); do not add sts.amazonaws.com there."),
        migration_note(inputs, &format!("{program}'s own key as `- service-account-key-file=/var/lib/rancher/{program}/server/tls/service.key`")),
    ];
    let mut node = vec![sign];
    node.extend(verify);
    Ok(Rendered {
        documents,
        node_files: node,
        key_dir: Some(dir),
        notes,
    })
}
