//! Property tests of Pod Identity's roles in plan and destroy, over random
//! IAM states (the broker role and pod-identity roles present or not,
//! tagged for this cluster or not, trusting this bundle's broker, another
//! broker, a deleted one, or a service) and random configs (0-3
//! pod-identity bindings, the broker by IRSA or an external principal):
//!
//! 1. no change touches a role that is not this bundle's, nor a role that
//!    neither exists nor is created by the plan;
//! 2. a role is created or given a trust naming the broker only in a phase
//!    after the broker's creation, and the broker is deleted only in a
//!    phase after every role of this bundle that trusts it is deleted or
//!    trusts something else: no interleaving of a phase's lanes leaves a
//!    role trusting a broker that does not exist;
//! 3. applying the plan to the state and planning again writes nothing to
//!    this bundle's roles (idempotence).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use irsa_core::plan::{self, Action, Actual, ActualProvider, ActualRole, Desired, Phase, Plan};
use irsa_core::trust::TrustPolicy;
use irsa_core::{Discovery, IrsaConfig, Jwks};
use proptest::prelude::*;
use serde_json::json;

const ACCOUNT: &str = "111122223333";
const CLUSTER: &str = "prod";
const HOST: &str = "b-oidc.s3.eu-west-1.amazonaws.com/prod";
const NODE: &str = "arn:aws:iam::111122223333:role/node-instance";
const SAS: [&str; 3] = ["reader", "writer", "auditor"];

fn broker_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/irsa/{CLUSTER}/{CLUSTER}-irsa-agent-broker")
}

#[derive(Debug, Clone)]
struct Case {
    /// Which ServiceAccounts are bound in pod-identity mode.
    bound: [bool; 3],
    external: bool,
    /// The broker role in IAM: (present, owner tag ok, trust kind).
    broker: (bool, bool, u8),
    /// Each pod-identity role in IAM: (present, owner tag ok, trust kind).
    roles: [(bool, bool, u8); 3],
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<[bool; 3]>(),
        any::<bool>(),
        (any::<bool>(), any::<bool>(), 0u8..3),
        [
            (any::<bool>(), any::<bool>(), 0u8..4),
            (any::<bool>(), any::<bool>(), 0u8..4),
            (any::<bool>(), any::<bool>(), 0u8..4),
        ],
    )
        .prop_map(|(bound, external, broker, roles)| Case {
            bound,
            external,
            broker,
            roles,
        })
}

fn config(c: &Case) -> IrsaConfig {
    let mut bindings = String::from("- {namespace: app, serviceAccount: web}\n");
    for (sa, on) in SAS.iter().zip(c.bound) {
        if on {
            bindings.push_str(&format!(
                "- {{namespace: app, serviceAccount: {sa}, mode: pod-identity, policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}}\n"
            ));
        }
    }
    let pi = if c.external {
        format!("podIdentity: {{brokerPrincipal: '{NODE}'}}\n")
    } else {
        String::new()
    };
    IrsaConfig::from_yaml(&format!(
        "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: {CLUSTER}\nissuer:\n  url: https://{HOST}\n  s3: {{bucket: b-oidc, region: eu-west-1, prefix: prod}}\nkeys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\nbindings:\n{bindings}{pi}"
    ))
    .unwrap()
}

fn tags(owned: bool, broker: bool) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = [(
        plan::OWNER_TAG.to_string(),
        if owned { CLUSTER } else { "other" }.to_string(),
    )]
    .into();
    if broker {
        t.insert(plan::MODE_TAG.into(), plan::BROKER_MODE.into());
    }
    t
}

/// The world: config, desired, actual, and which roles are this bundle's
/// by construction (not by asking irsa).
struct World {
    desired: Desired,
    actual: Actual,
    ours: BTreeSet<String>,
}

