//! Pod Identity's plan: the broker role and the roles that trust it;
//! fresh, converged, ownership, order of creation and deletion, the
//! external-principal mode, trust size for a role shared by many clusters.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::config::IrsaConfig;
use crate::podidentity::role_trust;
use crate::trust::{policy_length, TRUST_POLICY_LIMIT};

const ACCOUNT: &str = "111122223333";
const BROKER_ARN: &str = "arn:aws:iam::111122223333:role/irsa/demo/demo-irsa-agent-broker";
const READER_ARN: &str = "arn:aws:iam::111122223333:role/irsa/demo/demo-app-reader";

fn cfg(bindings: &str, extra: &str) -> IrsaConfig {
    IrsaConfig::from_yaml(&format!(
        "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://b-oidc.s3.us-east-1.amazonaws.com/demo\n  s3: {{bucket: b-oidc, region: us-east-1, prefix: demo}}\nkeys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\nbindings:\n{bindings}{extra}"
    ))
    .expect("valid")
}

const IRSA: &str = "- {namespace: default, serviceAccount: app}\n";
const PI: &str = "- {namespace: app, serviceAccount: reader, mode: pod-identity, policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}\n";

fn desired(cfg: &IrsaConfig) -> Desired {
    Desired::from_config(
        cfg,
        ACCOUNT,
        "us-east-1",
        &crate::Discovery::for_issuer(cfg.issuer.url().expect("url"), cfg.issuer.jwks_path, &[]),
        &crate::Jwks::default(),
    )
}

fn role<'a>(d: &'a Desired, name: &str) -> &'a DesiredRole {
    d.roles.iter().find(|r| r.name == name).expect(name)
}

/// IAM as a finished apply of `d` leaves it.
fn converged(d: &Desired) -> Actual {
    let roles: BTreeMap<String, ActualRole> = d
        .roles
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                ActualRole {
                    trust: r.trust.clone(),
                    managed: r.managed.clone(),
                    inline: r.inline.clone(),
                    max_session: r.max_session,
                    boundary: None,
                    path: role_path("demo"),
                    tags: r.tags.clone(),
                },
            )
        })
        .collect();
    Actual {
        bucket: Some(d.owner_tags()),
        public_policy_allowed: true,
        bucket_policy: d.merged_bucket_policy(None),
        objects: d
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), (v.clone(), "application/json".into())))
            .collect(),
        providers: [(
            d.provider_host_path.clone(),
            ActualProvider {
                arn: d.own_provider_arns.iter().next().expect("arn").clone(),
                client_ids: d.client_ids.clone(),
                thumbprints: Vec::new(),
                tags: d.owner_tags(),
            },
        )]
        .into(),
        account_providers: 1,
        path_roles: roles.clone(),
        roles,
        ..Actual::default()
    }
}

fn position(plan: &Plan, f: impl Fn(&Action) -> bool) -> usize {
    plan.changes
        .iter()
        .position(|c| f(&c.action))
        .expect("step")
}

/// Where `plan` deletes role `name`.
fn deletion(plan: &Plan, name: &str) -> usize {
    position(plan, |a| a == &Action::DeleteRole { role: name.into() })
}

const BROKER: &str = "demo-irsa-agent-broker";

