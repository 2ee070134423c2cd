//! Reading the actual state a [`Desired`] state cares about: the bucket,
//! its policy and objects, the account's OIDC providers and the roles
//! bindings name or the cluster's path holds.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::error::ProvideErrorMetadata;
use futures_util::StreamExt;
use irsa_core::ownership::provider_host_path;
use irsa_core::plan::{
    role_path, AccountPublicAccess, Actual, ActualProvider, ActualRole, Desired,
};
use serde_json::Value;

use crate::convert::{
    arn_for, decode_policy, fully_private, iam_tag_map, public_policy_allowed, role_from_detail,
};
use crate::error::call_err;
use crate::{Aws, AwsError};

impl Aws {
    /// Reads everything `desired` is about.
    pub async fn read_actual(&self, desired: &Desired) -> Result<Actual, AwsError> {
        let mut actual = Actual::default();
        if let Some(s3) = &desired.s3 {
            self.read();
            let exists = match self.s3.head_bucket().bucket(&s3.bucket).send().await {
                Ok(_) => true,
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
                Err(e) => return Err(call_err("s3:HeadBucket", e)),
            };
            if exists {
                actual.bucket = Some(self.bucket_tags(&s3.bucket).await?);
                let block = self
                    .get_opt(
                        "s3:GetPublicAccessBlock",
                        &["NoSuchPublicAccessBlockConfiguration"],
                        self.s3.get_public_access_block().bucket(&s3.bucket).send(),
                    )
                    .await?;
                let config = block
                    .as_ref()
                    .and_then(|r| r.public_access_block_configuration());
                actual.public_policy_allowed = public_policy_allowed(config);
                actual.bucket_fully_private = fully_private(config);
                let policy = self
                    .get_opt(
                        "s3:GetBucketPolicy",
                        &["NoSuchBucketPolicy"],
                        self.s3.get_bucket_policy().bucket(&s3.bucket).send(),
                    )
                    .await?;
                actual.bucket_policy =
                    policy.and_then(|p| p.policy().and_then(|p| serde_json::from_str(p).ok()));
                for key in desired.objects.keys() {
                    let object = self
                        .get_opt(
                            "s3:GetObject",
                            &["NoSuchKey"],
                            self.s3.get_object().bucket(&s3.bucket).key(key).send(),
                        )
                        .await?;
                    if let Some(o) = object {
                        let ct = o.content_type().unwrap_or("").to_string();
                        let body = o.body.collect().await.map_err(|e| {
                            AwsError::Unexpected(format!("reading s3://{}/{key}: {e}", s3.bucket))
                        })?;
                        actual.objects.insert(
                            key.clone(),
                            (String::from_utf8_lossy(&body.into_bytes()).into_owned(), ct),
                        );
                    }
                }
            }
        }

        if let Some(cf) = &desired.cloudfront {
            self.read_cloudfront(desired, cf, &mut actual).await?;
        }

        let arns = self.provider_arns().await?;
        actual.account_providers = arns.len();
        let managed = desired.managed_providers();
        for arn in &arns {
            let Some(host) = provider_host_path(arn) else {
                continue;
            };
            if managed.contains(&host) || desired.provider_trusts_bucket(host) {
                actual
                    .providers
                    .insert(host.to_string(), self.get_provider(arn).await?);
            }
        }

        self.read_roles(desired, &mut actual).await?;
        Ok(actual)
    }

