//! Desired AWS state derived from `irsa.yaml`, actual state as read, and
//! the diff between them: a [`Plan`] of [`Change`]s. Pure: the AWS adapter
//! reads [`Actual`] and executes the changes.

use std::collections::{BTreeMap, BTreeSet};

mod actual;
mod bucket;
mod change;
mod cloudfront;
mod desired;
mod policies;
mod providers;
mod roles;

#[cfg(test)]
mod pod_identity_tests;

pub use crate::teardown::destroy;
pub use actual::{
    role_path, Actual, ActualDistribution, ActualOac, ActualProvider, ActualRole, DistributionShape,
};
pub use bucket::{public_hosting_refusal, AccountPublicAccess};
pub use change::{lanes, phases, Action, Change, Effect, Phase};
pub use cloudfront::{recorded_url_problem, ALLOWED_METHODS, OAC_SETTINGS, VIEWER_PROTOCOL_POLICY};
pub(crate) use desired::statements;
pub use desired::{Desired, DesiredCloudFront, DesiredRole, RoleKind, BROKER_MODE, MODE_TAG};
pub use policies::{missing_policies_refusal, policies_to_check};

/// IAM's default quota of OIDC providers per account.
pub const MAX_OIDC_PROVIDERS: usize = 100;

/// Tag that marks a resource as created by irsa for a cluster.
pub const OWNER_TAG: &str = "irsa.dev/cluster";

/// The diff.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Changes in execution order.
    pub changes: Vec<Change>,
    /// Resources irsa will not touch, with the reason and fix.
    pub conflicts: Vec<String>,
    /// Steps irsa holds back because running them could let someone else
    /// take over trust, each with the reason and fix: a plan with any does
    /// not finish the job.
    pub withheld: Vec<String>,
    /// Resources left alone that are someone else's and in nobody's way.
    pub notes: Vec<String>,
}

pub(crate) fn change(
    resource: impl Into<String>,
    detail: impl Into<String>,
    action: Action,
) -> Change {
    Change {
        resource: resource.into(),
        detail: detail.into(),
        action,
        phase: Phase::Main,
    }
}

/// Whether tags mark a resource as this bundle's cluster's.
fn owned(desired: &Desired, tags: &BTreeMap<String, String>) -> bool {
    tags.get(OWNER_TAG) == Some(&desired.cluster)
}

/// Computes the changes that make `actual` match `desired`. Resources that
/// exist without this cluster's owner tag are reported as conflicts, never
/// changed, unless their name is in `adopt`.
pub fn diff(desired: &Desired, actual: &Actual, adopt: &BTreeSet<String>) -> Plan {
    let mut plan = Plan::default();
    if let Some(problem) = cloudfront::recorded_url_problem(desired, actual) {
        plan.conflicts.push(problem);
        return plan;
    }
    if let Some(s3) = &desired.s3 {
        bucket::diff(&mut plan, desired, actual, adopt, s3);
    }
    if let Some(cf) = &desired.cloudfront {
        cloudfront::diff(&mut plan, desired, actual, cf);
    }
    if desired.url_pending {
        // Trust waits for the URL the distribution gives.
        plan.notes.push(
            "the documents, the OIDC provider and the roles follow once the distribution exists and irsa apply has recorded its URL as issuer.url".to_string(),
        );
        return plan;
    }
    providers::diff(&mut plan, desired, actual, adopt);
    roles::diff(&mut plan, desired, actual, adopt);
    hold_trust_in_a_foreign_broker(&mut plan, desired, actual, adopt);
    order_broker_steps(&mut plan, desired, actual);
    plan
}

/// When a role named like the broker exists and is not this bundle's, no
/// role is given a trust that names it: that would hand the pod-identity
/// roles to whoever owns that role.
fn hold_trust_in_a_foreign_broker(
    plan: &mut Plan,
    desired: &Desired,
    actual: &Actual,
    adopt: &BTreeSet<String>,
) {
    let (name, arn) = &desired.broker;
    let Some(role) = actual.roles.get(name) else {
        return;
    };
    if adopt.contains(name) || desired.foreign_role_reason(name, role).is_none() {
        return;
    }
    let names_broker = |t: &crate::trust::TrustPolicy| t.aws_principals().contains(arn);
    // A role not created goes with every later step on it (policies, tags).
    let not_created: BTreeSet<String> = plan
        .changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::CreateRole { role } if names_broker(&role.trust) => Some(c.lane()),
            _ => None,
        })
        .collect();
    let updated = plan
        .changes
        .iter()
        .filter(|c| matches!(&c.action, Action::UpdateTrust { trust, .. } if names_broker(trust)))
        .count();
    plan.changes.retain(|c| match &c.action {
        Action::UpdateTrust { trust, .. } => !names_broker(trust),
        _ => !not_created.contains(&c.lane()),
    });
    let held = not_created.len() + updated;
    if held > 0 {
        plan.withheld.push(format!(
            "{held} role(s) that would trust the pod-identity broker role {name} are not created or changed: that role exists and is not this irsa.yaml's (see the conflict above), so trusting it would hand them to its owner; set podIdentity.roleName to a free name, or pass --adopt {name}"
        ));
    }
}

