//! Statement ids of the public-read statements irsa merges into a bucket
//! policy: one per issuer published to the bucket.
//!
//! A statement id may hold ASCII letters and digits only. The id irsa writes
//! encodes the cluster name and the key prefix injectively, so two issuers
//! sharing a bucket never share an id: lower-case letters and digits stand
//! for themselves, any other byte is `X` and two upper-case hex digits
//! (`-` is `X2D`, `A` is `X41`), and `Z` (never produced by the escape)
//! separates the cluster from the prefix. Earlier versions wrote
//! `IrsaPublicIssuer` and the cluster name without its dashes, which
//! collides (`prod-1` and `prod1`); such a statement is this issuer's only
//! if it grants nothing but this issuer's documents.

use std::collections::BTreeSet;

use serde_json::Value;

/// How every statement id irsa writes begins.
pub const SID_PREFIX: &str = "IrsaIssuer";

/// How the statement ids of earlier versions began.
pub const LEGACY_SID_PREFIX: &str = "IrsaPublicIssuer";

/// Escapes `text` into `[a-z0-9]` plus `X` + two upper-case hex digits per
/// other byte: injective, and no output contains `Z`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("X{b:02X}"));
        }
    }
    out
}

/// The statement id of the issuer of `cluster` published under `prefix`.
pub fn statement_sid(cluster: &str, prefix: &str) -> String {
    format!("{SID_PREFIX}{}Z{}", escape(cluster), escape(prefix))
}

/// The statement id earlier versions wrote for `cluster` (not unique).
pub fn legacy_sid(cluster: &str) -> String {
    format!("{LEGACY_SID_PREFIX}{}", cluster.replace('-', ""))
}

/// The strings of a policy element that is a string or a list of them.
pub fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether `statement` is this issuer's: its id is `sid`, or it carries the
/// legacy id of `cluster` and grants only objects among `documents` (the
/// ARNs of every document this issuer may have published).
pub fn is_issuer_statement(
    statement: &Value,
    sid: &str,
    cluster: &str,
    documents: &BTreeSet<String>,
) -> bool {
    match statement["Sid"].as_str() {
        Some(s) if s == sid => true,
        Some(s) if s == legacy_sid(cluster) => {
            let resources = strings(&statement["Resource"]);
            !resources.is_empty() && resources.iter().all(|r| documents.contains(*r))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_dashed_and_plain_names_differ() {
        assert_ne!(
            statement_sid("prod-1", "prod"),
            statement_sid("prod1", "prod")
        );
        assert_eq!(statement_sid("prod-1", "prod"), "IrsaIssuerprodX2D1Zprod");
        assert_ne!(statement_sid("a", "bZc"), statement_sid("aZb", "c"));
        assert_eq!(
            legacy_sid("prod-1"),
            legacy_sid("prod1"),
            "the old collision"
        );
        for (c, p) in [("prod-1", "x/y"), ("p", "A.b_c~d")] {
            let sid = statement_sid(c, p);
            assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()), "{sid}");
            assert!(!sid.starts_with(LEGACY_SID_PREFIX));
        }
    }

    fn desired(cluster: &str) -> crate::plan::Desired {
        let yaml = format!("apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: {cluster}\nissuer:\n  url: https://shared.s3.us-east-1.amazonaws.com/{cluster}\n  s3: {{bucket: shared, region: us-east-1, prefix: {cluster}}}\nkeys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\n");
        let cfg = crate::config::IrsaConfig::from_yaml(&yaml).expect("valid");
        crate::plan::Desired::from_config(
            &cfg,
            "111122223333",
            "us-east-1",
            &crate::Discovery::for_issuer(
                cfg.issuer.url().expect("url"),
                cfg.issuer.jwks_path,
                &[],
            ),
            &crate::Jwks::default(),
        )
    }

    /// The statement an earlier version wrote for `d`: its documents under the legacy id.
    fn legacy_statement(d: &crate::plan::Desired) -> Value {
        let mut st = d.bucket_statement.clone().expect("s3");
        st["Sid"] = Value::String(legacy_sid(&d.cluster));
        st
    }

    #[test]
    fn an_earlier_statement_is_migrated_and_a_colliding_one_kept() {
        let (dash, plain) = (desired("prod-1"), desired("prod1"));
        let (old_dash, old_plain) = (legacy_statement(&dash), legacy_statement(&plain));
        assert_eq!(old_dash["Sid"], old_plain["Sid"]);
        let policy = serde_json::json!({"Statement": [old_dash.clone(), old_plain.clone()]});
        let merged = plain.merged_bucket_policy(Some(&policy)).expect("policy");
        assert_eq!(
            merged["Statement"],
            serde_json::json!([old_dash, plain.bucket_statement.clone().expect("s3")]),
            "prod1 replaces its own old statement and keeps prod-1's"
        );
        assert!(!dash.is_our_statement(&old_plain) && dash.is_our_statement(&old_dash));
    }
}
