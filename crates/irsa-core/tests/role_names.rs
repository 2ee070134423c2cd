//! Role names derived from arbitrary (unicode) namespaces and service
//! accounts: never a panic, always a valid IAM role name, and a config
//! holding such a binding is an error that names the problem.
#![allow(clippy::unwrap_used)]

use irsa_core::config::{Binding, IrsaConfig, MAX_ROLE_NAME};
use proptest::prelude::*;

fn binding(namespace: &str, service_account: &str) -> Binding {
    Binding {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        ..Binding::default()
    }
}

fn valid_iam_role_name(name: &str) -> bool {
    // IAM: 1-64 characters of letters, digits and +=,.@_-
    !name.is_empty()
        && name.len() <= MAX_ROLE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Regression: a namespace whose 55th byte falls inside a multi-byte
/// character made the name derivation slice a `str` mid-character and panic,
/// inside `IrsaConfig::validate` itself.
#[test]
fn non_ascii_namespace_is_an_error_not_a_panic() {
    let namespace = format!("a{}", "ü".repeat(30));
    let name = binding(&namespace, "s3-echoer").role_name("demo");
    assert!(valid_iam_role_name(&name), "{name}");
    let yaml = format!(
        "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://b.example.com/demo\nkeys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\nbindings:\n- {{namespace: {namespace}, serviceAccount: s3-echoer}}\n"
    );
    let err = IrsaConfig::from_yaml(&yaml).expect_err("a non-DNS namespace");
    assert!(
        err.to_string().contains("namespace must be a DNS label"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn derived_role_names_are_always_valid(
        cluster in "[a-z0-9-]{1,32}",
        namespace in any::<String>(),
        service_account in any::<String>(),
    ) {
        let b = binding(&namespace, &service_account);
        let name = b.role_name(&cluster);
        prop_assert!(valid_iam_role_name(&name), "{:?}", name);
        prop_assert_eq!(&name, &b.role_name(&cluster), "deterministic");
    }

    #[test]
    fn distinct_inputs_give_distinct_long_names(
        namespace in "\\PC{20,40}",
        a in "\\PC{20,40}",
        b in "\\PC{20,40}",
    ) {
        prop_assume!(a.replace('*', "any") != b.replace('*', "any"));
        let (x, y) = (binding(&namespace, &a).role_name("c"), binding(&namespace, &b).role_name("c"));
        prop_assert_ne!(x, y);
    }
}
