//! Changes: the steps of a plan, their phases and lanes.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::DesiredRole;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the bucket (tagged right after).
    CreateBucket,
    /// Tag the bucket as owned (adoption, or finishing an interrupted create).
    TagBucket,
    /// Allow bucket policies to grant public read (ACLs stay blocked).
    AllowPublicPolicy,
    /// Put the bucket policy.
    PutBucketPolicy(Value),
    /// Upload one document.
    PutObject {
        /// Key.
        key: String,
        /// Body.
        body: String,
    },
    /// Create the OIDC provider for a host/path.
    CreateProvider(String),
    /// Add a client ID to the provider for a host/path.
    AddClientId(String, String),
    /// Tag the provider for a host/path as owned.
    TagProvider(String),
    /// Replace the thumbprints of the provider for a host/path.
    UpdateThumbprints(String, Vec<String>),
    /// Create a role with trust policy, session duration and tags.
    CreateRole(DesiredRole),
    /// Replace a role's trust policy.
    UpdateTrust(String, Value),
    /// Change max session duration.
    UpdateMaxSession(String, i32),
    /// Re-tag a role.
    TagRole(String, BTreeMap<String, String>),
    /// Set a role's permissions boundary.
    PutBoundary(String, String),
    /// Remove a role's permissions boundary.
    DeleteBoundary(String),
    /// Attach a managed policy.
    AttachPolicy(String, String),
    /// Detach a managed policy.
    DetachPolicy(String, String),
    /// Put an inline policy.
    PutInline(String, String, Value),
    /// Delete an inline policy.
    DeleteInline(String, String),
    /// Delete a role (after detaching everything).
    DeleteRole(String),
    /// Delete the OIDC provider.
    DeleteProvider(String),
    /// Delete one document.
    DeleteObject(String),
    /// Delete the bucket policy.
    DeleteBucketPolicy,
    /// Delete the (empty) bucket.
    DeleteBucket,
}

/// When a change may run. Phases run in order, each only after every
/// change of the one before succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Phase {
    /// Everything except taking hosting down.
    #[default]
    Main,
    /// Removing what serves the issuer's documents (objects, bucket policy
    /// statement, bucket; any other hosting later): runs after trust is
    /// gone, and each step only if a fresh read of IAM finds no provider
    /// that still trusts what it removes ([`crate::ownership::hosting_blockers`]).
    HostingRemoval,
}

/// A change with its human rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `+` create, `~` update, `-` delete.
    pub symbol: char,
    /// Resource description.
    pub resource: String,
    /// What changes.
    pub detail: String,
    /// The step.
    pub action: Action,
    /// When it may run.
    pub phase: Phase,
}

impl Change {
    /// Changes in the same lane run in order; lanes are independent and
    /// may run concurrently: the bucket and its objects, the provider,
    /// and each role.
    pub fn lane(&self) -> String {
        match &self.action {
            Action::CreateRole(r) => format!("role:{}", r.name),
            Action::UpdateTrust(n, _)
            | Action::UpdateMaxSession(n, _)
            | Action::TagRole(n, _)
            | Action::PutBoundary(n, _)
            | Action::DeleteBoundary(n)
            | Action::AttachPolicy(n, _)
            | Action::DetachPolicy(n, _)
            | Action::PutInline(n, _, _)
            | Action::DeleteInline(n, _)
            | Action::DeleteRole(n) => format!("role:{n}"),
            Action::CreateProvider(h)
            | Action::AddClientId(h, _)
            | Action::TagProvider(h)
            | Action::UpdateThumbprints(h, _) => {
                format!("provider:{h}")
            }
            Action::DeleteProvider(arn) => format!("provider:{arn}"),
            Action::CreateBucket
            | Action::TagBucket
            | Action::AllowPublicPolicy
            | Action::PutBucketPolicy(_)
            | Action::PutObject { .. }
            | Action::DeleteObject(_)
            | Action::DeleteBucketPolicy
            | Action::DeleteBucket => "s3".into(),
        }
    }
}

/// Splits changes into their phases, in phase order (empty phases left out).
pub fn phases(changes: &[Change]) -> Vec<(Phase, Vec<Change>)> {
    let mut by_phase: BTreeMap<Phase, Vec<Change>> = BTreeMap::new();
    for c in changes {
        by_phase.entry(c.phase).or_default().push(c.clone());
    }
    by_phase.into_iter().collect()
}

/// Groups changes into lanes, keeping plan order within each lane and
/// the order in which lanes first appear.
pub fn lanes(changes: &[Change]) -> Vec<Vec<&Change>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_lane: BTreeMap<String, Vec<&Change>> = BTreeMap::new();
    for c in changes {
        let lane = c.lane();
        if !by_lane.contains_key(&lane) {
            order.push(lane.clone());
        }
        by_lane.entry(lane).or_default().push(c);
    }
    order
        .into_iter()
        .filter_map(|l| by_lane.remove(&l))
        .collect()
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:<60} {}", self.symbol, self.resource, self.detail)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::cfg;
    use crate::plan::{diff, Actual, Desired};
    use std::collections::BTreeSet;

    #[test]
    fn lanes_keep_order_within_a_resource() {
        let desired =
            Desired::from_config(&cfg(), "111122223333", "us-east-1", "{}", "{\"keys\":[]}");
        let plan = diff(&desired, &Actual::default(), &BTreeSet::new());
        let lanes = lanes(&plan.changes);
        assert_eq!(lanes.len(), 3, "s3, provider, one role");
        assert!(matches!(lanes[0][0].action, Action::CreateBucket));
        assert!(matches!(lanes[2][0].action, Action::CreateRole(_)));
        assert!(matches!(lanes[2][1].action, Action::AttachPolicy(..)));
        assert_eq!(
            lanes.iter().map(Vec::len).sum::<usize>(),
            plan.changes.len()
        );
    }
}
