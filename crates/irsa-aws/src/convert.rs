//! Pure conversions between the SDK's shapes and irsa's: policy
//! documents as IAM returns them, provider ARNs, tag lists.

use std::collections::BTreeMap;

use serde_json::Value;

/// A policy document as IAM returns it (URL-encoded JSON); the text
/// itself when it is not JSON.
pub(crate) fn decode_policy(text: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned();
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

/// The provider ARN among `arns` whose URL is `host_path`.
pub(crate) fn arn_for<'a>(arns: &'a [String], host_path: &str) -> Option<&'a str> {
    let suffix = format!(":oidc-provider/{host_path}");
    arns.iter()
        .map(String::as_str)
        .find(|a| a.ends_with(&suffix))
}

/// IAM tags as a map.
pub(crate) fn iam_tag_map(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// A tag map as IAM tags (entries IAM cannot hold are left out).
pub(crate) fn tags_iam(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_iam::types::Tag> {
    tags.iter()
        .filter_map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}
