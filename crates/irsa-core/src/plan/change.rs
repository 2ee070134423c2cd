//! Changes: the steps of a plan, their phases and lanes.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::trust::TrustPolicy;

use super::DesiredRole;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the bucket (tagged right after).
    CreateBucket,
    /// Tag the bucket as owned (adoption, or finishing an interrupted create).
    TagBucket,
    /// Allow bucket policies to grant public read (ACLs stay blocked).
    AllowPublicPolicy {
        /// Whether the bucket is created by the same plan (`+`, else `~`).
        creates: bool,
    },
    /// Put the bucket policy.
    PutBucketPolicy {
        /// The whole policy document.
        policy: Value,
        /// Whether the bucket has no policy yet (`+`, else `~`).
        creates: bool,
    },
    /// Upload one document.
    PutObject {
        /// Key.
        key: String,
        /// Body.
        body: String,
        /// Whether the object is new (`+`) rather than replaced (`~`).
        creates: bool,
    },
    /// Create the OIDC provider for a host/path.
    CreateProvider {
        /// The provider URL without `https://`.
        host_path: String,
    },
    /// Add a client ID to the provider for a host/path.
    AddClientId {
        /// The provider URL without `https://`.
        host_path: String,
        /// The client ID (an audience).
        client_id: String,
    },
    /// Tag the provider for a host/path as owned.
    TagProvider {
        /// The provider URL without `https://`.
        host_path: String,
    },
    /// Replace the thumbprints of the provider for a host/path.
    UpdateThumbprints {
        /// The provider URL without `https://`.
        host_path: String,
        /// The new thumbprints.
        thumbprints: Vec<String>,
    },
    /// Create a role with trust policy, session duration and tags.
    CreateRole {
        /// The role as it should be.
        role: DesiredRole,
    },
    /// Replace a role's trust policy.
    UpdateTrust {
        /// Role name.
        role: String,
        /// The new trust policy.
        trust: TrustPolicy,
    },
    /// Change max session duration.
    UpdateMaxSession {
        /// Role name.
        role: String,
        /// The new maximum, in seconds.
        seconds: i32,
    },
    /// Re-tag a role.
    TagRole {
        /// Role name.
        role: String,
        /// The tags to set.
        tags: BTreeMap<String, String>,
    },
    /// Set a role's permissions boundary.
    PutBoundary {
        /// Role name.
        role: String,
        /// The boundary policy's ARN.
        policy_arn: String,
    },
    /// Remove a role's permissions boundary.
    DeleteBoundary {
        /// Role name.
        role: String,
    },
    /// Attach a managed policy.
    AttachPolicy {
        /// Role name.
        role: String,
        /// The managed policy's ARN.
        policy_arn: String,
    },
    /// Detach a managed policy.
    DetachPolicy {
        /// Role name.
        role: String,
        /// The managed policy's ARN.
        policy_arn: String,
    },
    /// Put an inline policy.
    PutInline {
        /// Role name.
        role: String,
        /// The inline policy's name.
        policy_name: String,
        /// The policy document.
        document: Value,
        /// Whether the policy is written as part of creating its role
        /// (`+`) rather than changing an existing role (`~`).
        creates: bool,
    },
    /// Delete an inline policy.
    DeleteInline {
        /// Role name.
        role: String,
        /// The inline policy's name.
        policy_name: String,
    },
    /// Delete a role (after detaching everything).
    DeleteRole {
        /// Role name.
        role: String,
    },
    /// Delete the OIDC provider.
    DeleteProvider {
        /// The provider's ARN.
        arn: String,
    },
    /// Delete one document.
    DeleteObject {
        /// Key.
        key: String,
    },
    /// Delete the bucket policy.
    DeleteBucketPolicy,
    /// Delete the (empty) bucket.
    DeleteBucket,
    /// Turn all four Block Public Access settings of the bucket on
    /// (CloudFront mode: the bucket stays private).
    BlockAllPublicAccess {
        /// Whether the bucket is created by the same plan (`+`, else `~`).
        creates: bool,
    },
    /// Create this issuer's Origin Access Control (sigv4, always sign, s3).
    CreateOac,
    /// Restore the settings of this issuer's Origin Access Control.
    UpdateOac {
        /// Its id.
        id: String,
    },
    /// Create this issuer's distribution, tagged as owned.
    CreateDistribution,
    /// Restore the settings of this issuer's distribution.
    UpdateDistribution {
        /// Its id.
        id: String,
    },
    /// Invalidate the documents' paths in the distribution's caches.
    Invalidate {
        /// The distribution's id.
        id: String,
        /// The paths (`/…`).
        paths: Vec<String>,
    },
    /// Disable the distribution (it must be disabled and deployed before
    /// it can be deleted).
    DisableDistribution {
        /// Its id.
        id: String,
    },
    /// Delete the (disabled) distribution once it is deployed.
    DeleteDistribution {
        /// Its id.
        id: String,
    },
    /// Delete the Origin Access Control.
    DeleteOac {
        /// Its id.
        id: String,
    },
}

/// When a change may run. Phases run in order, each only after every
/// change of the one before succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Phase {
    /// Everything except what the phases below hold back.
    #[default]
    Main,
    /// Creating and updating the roles that trust the Pod Identity broker
    /// role: IAM refuses a trust policy naming a role that does not exist,
    /// so they follow the broker role's creation.
    BrokerTrust,
    /// Deleting the broker role: only after every role that trusts it is
    /// gone or trusts something else (IAM would otherwise leave their trust
    /// naming a deleted role's unique ID).
    BrokerRemoval,
    /// Removing what serves the issuer's documents (objects, bucket policy
    /// statement, bucket; any other hosting later): runs after trust is
    /// gone, and each step only if a fresh read of IAM finds no provider
    /// that still trusts what it removes ([`crate::ownership::hosting_blockers`]).
    HostingRemoval,
}

