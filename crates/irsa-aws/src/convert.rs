//! Pure conversions between the SDK's shapes and irsa's: policy
//! documents as IAM returns them, provider ARNs, tag lists, role details
//! and a bucket's public access block.

use std::collections::BTreeMap;

use aws_sdk_iam::types::RoleDetail;
use aws_sdk_s3::types::PublicAccessBlockConfiguration;
use irsa_core::plan::ActualRole;
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

/// A tag map as IAM tags.
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

/// A role as `GetAccountAuthorizationDetails` describes it. The session
/// duration is not part of it: 3600 s until `ListRoles` says otherwise.
pub(crate) fn role_from_detail(r: &RoleDetail) -> ActualRole {
    ActualRole {
        trust: r
            .assume_role_policy_document()
            .map(decode_policy)
            .unwrap_or(Value::Null)
            .into(),
        managed: r
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(String::from))
            .collect(),
        inline: r
            .role_policy_list()
            .iter()
            .filter_map(|p| {
                Some((
                    p.policy_name()?.to_string(),
                    decode_policy(p.policy_document()?),
                ))
            })
            .collect(),
        max_session: 3600,
        boundary: r
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn().map(String::from)),
        tags: iam_tag_map(r.tags()),
        path: r.path().unwrap_or("/").to_string(),
    }
}

/// Whether the bucket's own public access block lets a public bucket
/// policy take effect. Without a configuration irsa does not count on it
/// (the plan then writes one).
pub(crate) fn public_policy_allowed(block: Option<&PublicAccessBlockConfiguration>) -> bool {
    block.is_some_and(|c| {
        !c.block_public_policy().unwrap_or(false) && !c.restrict_public_buckets().unwrap_or(false)
    })
}

/// Whether all four Block Public Access settings are on, as a bucket
/// behind CloudFront keeps them.
pub(crate) fn fully_private(block: Option<&PublicAccessBlockConfiguration>) -> bool {
    block.is_some_and(|c| {
        c.block_public_acls() == Some(true)
            && c.ignore_public_acls() == Some(true)
            && c.block_public_policy() == Some(true)
            && c.restrict_public_buckets() == Some(true)
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_iam::types::{AttachedPermissionsBoundary, AttachedPolicy, PolicyDetail, Tag};

    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag::builder()
            .key(k)
            .value(v)
            .build()
            .expect("key and value set")
    }

    #[test]
    fn iam_policy_documents_are_url_decoded_json() {
        let doc =
            decode_policy("%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D");
        assert_eq!(
            doc,
            serde_json::json!({"Version": "2012-10-17", "Statement": []})
        );
        assert_eq!(decode_policy(r#"{"a":1}"#), serde_json::json!({"a": 1}));
    }

    #[test]
    fn a_policy_that_is_not_json_is_kept_as_text() {
        assert_eq!(
            decode_policy("not%20json"),
            Value::String("not json".into())
        );
        // Invalid UTF-8 after decoding is replaced, not a panic.
        assert_eq!(decode_policy("%FF"), Value::String("\u{fffd}".into()));
    }

    #[test]
    fn the_provider_arn_is_found_by_its_whole_host_path() {
        let arns = vec![
            "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/prod".to_string(),
            "arn:aws:iam::111122223333:oidc-provider/acme.s3.eu-west-1.amazonaws.com/dev"
                .to_string(),
            "arn:aws-cn:iam::111122223333:oidc-provider/x.example.com".to_string(),
        ];
        assert_eq!(
            arn_for(&arns, "oidc.example.com/prod"),
            Some(arns[0].as_str())
        );
        assert_eq!(arn_for(&arns, "x.example.com"), Some(arns[2].as_str()));
        // A suffix of a host or a path is not a match.
        assert_eq!(arn_for(&arns, "example.com/prod"), None);
        assert_eq!(arn_for(&arns, "prod"), None);
        assert_eq!(arn_for(&arns, "oidc.example.com"), None);
        assert_eq!(arn_for(&[], "oidc.example.com/prod"), None);
    }

    #[test]
    fn tags_round_trip_between_iam_and_a_map() {
        let map: BTreeMap<String, String> = [("irsa.io/cluster", "prod"), ("team", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let tags = tags_iam(&map);
        assert_eq!(tags.len(), 2);
        assert_eq!(iam_tag_map(&tags), map);
        assert!(iam_tag_map(&[]).is_empty());
        // IAM's last value for a repeated key wins, as in a map.
        assert_eq!(
            iam_tag_map(&[tag("a", "1"), tag("a", "2")])
                .get("a")
                .map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn a_role_detail_becomes_an_actual_role() {
        let detail = RoleDetail::builder()
            .role_name("prod-app-web")
            .path("/irsa/prod/")
            .assume_role_policy_document("%7B%22Version%22%3A%222012-10-17%22%7D")
            .attached_managed_policies(
                AttachedPolicy::builder()
                    .policy_arn("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
                    .build(),
            )
            .attached_managed_policies(AttachedPolicy::builder().policy_name("no-arn").build())
            .role_policy_list(
                PolicyDetail::builder()
                    .policy_name("inline")
                    .policy_document("%7B%22a%22%3A1%7D")
                    .build(),
            )
            .role_policy_list(PolicyDetail::builder().policy_name("no-document").build())
            .permissions_boundary(
                AttachedPermissionsBoundary::builder()
                    .permissions_boundary_arn("arn:aws:iam::111122223333:policy/boundary")
                    .build(),
            )
            .tags(tag("irsa.io/cluster", "prod"))
            .build();
        let role = role_from_detail(&detail);
        assert_eq!(role.trust, serde_json::json!({"Version": "2012-10-17"}));
        assert_eq!(
            role.managed.iter().collect::<Vec<_>>(),
            ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
        );
        assert_eq!(role.inline.len(), 1);
        assert_eq!(role.inline["inline"], serde_json::json!({"a": 1}));
        assert_eq!(role.max_session, 3600);
        assert_eq!(
            role.boundary.as_deref(),
            Some("arn:aws:iam::111122223333:policy/boundary")
        );
        assert_eq!(role.path, "/irsa/prod/");
        assert_eq!(
            role.tags.get("irsa.io/cluster").map(String::as_str),
            Some("prod")
        );
    }

    #[test]
    fn a_bare_role_detail_has_defaults() {
        let role = role_from_detail(&RoleDetail::builder().role_name("r").build());
        assert_eq!(role.trust, Value::Null);
        assert!(role.managed.is_empty() && role.inline.is_empty() && role.tags.is_empty());
        assert_eq!(role.boundary, None);
        assert_eq!(role.path, "/");
    }

    #[test]
    fn a_public_policy_takes_effect_only_when_neither_flag_blocks_it() {
        let block = |policy: Option<bool>, restrict: Option<bool>| {
            PublicAccessBlockConfiguration::builder()
                .set_block_public_policy(policy)
                .set_restrict_public_buckets(restrict)
                .block_public_acls(true)
                .build()
        };
        assert!(public_policy_allowed(Some(&block(
            Some(false),
            Some(false)
        ))));
        assert!(public_policy_allowed(Some(&block(None, None))));
        assert!(!public_policy_allowed(Some(&block(
            Some(true),
            Some(false)
        ))));
        assert!(!public_policy_allowed(Some(&block(
            Some(false),
            Some(true)
        ))));
        assert!(!public_policy_allowed(None));
    }
}
