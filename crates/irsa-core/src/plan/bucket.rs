//! The bucket: its creation or adoption, public access, this issuer's
//! policy statement, and the two documents.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{change, owned, statements, Action, Actual, Desired, Plan, OWNER_TAG};
use crate::issuer::S3Location;

/// Adds the bucket's changes and conflicts to `plan`.
pub(super) fn diff(
    plan: &mut Plan,
    desired: &Desired,
    actual: &Actual,
    adopt: &BTreeSet<String>,
    s3: &S3Location,
) {
    let bucket = &s3.bucket;
    let bucket_res = format!("s3 bucket {bucket}");
    // Owned: irsa manages public access and its policy statement.
    // Shared: another cluster's irsa owns the bucket; irsa manages only
    // this cluster's statement. Foreign: objects only, unless adopted.
    let (manage_bpa, manage_statement) = match &actual.bucket {
        None => {
            plan.changes.push(change(
                &bucket_res,
                format!(
                    "region {}, tagged {OWNER_TAG}={}",
                    s3.region, desired.cluster
                ),
                Action::CreateBucket,
            ));
            (true, true)
        }
        Some(tags) if owned(desired, tags) => (true, true),
        Some(_) if adopt.contains(bucket) => {
            plan.changes.push(change(
                &bucket_res,
                format!("adopt: tag {OWNER_TAG}={}", desired.cluster),
                Action::TagBucket,
            ));
            (true, true)
        }
        Some(tags) if tags.contains_key(OWNER_TAG) => {
            if !actual.public_policy_allowed && desired.cloudfront.is_none() {
                plan.conflicts.push(format!(
                    "{bucket_res} belongs to cluster {} and its Block Public Access settings forbid public bucket policies: run `irsa apply` for that cluster first",
                    tags[OWNER_TAG]
                ));
            }
            (false, true)
        }
        Some(_) => {
            plan.conflicts.push(format!(
                "{bucket_res} exists and is not tagged {OWNER_TAG}={}: irsa uploads the documents but leaves its policy and public access settings to you (grant public s3:GetObject on them), or pass --adopt {bucket}",
                desired.cluster
            ));
            (false, false)
        }
    };
    // Settings of a bucket this plan creates are created with it, not changed.
    let creates = actual.bucket.is_none();
    if manage_bpa && desired.cloudfront.is_some() && !actual.bucket_fully_private {
        plan.changes.push(change(
            format!("{bucket_res} public access block"),
            "all four Block Public Access settings on: only CloudFront reads the documents",
            Action::BlockAllPublicAccess { creates },
        ));
    }
    if manage_bpa && desired.cloudfront.is_none() && !actual.public_policy_allowed {
        plan.changes.push(change(
            format!("{bucket_res} public access block"),
            "ACLs blocked; a bucket policy may grant public read",
            Action::AllowPublicPolicy { creates },
        ));
    }
    if manage_statement {
        let distribution = actual.distribution.as_ref().map(|d| d.id.as_str());
        if let (Some(ours), Some(sid)) = (&desired.statement(distribution), desired.statement_sid())
        {
            let current = statements(actual.bucket_policy.as_ref());
            let mine: Vec<&Value> = current
                .iter()
                .filter(|s| desired.is_our_statement(s))
                .collect();
            if mine != [ours] {
                let what = if mine.iter().any(|s| s["Sid"].as_str() != Some(sid.as_str())) {
                    format!("replace the statement of an earlier irsa version with {sid}")
                } else if !mine.is_empty() {
                    format!("replace statement {sid}")
                } else if desired.cloudfront.is_some() {
                    format!("add statement {sid}: s3:GetObject on the two documents for this distribution only")
                } else {
                    format!("add statement {sid}: public s3:GetObject on the two documents only")
                };
                if let Some(merged) = desired.merged_policy(ours, actual.bucket_policy.as_ref()) {
                    plan.changes.push(change(
                        format!("{bucket_res} policy"),
                        what,
                        Action::PutBucketPolicy {
                            policy: merged,
                            creates: actual.bucket_policy.is_none(),
                        },
                    ));
                }
            }
        }
    }
    for (key, body) in &desired.objects {
        let res = format!("s3://{bucket}/{key}");
        match actual.objects.get(key) {
            None => plan.changes.push(change(
                res,
                "application/json",
                Action::PutObject {
                    key: key.clone(),
                    body: body.clone(),
                    creates: true,
                },
            )),
            Some((b, ct)) if b != body || ct != "application/json" => {
                let why = if b != body {
                    "content differs"
                } else {
                    "Content-Type is not application/json"
                };
                plan.changes.push(change(
                    res,
                    why,
                    Action::PutObject {
                        key: key.clone(),
                        body: body.clone(),
                        creates: false,
                    },
                ))
            }
            Some(_) => {}
        }
    }
}

/// The account-wide S3 Block Public Access settings (S3 Control) that
/// decide whether any bucket policy may make objects public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountPublicAccess {
    /// `BlockPublicPolicy`: S3 refuses to store a public bucket policy.
    pub block_public_policy: bool,
    /// `RestrictPublicBuckets`: a public bucket policy is stored but
    /// grants nothing to anonymous callers.
    pub restrict_public_buckets: bool,
}