/// A change with its human rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Resource description.
    pub resource: String,
    /// What changes.
    pub detail: String,
    /// The step.
    pub action: Action,
    /// When it may run.
    pub phase: Phase,
}

/// What a step does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Creates it (`+`).
    Create,
    /// Changes it (`~`).
    Change,
    /// Deletes it (`-`).
    Delete,
}

impl Effect {
    /// How a plan shows it.
    pub fn symbol(self) -> char {
        match self {
            Effect::Create => '+',
            Effect::Change => '~',
            Effect::Delete => '-',
        }
    }
}

impl Action {
    /// How a plan shows this step: `+` creates, `~` changes, `-` deletes.
    pub fn symbol(&self) -> char {
        self.effect().symbol()
    }

    /// What this step does to its resource.
    pub fn effect(&self) -> Effect {
        match self {
            Action::CreateBucket
            | Action::CreateProvider { .. }
            | Action::CreateRole { .. }
            | Action::AttachPolicy { .. }
            | Action::CreateOac
            | Action::CreateDistribution
            | Action::AllowPublicPolicy { creates: true }
            | Action::BlockAllPublicAccess { creates: true }
            | Action::PutBucketPolicy { creates: true, .. }
            | Action::PutObject { creates: true, .. }
            | Action::PutInline { creates: true, .. } => Effect::Create,
            Action::DeleteBucket
            | Action::DeleteBucketPolicy
            | Action::DeleteObject { .. }
            | Action::DeleteProvider { .. }
            | Action::DeleteRole { .. }
            | Action::DetachPolicy { .. }
            | Action::DeleteInline { .. }
            | Action::DeleteDistribution { .. }
            | Action::DeleteOac { .. } => Effect::Delete,
            Action::TagBucket
            | Action::AllowPublicPolicy { creates: false }
            | Action::PutBucketPolicy { creates: false, .. }
            | Action::PutObject { creates: false, .. }
            | Action::AddClientId { .. }
            | Action::TagProvider { .. }
            | Action::UpdateThumbprints { .. }
            | Action::UpdateTrust { .. }
            | Action::UpdateMaxSession { .. }
            | Action::TagRole { .. }
            | Action::PutBoundary { .. }
            | Action::DeleteBoundary { .. }
            | Action::PutInline { creates: false, .. }
            | Action::BlockAllPublicAccess { creates: false }
            | Action::UpdateOac { .. }
            | Action::UpdateDistribution { .. }
            | Action::Invalidate { .. }
            | Action::DisableDistribution { .. } => Effect::Change,
        }
    }
}

impl Action {
    /// The role the action creates, changes or deletes; `None` for the
    /// bucket, the provider and CloudFront.
    pub fn role(&self) -> Option<&str> {
        match self {
            Action::CreateRole { role: r } => Some(&r.name),
            Action::UpdateTrust { role: n, .. }
            | Action::UpdateMaxSession { role: n, .. }
            | Action::TagRole { role: n, .. }
            | Action::PutBoundary { role: n, .. }
            | Action::DeleteBoundary { role: n }
            | Action::AttachPolicy { role: n, .. }
            | Action::DetachPolicy { role: n, .. }
            | Action::PutInline { role: n, .. }
            | Action::DeleteInline { role: n, .. }
            | Action::DeleteRole { role: n } => Some(n),
            _ => None,
        }
    }
}

impl Change {
    /// `+` create, `~` update, `-` delete: derived from the action.
    pub fn symbol(&self) -> char {
        self.action.symbol()
    }

    /// Changes in the same lane run in order; lanes are independent and
    /// may run concurrently: the bucket and its objects, the provider,
    /// and each role.
    pub fn lane(&self) -> String {
        if let Some(role) = self.action.role() {
            return format!("role:{role}");
        }
        match &self.action {
            Action::CreateProvider { host_path: h }
            | Action::AddClientId { host_path: h, .. }
            | Action::TagProvider { host_path: h }
            | Action::UpdateThumbprints { host_path: h, .. } => {
                format!("provider:{h}")
            }
            Action::DeleteProvider { arn } => format!("provider:{arn}"),
            Action::CreateOac
            | Action::UpdateOac { .. }
            | Action::CreateDistribution
            | Action::UpdateDistribution { .. }
            | Action::DisableDistribution { .. }
            | Action::DeleteDistribution { .. }
            | Action::DeleteOac { .. } => "cloudfront".into(),
            // The bucket, its policy, its public access block, its objects
            // and their invalidation.
            _ => "s3".into(),
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
        write!(f, "{} {:<60} {}", self.symbol(), self.resource, self.detail)
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
        let desired = Desired::from_config(
            &cfg(),
            "111122223333",
            "us-east-1",
            &crate::Discovery::for_issuer(
                cfg().issuer.url().expect("url"),
                cfg().issuer.jwks_path,
                &[],
            ),
            &crate::Jwks::default(),
        );
        let plan = diff(&desired, &Actual::default(), &BTreeSet::new());
        let lanes = lanes(&plan.changes);
        assert_eq!(lanes.len(), 3, "s3, provider, one role");
        assert!(matches!(lanes[0][0].action, Action::CreateBucket));
        assert!(matches!(lanes[2][0].action, Action::CreateRole { .. }));
        assert!(matches!(lanes[2][1].action, Action::AttachPolicy { .. }));
        assert_eq!(
            lanes.iter().map(Vec::len).sum::<usize>(),
            plan.changes.len()
        );
    }
}