#[test]
fn the_broker_role_exists_with_the_first_pod_identity_binding() {
    let d = desired(&cfg(IRSA, ""));
    assert_eq!(d.roles.len(), 1, "no broker without a pod-identity binding");
    let d = desired(&cfg(&format!("{IRSA}{PI}"), ""));
    let names: Vec<&str> = d.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "demo-irsa-agent-broker",
            "demo-default-app",
            "demo-app-reader"
        ]
    );
    let broker = role(&d, "demo-irsa-agent-broker");
    assert_eq!(broker.kind, RoleKind::Broker);
    // IRSA for the broker's own ServiceAccount, through this issuer.
    let st = &broker.trust["Statement"][0];
    assert_eq!(
        st["Principal"]["Federated"],
        "arn:aws:iam::111122223333:oidc-provider/b-oidc.s3.us-east-1.amazonaws.com/demo"
    );
    assert_eq!(
        st["Condition"]["StringEquals"]["b-oidc.s3.us-east-1.amazonaws.com/demo:sub"],
        "system:serviceaccount:irsa-system:irsa-agent-broker"
    );
    // It may assume exactly the pod-identity roles, nothing wider.
    assert_eq!(
        broker.inline[crate::podidentity::BROKER_POLICY_NAME],
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": READER_ARN}]})
    );
    assert!(broker.managed.is_empty());
    assert_eq!(broker.tags[MODE_TAG], BROKER_MODE);
    let reader = role(&d, "demo-app-reader");
    assert_eq!(reader.kind, RoleKind::PodIdentity);
    assert_eq!(
        reader.trust,
        role_trust(&[BROKER_ARN.into()], "app", "reader")
    );
    assert_eq!(reader.tags[MODE_TAG], "pod-identity");
    // An IRSA role keeps exactly the tags it had before Pod Identity.
    assert!(!role(&d, "demo-default-app").tags.contains_key(MODE_TAG));
    assert_eq!(d.broker.1, BROKER_ARN);
}

#[test]
fn roles_that_trust_the_broker_are_written_after_it_and_converge() {
    let d = desired(&cfg(&format!("{IRSA}{PI}"), ""));
    let plan = diff(&d, &Actual::default(), &BTreeSet::new());
    assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    let broker = position(
        &plan,
        |a| matches!(a, Action::CreateRole { role } if role.name == "demo-irsa-agent-broker"),
    );
    let reader = position(
        &plan,
        |a| matches!(a, Action::CreateRole { role } if role.name == "demo-app-reader"),
    );
    assert_eq!(plan.changes[broker].phase, Phase::Main);
    assert_eq!(plan.changes[reader].phase, Phase::BrokerTrust);
    assert!(broker < reader);
    for c in plan
        .changes
        .iter()
        .filter(|c| c.lane() == "role:demo-app-reader")
    {
        assert_eq!(c.phase, Phase::BrokerTrust, "{c}");
    }
    // Phases never go backwards in plan order.
    assert!(plan.changes.windows(2).all(|w| w[0].phase <= w[1].phase));
    assert!(diff(&d, &converged(&d), &BTreeSet::new()).is_empty());
}

#[test]
fn a_role_that_trusts_the_broker_is_this_bundles_and_goes_before_the_broker() {
    let d = desired(&cfg(&format!("{IRSA}{PI}"), ""));
    let deployed = converged(&d);
    // The pod-identity binding goes: its role is deleted, and with it the
    // broker, which no binding needs any more, in a later phase.
    let without = desired(&cfg(IRSA, ""));
    let plan = diff(&without, &deployed, &BTreeSet::new());
    let (reader, broker) = (deletion(&plan, "demo-app-reader"), deletion(&plan, BROKER));
    assert_eq!(plan.changes[reader].phase, Phase::Main);
    assert_eq!(plan.changes[broker].phase, Phase::BrokerRemoval);
    assert!(reader < broker, "{plan:?}");
    assert!(
        plan.conflicts.is_empty() && plan.notes.is_empty(),
        "{plan:?}"
    );
    // destroy: the same order, hosting last.
    let plan = destroy(&d, &deployed, true);
    let (reader, broker) = (deletion(&plan, "demo-app-reader"), deletion(&plan, BROKER));
    let bucket = position(&plan, |a| a == &Action::DeleteBucket);
    assert!(reader < broker && broker < bucket);
    assert_eq!(plan.changes[broker].phase, Phase::BrokerRemoval);
    // A role trusting another bundle's broker is not ours, even tagged for
    // this cluster under its path.
    let mut foreign = deployed.clone();
    let other = role_trust(
        &["arn:aws:iam::111122223333:role/irsa/demo/other-broker".into()],
        "app",
        "reader",
    );
    foreign
        .roles
        .get_mut("demo-app-reader")
        .expect("role")
        .trust = other.clone();
    foreign
        .path_roles
        .get_mut("demo-app-reader")
        .expect("role")
        .trust = other;
    let plan = diff(&d, &foreign, &BTreeSet::new());
    assert!(
        plan.conflicts.iter().any(
            |c| c.contains("demo-app-reader") && c.contains("nor its pod-identity broker role")
        ),
        "{plan:?}"
    );
    // A role whose broker was deleted (IAM shows its unique ID): named so.
    let mut orphan = deployed;
    let gone = role_trust(&["AROAEXAMPLEID0000001".into()], "app", "reader");
    orphan.roles.get_mut("demo-app-reader").expect("role").trust = gone.clone();
    orphan
        .path_roles
        .get_mut("demo-app-reader")
        .expect("role")
        .trust = gone;
    let plan = diff(&d, &orphan, &BTreeSet::new());
    assert!(
        plan.conflicts
            .iter()
            .any(|c| c.contains("names a deleted role")),
        "{plan:?}"
    );
}

