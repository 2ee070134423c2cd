//! `--watch-config-map`: ServiceAccount settings from the Go webhook's
//! ConfigMap `pod-identity-webhook` in `--namespace` (Go's default `eks`).
//! Its `config` key holds a JSON object keyed `namespace/name` (namespace
//! `*` for every namespace), each value `{"RoleARN", "Audience",
//! "UseRegionalSTS", "TokenExpiration"}` (field names in any case, as Go's
//! JSON decoder reads them). An account's own `role-arn` annotation wins;
//! otherwise `namespace/name`, then `*/name`, from the ConfigMap.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use irsa_core::mutate::{clamp_expiration, SaIdentity};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;

use crate::cache::SaStore;

/// The ConfigMap's name, as in the Go webhook.
pub const NAME: &str = "pod-identity-webhook";

/// The Go webhook's default `--namespace`.
pub const DEFAULT_NAMESPACE: &str = "eks";

/// Accounts configured by the ConfigMap, keyed `namespace/name`.
pub type Entries = HashMap<String, Arc<SaIdentity>>;

/// Reads the `config` key. `TokenExpiration` 0 or absent means the default.
pub fn parse(config: &str) -> Result<Entries, String> {
    let map: HashMap<String, serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(config)
            .map_err(|e| format!("the config key is not a JSON object of objects: {e}"))?;
    let mut out = Entries::new();
    for (key, fields) in map {
        if key.split('/').count() != 2 {
            return Err(format!("key {key:?} is not namespace/name"));
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let text = |name: &str| field(name).and_then(|v| v.as_str()).map(String::from);
        let id = SaIdentity {
            role_arn: text("RoleARN").filter(|s| !s.is_empty()),
            audience: text("Audience").filter(|s| !s.is_empty()),
            regional_sts: field("UseRegionalSTS").and_then(|v| v.as_bool()),
            token_expiration: field("TokenExpiration")
                .and_then(|v| v.as_i64())
                .filter(|n| *n != 0)
                .map(clamp_expiration),
            skip_containers: Vec::new(),
        };
        out.insert(key, Arc::new(id));
    }
    Ok(out)
}

/// Keeps `store`'s ConfigMap entries in sync until the stream ends; a
/// ConfigMap that does not parse is reported and the previous entries kept.
pub async fn watch(store: SaStore, client: Client, namespace: String) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    let stream = watcher::watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut seen = false;
    loop {
        match stream.try_next().await {
            Ok(Some(Event::Init)) => seen = false,
            Ok(Some(Event::Apply(cm) | Event::InitApply(cm))) => {
                seen = true;
                let text = cm.data.as_ref().and_then(|d| d.get("config"));
                match parse(text.map_or("{}", String::as_str)) {
                    Ok(entries) => {
                        tracing::info!(namespace = %namespace, entries = entries.len(), "pod-identity-webhook ConfigMap read");
                        store.set_config_map(entries);
                    }
                    Err(error) => {
                        tracing::warn!(%error, namespace = %namespace, "pod-identity-webhook ConfigMap not used; keeping the previous entries")
                    }
                }
            }
            Ok(Some(Event::Delete(_))) => store.set_config_map(Entries::new()),
            Ok(Some(Event::InitDone)) => {
                if !seen {
                    store.set_config_map(Entries::new());
                }
                store.set_config_map_ready();
            }
            Ok(None) => return,
            Err(error) => tracing::warn!(%error, "ConfigMap watch failed; retrying"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_config_is_read_with_defaults_and_any_field_case() {
        let e = parse(r#"{"app/s3":{"RoleARN":"arn:aws:iam::111122223333:role/r","Audience":"sts.amazonaws.com","UseRegionalSTS":true,"TokenExpiration":0},
            "*/any":{"rolearn":"arn:aws:iam::111122223333:role/w","tokenExpiration":100}}"#).unwrap();
        let s3 = &e["app/s3"];
        assert_eq!(
            s3.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/r")
        );
        assert_eq!((s3.regional_sts, s3.token_expiration), (Some(true), None));
        let any = &e["*/any"];
        assert_eq!(
            any.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/w")
        );
        assert_eq!(any.token_expiration, Some(600), "clamped to the minimum");
        assert!(parse("[]").is_err());
        assert!(parse(r#"{"noslash":{}}"#).unwrap_err().contains("noslash"));
    }
}
