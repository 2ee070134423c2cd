//! The OIDC providers: the current issuer's and the previous issuers'.

use std::collections::BTreeSet;

use super::{change, owned, Action, Actual, Desired, Plan, MAX_OIDC_PROVIDERS, OWNER_TAG};

/// Adds the providers' changes and conflicts to `plan`.
pub(super) fn diff(plan: &mut Plan, desired: &Desired, actual: &Actual, adopt: &BTreeSet<String>) {
    let mut creating = 0;
    for host in desired.managed_providers() {
        let provider_res = format!("iam oidc-provider {host}");
        let current = host == desired.provider_host_path;
        match actual.providers.get(host) {
            None if current && !desired.needs_provider => plan.notes.push(format!(
                "{provider_res} is not created: every binding is mode pod-identity and the broker role trusts podIdentity.brokerPrincipal, so no role trusts it"
            )),
            None if current => {
                creating += 1;
                plan.changes.push(change(
                    &provider_res,
                    format!("client ids {:?}", desired.client_ids),
                    Action::CreateProvider { host_path: host.to_string() },
                ))
            }
            None => plan.conflicts.push(format!(
                "{provider_res} (a previous issuer) does not exist: tokens of the old issuer cannot reach STS; remove it from issuer.previousUrls if no pod uses it"
            )),
            Some(p) if owned(desired, &p.tags) || adopt.contains(host) => {
                for id in desired.client_ids.difference(&p.client_ids) {
                    plan.changes.push(change(
                        &provider_res,
                        format!("add client id {id}"),
                        Action::AddClientId { host_path: host.to_string(), client_id: id.clone() },
                    ));
                }
                if current && !desired.thumbprints.is_empty() && p.thumbprints != desired.thumbprints {
                    plan.changes.push(change(
                        &provider_res,
                        format!("thumbprints {:?} -> {:?}", p.thumbprints, desired.thumbprints),
                        Action::UpdateThumbprints { host_path: host.to_string(), thumbprints: desired.thumbprints.clone() },
                    ));
                }
                if !owned(desired, &p.tags) {
                    plan.changes.push(change(
                        &provider_res,
                        "adopt: tag as owned",
                        Action::TagProvider { host_path: host.to_string() },
                    ));
                }
            }
            Some(p) => {
                let missing: Vec<&String> = desired.client_ids.difference(&p.client_ids).collect();
                if !missing.is_empty() {
                    plan.conflicts.push(format!("{provider_res} exists without {OWNER_TAG}={} and lacks client ids {missing:?}: add them yourself or pass --adopt {host}", desired.cluster));
                }
            }
        }
    }
    if creating > 0 && actual.account_providers + creating > MAX_OIDC_PROVIDERS {
        plan.conflicts.push(format!(
            "the account has {} IAM OIDC providers; creating {creating} more exceeds the default quota of {MAX_OIDC_PROVIDERS}: request an increase (Service Quotas, IAM \"OpenId connect providers per account\") or delete unused providers",
            actual.account_providers
        ));
        plan.changes
            .retain(|c| !matches!(c.action, Action::CreateProvider { .. }));
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::config::IrsaConfig;

    #[test]
    fn issuer_change_keeps_the_old_provider_and_trust() {
        let text = "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://new.example.com/demo\n  previousUrls: [https://old.example.com/demo]\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\nbindings:\n- {namespace: default, serviceAccount: app}\n";
        let cfg = IrsaConfig::from_yaml(text).expect("valid");
        let desired = Desired::from_config(
            &cfg,
            "111122223333",
            "us-east-1",
            &crate::Discovery::for_issuer(
                cfg.issuer.url().expect("url"),
                cfg.issuer.jwks_path,
                &[],
            ),
            &crate::Jwks::default(),
        );
        let trust = &desired.roles[0].trust;
        assert_eq!(trust["Statement"].as_array().map(Vec::len), Some(2));
        assert!(trust["Statement"][1]["Condition"]["StringEquals"]
            .get("old.example.com/demo:sub")
            .is_some());
        // The old provider is expected to exist: a conflict if it does not,
        // never created anew; the new one is created.
        let plan = diff(&desired, &Actual::default(), &BTreeSet::new());
        assert!(plan.changes.iter().any(|c| c.action
            == Action::CreateProvider {
                host_path: "new.example.com/demo".into()
            }));
        assert!(!plan.changes.iter().any(|c| c.action
            == Action::CreateProvider {
                host_path: "old.example.com/demo".into()
            }));
        assert!(
            plan.conflicts
                .iter()
                .any(|c| c.contains("old.example.com/demo")),
            "{plan:?}"
        );
        // Destroy removes both owned providers.
        let owned = ActualProvider {
            arn: "arn:aws:iam::111122223333:oidc-provider/old.example.com/demo".into(),
            client_ids: desired.client_ids.clone(),
            thumbprints: Vec::new(),
            tags: desired.owner_tags(),
        };
        let actual = Actual {
            providers: [
                ("old.example.com/demo".to_string(), owned.clone()),
                (
                    "new.example.com/demo".to_string(),
                    ActualProvider {
                        arn: "n".into(),
                        ..owned
                    },
                ),
            ]
            .into(),
            ..Actual::default()
        };
        let gone = destroy(&desired, &actual, true);
        assert_eq!(
            gone.changes
                .iter()
                .filter(|c| matches!(c.action, Action::DeleteProvider { .. }))
                .count(),
            2
        );
        // The account's provider quota.
        let full = Actual {
            account_providers: MAX_OIDC_PROVIDERS,
            ..Actual::default()
        };
        let plan = diff(&desired, &full, &BTreeSet::new());
        assert!(!plan
            .changes
            .iter()
            .any(|c| matches!(c.action, Action::CreateProvider { .. })));
        assert!(
            plan.conflicts.iter().any(|c| c.contains("quota")),
            "{plan:?}"
        );
    }
}