#[test]
fn an_external_broker_principal_needs_no_oidc_provider() {
    let principal = "arn:aws:iam::111122223333:role/node-instance";
    let d = desired(&cfg(
        PI,
        &format!("podIdentity: {{brokerPrincipal: '{principal}'}}\n"),
    ));
    assert!(!d.needs_provider);
    let broker = role(&d, "demo-irsa-agent-broker");
    assert_eq!(broker.trust["Statement"][0]["Principal"]["AWS"], principal);
    let plan = diff(&d, &Actual::default(), &BTreeSet::new());
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| matches!(c.action, Action::CreateProvider { .. })),
        "{plan:?}"
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("is not created")),
        "{plan:?}"
    );
    // Deployed, it is this bundle's: it trusts the configured principal and
    // is tagged as the broker.
    let mut deployed = converged(&d);
    deployed.providers.clear();
    assert!(diff(&d, &deployed, &BTreeSet::new()).is_empty());
    let plan = destroy(&d, &deployed, true);
    assert!(
        plan.changes.iter().any(|c| c.action
            == Action::DeleteRole {
                role: "demo-irsa-agent-broker".into()
            }),
        "{plan:?}"
    );
}

/// The trust of a role shared by N clusters' brokers: one statement, N
/// principal ARNs. Printed for the record (`cargo test -p irsa-core --lib
/// trust_size -- --nocapture`).
#[test]
fn trust_size_for_a_role_shared_by_many_clusters() {
    let sizes: Vec<(usize, usize)> = [1, 10, 50]
        .into_iter()
        .map(|n| {
            let extra: String = (1..n)
                .map(|i| format!("'arn:aws:iam::111122223333:role/irsa/cluster-{i:02}/cluster-{i:02}-irsa-agent-broker', "))
                .collect();
            let binding = format!(
                "- {{namespace: payments, serviceAccount: ledger-writer, mode: pod-identity, extraBrokers: [{}]}}\n",
                extra.trim_end_matches(", ")
            );
            let binding = binding.replace(", extraBrokers: []", "");
            let d = desired(&cfg(&binding, ""));
            let r = role(&d, "demo-payments-ledger-writer");
            assert_eq!(r.trust.statements().len(), 1);
            assert_eq!(r.trust.aws_principals().len(), n);
            (n, policy_length(&r.trust))
        })
        .collect();
    for (n, size) in &sizes {
        println!("pod-identity trust policy, {n} cluster(s): {size} characters (IAM default limit {TRUST_POLICY_LIMIT})");
    }
    assert!(sizes[0].1 < TRUST_POLICY_LIMIT && sizes[1].1 < TRUST_POLICY_LIMIT);
    // 50 brokers' ARNs do not fit the default limit: the plan says so and
    // names the fixes instead of failing in IAM.
    assert!(sizes[2].1 > TRUST_POLICY_LIMIT);
    let extra: String = (1..50)
        .map(|i| format!("'arn:aws:iam::111122223333:role/irsa/cluster-{i:02}/cluster-{i:02}-irsa-agent-broker', "))
        .collect();
    let d = desired(&cfg(
        &format!(
            "- {{namespace: payments, serviceAccount: ledger-writer, mode: pod-identity, extraBrokers: [{}]}}\n",
            extra.trim_end_matches(", ")
        ),
        "",
    ));
    let plan = diff(&d, &Actual::default(), &BTreeSet::new());
    assert!(
        plan.conflicts
            .iter()
            .any(|c| c.contains("50 broker roles") && c.contains("raise the")),
        "{:?}",
        plan.conflicts
    );
}
