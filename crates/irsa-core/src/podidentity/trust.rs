//! IAM policies of Pod Identity: the trust of a role the broker assumes for
//! pods, the broker role's own trust when it runs as an external principal,
//! the broker's permissions, and a judge that evaluates a trust policy for
//! the broker's tagged `AssumeRole` the way STS does.
//!
//! A pod-identity role trusts the broker roles (this cluster's and any
//! `extraBrokers`) in one statement: `sts:AssumeRole` and `sts:TagSession`,
//! on condition that the request's session tags name the binding's
//! namespace and ServiceAccount and that the `eks-cluster-name` tag equals
//! the calling broker role's own `irsa.dev/cluster` tag. The statement does
//! not grow with the number of ServiceAccounts, and by the policy variable
//! it does not repeat per cluster either: a role shared by N clusters has
//! N principal ARNs and one set of conditions. A broker bug that tags a
//! session with another ServiceAccount, or another cluster's name, is
//! refused by STS.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::session::{TAG_CLUSTER, TAG_NAMESPACE, TAG_SERVICE_ACCOUNT};
use crate::plan::OWNER_TAG;
use crate::trust::{string_like, strings, TrustPolicy};

/// The actions a broker needs on a pod-identity role: the assume itself and
/// the session tags it passes.
pub const BROKER_ACTIONS: [&str; 2] = ["sts:AssumeRole", "sts:TagSession"];

/// The name of the broker role's inline policy.
pub const BROKER_POLICY_NAME: &str = "irsa-pod-identity-broker";

/// The value the `eks-cluster-name` request tag must have: the calling
/// broker role's own cluster tag (irsa tags every role it owns with it).
pub fn cluster_variable() -> String {
    format!("${{aws:PrincipalTag/{OWNER_TAG}}}")
}

fn request_tag(key: &str) -> String {
    format!("aws:RequestTag/{key}")
}

fn one_or_many(values: &[String]) -> Value {
    match values {
        [one] => json!(one),
        many => json!(many),
    }
}

/// The trust policy of a pod-identity role for `namespace`/`service_account`,
/// assumable by `brokers` (role ARNs, this cluster's first).
pub fn role_trust(brokers: &[String], namespace: &str, service_account: &str) -> TrustPolicy {
    TrustPolicy::from(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": one_or_many(brokers)},
            "Action": BROKER_ACTIONS,
            "Condition": {"StringEquals": {
                request_tag(TAG_NAMESPACE): namespace,
                request_tag(TAG_SERVICE_ACCOUNT): service_account,
                request_tag(TAG_CLUSTER): cluster_variable(),
            }},
        }]
    }))
}

/// The broker role's trust when the broker runs as `principal` (a role ARN:
/// an instance profile's role, a Roles Anywhere role) and assumes its own
/// role from there.
pub fn external_broker_trust(principal: &str) -> TrustPolicy {
    TrustPolicy::from(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
        }]
    }))
}

/// The broker role's inline policy: assume (with tags) exactly `roles`.
pub fn broker_policy(roles: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": BROKER_ACTIONS,
            "Resource": one_or_many(roles),
        }]
    })
}

/// The broker's `AssumeRole` of a pod-identity role, as STS sees it.
#[derive(Debug, Clone)]
pub struct AssumeRequest<'a> {
    /// The calling broker role's ARN (the role, not its session).
    pub principal: &'a str,
    /// The calling role's tags (`aws:PrincipalTag/…`).
    pub principal_tags: &'a BTreeMap<String, String>,
    /// The session tags of the request (`aws:RequestTag/…`).
    pub request_tags: &'a BTreeMap<String, String>,
}

/// Whether an AWS principal entry names `arn` (the role itself, its
/// account's root, or everyone).
fn principal_matches(entry: &str, arn: &str) -> bool {
    if entry == "*" || entry == arn {
        return true;
    }
    // arn:PART:iam::ACCOUNT:root admits every principal of the account
    // whose own policy allows the call.
    match (entry.strip_suffix(":root"), arn.split_once(":role/")) {
        (Some(account), Some((prefix, _))) => account == prefix,
        _ => false,
    }
}

