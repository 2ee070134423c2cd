//! AWS adapter of irsa: reads the actual S3 and IAM state a [`Desired`]
//! state cares about and executes plan [`Change`]s with the real
//! aws-sdk-rust clients. Decisions (what to change, what is owned) are
//! made by the pure [`irsa_core::plan`]; this crate only talks to AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use futures_util::StreamExt;
use irsa_core::ownership::provider_host_path;
use irsa_core::plan::{Action, Actual, ActualProvider, ActualRole, Change, Desired};

mod phases;
use serde_json::Value;

/// Failures talking to AWS.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An API call failed.
    #[error("{operation} failed: {message}")]
    Call {
        /// The operation, e.g. `iam:CreateRole`.
        operation: &'static str,
        /// The AWS error code, when there is one.
        code: Option<String>,
        /// Error code and message from AWS.
        message: String,
    },
    /// AWS returned something irsa cannot read.
    #[error("{0}")]
    Unexpected(String),
    /// A step was not run because running it could let someone else take
    /// over trust (the message says why and what to do).
    #[error("{0}")]
    Withheld(String),
}

fn call_err<E: ProvideErrorMetadata + std::fmt::Debug>(operation: &'static str, e: E) -> AwsError {
    let message = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => format!("{e:?}"),
    };
    AwsError::Call {
        operation,
        code: e.code().map(String::from),
        message,
    }
}

impl AwsError {
    /// The AWS error code, e.g. `EntityAlreadyExists`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Call { code, .. } => code.as_deref(),
            Self::Unexpected(_) | Self::Withheld(_) => None,
        }
    }

    /// Whether AWS refused the call for lack of permission.
    pub fn denied(&self) -> bool {
        matches!(
            self.code(),
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation")
        )
    }
}

/// Clients plus counters of the calls made.
pub struct Aws {
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    reads: AtomicUsize,
    writes: AtomicUsize,
    parallelism: usize,
}

/// Where to connect.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// Named profile.
    pub profile: Option<String>,
    /// Region override.
    pub region: Option<String>,
    /// How many independent calls may run at once (at least 1).
    pub parallelism: usize,
}

/// Default bound on concurrent AWS calls: IAM's mutating APIs are
/// rate-limited per account, so a handful at a time is as fast as it gets
/// without being throttled.
pub const DEFAULT_PARALLELISM: usize = 8;

fn decode_policy(text: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned();
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

/// The provider ARN among `arns` whose URL is `host_path`.
fn arn_for<'a>(arns: &'a [String], host_path: &str) -> Option<&'a str> {
    let suffix = format!(":oidc-provider/{host_path}");
    arns.iter()
        .map(String::as_str)
        .find(|a| a.ends_with(&suffix))
}

