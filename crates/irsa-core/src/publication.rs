//! Whether the issuer's documents are published as the bundle renders
//! them: what the public URL serves and what the bucket stores, each
//! compared with the bundle's documents on parsed JSON (a JWKS as its set
//! of keys), so that doctor can tell "not published", "published but not
//! reachable" and "reachable but stale" apart, each with its own fix.

use serde_json::Value;

use crate::served::{Document, CACHE_CONTROL};

/// One document: what the bundle renders, what the URL served, what the
/// bucket stores.
#[derive(Debug, Clone, Copy)]
pub struct Copies<'a> {
    /// Which document.
    pub document: Document,
    /// The bundle's rendering.
    pub expected: &'a str,
    /// The body the public URL answered with status 200, or `None` when
    /// the URL failed (unreachable, an error status, a redirect).
    pub served: Option<&'a str>,
    /// What the bucket stores.
    pub stored: Stored<'a>,
}

/// What the bucket stores under a document's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    /// Not read: no bucket in irsa.yaml, AWS links skipped, or the read
    /// failed (the caller reports why).
    Unknown,
    /// No such object.
    Missing,
    /// The object's body.
    Body(&'a str),
}

/// The verdict on both documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// The URL serves the bundle's documents.
    Current,
    /// The bucket lacks the named documents.
    NotPublished(Vec<&'static str>),
    /// The bucket holds the bundle's documents but the URL does not serve
    /// the named ones.
    NotReachable(Vec<&'static str>),
    /// The URL serves, or the bucket stores, other documents than the
    /// bundle's: each entry names the document and where it differs.
    Stale(Vec<String>),
    /// The URL fails and the bucket could not be read: nothing to add to
    /// the links that already failed.
    Unknown,
}

/// Whether two renderings of `document` say the same: equal JSON, a JWKS
/// as the same set of keys in any order. Text that does not parse equals
/// nothing.
pub fn same(document: Document, a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) else {
        return false;
    };
    match document {
        Document::Discovery => a == b,
        Document::Jwks => match (key_set(&a), key_set(&b)) {
            (Some(a), Some(b)) => {
                a.len() == b.len()
                    && a.iter().all(|k| b.contains(k))
                    && b.iter().all(|k| a.contains(k))
            }
            _ => false,
        },
    }
}

fn key_set(jwks: &Value) -> Option<&Vec<Value>> {
    jwks.get("keys")?.as_array()
}

