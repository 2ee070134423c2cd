//! The Kubernetes objects irsa prints for a binding: the annotated
//! ServiceAccount (for `bind` and `verify`), and how any object is written
//! as YAML. Shared by the verbs that print them.

use std::collections::BTreeMap;

use anyhow::Result;
use irsa_core::config::{Binding, DEFAULT_AUDIENCE};
use irsa_core::IrsaConfig;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Shown in place of the account ID when irsa does not know it.
pub const ACCOUNT_PLACEHOLDER: &str = "<AWS_ACCOUNT_ID>";

/// The role ARN a binding's ServiceAccount is annotated with, in `account`
/// (`None`: [`ACCOUNT_PLACEHOLDER`] stands in for it, for the user to fill in).
pub fn role_arn(config: &IrsaConfig, binding: &Binding, account: Option<&str>) -> Result<String> {
    config
        .role_arn(&binding.role_name(&config.cluster), account, ACCOUNT_PLACEHOLDER)
        .map_err(|problem| {
            anyhow::anyhow!(
                "cannot name the role of {}/{}: {problem}; pass --account with the 12-digit AWS account ID",
                binding.namespace,
                binding.service_account
            )
        })
}

/// The annotated ServiceAccount for `binding` (`account` as in [`role_arn`]).
pub fn service_account(
    config: &IrsaConfig,
    binding: &Binding,
    account: Option<&str>,
) -> Result<ServiceAccount> {
    let mut annotations = BTreeMap::from([(
        "eks.amazonaws.com/role-arn".to_string(),
        role_arn(config, binding, account)?,
    )]);
    if binding.audience() != DEFAULT_AUDIENCE {
        annotations.insert(
            "eks.amazonaws.com/audience".into(),
            binding.audience().to_string(),
        );
    }
    Ok(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(binding.service_account.clone()),
            namespace: Some(binding.namespace.clone()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    })
}

/// A Kubernetes object as YAML, `apiVersion` and `kind` first.
pub fn object_yaml<K: k8s_openapi::Resource + serde::Serialize>(object: &K) -> String {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        // apiVersion and kind first, as people write them.
        let mut ordered = serde_json::Map::new();
        ordered.insert("apiVersion".into(), K::API_VERSION.into());
        ordered.insert("kind".into(), K::KIND.into());
        for (k, v) in std::mem::take(map) {
            ordered.entry(k).or_insert(v);
        }
        *map = ordered;
    }
    serde_yaml::to_string(&value).unwrap_or_default()
}

/// The annotated ServiceAccount for `binding`, as YAML.
pub fn service_account_yaml(
    config: &IrsaConfig,
    binding: &Binding,
    account: Option<&str>,
) -> Result<String> {
    Ok(object_yaml(&service_account(config, binding, account)?))
}
