//! The install manifests as the user gets them: `kubectl kustomize` renders a
//! directory of `deploy/` (or any kustomization) into objects.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace root (where `deploy/` lives).
pub fn workspace() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .canonicalize()
        .unwrap()
}

/// The documents of a multi-document YAML stream, empty ones left out.
pub fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Renders the kustomization in `dir` (relative to the workspace root, or
/// absolute) with `kubectl kustomize`; fails the test if kubectl does.
pub fn kustomize(dir: impl AsRef<Path>) -> Vec<Value> {
    let dir = dir.as_ref();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .current_dir(workspace())
        .output()
        .expect("kubectl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    docs(&String::from_utf8(out.stdout).unwrap())
}