/// Substitutes `${aws:PrincipalTag/K}` in a condition value; `None` when
/// the principal has no such tag (STS then fails the condition).
fn substitute(value: &str, tags: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let var = &after[..end];
        let key = var.strip_prefix("aws:PrincipalTag/")?;
        out.push_str(tags.get(key)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn statement_gaps(st: &Value, req: &AssumeRequest<'_>) -> Vec<String> {
    let mut gaps = Vec::new();
    let actions = strings(&st["Action"]);
    for needed in BROKER_ACTIONS {
        if !actions
            .iter()
            .any(|a| *a == needed || *a == "sts:*" || *a == "*")
        {
            gaps.push(format!(
                "Action is {actions:?}, without {needed} (the broker passes session tags)"
            ));
        }
    }
    let principals = strings(&st["Principal"]["AWS"]);
    let star = st["Principal"].as_str() == Some("*");
    if !star
        && !principals
            .iter()
            .any(|p| principal_matches(p, req.principal))
    {
        gaps.push(format!(
            "Principal.AWS is {principals:?}, not the broker role {}",
            req.principal
        ));
    }
    let Some(conditions) = st["Condition"].as_object() else {
        return gaps;
    };
    for (op, entries) in conditions {
        let Some(entries) = entries.as_object() else {
            gaps.push(format!("Condition {op} is not an object"));
            continue;
        };
        for (key, wanted) in entries {
            let actual = if let Some(k) = key.strip_prefix("aws:RequestTag/") {
                req.request_tags.get(k)
            } else if let Some(k) = key.strip_prefix("aws:PrincipalTag/") {
                req.principal_tags.get(k)
            } else {
                gaps.push(format!(
                    "{op} on {key:?} is not evaluated by irsa; check it by hand"
                ));
                continue;
            };
            let wanted: Vec<Option<String>> = strings(wanted)
                .into_iter()
                .map(|w| substitute(w, req.principal_tags))
                .collect();
            let shown: Vec<&str> = wanted.iter().map(|w| w.as_deref().unwrap_or("?")).collect();
            let ok = match (op.as_str(), actual) {
                ("StringEquals", Some(a)) => wanted.iter().flatten().any(|w| w == a),
                ("StringLike", Some(a)) => wanted.iter().flatten().any(|w| string_like(w, a)),
                ("StringEquals" | "StringLike", None) => false,
                (other, _) => {
                    gaps.push(format!(
                        "condition operator {other} is not evaluated by irsa; check it by hand"
                    ));
                    continue;
                }
            };
            if !ok {
                gaps.push(match actual {
                    Some(a) => format!("{op} {key} requires {shown:?} but the request has {a:?}"),
                    None => {
                        format!("{op} {key} requires {shown:?} but the request has no such tag")
                    }
                });
            }
        }
    }
    gaps
}

/// Evaluates a role's trust policy for the broker's tagged `AssumeRole`:
/// some Allow statement must admit it and no Deny statement may. Returns
/// why not, statement by statement.
pub fn evaluate_assume(policy: &TrustPolicy, req: &AssumeRequest<'_>) -> Result<(), Vec<String>> {
    if policy.statements().is_empty() {
        return Err(vec!["the trust policy has no Statement".into()]);
    }
    crate::trust::evaluate_statements(policy, "request", |st| statement_gaps(st, req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::policy_length;

    const BROKER: &str = "arn:aws:iam::111122223333:role/irsa/prod/prod-irsa-agent-broker";

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn request(ns: &str, sa: &str, cluster: &str) -> BTreeMap<String, String> {
        tags(&[
            (TAG_CLUSTER, cluster),
            (TAG_NAMESPACE, ns),
            (TAG_SERVICE_ACCOUNT, sa),
            ("kubernetes-pod-name", "p"),
        ])
    }

    #[test]
    fn the_role_admits_its_service_account_only_from_its_broker() {
        let other = "arn:aws:iam::111122223333:role/irsa/dev/dev-irsa-agent-broker";
        let trust = role_trust(&[BROKER.into(), other.into()], "app", "reader");
        let prod_tags = tags(&[(OWNER_TAG, "prod")]);
        let dev_tags = tags(&[(OWNER_TAG, "dev")]);
        let ok = |principal, ptags: &BTreeMap<String, String>, rtags| {
            evaluate_assume(
                &trust,
                &AssumeRequest {
                    principal,
                    principal_tags: ptags,
                    request_tags: &rtags,
                },
            )
        };
        assert_eq!(
            ok(BROKER, &prod_tags, request("app", "reader", "prod")),
            Ok(())
        );
        assert_eq!(
            ok(other, &dev_tags, request("app", "reader", "dev")),
            Ok(())
        );
        // Another ServiceAccount, another namespace, a broker claiming
        // another cluster's name, an unlisted broker: each refused.
        for (principal, ptags, rtags, why) in [
            (
                BROKER,
                &prod_tags,
                request("app", "writer", "prod"),
                "kubernetes-service-account",
            ),
            (
                BROKER,
                &prod_tags,
                request("kube-system", "reader", "prod"),
                "kubernetes-namespace",
            ),
            (
                BROKER,
                &prod_tags,
                request("app", "reader", "dev"),
                "eks-cluster-name",
            ),
            (
                "arn:aws:iam::111122223333:role/x",
                &prod_tags,
                request("app", "reader", "prod"),
                "not the broker role",
            ),
            (
                BROKER,
                &BTreeMap::new(),
                request("app", "reader", "prod"),
                "eks-cluster-name",
            ),
        ] {
            let err = ok(principal, ptags, rtags).expect_err(why).join("; ");
            assert!(err.contains(why), "{why}: {err}");
        }
        // Without sts:TagSession STS refuses a tagged AssumeRole.
        let mut v = trust.clone().into_value();
        v["Statement"][0]["Action"] = json!("sts:AssumeRole");
        let err = evaluate_assume(
            &TrustPolicy::from(v),
            &AssumeRequest {
                principal: BROKER,
                principal_tags: &prod_tags,
                request_tags: &request("app", "reader", "prod"),
            },
        )
        .expect_err("no TagSession");
        assert!(err.join(";").contains("without sts:TagSession"), "{err:?}");
    }

    #[test]
    fn the_trust_has_one_statement_whatever_the_number_of_brokers() {
        let brokers = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| {
                    format!("arn:aws:iam::111122223333:role/irsa/c{i:02}/c{i:02}-irsa-agent-broker")
                })
                .collect()
        };
        let one = role_trust(&brokers(1), "app", "reader");
        let ten = role_trust(&brokers(10), "app", "reader");
        assert_eq!(one.statements().len(), 1);
        assert_eq!(ten.statements().len(), 1);
        // Each further cluster adds its broker's ARN and a comma, nothing else.
        let per_broker = brokers(1)[0].len() + 3;
        assert_eq!(
            policy_length(&ten) - policy_length(&one),
            9 * per_broker + 2
        );
    }

    #[test]
    fn an_external_principal_and_the_broker_policy() {
        let t = external_broker_trust("arn:aws:iam::111122223333:role/node");
        assert_eq!(
            t["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::111122223333:role/node"
        );
        let p = broker_policy(&["arn:a".into(), "arn:b".into()]);
        assert_eq!(p["Statement"][0]["Resource"], json!(["arn:a", "arn:b"]));
        assert_eq!(p["Statement"][0]["Action"], json!(BROKER_ACTIONS));
        // The account root admits the broker (its own policy decides).
        assert!(principal_matches("arn:aws:iam::111122223333:root", BROKER));
        assert!(!principal_matches("arn:aws:iam::444455556666:root", BROKER));
    }
}