/// Puts the steps on roles that trust the broker role after its creation
/// ([`Phase::BrokerTrust`]) and the broker role's deletion after them
/// ([`Phase::BrokerRemoval`]), keeping plan order otherwise.
pub(crate) fn order_broker_steps(plan: &mut Plan, desired: &Desired, actual: &Actual) {
    for c in &mut plan.changes {
        if c.phase != Phase::Main {
            continue;
        }
        let Some(role) = c.action.role().map(String::from) else {
            continue;
        };
        if let Action::DeleteRole { .. } = c.action {
            let is_broker = actual
                .roles
                .get(&role)
                .or_else(|| actual.path_roles.get(&role))
                .is_some_and(|r| r.tags.get(MODE_TAG).map(String::as_str) == Some(BROKER_MODE));
            if is_broker {
                c.phase = Phase::BrokerRemoval;
            }
        } else if desired
            .roles
            .iter()
            .any(|r| r.name == role && r.kind == RoleKind::PodIdentity)
        {
            c.phase = Phase::BrokerTrust;
        }
    }
    plan.changes.sort_by_key(|c| c.phase);
}

/// Whether the plan writes anything.
impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::IrsaConfig;

    pub(crate) fn cfg() -> IrsaConfig {
        IrsaConfig::from_yaml(
            "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://b.s3.us-east-1.amazonaws.com/demo\n  s3: {bucket: b-oidc, region: us-east-1, prefix: demo}\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\nbindings:\n- {namespace: default, serviceAccount: app, policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}\n",
        )
        .expect("valid")
    }

    #[test]
    fn fresh_then_converged_then_drift() {
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
        let symbols: String = plan.changes.iter().map(Change::symbol).collect();
        assert_eq!(
            symbols,
            "++++++++",
            "{:#?}",
            plan.changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        assert!(plan.conflicts.is_empty());
        let role = &desired.roles[0];
        let converged = Actual {
            bucket: Some(desired.owner_tags()),
            public_policy_allowed: true,
            bucket_policy: desired.merged_bucket_policy(None),
            objects: desired
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), (v.clone(), "application/json".into())))
                .collect(),
            providers: [(
                desired.provider_host_path.clone(),
                ActualProvider {
                    arn: "a".into(),
                    client_ids: desired.client_ids.clone(),
                    thumbprints: Vec::new(),
                    tags: desired.owner_tags(),
                },
            )]
            .into(),
            account_providers: 1,
            roles: [(
                role.name.clone(),
                ActualRole {
                    trust: role.trust.clone(),
                    managed: role.managed.clone(),
                    inline: BTreeMap::new(),
                    max_session: 3600,
                    boundary: None,
                    path: role_path("demo"),
                    tags: role.tags.clone(),
                },
            )]
            .into(),
            path_roles: BTreeMap::new(),
            ..Actual::default()
        };
        let mut converged = converged;
        converged.path_roles = converged.roles.clone();
        assert!(diff(&desired, &converged, &BTreeSet::new()).is_empty());
        let mut drift = converged.clone();
        drift
            .roles
            .get_mut(&role.name)
            .expect("role")
            .managed
            .clear();
        drift
            .roles
            .get_mut(&role.name)
            .expect("role")
            .tags
            .remove("irsa.dev/service-account");
        let plan = diff(&desired, &drift, &BTreeSet::new());
        assert_eq!(plan.changes.len(), 2, "{:?}", plan.changes);
        // Not ours: a conflict, never a change.
        let mut foreign = converged;
        foreign
            .roles
            .get_mut(&role.name)
            .expect("role")
            .tags
            .clear();
        foreign.roles.get_mut(&role.name).expect("role").max_session = 7200;
        let plan = diff(&desired, &foreign, &BTreeSet::new());
        assert!(
            plan.changes.is_empty() && plan.conflicts.len() == 1,
            "{plan:?}"
        );
        assert!(!diff(&desired, &foreign, &[role.name.clone()].into())
            .changes
            .is_empty());
    }
}
