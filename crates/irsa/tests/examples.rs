//! Every `examples/**/irsa.yaml` loads and validates through the CLI's own
//! path: `irsa export` reads the bundle (config parsing and validation, each
//! listed public key parsed and checked against its algorithm) and derives
//! the desired AWS state, all offline and in both builds.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            configs(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_config_loads_and_validates() {
    let mut found = Vec::new();
    configs(&examples_dir(), &mut found);
    found.sort();
    assert!(
        found.len() >= 4,
        "expected the example bundles under examples/, found {found:?}"
    );
    for file in &found {
        assert_eq!(
            file.file_name().and_then(|n| n.to_str()),
            Some("irsa.yaml"),
            "{}: examples are bundles; their config is called irsa.yaml",
            file.display()
        );
        for target in ["terraform", "cloudformation"] {
            let out = Command::new(env!("CARGO_BIN_EXE_irsa"))
                .args(["export", target, "-f"])
                .arg(file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "irsa export {target} -f {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                doc.is_object(),
                "{}: export is not a JSON object",
                file.display()
            );
        }
    }
}