fn world(c: &Case) -> World {
    let cfg = config(c);
    let desired = Desired::from_config(
        &cfg,
        ACCOUNT,
        "eu-west-1",
        &Discovery::for_issuer(cfg.issuer.url().unwrap(), cfg.issuer.jwks_path, &[]),
        &Jwks::default(),
    );
    let provider = format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}");
    let mut actual = Actual {
        providers: [(
            HOST.to_string(),
            ActualProvider {
                arn: provider.clone(),
                client_ids: desired.client_ids.clone(),
                thumbprints: Vec::new(),
                tags: desired.owner_tags(),
            },
        )]
        .into(),
        account_providers: 1,
        ..Actual::default()
    };
    let mut ours = BTreeSet::new();
    let role = |trust: serde_json::Value, tags| ActualRole {
        trust: TrustPolicy::from(json!({"Version": "2012-10-17", "Statement": [trust]})),
        max_session: 3600,
        path: plan::role_path(CLUSTER),
        tags,
        ..ActualRole::default()
    };
    let (present, owned, kind) = c.broker;
    if present {
        let trust = match kind {
            0 => {
                json!({"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity"})
            }
            1 => json!({"Effect": "Allow", "Principal": {"AWS": NODE}, "Action": "sts:AssumeRole"}),
            _ => {
                json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"})
            }
        };
        let name = format!("{CLUSTER}-irsa-agent-broker");
        // Ours: tagged, and trusting this provider, or the configured
        // external principal (tagged as the broker).
        if owned && (kind == 0 || (kind == 1 && c.external)) {
            ours.insert(name.clone());
        }
        actual.roles.insert(name, role(trust, tags(owned, true)));
    }
    for (sa, (present, owned, kind)) in SAS.iter().zip(c.roles) {
        if !present {
            continue;
        }
        let principal = match kind {
            0 => json!({"AWS": broker_arn()}),
            1 => {
                json!({"AWS": format!("arn:aws:iam::{ACCOUNT}:role/irsa/{CLUSTER}/another-broker")})
            }
            2 => json!({"AWS": "AROAEXAMPLEDELETED01"}),
            _ => json!({"Service": "ec2.amazonaws.com"}),
        };
        let trust = json!({"Effect": "Allow", "Principal": principal, "Action": ["sts:AssumeRole", "sts:TagSession"]});
        let name = format!("{CLUSTER}-app-{sa}");
        if owned && kind == 0 {
            ours.insert(name.clone());
        }
        actual.roles.insert(name, role(trust, tags(owned, false)));
    }
    actual.path_roles = actual.roles.clone();
    World {
        desired,
        actual,
        ours,
    }
}

fn names_broker(trust: &TrustPolicy) -> bool {
    trust.aws_principals().contains(&broker_arn())
}

fn check(w: &World, p: &Plan) -> Result<(), TestCaseError> {
    let broker = w.desired.broker.0.clone();
    let phase_of =
        |f: &dyn Fn(&Action) -> bool| p.changes.iter().find(|c| f(&c.action)).map(|c| c.phase);
    let broker_created =
        phase_of(&|a| matches!(a, Action::CreateRole { role } if role.name == broker));
    let broker_deleted = phase_of(&|a| {
        a == &Action::DeleteRole {
            role: broker.clone(),
        }
    });
    let created: BTreeSet<&str> = p
        .changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::CreateRole { role } => Some(role.name.as_str()),
            _ => None,
        })
        .collect();
    for c in &p.changes {
        let shown = c.to_string();
        if let Some(role) = c.action.role() {
            prop_assert!(
                !w.actual.roles.contains_key(role) || w.ours.contains(role),
                "{shown}: {role} is not this bundle's"
            );
            // Every step is on a role that exists or that the plan creates.
            prop_assert!(
                w.actual.roles.contains_key(role) || created.contains(role),
                "{shown}: {role} neither exists nor is created"
            );
        }
        // A trust naming the broker is written after the broker exists.
        let new_trust = match &c.action {
            Action::CreateRole { role } => Some(&role.trust),
            Action::UpdateTrust { trust, .. } => Some(trust),
            _ => None,
        };
        if new_trust.is_some_and(names_broker) {
            let exists_before = w.ours.contains(&broker) && broker_created.is_none();
            prop_assert!(
                exists_before || broker_created.is_some_and(|b| b < c.phase),
                "{shown}: the broker is not there yet ({broker_created:?})"
            );
            prop_assert!(broker_deleted.is_none(), "{shown} while the broker goes");
        }
    }
    // The broker goes after every role of ours that trusts it: deleted,
    // or given a trust that does not name it, in an earlier phase.
    if let Some(gone) = broker_deleted {
        for (name, r) in &w.actual.roles {
            if !names_broker(&r.trust) || !w.ours.contains(name) {
                continue;
            }
            let resolved = p.changes.iter().find(|c| match &c.action {
                Action::DeleteRole { role } => role == name,
                Action::UpdateTrust { role, trust } => role == name && !names_broker(trust),
                _ => false,
            });
            prop_assert!(
                resolved.is_some_and(|c| c.phase < gone),
                "the broker is deleted ({gone:?}) while {name} still trusts it: {:?}",
                resolved.map(|c| c.phase)
            );
        }
    }
    Ok(())
}

