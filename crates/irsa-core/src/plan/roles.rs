//! The roles: one per binding, and the deletion of this bundle's roles
//! no binding names any more.

use std::collections::BTreeSet;

use super::{change, Action, Actual, Desired, Plan, RoleKind};
use crate::trust::{policy_length, TRUST_POLICY_LIMIT};

/// Adds the roles' changes and conflicts to `plan`.
pub(super) fn diff(plan: &mut Plan, desired: &Desired, actual: &Actual, adopt: &BTreeSet<String>) {
    for role in &desired.roles {
        let res = format!("iam role {}", role.name);
        let size = policy_length(&role.trust);
        if size > TRUST_POLICY_LIMIT {
            let statements = role.trust["Statement"].as_array().map_or(0, Vec::len);
            plan.conflicts.push(if role.kind == RoleKind::PodIdentity {
                format!(
                    "{res}: its trust policy is {size} characters ({} broker roles) and IAM allows {TRUST_POLICY_LIMIT} by default: list fewer extraBrokers per role (split the binding with roleName), or raise the \"Role trust policy length\" quota (up to 4096)",
                    role.trust.aws_principals().len()
                )
            } else {
                format!(
                    "{res}: its trust policy is {size} characters ({statements} issuer statements) and IAM allows {TRUST_POLICY_LIMIT} by default: trust fewer issuers per role (split the binding with roleName), drop retired issuers from issuer.previousUrls, or raise the \"Role trust policy length\" quota (up to 4096)"
                )
            });
            continue;
        }
        let Some(act) = actual.roles.get(&role.name) else {
            plan.changes.push(change(
                &res,
                format!(
                    "{} managed, {} inline policies",
                    role.managed.len(),
                    role.inline.len()
                ),
                Action::CreateRole { role: role.clone() },
            ));
            for arn in &role.managed {
                plan.changes.push(change(
                    format!("{res} policy"),
                    arn,
                    Action::AttachPolicy {
                        role: role.name.clone(),
                        policy_arn: arn.clone(),
                    },
                ));
            }
            for (name, doc) in &role.inline {
                plan.changes.push(change(
                    format!("{res} inline policy"),
                    name,
                    Action::PutInline {
                        role: role.name.clone(),
                        policy_name: name.clone(),
                        document: doc.clone(),
                        creates: true,
                    },
                ));
            }
            continue;
        };
        if !adopt.contains(&role.name) {
            if let Some(why) = desired.foreign_role_reason(&role.name, act) {
                plan.conflicts.push(format!(
                    "{why}: irsa will not modify it; rename the binding (roleName) or pass --adopt {} to take it over",
                    role.name
                ));
                continue;
            }
        }
        if act.trust != role.trust {
            plan.changes.push(change(
                &res,
                "trust policy",
                Action::UpdateTrust {
                    role: role.name.clone(),
                    trust: role.trust.clone(),
                },
            ));
        }
        if act.max_session != role.max_session {
            plan.changes.push(change(
                &res,
                format!("max session {} -> {}", act.max_session, role.max_session),
                Action::UpdateMaxSession {
                    role: role.name.clone(),
                    seconds: role.max_session,
                },
            ));
        }
        if act.boundary != role.boundary {
            match &role.boundary {
                Some(arn) => plan.changes.push(change(
                    &res,
                    format!("permissions boundary {arn}"),
                    Action::PutBoundary {
                        role: role.name.clone(),
                        policy_arn: arn.clone(),
                    },
                )),
                None => plan.changes.push(change(
                    &res,
                    "remove permissions boundary",
                    Action::DeleteBoundary {
                        role: role.name.clone(),
                    },
                )),
            }
        }
        let missing_tags = role.tags.iter().any(|(k, v)| act.tags.get(k) != Some(v));
        if missing_tags {
            plan.changes.push(change(
                &res,
                "tags",
                Action::TagRole {
                    role: role.name.clone(),
                    tags: role.tags.clone(),
                },
            ));
        }
        for arn in role.managed.difference(&act.managed) {
            plan.changes.push(change(
                format!("{res} policy"),
                arn,
                Action::AttachPolicy {
                    role: role.name.clone(),
                    policy_arn: arn.clone(),
                },
            ));
        }
        for arn in act.managed.difference(&role.managed) {
            plan.changes.push(change(
                format!("{res} policy"),
                arn,
                Action::DetachPolicy {
                    role: role.name.clone(),
                    policy_arn: arn.clone(),
                },
            ));
        }
        for (name, doc) in &role.inline {
            if act.inline.get(name) != Some(doc) {
                plan.changes.push(change(
                    format!("{res} inline policy"),
                    name,
                    Action::PutInline {
                        role: role.name.clone(),
                        policy_name: name.clone(),
                        document: doc.clone(),
                        creates: false,
                    },
                ));
            }
        }
        for name in act.inline.keys().filter(|n| !role.inline.contains_key(*n)) {
            plan.changes.push(change(
                format!("{res} inline policy"),
                name,
                Action::DeleteInline {
                    role: role.name.clone(),
                    policy_name: name.clone(),
                },
            ));
        }
    }
    for (name, role) in &actual.path_roles {
        if desired.roles.iter().any(|r| &r.name == name) {
            continue;
        }
        match desired.foreign_role_reason(name, role) {
            None => plan.changes.push(change(
                format!("iam role {name}"),
                "no longer bound in irsa.yaml",
                Action::DeleteRole { role: name.clone() },
            )),
            Some(why) => plan.notes.push(format!("{why}: left alone")),
        }
    }
}
