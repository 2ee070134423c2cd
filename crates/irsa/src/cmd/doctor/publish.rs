//! Doctor's links between the token, irsa.yaml and what is published: the
//! token's kid and signature against irsa.yaml's own keys (nothing
//! fetched), and the documents the issuer URL serves and the bucket
//! stores against the ones irsa.yaml renders.

use anyhow::Result;
use irsa_core::checks::Report;
use irsa_core::diagnosis::{BundleKeyFinding, Link};
use irsa_core::issuer::DISCOVERY_PATH;
use irsa_core::publication::{self, Copies, Stored};
use irsa_core::served::Document;
use irsa_core::Jwks;

use super::DoctorArgs;
use crate::bundle::Bundle;

/// The documents irsa.yaml renders, as `irsa apply` publishes them.
pub(super) struct Rendered {
    discovery: String,
    jwks_json: String,
    jwks: Jwks,
}

/// Renders the bundle's documents; a bundle whose keys cannot be read
/// is reported and leaves the bundle's links out.
pub(super) fn render(r: &mut Report, bundle: &Bundle) -> Option<Rendered> {
    match bundle.documents() {
        Ok((discovery, jwks)) => Some(Rendered {
            discovery: discovery.to_json(),
            jwks_json: jwks.to_json(),
            jwks,
        }),
        Err(e) => {
            r.warn(
                Link::BundleKey.name(),
                format!("cannot render irsa.yaml's documents: {e:#}"),
                "fix the keys irsa.yaml lists (`irsa validate` says what is wrong)",
            );
            None
        }
    }
}

/// The token's kid and signature against irsa.yaml's JWKS.
pub(super) fn bundle_key_link(r: &mut Report, token: &str, rendered: &Rendered) {
    let (status, detail, fix) = BundleKeyFinding::of(token, &rendered.jwks).explain();
    r.record(Link::BundleKey.name(), status, detail, fix);
}

/// Bodies the issuer URL answered with a usable 200.
#[derive(Default)]
pub(super) struct ServedBodies {
    /// The discovery document.
    pub discovery: Option<String>,
    /// The JWKS.
    pub jwks: Option<String>,
}

/// Compares what is served (and, when that is not irsa.yaml's documents,
/// what the bucket stores) with what irsa.yaml renders.
pub(super) fn publication_link(
    r: &mut Report,
    a: &DoctorArgs,
    bundle: &Bundle,
    rendered: &Rendered,
    served: &ServedBodies,
) -> Result<()> {
    let docs = [
        (Document::Discovery, &rendered.discovery, &served.discovery),
        (Document::Jwks, &rendered.jwks_json, &served.jwks),
    ];
    let served_current = docs.iter().all(|(document, expected, served)| {
        served
            .as_deref()
            .is_some_and(|s| publication::same(*document, expected, s))
    });
    let mut stored: Vec<Option<String>> = vec![None, None];
    let mut read = false;
    let s3 = bundle.config.issuer.s3.as_ref();
    if let (false, false, Some(s3)) = (served_current, a.no_aws, s3) {
        let keys = [
            s3.key(DISCOVERY_PATH),
            s3.key(bundle.config.issuer.jwks_path.as_str()),
        ];
        match super::aws::stored_objects(a, &s3.region, &s3.bucket, &keys)? {
            Ok(bodies) => {
                stored = bodies;
                read = true;
            }
            Err(e) => r.warn(
                Link::Publication.name(),
                format!("cannot read the documents stored in s3://{}: {e}", s3.bucket),
                "run doctor with credentials allowed s3:GetObject on the issuer bucket, or pass --no-aws",
            ),
        }
    }
    let copies: Vec<Copies<'_>> = docs
        .iter()
        .zip(&stored)
        .map(|((document, expected, served), stored)| Copies {
            document: *document,
            expected: expected.as_str(),
            served: served.as_deref(),
            stored: match (read, stored) {
                (false, _) => Stored::Unknown,
                (true, None) => Stored::Missing,
                (true, Some(body)) => Stored::Body(body),
            },
        })
        .collect();
    match publication::judge(&copies).explain() {
        Some((true, detail, _)) => r.pass(Link::Publication.name(), detail),
        Some((false, detail, fix)) => r.fail(Link::Publication.name(), detail, fix),
        None => {}
    }
    Ok(())
}
