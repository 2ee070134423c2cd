//! Key files on the control-plane nodes and the notes about them.

use zeroize::Zeroizing;

use super::{ClusterError, Inputs, NodeFile, SigningKey, KEY_BUNDLE_FILE, SIGNING_KEY_FILE};
use crate::config::KeyState;

/// The key directory on the nodes, checked: absolute, no separators that
/// flag lists or mount specs would split on.
pub(super) fn key_dir(inputs: &Inputs) -> Result<String, ClusterError> {
    let dir = inputs
        .key_dir
        .as_deref()
        .or(inputs.flavour.default_key_dir())
        .unwrap_or_default();
    let bad = |problem| ClusterError::KeyDir {
        dir: dir.to_string(),
        problem,
    };
    if !dir.starts_with('/') {
        return Err(bad("is not absolute: give the full path on the control-plane node, e.g. /etc/kubernetes/pki/irsa"));
    }
    if dir
        .chars()
        .any(|c| c.is_whitespace() || c == ',' || c == ':')
    {
        return Err(bad(
            "holds white space, ',' or ':', which flag lists and mount specs split on: choose a plain path",
        ));
    }
    let trimmed = dir.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
}

/// Last path component of a bundle-relative file name.
fn base_name(source: &str) -> String {
    source.rsplit('/').next().unwrap_or(source).to_string()
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The signing key, already known to be present when the flavour needs it.
pub(super) fn signing(inputs: &Inputs) -> Result<&SigningKey, ClusterError> {
    let key = inputs
        .signing
        .as_ref()
        .ok_or_else(|| ClusterError::NoSigningKey {
            flavour: inputs.flavour,
            public_key: "(none)".into(),
        })?;
    Ok(key)
}

/// Key files as placed on the node: the signing key and either one file per
/// verification key (`bundled == false`) or all of them in one PEM file.
pub(super) fn node_files(
    inputs: &Inputs,
    dir: &str,
    bundled: bool,
) -> Result<(NodeFile, Vec<NodeFile>), ClusterError> {
    let sign = signing(inputs)?;
    let sign_file = NodeFile {
        name: SIGNING_KEY_FILE.into(),
        content: sign.key.to_pem(),
        private: true,
        sources: vec![sign.source.clone()],
    };
    let verify: Vec<NodeFile> = if bundled {
        let mut pem = String::new();
        for k in &inputs.verify {
            pem.push_str(&k.key.to_pem());
        }
        vec![NodeFile {
            name: KEY_BUNDLE_FILE.into(),
            content: Zeroizing::new(pem),
            private: false,
            sources: inputs.verify.iter().map(|k| k.source.clone()).collect(),
        }]
    } else {
        inputs
            .verify
            .iter()
            .map(|k| NodeFile {
                name: base_name(&k.source),
                content: Zeroizing::new(k.key.to_pem()),
                private: false,
                sources: vec![k.source.clone()],
            })
            .collect()
    };
    let mut names: Vec<&str> = vec![&sign_file.name];
    for f in &verify {
        if names.contains(&f.name.as_str()) {
            return Err(ClusterError::DuplicateFileName {
                name: f.name.clone(),
                key_dir: dir.to_string(),
            });
        }
        names.push(&f.name);
    }
    Ok((sign_file, verify))
}

/// The note on keys: which are listed, what retired keys mean.
pub(super) fn keys_note(inputs: &Inputs) -> String {
    let mut listed: Vec<String> = Vec::new();
    for k in &inputs.verify {
        let state = match k.state {
            KeyState::Active => "active, signs",
            KeyState::Next => "next, verifies only",
            KeyState::Previous => "previous, verifies until its tokens expire",
            KeyState::Retired => "retired",
        };
        listed.push(format!("{} (kid {}, {state})", k.source, k.key.kid()));
    }
    let mut note = format!("Keys the apiserver verifies with: {}.", listed.join("; "));
    if inputs.retired > 0 {
        note.push_str(&format!(
            " {} retired key(s) are left out: the apiserver stops accepting tokens they signed (retire waits until those have expired; the JWKS no longer publishes them).",
            inputs.retired
        ));
    }
    note
}

/// The note on what a key rotation changes on the nodes and in the
/// configuration: `bundled` flavours (kubeadm, kind) keep every
/// verification key in one file.
pub(super) fn rotation_note(dir: &str, bundled: bool) -> String {
    let check = "Roll each stage out before the next one; after the switch, `irsa keys status -f irsa.yaml --kubeconfig K` shows which key the cluster signs with, and `irsa keys rotate --stage retire` refuses until it is the active key.";
    if bundled {
        format!("Key rotation: the signing key is always {dir}/{SIGNING_KEY_FILE} and the verification keys always {dir}/{KEY_BUNDLE_FILE}, so this configuration stays the same; each stage rewrites the content of those files (publish and retire: {KEY_BUNDLE_FILE}; switch: {SIGNING_KEY_FILE}). Render again with -o DIR --force, copy DIR/pki/ to every control-plane node and restart kube-apiserver and kube-controller-manager. {check}")
    } else {
        format!("Key rotation: the signing key is always {dir}/{SIGNING_KEY_FILE}, whichever key is active, so the switch rewrites that file's content and no flag. Publish adds and retire removes one --service-account-key-file (one file per public key), so those two stages change the flags. Render again with -o DIR --force, copy DIR/pki/ to every control-plane node, apply the flags and restart. {check}")
    }
}

/// Serializes to YAML.
pub(super) fn to_yaml<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, ClusterError> {
    serde_yaml::to_string(value).map_err(|e| ClusterError::Render {
        what,
        detail: e.to_string(),
    })
}
