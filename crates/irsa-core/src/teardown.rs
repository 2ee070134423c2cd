//! `irsa destroy`: the changes that remove what this bundle created, in an
//! order that never leaves trust without the hosting it trusts.
//!
//! Trust goes first ([`Phase::Main`]): this bundle's roles and its own
//! providers. Hosting goes after ([`Phase::HostingRemoval`]): the documents,
//! this issuer's bucket-policy statement, then the bucket. A bucket whose
//! name is given up can be registered by anyone, so hosting is planned only
//! when no provider would survive that trusts it (one not tagged for this
//! cluster, or another cluster's provider on the same bucket), and the
//! executor checks that again against IAM before each hosting step.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::plan::{
    change, statements, Action, Actual, ActualProvider, Desired, Phase, Plan, OWNER_TAG,
};

/// The changes that remove what irsa created for this bundle.
/// `bucket_empty_after`: the bucket holds nothing but this issuer's documents.
/// The Pod Identity broker role goes after the roles that trust it
/// ([`Phase::BrokerRemoval`]).
pub fn destroy(desired: &Desired, actual: &Actual, bucket_empty_after: bool) -> Plan {
    let mut plan = destroy_steps(desired, actual, bucket_empty_after);
    crate::plan::order_broker_steps(&mut plan, desired, actual);
    plan
}