/// IAM tags as a map.
fn iam_tag_map(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn tags_iam(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_iam::types::Tag> {
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

pub use irsa_core::plan::role_path;

impl Aws {
    /// Clients from the default chain (env, profile, SSO, IMDS, web identity),
    /// honouring `AWS_ENDPOINT_URL` (S3 then uses path-style addressing).
    pub async fn connect(c: &Connect) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(p) = &c.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &c.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        // Throttling and transient errors are retried with exponential
        // backoff and jitter, up to 8 attempts unless AWS_MAX_ATTEMPTS says otherwise.
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            loader = loader.retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(8)
                    .with_initial_backoff(std::time::Duration::from_millis(200)),
            );
        }
        let shared = loader.load().await;
        let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(custom_endpoint)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            iam: aws_sdk_iam::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            parallelism: c.parallelism.max(1),
        }
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// (reads, writes) made so far.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }

    /// The caller's account ID.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        self.read();
        let who = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| call_err("sts:GetCallerIdentity", e))?;
        who.account()
            .map(String::from)
            .ok_or_else(|| AwsError::Unexpected("GetCallerIdentity returned no account".into()))
    }

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
                self.read();
                actual.public_policy_allowed = match self
                    .s3
                    .get_public_access_block()
                    .bucket(&s3.bucket)
                    .send()
                    .await
                {
                    Ok(r) => r.public_access_block_configuration().is_some_and(|c| {
                        !c.block_public_policy().unwrap_or(false)
                            && !c.restrict_public_buckets().unwrap_or(false)
                    }),
                    Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => false,
                    Err(e) => return Err(call_err("s3:GetPublicAccessBlock", e)),
                };
                self.read();
                actual.bucket_policy =
                    match self.s3.get_bucket_policy().bucket(&s3.bucket).send().await {
                        Ok(p) => p.policy().and_then(|p| serde_json::from_str(p).ok()),
                        Err(e) if e.code() == Some("NoSuchBucketPolicy") => None,
                        Err(e) => return Err(call_err("s3:GetBucketPolicy", e)),
                    };
                for key in desired.objects.keys() {
                    self.read();
                    match self
                        .s3
                        .get_object()
                        .bucket(&s3.bucket)
                        .key(key)
                        .send()
                        .await
                    {
                        Ok(o) => {
                            let ct = o.content_type().unwrap_or("").to_string();
                            let body = o.body.collect().await.map_err(|e| {
                                AwsError::Unexpected(format!(
                                    "reading s3://{}/{key}: {e}",
                                    s3.bucket
                                ))
                            })?;
                            actual.objects.insert(
                                key.clone(),
                                (String::from_utf8_lossy(&body.into_bytes()).into_owned(), ct),
                            );
                        }
                        Err(e) if e.code() == Some("NoSuchKey") => {}
                        Err(e) => return Err(call_err("s3:GetObject", e)),
                    }
                }
            }
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
            self.read();
            let page = self
                .iam
                .list_roles()
                .path_prefix(&path)
                .max_items(1000)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| call_err("iam:ListRoles", e))?;
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
            self.read();
            let page = self
                .iam
                .get_account_authorization_details()
                .filter(aws_sdk_iam::types::EntityType::Role)
                .max_items(1000)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| call_err("iam:GetAccountAuthorizationDetails", e))?;
            for r in page.role_detail_list() {
                let Some(name) = r.role_name() else { continue };
                if !wanted.contains(name) && !sessions.contains_key(name) {
                    continue;
                }
                out.insert(
                    name.to_string(),
                    ActualRole {
                        trust: r
                            .assume_role_policy_document()
                            .map(decode_policy)
                            .unwrap_or(Value::Null),
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
                    },
                );
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// ARNs of every IAM OIDC provider in the account.
    async fn provider_arns(&self) -> Result<Vec<String>, AwsError> {
        self.read();
        let providers = self
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| call_err("iam:ListOpenIDConnectProviders", e))?;
        Ok(providers
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn().map(String::from))
            .collect())
    }

    /// One provider's client IDs, thumbprints and tags.
    async fn get_provider(&self, arn: &str) -> Result<ActualProvider, AwsError> {
        self.read();
        let p = self
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .map_err(|e| call_err("iam:GetOpenIDConnectProvider", e))?;
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

    /// One role with its trust policy, policies and tags, if it exists.
    pub async fn role(&self, name: &str) -> Result<Option<ActualRole>, AwsError> {
        self.read_role(name).await
    }

    async fn read_role(&self, name: &str) -> Result<Option<ActualRole>, AwsError> {
        self.read();
        let role = match self.iam.get_role().role_name(name).send().await {
            Ok(r) => r,
            Err(e) if e.code() == Some("NoSuchEntity") => return Ok(None),
            Err(e) => return Err(call_err("iam:GetRole", e)),
        };
        let Some(role) = role.role() else {
            return Ok(None);
        };
        self.read();
        let tags = self
            .iam
            .list_role_tags()
            .role_name(name)
            .send()
            .await
            .map_err(|e| call_err("iam:ListRoleTags", e))?;
        self.read();
        let attached = self
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| call_err("iam:ListAttachedRolePolicies", e))?;
        self.read();
        let inline_names = self
            .iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| call_err("iam:ListRolePolicies", e))?;
        let mut inline = BTreeMap::new();
        for policy in inline_names.policy_names() {
            self.read();
            let doc = self
                .iam
                .get_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .map_err(|e| call_err("iam:GetRolePolicy", e))?;
            inline.insert(policy.clone(), decode_policy(doc.policy_document()));
        }
        Ok(Some(ActualRole {
            trust: role
                .assume_role_policy_document()
                .map(decode_policy)
                .unwrap_or(Value::Null),
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

    /// Whether the bucket holds objects other than `ours`.
    pub async fn bucket_has_other_objects(
        &self,
        bucket: &str,
        ours: &BTreeSet<String>,
    ) -> Result<bool, AwsError> {
        self.read();
        let list = match self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(10)
            .send()
            .await
        {
            Ok(l) => l,
            Err(e) if e.code() == Some("NoSuchBucket") => return Ok(false),
            Err(e) => return Err(call_err("s3:ListObjectsV2", e)),
        };
        Ok(list
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .any(|k| !ours.contains(k)))
    }

    /// Executes one change.
    pub async fn execute(&self, desired: &Desired, change: &Change) -> Result<(), AwsError> {
        let bucket = desired
            .s3
            .as_ref()
            .map(|s| s.bucket.clone())
            .unwrap_or_default();
        match &change.action {
            Action::CreateBucket => {
                let region = desired
                    .s3
                    .as_ref()
                    .map(|s| s.region.clone())
                    .unwrap_or_default();
                let mut req = self.s3.create_bucket().bucket(&bucket);
                if region != "us-east-1" {
                    let cfg = aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                            region.as_str(),
                        ))
                        .build();
                    req = req.create_bucket_configuration(cfg);
                }
                self.write();
                req.send()
                    .await
                    .map_err(|e| call_err("s3:CreateBucket", e))?;
                self.tag_bucket(desired, &bucket).await?;
            }
            Action::TagBucket => self.tag_bucket(desired, &bucket).await?,
            Action::AllowPublicPolicy => {
                let cfg = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(false)
                    .restrict_public_buckets(false)
                    .build();
                self.write();
                self.s3
                    .put_public_access_block()
                    .bucket(&bucket)
                    .public_access_block_configuration(cfg)
                    .send()
                    .await
                    .map_err(|e| call_err("s3:PutPublicAccessBlock", e))?;
            }
            Action::PutBucketPolicy(policy) => {
                self.write();
                self.s3
                    .put_bucket_policy()
                    .bucket(&bucket)
                    .policy(policy.to_string())
                    .send()
                    .await
                    .map_err(|e| call_err("s3:PutBucketPolicy", e))?;
            }
            Action::PutObject { key, body } => {
                self.write();
                self.s3
                    .put_object()
                    .bucket(&bucket)
                    .key(key)
                    .content_type("application/json")
                    .cache_control("max-age=300")
                    .body(ByteStream::from(body.clone().into_bytes()))
                    .send()
                    .await
                    .map_err(|e| call_err("s3:PutObject", e))?;
            }
            Action::CreateProvider(host) => {
                self.write();
                self.iam
                    .create_open_id_connect_provider()
                    .url(format!("https://{host}"))
                    .set_thumbprint_list(
                        (!desired.thumbprints.is_empty()).then(|| desired.thumbprints.clone()),
                    )
                    .set_client_id_list(Some(desired.client_ids.iter().cloned().collect()))
                    .set_tags(Some(tags_iam(&desired.owner_tags())))
                    .send()
                    .await
                    .map_err(|e| call_err("iam:CreateOpenIDConnectProvider", e))?;
            }
            Action::AddClientId(host, id) => {
                let arn = self.provider_arn(host).await?;
                self.write();
                self.iam
                    .add_client_id_to_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .client_id(id)
                    .send()
                    .await
                    .map_err(|e| call_err("iam:AddClientIDToOpenIDConnectProvider", e))?;
            }
            Action::UpdateThumbprints(host, thumbprints) => {
                let arn = self.provider_arn(host).await?;
                self.write();
                self.iam
                    .update_open_id_connect_provider_thumbprint()
                    .open_id_connect_provider_arn(arn)
                    .set_thumbprint_list(Some(thumbprints.clone()))
                    .send()
                    .await
                    .map_err(|e| call_err("iam:UpdateOpenIDConnectProviderThumbprint", e))?;
            }
            Action::TagProvider(host) => {
                let arn = self.provider_arn(host).await?;
                self.write();
                self.iam
                    .tag_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .set_tags(Some(tags_iam(&desired.owner_tags())))
                    .send()
                    .await
                    .map_err(|e| call_err("iam:TagOpenIDConnectProvider", e))?;
            }
            Action::CreateRole(role) => {
                self.write();
                self.iam
                    .create_role()
                    .role_name(&role.name)
                    .path(role_path(&desired.cluster))
                    .assume_role_policy_document(role.trust.to_string())
                    .max_session_duration(role.max_session)
                    .set_permissions_boundary(role.boundary.clone())
                    .description(format!(
                        "IRSA role for cluster {} (managed by irsa)",
                        desired.cluster
                    ))
                    .set_tags(Some(tags_iam(&role.tags)))
                    .send()
                    .await
                    .map_err(|e| call_err("iam:CreateRole", e))?;
            }
            Action::UpdateTrust(name, trust) => {
                self.write();
                self.iam
                    .update_assume_role_policy()
                    .role_name(name)
                    .policy_document(trust.to_string())
                    .send()
                    .await
                    .map_err(|e| call_err("iam:UpdateAssumeRolePolicy", e))?;
            }
            Action::UpdateMaxSession(name, secs) => {
                self.write();
                self.iam
                    .update_role()
                    .role_name(name)
                    .max_session_duration(*secs)
                    .send()
                    .await
                    .map_err(|e| call_err("iam:UpdateRole", e))?;
            }
            Action::TagRole(name, tags) => {
                self.write();
                self.iam
                    .tag_role()
                    .role_name(name)
                    .set_tags(Some(tags_iam(tags)))
                    .send()
                    .await
                    .map_err(|e| call_err("iam:TagRole", e))?;
            }
            Action::PutBoundary(name, arn) => {
                self.write();
                self.iam
                    .put_role_permissions_boundary()
                    .role_name(name)
                    .permissions_boundary(arn)
                    .send()
                    .await
                    .map_err(|e| call_err("iam:PutRolePermissionsBoundary", e))?;
            }
            Action::DeleteBoundary(name) => {
                self.write();
                self.iam
                    .delete_role_permissions_boundary()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| call_err("iam:DeleteRolePermissionsBoundary", e))?;
            }
            Action::AttachPolicy(name, arn) => {
                self.write();
                self.iam
                    .attach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| call_err("iam:AttachRolePolicy", e))?;
            }
            Action::DetachPolicy(name, arn) => self.detach_policy(name, arn).await?,
            Action::PutInline(name, policy, doc) => {
                self.write();
                self.iam
                    .put_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .policy_document(doc.to_string())
                    .send()
                    .await
                    .map_err(|e| call_err("iam:PutRolePolicy", e))?;
            }
            Action::DeleteInline(name, policy) => self.delete_inline(name, policy).await?,
            Action::DeleteRole(name) => {
                if let Some(role) = self.read_role(name).await? {
                    for arn in &role.managed {
                        self.detach_policy(name, arn).await?;
                    }
                    for policy in role.inline.keys() {
                        self.delete_inline(name, policy).await?;
                    }
                    self.write();
                    self.iam
                        .delete_role()
                        .role_name(name)
                        .send()
                        .await
                        .map_err(|e| call_err("iam:DeleteRole", e))?;
                }
            }
            Action::DeleteProvider(arn) => {
                self.write();
                self.iam
                    .delete_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .send()
                    .await
                    .map_err(|e| call_err("iam:DeleteOpenIDConnectProvider", e))?;
            }
            Action::DeleteObject(key) => {
                self.write();
                self.s3
                    .delete_object()
                    .bucket(&bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| call_err("s3:DeleteObject", e))?;
            }
            Action::DeleteBucketPolicy => {
                self.write();
                self.s3
                    .delete_bucket_policy()
                    .bucket(&bucket)
                    .send()
                    .await
                    .map_err(|e| call_err("s3:DeleteBucketPolicy", e))?;
            }
            Action::DeleteBucket => {
                self.write();
                self.s3
                    .delete_bucket()
                    .bucket(&bucket)
                    .send()
                    .await
                    .map_err(|e| call_err("s3:DeleteBucket", e))?;
            }
        }
        Ok(())
    }

    async fn detach_policy(&self, role: &str, arn: &str) -> Result<(), AwsError> {
        self.write();
        self.iam
            .detach_role_policy()
            .role_name(role)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| call_err("iam:DetachRolePolicy", e))?;
        Ok(())
    }

    async fn delete_inline(&self, role: &str, policy: &str) -> Result<(), AwsError> {
        self.write();
        self.iam
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
            .map_err(|e| call_err("iam:DeleteRolePolicy", e))?;
        Ok(())
    }

    /// The bucket's tags (none when it has no tag set).
    async fn bucket_tags(&self, bucket: &str) -> Result<BTreeMap<String, String>, AwsError> {
        self.read();
        match self.s3.get_bucket_tagging().bucket(bucket).send().await {
            Ok(t) => Ok(t
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()),
            Err(e) if e.code() == Some("NoSuchTagSet") => Ok(BTreeMap::new()),
            Err(e) => Err(call_err("s3:GetBucketTagging", e)),
        }
    }

    /// Adds the owner tag to the bucket, keeping its other tags
    /// (`PutBucketTagging` replaces the whole set).
    async fn tag_bucket(&self, desired: &Desired, bucket: &str) -> Result<(), AwsError> {
        let mut tags = self.bucket_tags(bucket).await?;
        tags.extend(desired.owner_tags());
        let tags: Vec<aws_sdk_s3::types::Tag> = tags
            .iter()
            .filter_map(|(k, v)| {
                aws_sdk_s3::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect();
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| AwsError::Unexpected(e.to_string()))?;
        self.write();
        self.s3
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| call_err("s3:PutBucketTagging", e))?;
        Ok(())
    }

    async fn provider_arn(&self, host_path: &str) -> Result<String, AwsError> {
        let arns = self.provider_arns().await?;
        arn_for(&arns, host_path).map(String::from).ok_or_else(|| {
            AwsError::Unexpected(format!("OIDC provider for {host_path} disappeared"))
        })
    }

    /// STS AssumeRoleWithWebIdentity (used by tests and `doctor`).
    pub async fn assume_role_with_web_identity(
        &self,
        role_arn: &str,
        token: &str,
    ) -> Result<String, AwsError> {
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name("irsa-check")
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| call_err("sts:AssumeRoleWithWebIdentity", e))?;
        out.assumed_role_user()
            .map(|u| u.arn().to_string())
            .ok_or_else(|| AwsError::Unexpected("no assumed role user".into()))
    }
}