/// The roles after `p` ran (for the roles' actions only).
fn apply(actual: &Actual, p: &Plan) -> Actual {
    let mut roles = actual.roles.clone();
    for c in &p.changes {
        match &c.action {
            Action::CreateRole { role } => {
                roles.insert(
                    role.name.clone(),
                    ActualRole {
                        trust: role.trust.clone(),
                        max_session: role.max_session,
                        boundary: role.boundary.clone(),
                        path: plan::role_path(CLUSTER),
                        tags: role.tags.clone(),
                        ..ActualRole::default()
                    },
                );
            }
            Action::DeleteRole { role } => {
                roles.remove(role);
            }
            other => {
                let Some(r) = other.role().and_then(|n| roles.get_mut(n)) else {
                    continue;
                };
                match other {
                    Action::UpdateTrust { trust, .. } => r.trust = trust.clone(),
                    Action::UpdateMaxSession { seconds, .. } => r.max_session = *seconds,
                    Action::TagRole { tags, .. } => r.tags.extend(tags.clone()),
                    Action::AttachPolicy { policy_arn, .. } => {
                        r.managed.insert(policy_arn.clone());
                    }
                    Action::DetachPolicy { policy_arn, .. } => {
                        r.managed.remove(policy_arn);
                    }
                    Action::PutInline {
                        policy_name,
                        document,
                        ..
                    } => {
                        r.inline.insert(policy_name.clone(), document.clone());
                    }
                    Action::DeleteInline { policy_name, .. } => {
                        r.inline.remove(policy_name);
                    }
                    Action::PutBoundary { policy_arn, .. } => r.boundary = Some(policy_arn.clone()),
                    Action::DeleteBoundary { .. } => r.boundary = None,
                    _ => {}
                }
            }
        }
    }
    let mut after = actual.clone();
    after.path_roles = roles.clone();
    after.roles = roles;
    after
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pod_identity_plans_touch_only_ours_order_the_broker_and_converge(c in case()) {
        let w = world(&c);
        let applied = plan::diff(&w.desired, &w.actual, &BTreeSet::new());
        check(&w, &applied)?;
        let destroyed = plan::destroy(&w.desired, &w.actual, true);
        check(&w, &destroyed)?;
        for role in &w.ours {
            prop_assert!(
                destroyed.changes.iter().any(|ch| ch.action == Action::DeleteRole { role: role.clone() }),
                "destroy keeps {role}"
            );
        }
        // Phases never go backwards in plan order.
        prop_assert!(applied.changes.windows(2).all(|x| x[0].phase <= x[1].phase));
        prop_assert!(destroyed.changes.windows(2).all(|x| x[0].phase <= x[1].phase));
        // Idempotence: after the plan ran, a new plan writes nothing to
        // the roles (roles someone else owns stay conflicts, untouched).
        let after = apply(&w.actual, &applied);
        let again = plan::diff(&w.desired, &after, &BTreeSet::new());
        let role_writes: Vec<String> = again
            .changes
            .iter()
            .filter(|ch| ch.action.role().is_some())
            .map(ToString::to_string)
            .collect();
        prop_assert!(role_writes.is_empty(), "not converged: {role_writes:?}");
        let _ = Phase::Main;
    }
}