impl AccountPublicAccess {
    /// The settings that are on and stop a public bucket policy, by their
    /// AWS names.
    pub fn blocking(&self) -> Vec<&'static str> {
        let mut on = Vec::new();
        if self.block_public_policy {
            on.push("BlockPublicPolicy");
        }
        if self.restrict_public_buckets {
            on.push("RestrictPublicBuckets");
        }
        on
    }
}

/// Why the public bucket `desired` asks for cannot serve the documents in
/// an account with these settings, with the fix; `None` when it can (or
/// when irsa does not host the issuer in a public bucket).
pub fn public_hosting_refusal(
    desired: &Desired,
    account: &str,
    settings: &AccountPublicAccess,
) -> Option<String> {
    let s3 = desired.s3.as_ref()?;
    desired.bucket_statement.as_ref()?;
    let on = settings.blocking();
    if on.is_empty() {
        return None;
    }
    Some(format!(
        "AWS account {account} has S3 Block Public Access {} turned on for the whole account, so bucket {} cannot serve the issuer's documents publicly and STS could not fetch them; nothing was changed. Fix: host the issuer in a private bucket behind CloudFront (`irsa init --hosting cloudfront`), or turn {} off in the account's S3 Block Public Access settings if your organisation allows it",
        on.join(" and "),
        s3.bucket,
        on.join(" and "),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::plan::tests::cfg;
    use serde_json::json;

    #[test]
    fn shared_bucket_keeps_other_statements() {
        let desired = Desired::from_config(
            &cfg(),
            "111122223333",
            "us-east-1",
            &crate::Discovery::for_issuer(
                cfg().issuer.url().expect("url"),
                cfg().issuer.jwks_path,
                &[],
            ),
            &crate::Jwks::default(),
        );
        let other = json!({"Sid": "IrsaPublicIssuerprod", "Effect": "Allow", "Principal": "*",
            "Action": "s3:GetObject", "Resource": ["arn:aws:s3:::b-oidc/prod/keys.json"]});
        let actual = Actual {
            bucket: Some([(OWNER_TAG.to_string(), "prod".to_string())].into()),
            public_policy_allowed: true,
            bucket_policy: Some(json!({"Version": "2012-10-17", "Statement": [other.clone()]})),
            ..Actual::default()
        };
        let plan = diff(&desired, &actual, &BTreeSet::new());
        let put = plan
            .changes
            .iter()
            .find_map(|c| match &c.action {
                Action::PutBucketPolicy { policy: p, .. } => Some(p.clone()),
                _ => None,
            })
            .expect("policy change");
        assert_eq!(put["Statement"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            put["Statement"][0], other,
            "the other cluster's statement is kept"
        );
        assert!(
            !plan.changes.iter().any(|c| matches!(
                c.action,
                Action::AllowPublicPolicy { .. } | Action::TagBucket
            )),
            "a bucket owned by another cluster is not re-configured: {:?}",
            plan.changes
        );
        // Destroy removes only this cluster's statement and keeps the bucket.
        let after = Actual {
            bucket_policy: Some(put),
            ..actual
        };
        let plan = destroy(&desired, &after, true);
        let rest = plan
            .changes
            .iter()
            .find_map(|c| match &c.action {
                Action::PutBucketPolicy { policy: p, .. } => Some(p.clone()),
                _ => None,
            })
            .expect("policy change");
        assert_eq!(rest["Statement"], json!([other]));
        assert!(!plan
            .changes
            .iter()
            .any(|c| matches!(c.action, Action::DeleteBucket | Action::DeleteBucketPolicy)));
    }

    #[test]
    fn an_account_blocking_public_policies_refuses_the_public_bucket() {
        let desired = Desired::from_config(
            &cfg(),
            "111122223333",
            "us-east-1",
            &crate::Discovery::for_issuer(
                cfg().issuer.url().expect("url"),
                cfg().issuer.jwks_path,
                &[],
            ),
            &crate::Jwks::default(),
        );
        let open = AccountPublicAccess::default();
        assert_eq!(
            public_hosting_refusal(&desired, "111122223333", &open),
            None
        );
        for (settings, named) in [
            (
                AccountPublicAccess {
                    block_public_policy: true,
                    restrict_public_buckets: false,
                },
                "BlockPublicPolicy",
            ),
            (
                AccountPublicAccess {
                    block_public_policy: false,
                    restrict_public_buckets: true,
                },
                "RestrictPublicBuckets",
            ),
            (
                AccountPublicAccess {
                    block_public_policy: true,
                    restrict_public_buckets: true,
                },
                "BlockPublicPolicy and RestrictPublicBuckets",
            ),
        ] {
            let why = public_hosting_refusal(&desired, "111122223333", &settings)
                .unwrap_or_else(|| panic!("{settings:?} refuses public hosting"));
            assert!(
                why.contains(named)
                    && why.contains("111122223333")
                    && why.contains("b-oidc")
                    && why.contains("irsa init --hosting cloudfront")
                    && why.contains("turn"),
                "{why}"
            );
        }
        // An issuer irsa does not host in S3 is not its concern.
        let elsewhere = Desired {
            s3: None,
            bucket_statement: None,
            ..desired
        };
        let all = AccountPublicAccess {
            block_public_policy: true,
            restrict_public_buckets: true,
        };
        assert_eq!(
            public_hosting_refusal(&elsewhere, "111122223333", &all),
            None
        );
    }
}