fn destroy_steps(desired: &Desired, actual: &Actual, bucket_empty_after: bool) -> Plan {
    let mut plan = Plan::default();
    let owned = |tags: &BTreeMap<String, String>| tags.get(OWNER_TAG) == Some(&desired.cluster);
    let mut candidates: BTreeMap<&String, &crate::plan::ActualRole> =
        actual.path_roles.iter().collect();
    candidates.extend(actual.roles.iter());
    for (name, role) in candidates {
        match desired.foreign_role_reason(name, role) {
            None => plan.changes.push(change(
                format!("iam role {name}"),
                "with its policies",
                Action::DeleteRole { role: name.clone() },
            )),
            Some(why) => plan.conflicts.push(format!("{why}: left alone")),
        }
    }
    let mut deleted: BTreeSet<&str> = BTreeSet::new();
    for host in desired.managed_providers() {
        let Some(p) = actual.providers.get(host) else {
            continue;
        };
        if owned(&p.tags) {
            deleted.insert(host);
            plan.changes.push(change(
                format!("iam oidc-provider {host}"),
                "",
                Action::DeleteProvider { arn: p.arn.clone() },
            ));
        } else {
            plan.conflicts.push(format!(
                "iam oidc-provider {host} is not tagged {OWNER_TAG}={}: left alone",
                desired.cluster
            ));
        }
    }
    let Some(s3) = &desired.s3 else {
        return plan;
    };
    let survivors: Vec<(&String, &ActualProvider)> = actual
        .providers
        .iter()
        .filter(|(h, _)| !deleted.contains(h.as_str()))
        .collect();
    let trusting_issuer: Vec<_> = survivors
        .iter()
        .filter(|(h, _)| desired.provider_trusts_issuer(h))
        .collect();
    let bucket = &s3.bucket;
    if !trusting_issuer.is_empty() {
        let names: Vec<String> = trusting_issuer
            .iter()
            .map(|(h, p)| describe(desired, h, p))
            .collect();
        plan.withheld.push(format!(
            "s3 bucket {bucket}, its documents and policy statement are kept: {} still trust(s) the issuer, and irsa deletes only providers tagged {OWNER_TAG}={}. A deleted bucket's name can be registered by anyone, who could then sign tokens such a provider accepts. Delete the provider(s) if nothing uses them (aws iam delete-open-id-connect-provider --open-id-connect-provider-arn ARN), then run irsa destroy again",
            names.join(", "),
            desired.cluster
        ));
        return plan;
    }
    let hosting = |resource: String, detail: String, action| {
        let mut c = change(resource, detail, action);
        c.phase = Phase::HostingRemoval;
        c
    };
    for key in actual.objects.keys() {
        plan.changes.push(hosting(
            format!("s3://{bucket}/{key}"),
            String::new(),
            Action::DeleteObject { key: key.clone() },
        ));
    }
    if let Some(cf) = &desired.cloudfront {
        // The distribution goes before its OAC (an OAC in use cannot be
        // deleted); both only when they are this cluster's.
        if let Some(d) = &actual.distribution {
            let res = format!("cloudfront distribution {} ({})", d.id, d.domain_name);
            if d.shape.enabled {
                plan.changes.push(hosting(
                    res.clone(),
                    "disable (CloudFront deletes only disabled distributions)".into(),
                    Action::DisableDistribution { id: d.id.clone() },
                ));
            }
            plan.changes.push(hosting(
                res,
                "once disabled and deployed".into(),
                Action::DeleteDistribution { id: d.id.clone() },
            ));
        }
        match &actual.oac {
            Some(oac) if cf.owns_oac(&desired.cluster, oac) => plan.changes.push(hosting(
                format!("cloudfront origin-access-control {}", cf.names.oac_name),
                String::new(),
                Action::DeleteOac { id: oac.id.clone() },
            )),
            Some(oac) => plan.conflicts.push(format!(
                "cloudfront origin-access-control {} ({}) is not irsa's: left alone",
                cf.names.oac_name, oac.id
            )),
            None => {}
        }
        for id in &actual.foreign_distributions {
            plan.conflicts.push(format!(
                "cloudfront distribution {id} is not tagged {OWNER_TAG}={}: left alone",
                desired.cluster
            ));
        }
    }
    let Some(tags) = &actual.bucket else {
        return plan;
    };
    let policy = actual.bucket_policy.as_ref();
    let ours = statements(policy)
        .iter()
        .any(|s| desired.is_our_statement(s));
    // Only this issuer's statement goes; other issuers' stay.
    if ours && tags.contains_key(OWNER_TAG) {
        let rest = desired.other_statements(policy);
        let resource = format!("s3 bucket {bucket} policy");
        plan.changes.push(if rest.is_empty() {
            hosting(resource, String::new(), Action::DeleteBucketPolicy)
        } else {
            let sid = desired.statement_sid().unwrap_or_default();
            hosting(
                resource,
                format!("remove statement {sid}"),
                Action::PutBucketPolicy {
                    policy: json!({"Version": "2012-10-17", "Statement": rest}),
                    creates: false,
                },
            )
        });
    }
    if !owned(tags) {
        return plan;
    }
    let trusting_bucket: Vec<String> = survivors
        .iter()
        .filter(|(h, _)| desired.provider_trusts_bucket(h))
        .map(|(h, p)| describe(desired, h, p))
        .collect();
    if !bucket_empty_after {
        plan.conflicts
            .push(format!("s3 bucket {bucket} holds other objects: kept"));
    } else if !trusting_bucket.is_empty() {
        plan.withheld.push(format!(
            "s3 bucket {bucket} is kept: {} still trust(s) documents served from it. A deleted bucket's name can be registered by anyone, who could then sign tokens such a provider accepts. Destroy the cluster(s) it belongs to first, or delete the provider(s) if nothing uses them, then run irsa destroy again",
            trusting_bucket.join(", ")
        ));
    } else {
        plan.changes.push(hosting(
            format!("s3 bucket {bucket}"),
            String::new(),
            Action::DeleteBucket,
        ));
    }
    plan
}