    /// Reads the roles bindings name plus the roles tagged for this cluster
    /// under its path. First in bulk: one `GetAccountAuthorizationDetails`
    /// page per 1000 roles (trust, policies, boundary, tags) and one
    /// `ListRoles` page per 1000 of the cluster's roles (session duration),
    /// so a plan costs a constant number of reads however many bindings
    /// there are. Without permission for the bulk call, per-role reads,
    /// `parallelism` at a time.
    async fn read_roles(&self, desired: &Desired, actual: &mut Actual) -> Result<(), AwsError> {
        let path = role_path(&desired.cluster);
        let wanted: BTreeSet<&str> = desired.roles.iter().map(|r| r.name.as_str()).collect();
        let mut sessions: BTreeMap<String, i32> = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .get(
                    "iam:ListRoles",
                    self.iam
                        .list_roles()
                        .path_prefix(&path)
                        .max_items(1000)
                        .set_marker(marker.take())
                        .send(),
                )
                .await?;
            for r in page.roles() {
                sessions.insert(
                    r.role_name().to_string(),
                    r.max_session_duration().unwrap_or(3600),
                );
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        match self.read_role_details(&wanted, &sessions).await {
            Ok(details) => {
                for (name, mut role) in details {
                    if let Some(secs) = sessions.get(&name) {
                        role.max_session = *secs;
                    } else if wanted.contains(name.as_str()) {
                        // Same name outside the cluster's path: only its
                        // session duration is missing.
                        if let Some(r) = self.read_role(&name).await? {
                            role.max_session = r.max_session;
                        }
                    }
                    self.classify(actual, &wanted, &sessions, name, role);
                }
                Ok(())
            }
            Err(e) if e.denied() => {
                tracing::info!(
                    "iam:GetAccountAuthorizationDetails denied; reading roles one by one"
                );
                let names: BTreeSet<String> = wanted
                    .iter()
                    .map(|n| n.to_string())
                    .chain(sessions.keys().cloned())
                    .collect();
                let found: Vec<Result<(String, Option<ActualRole>), AwsError>> =
                    futures_util::stream::iter(names.into_iter().map(|name| async move {
                        let role = self.read_role(&name).await?;
                        Ok((name, role))
                    }))
                    .buffer_unordered(self.parallelism)
                    .collect()
                    .await;
                for r in found {
                    if let (name, Some(role)) = r? {
                        self.classify(actual, &wanted, &sessions, name, role);
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Files a role read from IAM: under the cluster's path, named by a
    /// binding, or both. Whether it is this bundle's is the plan's decision.
    fn classify(
        &self,
        actual: &mut Actual,
        wanted: &BTreeSet<&str>,
        listed: &BTreeMap<String, i32>,
        name: String,
        role: ActualRole,
    ) {
        if listed.contains_key(&name) {
            actual.path_roles.insert(name.clone(), role.clone());
        }
        if wanted.contains(name.as_str()) {
            actual.roles.insert(name, role);
        }
    }

    /// Every role of the account in bulk, keeping those named in `wanted`
    /// or listed under the cluster's path (`sessions`).
    async fn read_role_details(
        &self,
        wanted: &BTreeSet<&str>,
        sessions: &BTreeMap<String, i32>,
    ) -> Result<BTreeMap<String, ActualRole>, AwsError> {
        let mut out = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .get(
                    "iam:GetAccountAuthorizationDetails",
                    self.iam
                        .get_account_authorization_details()
                        .filter(aws_sdk_iam::types::EntityType::Role)
                        .max_items(1000)
                        .set_marker(marker.take())
                        .send(),
                )
                .await?;
            for r in page.role_detail_list() {
                let Some(name) = r.role_name() else { continue };
                if !wanted.contains(name) && !sessions.contains_key(name) {
                    continue;
                }
                out.insert(name.to_string(), role_from_detail(r));
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// ARNs of every IAM OIDC provider in the account.
    pub(crate) async fn provider_arns(&self) -> Result<Vec<String>, AwsError> {
        let providers = self
            .get(
                "iam:ListOpenIDConnectProviders",
                self.iam.list_open_id_connect_providers().send(),
            )
            .await?;
        Ok(providers
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn().map(String::from))
            .collect())
    }

    /// One provider's client IDs, thumbprints and tags.
    async fn get_provider(&self, arn: &str) -> Result<ActualProvider, AwsError> {
        let p = self
            .get(
                "iam:GetOpenIDConnectProvider",
                self.iam
                    .get_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .send(),
            )
            .await?;
        Ok(ActualProvider {
            arn: arn.to_string(),
            client_ids: p.client_id_list().iter().cloned().collect(),
            thumbprints: p.thumbprint_list().to_vec(),
            tags: iam_tag_map(p.tags()),
        })
    }

    /// The IAM OIDC provider for `host_path`, if there is one.
    pub async fn find_provider(&self, host_path: &str) -> Result<Option<ActualProvider>, AwsError> {
        let arns = self.provider_arns().await?;
        match arn_for(&arns, host_path) {
            Some(arn) => Ok(Some(self.get_provider(arn).await?)),
            None => Ok(None),
        }
    }

    /// Which of the managed policies `arns` do not exist: one
    /// `iam:GetPolicy` each, `parallelism` at a time. Without permission
    /// to read a policy, it is not reported missing (IAM is the judge at
    /// attach time) and a warning is logged.
    pub async fn missing_policies(
        &self,
        arns: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>, AwsError> {
        let found: Vec<Result<Option<String>, AwsError>> =
            futures_util::stream::iter(arns.iter().map(|arn| async move {
                self.read();
                match self.iam.get_policy().policy_arn(arn).send().await {
                    Ok(_) => Ok(None),
                    Err(e) if e.code() == Some("NoSuchEntity") => Ok(Some(arn.clone())),
                    Err(e) => {
                        let e = call_err("iam:GetPolicy", e);
                        match e.code() {
                            // A malformed ARN names no policy either.
                            Some("InvalidInput") => Ok(Some(arn.clone())),
                            _ if e.denied() => {
                                tracing::warn!("cannot check that policy {arn} exists: {e}");
                                Ok(None)
                            }
                            _ => Err(e),
                        }
                    }
                }
            }))
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        let mut missing = BTreeSet::new();
        for r in found {
            if let Some(arn) = r? {
                missing.insert(arn);
            }
        }
        Ok(missing)
    }

    /// One role with its trust policy, policies and tags, if it exists.
    pub async fn role(&self, name: &str) -> Result<Option<ActualRole>, AwsError> {
        self.read_role(name).await
    }

    pub(crate) async fn read_role(&self, name: &str) -> Result<Option<ActualRole>, AwsError> {
        let role = self
            .get_opt(
                "iam:GetRole",
                &["NoSuchEntity"],
                self.iam.get_role().role_name(name).send(),
            )
            .await?;
        let Some(role) = role.as_ref().and_then(|r| r.role()) else {
            return Ok(None);
        };
        let tags = self
            .get(
                "iam:ListRoleTags",
                self.iam.list_role_tags().role_name(name).send(),
            )
            .await?;
        let attached = self
            .get(
                "iam:ListAttachedRolePolicies",
                self.iam
                    .list_attached_role_policies()
                    .role_name(name)
                    .send(),
            )
            .await?;
        let inline_names = self
            .get(
                "iam:ListRolePolicies",
                self.iam.list_role_policies().role_name(name).send(),
            )
            .await?;
        let mut inline = BTreeMap::new();
        for policy in inline_names.policy_names() {
            let doc = self
                .get(
                    "iam:GetRolePolicy",
                    self.iam
                        .get_role_policy()
                        .role_name(name)
                        .policy_name(policy)
                        .send(),
                )
                .await?;
            inline.insert(policy.clone(), decode_policy(doc.policy_document()));
        }
        Ok(Some(ActualRole {
            trust: role
                .assume_role_policy_document()
                .map(decode_policy)
                .unwrap_or(Value::Null)
                .into(),
            managed: attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(String::from))
                .collect::<BTreeSet<_>>(),
            inline,
            max_session: role.max_session_duration().unwrap_or(3600),
            boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn().map(String::from)),
            path: role.path().to_string(),
            tags: iam_tag_map(tags.tags()),
        }))
    }

    /// The account-wide S3 Block Public Access settings (S3 Control
    /// `GetPublicAccessBlock`); all off when the account has none. A
    /// refusal for lack of permission is an error the caller may
    /// downgrade ([`AwsError::denied`]).
    pub async fn account_public_access(
        &self,
        account: &str,
    ) -> Result<AccountPublicAccess, AwsError> {
        let block = self
            .get_opt(
                "s3:GetAccountPublicAccessBlock",
                &["NoSuchPublicAccessBlockConfiguration"],
                self.s3control
                    .get_public_access_block()
                    .account_id(account)
                    .send(),
            )
            .await?;
        Ok(block
            .and_then(|r| {
                r.public_access_block_configuration()
                    .map(|c| AccountPublicAccess {
                        block_public_policy: c.block_public_policy().unwrap_or(false),
                        restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
                    })
            })
            .unwrap_or_default())
    }

    /// The body of one object, `None` when the bucket or the key does not
    /// exist (doctor compares it with what the bundle renders).
    pub async fn stored_object(&self, bucket: &str, key: &str) -> Result<Option<String>, AwsError> {
        let object = self
            .get_opt(
                "s3:GetObject",
                &["NoSuchKey", "NoSuchBucket"],
                self.s3.get_object().bucket(bucket).key(key).send(),
            )
            .await?;
        let Some(o) = object else {
            return Ok(None);
        };
        let body = o
            .body
            .collect()
            .await
            .map_err(|e| AwsError::Unexpected(format!("reading s3://{bucket}/{key}: {e}")))?;
        Ok(Some(
            String::from_utf8_lossy(&body.into_bytes()).into_owned(),
        ))
    }

    /// Whether the bucket holds objects other than `ours`.
    pub async fn bucket_has_other_objects(
        &self,
        bucket: &str,
        ours: &BTreeSet<String>,
    ) -> Result<bool, AwsError> {
        let list = self
            .get_opt(
                "s3:ListObjectsV2",
                &["NoSuchBucket"],
                self.s3.list_objects_v2().bucket(bucket).max_keys(10).send(),
            )
            .await?;
        let Some(list) = list else {
            return Ok(false);
        };
        Ok(list
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .any(|k| !ours.contains(k)))
    }

    /// The bucket's tags (none when it has no tag set).
    pub(crate) async fn bucket_tags(
        &self,
        bucket: &str,
    ) -> Result<BTreeMap<String, String>, AwsError> {
        let tagging = self
            .get_opt(
                "s3:GetBucketTagging",
                &["NoSuchTagSet"],
                self.s3.get_bucket_tagging().bucket(bucket).send(),
            )
            .await?;
        Ok(tagging
            .map(|t| {
                t.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }
}