/// Judges both documents. The URL serving the bundle's documents settles
/// it; otherwise the bucket's copies say which of the three problems it is.
pub fn judge(copies: &[Copies<'_>]) -> Publication {
    let served_stale: Vec<String> = copies
        .iter()
        .filter(|c| c.served.is_some_and(|s| !same(c.document, c.expected, s)))
        .map(|c| format!("the {} served differs from irsa.yaml's", c.document.name()))
        .collect();
    if served_stale.is_empty() && copies.iter().all(|c| c.served.is_some()) {
        return Publication::Current;
    }
    let missing: Vec<&'static str> = copies
        .iter()
        .filter(|c| c.stored == Stored::Missing)
        .map(|c| c.document.name())
        .collect();
    if !missing.is_empty() {
        return Publication::NotPublished(missing);
    }
    let stored_stale: Vec<String> = copies
        .iter()
        .filter(|c| matches!(c.stored, Stored::Body(b) if !same(c.document, c.expected, b)))
        .map(|c| {
            format!(
                "the {} stored in the bucket differs from irsa.yaml's",
                c.document.name()
            )
        })
        .collect();
    if !served_stale.is_empty() || !stored_stale.is_empty() {
        return Publication::Stale(served_stale.into_iter().chain(stored_stale).collect());
    }
    let all_stored = copies.iter().all(|c| matches!(c.stored, Stored::Body(_)));
    if all_stored {
        return Publication::NotReachable(
            copies
                .iter()
                .filter(|c| c.served.is_none())
                .map(|c| c.document.name())
                .collect(),
        );
    }
    Publication::Unknown
}

impl Publication {
    /// Whether the link holds, its detail and its fix (`None` for
    /// [`Publication::Unknown`]: nothing to report).
    pub fn explain(&self) -> Option<(bool, String, String)> {
        match self {
            Self::Current => Some((
                true,
                "the URL serves the discovery document and JWKS irsa.yaml renders".into(),
                String::new(),
            )),
            Self::NotPublished(docs) => Some((
                false,
                format!("not published: the bucket has no {}", docs.join(" and no ")),
                "publish them: `irsa apply`".into(),
            )),
            Self::NotReachable(docs) => Some((
                false,
                format!(
                    "published but not reachable: the bucket holds irsa.yaml's documents, but the issuer URL does not serve the {}",
                    docs.join(" or the ")
                ),
                "make them public: the bucket policy must allow s3:GetObject on both keys to everyone (`irsa plan` shows the repair), S3 Block Public Access (bucket and account) must allow that policy, and the issuer URL must point at this bucket and prefix".into(),
            )),
            Self::Stale(what) => Some((
                false,
                format!("reachable but stale: {}", what.join("; ")),
                format!("upload the current documents with `irsa apply`; if the bucket already holds them, a cache serves an old copy: wait for it to expire (irsa sets Cache-Control: {CACHE_CONTROL}) or invalidate it"),
            )),
            Self::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISCOVERY: &str = r#"{"issuer":"https://x/y","jwks_uri":"https://x/y/openid/v1/jwks"}"#;
    const JWKS: &str = r#"{"keys":[{"kid":"a","kty":"EC"},{"kid":"b","kty":"EC"}]}"#;
    const OLD_JWKS: &str = r#"{"keys":[{"kid":"a","kty":"EC"}]}"#;

    fn copies<'a>(served: [Option<&'a str>; 2], stored: [Stored<'a>; 2]) -> [Copies<'a>; 2] {
        [
            Copies {
                document: Document::Discovery,
                expected: DISCOVERY,
                served: served[0],
                stored: stored[0],
            },
            Copies {
                document: Document::Jwks,
                expected: JWKS,
                served: served[1],
                stored: stored[1],
            },
        ]
    }

    #[test]
    fn documents_compare_as_json_and_a_jwks_as_a_set_of_keys() {
        let spaced =
            "{ \"jwks_uri\": \"https://x/y/openid/v1/jwks\", \"issuer\": \"https://x/y\" }";
        assert!(same(Document::Discovery, DISCOVERY, spaced));
        let reordered = r#"{"keys":[{"kty":"EC","kid":"b"},{"kid":"a","kty":"EC"}]}"#;
        assert!(same(Document::Jwks, JWKS, reordered));
        assert!(!same(Document::Jwks, JWKS, OLD_JWKS));
        assert!(!same(Document::Jwks, OLD_JWKS, JWKS));
        assert!(!same(Document::Jwks, JWKS, "not json"));
        assert!(!same(Document::Jwks, JWKS, "{}"));
    }

    #[test]
    fn three_problems_three_fixes() {
        use Stored::*;
        let ok = [Some(DISCOVERY), Some(JWKS)];
        assert_eq!(judge(&copies(ok, [Unknown, Unknown])), Publication::Current);

        // Not served, not stored.
        let failed = [None, None];
        let p = judge(&copies(failed, [Missing, Body(JWKS)]));
        assert_eq!(p, Publication::NotPublished(vec!["discovery document"]));
        let (ok, detail, fix) = p.explain().expect("a finding");
        assert!(!ok && detail.starts_with("not published") && fix.contains("irsa apply"));

        // Stored as rendered, not served.
        let p = judge(&copies(
            [Some(DISCOVERY), None],
            [Body(DISCOVERY), Body(JWKS)],
        ));
        assert_eq!(p, Publication::NotReachable(vec!["JWKS"]));
        let (ok, detail, fix) = p.explain().expect("a finding");
        assert!(!ok && detail.starts_with("published but not reachable"));
        assert!(fix.contains("bucket policy") && fix.contains("Block Public Access"));

        // Served an old JWKS, or the bucket holds one.
        let p = judge(&copies(
            [Some(DISCOVERY), Some(OLD_JWKS)],
            [Unknown, Unknown],
        ));
        assert_eq!(
            p,
            Publication::Stale(vec!["the JWKS served differs from irsa.yaml's".into()])
        );
        let p = judge(&copies(failed, [Body(DISCOVERY), Body(OLD_JWKS)]));
        assert_eq!(
            p,
            Publication::Stale(vec![
                "the JWKS stored in the bucket differs from irsa.yaml's".into()
            ])
        );
        let (ok, detail, fix) = p.explain().expect("a finding");
        assert!(!ok && detail.starts_with("reachable but stale"));
        assert!(fix.contains("irsa apply") && fix.contains("cache"));

        // Nothing known beyond the failed URL.
        assert_eq!(
            judge(&copies(failed, [Unknown, Unknown])),
            Publication::Unknown
        );
        assert_eq!(Publication::Unknown.explain(), None);
    }
}
