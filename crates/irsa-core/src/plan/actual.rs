//! The actual state, as the AWS adapter reads it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::trust::TrustPolicy;

/// A role as read from IAM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActualRole {
    /// Trust policy (decoded JSON).
    pub trust: TrustPolicy,
    /// Attached managed policies.
    pub managed: BTreeSet<String>,
    /// Inline policies.
    pub inline: BTreeMap<String, Value>,
    /// Max session duration.
    pub max_session: i32,
    /// Permissions boundary policy ARN.
    pub boundary: Option<String>,
    /// IAM path (irsa creates roles under [`role_path`]).
    pub path: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// The IAM path irsa creates a cluster's roles under, so they can be listed.
pub fn role_path(cluster: &str) -> String {
    format!("/irsa/{cluster}/")
}

/// The provider as read from IAM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActualProvider {
    /// ARN.
    pub arn: String,
    /// Client IDs.
    pub client_ids: BTreeSet<String>,
    /// Thumbprints.
    pub thumbprints: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Actual state, as read by the adapter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Actual {
    /// Bucket tags when the bucket exists (None: no bucket).
    pub bucket: Option<BTreeMap<String, String>>,
    /// Whether Block Public Access already allows a public bucket policy.
    pub public_policy_allowed: bool,
    /// Current bucket policy.
    pub bucket_policy: Option<Value>,
    /// Object key → (body, content type) for the objects irsa manages.
    pub objects: BTreeMap<String, (String, String)>,
    /// The providers that exist for this bundle's issuers (current and
    /// previous), and any other provider trusting documents served from the
    /// issuer bucket, by host/path. Only the first kind is ever changed.
    pub providers: BTreeMap<String, ActualProvider>,
    /// How many OIDC providers the account has in all.
    pub account_providers: usize,
    /// Roles named by bindings that exist.
    pub roles: BTreeMap<String, ActualRole>,
    /// Every role under the cluster's path ([`role_path`]): those that are
    /// this bundle's ([`Desired::role_owner`]) and no longer bound are
    /// deleted; the plan decides, not the reader.
    pub path_roles: BTreeMap<String, ActualRole>,
    /// Whether the bucket has all four Block Public Access settings on
    /// (read in CloudFront mode only).
    pub bucket_fully_private: bool,
    /// This issuer's distribution, when one tagged for the cluster exists.
    pub distribution: Option<ActualDistribution>,
    /// Other distributions whose origin is this issuer's bucket and prefix,
    /// not tagged for the cluster: never changed.
    pub foreign_distributions: Vec<String>,
    /// The Origin Access Control with this issuer's name, when it exists.
    pub oac: Option<ActualOac>,
}

/// The settings of a distribution irsa manages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DistributionShape {
    /// Whether it is enabled.
    pub enabled: bool,
    /// The comment (irsa's marker).
    pub comment: String,
    /// The single origin's domain name.
    pub origin_domain: String,
    /// The origin path.
    pub origin_path: String,
    /// The Origin Access Control the origin signs with.
    pub oac_id: String,
    /// Custom domain names.
    pub aliases: Vec<String>,
    /// The viewer certificate from ACM, if any.
    pub certificate_arn: Option<String>,
    /// The default behaviour's viewer protocol policy.
    pub viewer_protocol_policy: String,
    /// The default behaviour's allowed methods.
    pub allowed_methods: Vec<String>,
    /// The default root object (irsa wants none).
    pub default_root_object: String,
}

/// A distribution as read from CloudFront.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualDistribution {
    /// Its id.
    pub id: String,
    /// Its `*.cloudfront.net` domain name.
    pub domain_name: String,
    /// `Deployed` or `InProgress`.
    pub status: String,
    /// Its settings.
    pub shape: DistributionShape,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// An Origin Access Control as read from CloudFront.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualOac {
    /// Its id.
    pub id: String,
    /// Its description (irsa writes its owner marker there: OACs have no tags).
    pub description: String,
    /// `sigv4`.
    pub signing_protocol: String,
    /// `always`, `never` or `no-override`.
    pub signing_behavior: String,
    /// `s3`, `mediastore`, …
    pub origin_type: String,
}
