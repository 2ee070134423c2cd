//! `--enable-debugging-handlers`: `GET /debug/alpha/cache` on the metrics
//! listener lists what the ServiceAccount cache holds, as the Go webhook's
//! endpoint of the same path does: a JSON object keyed `namespace/name`,
//! each value the settings a pod of that account would get (`RoleARN`,
//! `Audience`, `UseRegionalSTS`, `TokenExpiration`), defaults applied.

use std::collections::BTreeMap;

use irsa_core::mutate::MutationConfig;
use serde::Serialize;

use crate::cache::SaStore;

/// The path of the cache listing.
pub const CACHE_PATH: &str = "/debug/alpha/cache";

/// One account's settings, in the Go webhook's field names.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    #[serde(rename = "RoleARN")]
    role_arn: String,
    audience: String,
    #[serde(rename = "UseRegionalSTS")]
    use_regional_sts: bool,
    token_expiration: i64,
}

/// The cache listing's JSON body.
pub fn cache_json(store: &SaStore, config: &MutationConfig) -> Vec<u8> {
    let rows: BTreeMap<String, Row> = store
        .entries()
        .into_iter()
        .map(|(key, entry)| {
            let id = entry.as_deref();
            let row = Row {
                role_arn: id.and_then(|i| i.role_arn.clone()).unwrap_or_default(),
                audience: id
                    .and_then(|i| i.audience.clone())
                    .unwrap_or_else(|| config.audience.clone()),
                use_regional_sts: id
                    .and_then(|i| i.regional_sts)
                    .unwrap_or(config.regional_sts),
                token_expiration: id
                    .and_then(|i| i.token_expiration)
                    .unwrap_or(config.token_expiration),
            };
            (key, row)
        })
        .collect();
    // A map of strings, bools and integers always serialises.
    serde_json::to_vec_pretty(&rows).unwrap_or_default()
}