fn describe(desired: &Desired, host: &str, p: &ActualProvider) -> String {
    let whose = match p.tags.get(OWNER_TAG) {
        None => "not tagged".to_string(),
        Some(c) if c == &desired.cluster => format!("tagged {OWNER_TAG}={c}"),
        Some(c) => format!("cluster {c}'s"),
    };
    format!("IAM OIDC provider {host} ({whose}, {})", p.arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IrsaConfig;
    use crate::plan::ActualRole;

    const ACCOUNT: &str = "111122223333";

    fn desired(cluster: &str, bucket: &str) -> Desired {
        let yaml = format!("apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: {cluster}\nissuer:\n  url: https://{bucket}.s3.us-east-1.amazonaws.com/{cluster}\n  s3: {{bucket: {bucket}, region: us-east-1, prefix: {cluster}}}\nkeys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\nbindings:\n- {{namespace: app, serviceAccount: web}}\n");
        let cfg = IrsaConfig::from_yaml(&yaml).expect("valid");
        Desired::from_config(
            &cfg,
            ACCOUNT,
            "us-east-1",
            &crate::Discovery::for_issuer(
                cfg.issuer.url().expect("url"),
                cfg.issuer.jwks_path,
                &[],
            ),
            &crate::Jwks::default(),
        )
    }

    fn provider(d: &Desired, host: &str, tags: BTreeMap<String, String>) -> ActualProvider {
        ActualProvider {
            arn: format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"),
            client_ids: d.client_ids.clone(),
            thumbprints: Vec::new(),
            tags,
        }
    }

    /// Everything this bundle created, plus `extra` providers.
    fn deployed(d: &Desired, extra: &[(&str, BTreeMap<String, String>)]) -> Actual {
        let host = d.provider_host_path.clone();
        let mut providers: BTreeMap<String, ActualProvider> =
            [(host.clone(), provider(d, &host, d.owner_tags()))].into();
        for (h, tags) in extra {
            providers.insert(h.to_string(), provider(d, h, tags.clone()));
        }
        let role = &d.roles[0];
        let actual_role = ActualRole {
            trust: role.trust.clone(),
            path: crate::plan::role_path(&d.cluster),
            tags: role.tags.clone(),
            ..ActualRole::default()
        };
        Actual {
            bucket: Some(d.owner_tags()),
            public_policy_allowed: true,
            bucket_policy: d.merged_bucket_policy(None),
            objects: d
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), (v.clone(), "application/json".into())))
                .collect(),
            providers,
            account_providers: 1 + extra.len(),
            roles: [(role.name.clone(), actual_role.clone())].into(),
            path_roles: [(role.name.clone(), actual_role)].into(),
            ..Actual::default()
        }
    }

    #[test]
    fn trust_goes_in_an_earlier_phase_than_hosting() {
        let d = desired("prod", "acme-oidc");
        let plan = destroy(&d, &deployed(&d, &[]), true);
        let last = plan.changes.last().expect("changes");
        assert_eq!(last.action, Action::DeleteBucket);
        for c in &plan.changes {
            let trust = matches!(
                c.action,
                Action::DeleteRole { .. } | Action::DeleteProvider { .. }
            );
            let phase = if trust {
                Phase::Main
            } else {
                Phase::HostingRemoval
            };
            assert_eq!(c.phase, phase, "{c}");
        }
        assert!(
            plan.withheld.is_empty() && plan.conflicts.is_empty(),
            "{plan:?}"
        );
    }

    #[test]
    fn an_untagged_provider_for_the_issuer_keeps_the_bucket() {
        let d = desired("prod", "acme-oidc");
        let alias = "s3.us-east-1.amazonaws.com/acme-oidc/prod";
        let plan = destroy(&d, &deployed(&d, &[(alias, BTreeMap::new())]), true);
        assert!(
            !plan
                .changes
                .iter()
                .any(|c| c.phase == Phase::HostingRemoval),
            "{plan:?}"
        );
        assert!(plan.withheld[0].contains(alias), "{:?}", plan.withheld);
        assert!(plan
            .changes
            .iter()
            .any(|c| matches!(c.action, Action::DeleteProvider { .. })));
    }

    #[test]
    fn another_clusters_provider_on_the_bucket_keeps_only_the_bucket() {
        let d = desired("prod", "acme-oidc");
        let other = "acme-oidc.s3.us-east-1.amazonaws.com/beta";
        let tags = [(OWNER_TAG.to_string(), "beta".to_string())].into();
        let plan = destroy(&d, &deployed(&d, &[(other, tags)]), true);
        assert!(plan
            .changes
            .iter()
            .any(|c| matches!(c.action, Action::DeleteObject { .. })));
        assert!(!plan
            .changes
            .iter()
            .any(|c| c.action == Action::DeleteBucket));
        assert!(plan.withheld[0].contains(other), "{:?}", plan.withheld);
    }

    #[test]
    fn a_same_name_bundles_role_survives_destroy() {
        let mine = desired("prod", "a-oidc");
        let twin = desired("prod", "b-oidc");
        let mut actual = deployed(&mine, &[]);
        let theirs = deployed(&twin, &[]).path_roles;
        // Same role name, same tag and path: only the trust tells them apart.
        actual.path_roles = theirs.clone();
        actual.roles = theirs;
        let plan = destroy(&mine, &actual, true);
        assert!(
            !plan
                .changes
                .iter()
                .any(|c| matches!(c.action, Action::DeleteRole { .. })),
            "{plan:?}"
        );
        assert!(
            plan.conflicts[0].contains("another irsa.yaml with cluster name prod"),
            "{:?}",
            plan.conflicts
        );
    }
}
