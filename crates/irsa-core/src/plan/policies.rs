//! The managed policies and permissions boundaries the roles need: `plan`
//! and `apply` read those IAM does not already show attached (one
//! `GetPolicy` each) and refuse before any write when one does not exist,
//! since IAM would refuse to attach it only after the role was created.

use std::collections::{BTreeMap, BTreeSet};

use super::{Actual, Desired};

/// The policy ARNs `desired`'s roles attach (managed policies and
/// permissions boundaries) that `actual` does not already show attached to
/// or set on the same role: an attached policy exists (IAM refuses to
/// delete one), so a converged plan reads none.
pub fn policies_to_check(desired: &Desired, actual: &Actual) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for role in &desired.roles {
        let current = actual.roles.get(&role.name);
        for arn in &role.managed {
            if !current.is_some_and(|c| c.managed.contains(arn)) {
                out.insert(arn.clone());
            }
        }
        if let Some(boundary) = &role.boundary {
            if current.and_then(|c| c.boundary.as_ref()) != Some(boundary) {
                out.insert(boundary.clone());
            }
        }
    }
    out
}

/// Why `apply` cannot carry out `desired` when the policies `missing` do not
/// exist, naming each with the roles that need it and the fix; `None` when
/// none is missing.
pub fn missing_policies_refusal(desired: &Desired, missing: &BTreeSet<String>) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let mut needed_by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for role in &desired.roles {
        for arn in role.managed.iter().chain(role.boundary.as_ref()) {
            if missing.contains(arn) {
                needed_by.entry(arn).or_default().push(&role.name);
            }
        }
    }
    let list: Vec<String> = missing
        .iter()
        .map(|arn| match needed_by.get(arn.as_str()) {
            Some(roles) => format!("{arn} (role {})", roles.join(", role ")),
            None => arn.clone(),
        })
        .collect();
    Some(format!(
        "irsa.yaml names {} polic{} that IAM does not have: {}; nothing was changed. Fix: correct the ARN in the binding's policyArns (or permissionsBoundary) in irsa.yaml, e.g. with `irsa unbind` and `irsa bind --policy-arn ARN`, or create the policy first; an AWS managed policy's ARN is arn:aws:iam::aws:policy/NAME with the exact name (`aws iam get-policy --policy-arn ARN` checks one)",
        missing.len(),
        if missing.len() == 1 { "y" } else { "ies" },
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use crate::plan::tests::cfg;

    fn desired() -> Desired {
        let c = cfg();
        Desired::from_config(
            &c,
            "111122223333",
            "us-east-1",
            &crate::Discovery::for_issuer(c.issuer.url().expect("url"), c.issuer.jwks_path, &[]),
            &crate::Jwks::default(),
        )
    }

    #[test]
    fn only_policies_not_yet_attached_are_read() {
        let mut d = desired();
        d.roles[0].boundary = Some("arn:aws:iam::111122223333:policy/boundary".into());
        let fresh = policies_to_check(&d, &Actual::default());
        assert_eq!(
            fresh.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "arn:aws:iam::111122223333:policy/boundary",
                "arn:aws:iam::aws:policy/ReadOnlyAccess"
            ]
        );
        // Converged: the role has both, so nothing is read.
        let mut actual = Actual::default();
        actual.roles.insert(
            d.roles[0].name.clone(),
            ActualRole {
                managed: d.roles[0].managed.clone(),
                boundary: d.roles[0].boundary.clone(),
                ..ActualRole::default()
            },
        );
        assert!(policies_to_check(&d, &actual).is_empty());
        // A policy added to the binding is read, the attached one is not.
        d.roles[0]
            .managed
            .insert("arn:aws:iam::aws:policy/Nope".into());
        assert_eq!(
            policies_to_check(&d, &actual)
                .into_iter()
                .collect::<Vec<_>>(),
            ["arn:aws:iam::aws:policy/Nope"]
        );
    }

    #[test]
    fn a_missing_policy_is_named_with_its_role_and_the_fix() {
        let d = desired();
        assert_eq!(missing_policies_refusal(&d, &BTreeSet::new()), None);
        let missing: BTreeSet<String> =
            ["arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()].into();
        let why = missing_policies_refusal(&d, &missing).expect("refused");
        assert!(
            why.contains("arn:aws:iam::aws:policy/ReadOnlyAccess (role demo-default-app)"),
            "{why}"
        );
        assert!(
            why.contains("nothing was changed") && why.contains("policyArns"),
            "{why}"
        );
    }
}
