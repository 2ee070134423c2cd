//! Flag values shared by several verbs: how clap parses them and their
//! defaults, written once.

use irsa_core::key::Algorithm;

/// The image of this release: its tag is the crate version, the one place
/// to bump. deploy/base/deployment.yaml names the same (a test checks it).
pub const IMAGE: &str = concat!("ghcr.io/irsa-dev/irsa:", env!("CARGO_PKG_VERSION"));

/// Checks an image reference before it is written into YAML: registry,
/// path, tag and digest characters only (`[a-z0-9._/:@-]`, letters of any
/// case), so it can neither break the document nor add a field to it.
pub fn image_reference(value: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if value.is_empty() || value.len() > 512 || !value.chars().all(allowed) {
        return Err(format!(
            "{value:?} is not an image reference: give one like \
             registry.example.com/irsa:{} (letters, digits and . _ - / : @ only)",
            env!("CARGO_PKG_VERSION")
        ));
    }
    Ok(value.to_string())
}

/// Parses an algorithm name for clap.
pub fn parse_alg(s: &str) -> Result<Algorithm, String> {
    s.parse()
        .map_err(|e: irsa_core::key::UnknownAlgorithm| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn image_references_that_could_break_the_yaml_are_refused() {
        for good in [
            "registry.example.com:5000/team/irsa:0.1.0",
            "irsa@sha256:0123abcd",
            IMAGE,
        ] {
            assert_eq!(image_reference(good).as_deref(), Ok(good));
        }
        for bad in ["", "a b", "x\n  hostNetwork: true", "irsa:1\"", "irsa#1"] {
            let err = image_reference(bad).unwrap_err();
            assert!(err.contains("not an image reference"), "{err}");
        }
    }
}
