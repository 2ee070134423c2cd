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
}
