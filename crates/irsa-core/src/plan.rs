//! Desired AWS state derived from `irsa.yaml`, actual state as read, and
//! the diff between them: a [`Plan`] of [`Change`]s. Pure: the AWS adapter
//! reads [`Actual`] and executes the changes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{json, Value};

use crate::config::IrsaConfig;
use crate::issuer::{JwksPath, S3Location, DISCOVERY_PATH};
use crate::sid;
use crate::trust::{
    partition, policy_length, provider_arn, trust_policy_for, TrustPolicy, TRUST_POLICY_LIMIT,
};

pub use crate::teardown::destroy;

/// IAM's default quota of OIDC providers per account.
pub const MAX_OIDC_PROVIDERS: usize = 100;

/// Tag that marks a resource as created by irsa for a cluster.
pub const OWNER_TAG: &str = "irsa.dev/cluster";

/// What one role should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRole {
    /// Role name.
    pub name: String,
    /// Trust policy.
    pub trust: TrustPolicy,
    /// Managed policy ARNs.
    pub managed: BTreeSet<String>,
    /// Inline policies by name.
    pub inline: BTreeMap<String, Value>,
    /// Maximum session duration in seconds.
    pub max_session: i32,
    /// Permissions boundary policy ARN.
    pub boundary: Option<String>,
    /// Tags (owner tag included).
    pub tags: BTreeMap<String, String>,
}

/// The whole desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Cluster name (owner tag value).
    pub cluster: String,
    /// Where the documents go, if irsa publishes to S3.
    pub s3: Option<S3Location>,
    /// Object key → body of the two documents.
    pub objects: BTreeMap<String, String>,
    /// The bucket policy statement granting public read of exactly those
    /// objects; merged by `Sid` into whatever policy the bucket has.
    pub bucket_statement: Option<Value>,
    /// Provider URL without `https://`.
    pub provider_host_path: String,
    /// Providers of previous issuers (kept while the apiserver accepts them).
    pub previous_host_paths: Vec<String>,
    /// Provider client IDs (the audiences bindings use).
    pub client_ids: BTreeSet<String>,
    /// Provider thumbprints (SHA-1 of the top certificate the issuer's host
    /// serves); empty when AWS does not need them (S3, public CAs).
    pub thumbprints: Vec<String>,
    /// Roles.
    pub roles: Vec<DesiredRole>,
    /// ARNs of this bundle's own providers (issuer and previous issuers):
    /// a role is this bundle's only if it trusts one of them.
    pub own_provider_arns: BTreeSet<String>,
    /// ARNs of every object this issuer may have published (both JWKS
    /// paths), to recognise a statement of an earlier version as ours.
    pub issuer_documents: BTreeSet<String>,
}

impl Desired {
    /// Derives the desired state from the config and rendered documents.
    pub fn from_config(
        cfg: &IrsaConfig,
        account: &str,
        region: &str,
        discovery: &str,
        jwks: &str,
    ) -> Self {
        let part = partition(cfg.issuer.s3.as_ref().map_or(region, |s| s.region.as_str()));
        let owner = |extra: &[(&str, &str)]| {
            let mut tags: BTreeMap<String, String> =
                [(OWNER_TAG.to_string(), cfg.cluster.clone())].into();
            tags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            tags
        };
        let mut objects = BTreeMap::new();
        let mut bucket_statement = None;
        let mut issuer_documents = BTreeSet::new();
        if let Some(s3) = &cfg.issuer.s3 {
            issuer_documents = [
                DISCOVERY_PATH,
                JwksPath::OpenidV1Jwks.as_str(),
                JwksPath::KeysJson.as_str(),
            ]
            .iter()
            .map(|p| format!("arn:{part}:s3:::{}/{}", s3.bucket, s3.key(p)))
            .collect();
            let keys = [
                s3.key(DISCOVERY_PATH),
                s3.key(cfg.issuer.jwks_path.as_str()),
            ];
            objects.insert(keys[0].clone(), discovery.to_string());
            objects.insert(keys[1].clone(), jwks.to_string());
            let resources: Vec<String> = keys
                .iter()
                .map(|k| format!("arn:{part}:s3:::{}/{k}", s3.bucket))
                .collect();
            bucket_statement = Some(json!({
                "Sid": sid::statement_sid(&cfg.cluster, &s3.prefix),
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": resources,
            }));
        }
        let roles = cfg
            .bindings
            .iter()
            .map(|b| DesiredRole {
                name: b.role_name(&cfg.cluster),
                trust: {
                    let issuers: Vec<&crate::issuer::IssuerUrl> = std::iter::once(&cfg.issuer.url)
                        .chain(&cfg.issuer.previous_urls)
                        .chain(&b.extra_issuers)
                        .collect();
                    trust_policy_for(part, account, &issuers, b)
                },
                managed: b.policy_arns.iter().cloned().collect(),
                inline: b.inline_policies.clone().into_iter().collect(),
                max_session: b.max_session_duration.map_or(3600, |d| d as i32),
                boundary: b.permissions_boundary.clone(),
                tags: {
                    let mut tags = b.tags.clone();
                    tags.extend(owner(&[(
                        "irsa.dev/service-account",
                        &format!("{}.{}", b.namespace, b.service_account.replace('*', "_")),
                    )]));
                    tags
                },
            })
            .collect();
        Self {
            cluster: cfg.cluster.clone(),
            s3: cfg.issuer.s3.clone(),
            objects,
            bucket_statement,
            provider_host_path: cfg.issuer.url.host_path().to_string(),
            previous_host_paths: cfg
                .issuer
                .previous_urls
                .iter()
                .map(|u| u.host_path().to_string())
                .collect(),
            client_ids: cfg
                .bindings
                .iter()
                .map(|b| b.audience().to_string())
                .chain(std::iter::once(crate::config::DEFAULT_AUDIENCE.to_string()))
                .collect(),
            roles,
            thumbprints: Vec::new(),
            own_provider_arns: std::iter::once(&cfg.issuer.url)
                .chain(&cfg.issuer.previous_urls)
                .map(|u| provider_arn(part, account, u))
                .collect(),
            issuer_documents,
        }
    }

    /// Host/paths of every provider irsa manages for this cluster, current first.
    pub fn managed_providers(&self) -> Vec<&str> {
        std::iter::once(self.provider_host_path.as_str())
            .chain(self.previous_host_paths.iter().map(String::as_str))
            .collect()
    }

    /// The owner tags.
    pub fn owner_tags(&self) -> BTreeMap<String, String> {
        [(OWNER_TAG.to_string(), self.cluster.clone())].into()
    }

    /// The id of this issuer's bucket-policy statement (see [`crate::sid`]).
    pub fn statement_sid(&self) -> Option<String> {
        let s3 = self.s3.as_ref()?;
        Some(sid::statement_sid(&self.cluster, &s3.prefix))
    }

    /// Whether a bucket-policy statement is this issuer's (its id, or an
    /// earlier version's id on exactly this issuer's documents).
    pub fn is_our_statement(&self, statement: &Value) -> bool {
        self.statement_sid().is_some_and(|id| {
            sid::is_issuer_statement(statement, &id, &self.cluster, &self.issuer_documents)
        })
    }

    /// The statements of `policy` that are not this issuer's.
    pub fn other_statements(&self, policy: Option<&Value>) -> Vec<Value> {
        statements(policy)
            .into_iter()
            .filter(|s| !self.is_our_statement(s))
            .collect()
    }

    /// The bucket policy after merging this cluster's statement into
    /// `current` (replacing an earlier version's statement of this issuer).
    pub fn merged_bucket_policy(&self, current: Option<&Value>) -> Option<Value> {
        let ours = self.bucket_statement.as_ref()?;
        let mut statements = self.other_statements(current);
        statements.push(ours.clone());
        Some(json!({"Version": "2012-10-17", "Statement": statements}))
    }
}

/// The statements of a bucket policy (a single statement object counts).
pub(crate) fn statements(policy: Option<&Value>) -> Vec<Value> {
    match policy.map(|p| &p["Statement"]) {
        Some(Value::Array(a)) => a.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    }
}

/// A role as read from IAM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActualRole {
    /// Trust policy (decoded JSON).
    pub trust: TrustPolicy,
    /// Attached managed policies.
    pub managed: BTreeSet<String>,
    /// Inline policies.
    pub inline: BTreeMap<String, Value>,
    /// Max session duration.
    pub max_session: i32,
    /// Permissions boundary policy ARN.
    pub boundary: Option<String>,
    /// IAM path (irsa creates roles under [`role_path`]).
    pub path: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// The IAM path irsa creates a cluster's roles under, so they can be listed.
pub fn role_path(cluster: &str) -> String {
    format!("/irsa/{cluster}/")
}

/// The provider as read from IAM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActualProvider {
    /// ARN.
    pub arn: String,
    /// Client IDs.
    pub client_ids: BTreeSet<String>,
    /// Thumbprints.
    pub thumbprints: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Actual state, as read by the adapter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Actual {
    /// Bucket tags when the bucket exists (None: no bucket).
    pub bucket: Option<BTreeMap<String, String>>,
    /// Whether Block Public Access already allows a public bucket policy.
    pub public_policy_allowed: bool,
    /// Current bucket policy.
    pub bucket_policy: Option<Value>,
    /// Object key → (body, content type) for the objects irsa manages.
    pub objects: BTreeMap<String, (String, String)>,
    /// The providers that exist for this bundle's issuers (current and
    /// previous), and any other provider trusting documents served from the
    /// issuer bucket, by host/path. Only the first kind is ever changed.
    pub providers: BTreeMap<String, ActualProvider>,
    /// How many OIDC providers the account has in all.
    pub account_providers: usize,
    /// Roles named by bindings that exist.
    pub roles: BTreeMap<String, ActualRole>,
    /// Every role under the cluster's path ([`role_path`]): those that are
    /// this bundle's ([`Desired::role_owner`]) and no longer bound are
    /// deleted; the plan decides, not the reader.
    pub path_roles: BTreeMap<String, ActualRole>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the bucket (tagged right after).
    CreateBucket,
    /// Tag the bucket as owned (adoption, or finishing an interrupted create).
    TagBucket,
    /// Allow bucket policies to grant public read (ACLs stay blocked).
    AllowPublicPolicy,
    /// Put the bucket policy.
    PutBucketPolicy(Value),
    /// Upload one document.
    PutObject {
        /// Key.
        key: String,
        /// Body.
        body: String,
    },
    /// Create the OIDC provider for a host/path.
    CreateProvider(String),
    /// Add a client ID to the provider for a host/path.
    AddClientId(String, String),
    /// Tag the provider for a host/path as owned.
    TagProvider(String),
    /// Replace the thumbprints of the provider for a host/path.
    UpdateThumbprints(String, Vec<String>),
    /// Create a role with trust policy, session duration and tags.
    CreateRole(DesiredRole),
    /// Replace a role's trust policy.
    UpdateTrust(String, TrustPolicy),
    /// Change max session duration.
    UpdateMaxSession(String, i32),
    /// Re-tag a role.
    TagRole(String, BTreeMap<String, String>),
    /// Set a role's permissions boundary.
    PutBoundary(String, String),
    /// Remove a role's permissions boundary.
    DeleteBoundary(String),
    /// Attach a managed policy.
    AttachPolicy(String, String),
    /// Detach a managed policy.
    DetachPolicy(String, String),
    /// Put an inline policy.
    PutInline(String, String, Value),
    /// Delete an inline policy.
    DeleteInline(String, String),
    /// Delete a role (after detaching everything).
    DeleteRole(String),
    /// Delete the OIDC provider.
    DeleteProvider(String),
    /// Delete one document.
    DeleteObject(String),
    /// Delete the bucket policy.
    DeleteBucketPolicy,
    /// Delete the (empty) bucket.
    DeleteBucket,
}

/// When a change may run. Phases run in order, each only after every
/// change of the one before succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Phase {
    /// Everything except taking hosting down.
    #[default]
    Main,
    /// Removing what serves the issuer's documents (objects, bucket policy
    /// statement, bucket; any other hosting later): runs after trust is
    /// gone, and each step only if a fresh read of IAM finds no provider
    /// that still trusts what it removes ([`crate::ownership::hosting_blockers`]).
    HostingRemoval,
}

/// A change with its human rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `+` create, `~` update, `-` delete.
    pub symbol: char,
    /// Resource description.
    pub resource: String,
    /// What changes.
    pub detail: String,
    /// The step.
    pub action: Action,
    /// When it may run.
    pub phase: Phase,
}

impl Change {
    /// Changes in the same lane run in order; lanes are independent and
    /// may run concurrently: the bucket and its objects, the provider,
    /// and each role.
    pub fn lane(&self) -> String {
        match &self.action {
            Action::CreateRole(r) => format!("role:{}", r.name),
            Action::UpdateTrust(n, _)
            | Action::UpdateMaxSession(n, _)
            | Action::TagRole(n, _)
            | Action::PutBoundary(n, _)
            | Action::DeleteBoundary(n)
            | Action::AttachPolicy(n, _)
            | Action::DetachPolicy(n, _)
            | Action::PutInline(n, _, _)
            | Action::DeleteInline(n, _)
            | Action::DeleteRole(n) => format!("role:{n}"),
            Action::CreateProvider(h)
            | Action::AddClientId(h, _)
            | Action::TagProvider(h)
            | Action::UpdateThumbprints(h, _) => {
                format!("provider:{h}")
            }
            Action::DeleteProvider(arn) => format!("provider:{arn}"),
            Action::CreateBucket
            | Action::TagBucket
            | Action::AllowPublicPolicy
            | Action::PutBucketPolicy(_)
            | Action::PutObject { .. }
            | Action::DeleteObject(_)
            | Action::DeleteBucketPolicy
            | Action::DeleteBucket => "s3".into(),
        }
    }
}

/// Splits changes into their phases, in phase order (empty phases left out).
pub fn phases(changes: &[Change]) -> Vec<(Phase, Vec<Change>)> {
    let mut by_phase: BTreeMap<Phase, Vec<Change>> = BTreeMap::new();
    for c in changes {
        by_phase.entry(c.phase).or_default().push(c.clone());
    }
    by_phase.into_iter().collect()
}

/// Groups changes into lanes, keeping plan order within each lane and
/// the order in which lanes first appear.
pub fn lanes(changes: &[Change]) -> Vec<Vec<&Change>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_lane: BTreeMap<String, Vec<&Change>> = BTreeMap::new();
    for c in changes {
        let lane = c.lane();
        if !by_lane.contains_key(&lane) {
            order.push(lane.clone());
        }
        by_lane.entry(lane).or_default().push(c);
    }
    order
        .into_iter()
        .filter_map(|l| by_lane.remove(&l))
        .collect()
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:<60} {}", self.symbol, self.resource, self.detail)
    }
}

/// The diff.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Changes in execution order.
    pub changes: Vec<Change>,
    /// Resources irsa will not touch, with the reason and fix.
    pub conflicts: Vec<String>,
    /// Steps irsa holds back because running them could let someone else
    /// take over trust, each with the reason and fix: a plan with any does
    /// not finish the job.
    pub withheld: Vec<String>,
    /// Resources left alone that are someone else's and in nobody's way.
    pub notes: Vec<String>,
}

pub(crate) fn change(
    symbol: char,
    resource: impl Into<String>,
    detail: impl Into<String>,
    action: Action,
) -> Change {
    Change {
        symbol,
        resource: resource.into(),
        detail: detail.into(),
        action,
        phase: Phase::Main,
    }
}

/// Computes the changes that make `actual` match `desired`. Resources that
/// exist without this cluster's owner tag are reported as conflicts, never
/// changed, unless their name is in `adopt`.
pub fn diff(desired: &Desired, actual: &Actual, adopt: &BTreeSet<String>) -> Plan {
    let mut plan = Plan::default();
    let owned = |tags: &BTreeMap<String, String>| tags.get(OWNER_TAG) == Some(&desired.cluster);
    if let Some(s3) = &desired.s3 {
        let bucket = &s3.bucket;
        let bucket_res = format!("s3 bucket {bucket}");
        // Owned: irsa manages public access and its policy statement.
        // Shared: another cluster's irsa owns the bucket; irsa manages only
        // this cluster's statement. Foreign: objects only, unless adopted.
        let (manage_bpa, manage_statement) = match &actual.bucket {
            None => {
                plan.changes.push(change(
                    '+',
                    &bucket_res,
                    format!(
                        "region {}, tagged {OWNER_TAG}={}",
                        s3.region, desired.cluster
                    ),
                    Action::CreateBucket,
                ));
                (true, true)
            }
            Some(tags) if owned(tags) => (true, true),
            Some(_) if adopt.contains(bucket) => {
                plan.changes.push(change(
                    '~',
                    &bucket_res,
                    format!("adopt: tag {OWNER_TAG}={}", desired.cluster),
                    Action::TagBucket,
                ));
                (true, true)
            }
            Some(tags) if tags.contains_key(OWNER_TAG) => {
                if !actual.public_policy_allowed {
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
        if manage_bpa && !actual.public_policy_allowed {
            plan.changes.push(change(
                '~',
                format!("{bucket_res} public access block"),
                "ACLs blocked; a bucket policy may grant public read",
                Action::AllowPublicPolicy,
            ));
        }
        if manage_statement {
            if let (Some(ours), Some(sid)) = (&desired.bucket_statement, desired.statement_sid()) {
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
                    } else {
                        format!(
                            "add statement {sid}: public s3:GetObject on the two documents only"
                        )
                    };
                    if let Some(merged) =
                        desired.merged_bucket_policy(actual.bucket_policy.as_ref())
                    {
                        plan.changes.push(change(
                            '~',
                            format!("{bucket_res} policy"),
                            what,
                            Action::PutBucketPolicy(merged),
                        ));
                    }
                }
            }
        }
        for (key, body) in &desired.objects {
            let res = format!("s3://{bucket}/{key}");
            match actual.objects.get(key) {
                None => plan.changes.push(change(
                    '+',
                    res,
                    "application/json",
                    Action::PutObject {
                        key: key.clone(),
                        body: body.clone(),
                    },
                )),
                Some((b, ct)) if b != body || ct != "application/json" => {
                    let why = if b != body {
                        "content differs"
                    } else {
                        "Content-Type is not application/json"
                    };
                    plan.changes.push(change(
                        '~',
                        res,
                        why,
                        Action::PutObject {
                            key: key.clone(),
                            body: body.clone(),
                        },
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let mut creating = 0;
    for host in desired.managed_providers() {
        let provider_res = format!("iam oidc-provider {host}");
        let current = host == desired.provider_host_path;
        match actual.providers.get(host) {
            None if current => {
                creating += 1;
                plan.changes.push(change(
                    '+',
                    &provider_res,
                    format!("client ids {:?}", desired.client_ids),
                    Action::CreateProvider(host.to_string()),
                ))
            }
            None => plan.conflicts.push(format!(
                "{provider_res} (a previous issuer) does not exist: tokens of the old issuer cannot reach STS; remove it from issuer.previousUrls if no pod uses it"
            )),
            Some(p) if owned(&p.tags) || adopt.contains(host) => {
                for id in desired.client_ids.difference(&p.client_ids) {
                    plan.changes.push(change(
                        '~',
                        &provider_res,
                        format!("add client id {id}"),
                        Action::AddClientId(host.to_string(), id.clone()),
                    ));
                }
                if current && !desired.thumbprints.is_empty() && p.thumbprints != desired.thumbprints {
                    plan.changes.push(change(
                        '~',
                        &provider_res,
                        format!("thumbprints {:?} -> {:?}", p.thumbprints, desired.thumbprints),
                        Action::UpdateThumbprints(host.to_string(), desired.thumbprints.clone()),
                    ));
                }
                if !owned(&p.tags) {
                    plan.changes.push(change(
                        '~',
                        &provider_res,
                        "adopt: tag as owned",
                        Action::TagProvider(host.to_string()),
                    ));
                }
            }
            Some(p) => {
                let missing: Vec<&String> = desired.client_ids.difference(&p.client_ids).collect();
                if !missing.is_empty() {
                    plan.conflicts.push(format!("{provider_res} exists without {OWNER_TAG}={} and lacks client ids {missing:?}: add them yourself or pass --adopt {host}", desired.cluster));
                }
            }
        }
    }
    if creating > 0 && actual.account_providers + creating > MAX_OIDC_PROVIDERS {
        plan.conflicts.push(format!(
            "the account has {} IAM OIDC providers; creating {creating} more exceeds the default quota of {MAX_OIDC_PROVIDERS}: request an increase (Service Quotas, IAM \"OpenId connect providers per account\") or delete unused providers",
            actual.account_providers
        ));
        plan.changes
            .retain(|c| !matches!(c.action, Action::CreateProvider(_)));
    }
    for role in &desired.roles {
        let res = format!("iam role {}", role.name);
        let size = policy_length(&role.trust);
        if size > TRUST_POLICY_LIMIT {
            let statements = role.trust["Statement"].as_array().map_or(0, Vec::len);
            plan.conflicts.push(format!(
                "{res}: its trust policy is {size} characters ({statements} issuer statements) and IAM allows {TRUST_POLICY_LIMIT} by default: trust fewer issuers per role (split the binding with roleName), drop retired issuers from issuer.previousUrls, or raise the \"Role trust policy length\" quota (up to 4096)"
            ));
            continue;
        }
        let Some(act) = actual.roles.get(&role.name) else {
            plan.changes.push(change(
                '+',
                &res,
                format!(
                    "{} managed, {} inline policies",
                    role.managed.len(),
                    role.inline.len()
                ),
                Action::CreateRole(role.clone()),
            ));
            for arn in &role.managed {
                plan.changes.push(change(
                    '+',
                    format!("{res} policy"),
                    arn,
                    Action::AttachPolicy(role.name.clone(), arn.clone()),
                ));
            }
            for (name, doc) in &role.inline {
                plan.changes.push(change(
                    '+',
                    format!("{res} inline policy"),
                    name,
                    Action::PutInline(role.name.clone(), name.clone(), doc.clone()),
                ));
            }
            continue;
        };
        if !adopt.contains(&role.name) {
            if let Some(why) = desired.foreign_role_reason(&role.name, act) {
                plan.conflicts.push(format!(
                    "{why}: irsa will not modify it; rename the binding (roleName) or pass --adopt {} to take it over",
                    role.name
                ));
                continue;
            }
        }
        if act.trust != role.trust {
            plan.changes.push(change(
                '~',
                &res,
                "trust policy",
                Action::UpdateTrust(role.name.clone(), role.trust.clone()),
            ));
        }
        if act.max_session != role.max_session {
            plan.changes.push(change(
                '~',
                &res,
                format!("max session {} -> {}", act.max_session, role.max_session),
                Action::UpdateMaxSession(role.name.clone(), role.max_session),
            ));
        }
        if act.boundary != role.boundary {
            match &role.boundary {
                Some(arn) => plan.changes.push(change(
                    '~',
                    &res,
                    format!("permissions boundary {arn}"),
                    Action::PutBoundary(role.name.clone(), arn.clone()),
                )),
                None => plan.changes.push(change(
                    '~',
                    &res,
                    "remove permissions boundary",
                    Action::DeleteBoundary(role.name.clone()),
                )),
            }
        }
        let missing_tags = role.tags.iter().any(|(k, v)| act.tags.get(k) != Some(v));
        if missing_tags {
            plan.changes.push(change(
                '~',
                &res,
                "tags",
                Action::TagRole(role.name.clone(), role.tags.clone()),
            ));
        }
        for arn in role.managed.difference(&act.managed) {
            plan.changes.push(change(
                '+',
                format!("{res} policy"),
                arn,
                Action::AttachPolicy(role.name.clone(), arn.clone()),
            ));
        }
        for arn in act.managed.difference(&role.managed) {
            plan.changes.push(change(
                '-',
                format!("{res} policy"),
                arn,
                Action::DetachPolicy(role.name.clone(), arn.clone()),
            ));
        }
        for (name, doc) in &role.inline {
            if act.inline.get(name) != Some(doc) {
                plan.changes.push(change(
                    '~',
                    format!("{res} inline policy"),
                    name,
                    Action::PutInline(role.name.clone(), name.clone(), doc.clone()),
                ));
            }
        }
        for name in act.inline.keys().filter(|n| !role.inline.contains_key(*n)) {
            plan.changes.push(change(
                '-',
                format!("{res} inline policy"),
                name,
                Action::DeleteInline(role.name.clone(), name.clone()),
            ));
        }
    }
    for (name, role) in &actual.path_roles {
        if desired.roles.iter().any(|r| &r.name == name) {
            continue;
        }
        match desired.foreign_role_reason(name, role) {
            None => plan.changes.push(change(
                '-',
                format!("iam role {name}"),
                "no longer bound in irsa.yaml",
                Action::DeleteRole(name.clone()),
            )),
            Some(why) => plan.notes.push(format!("{why}: left alone")),
        }
    }
    plan
}

/// Whether the plan writes anything.
impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IrsaConfig {
        IrsaConfig::from_yaml(
            "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://b.s3.us-east-1.amazonaws.com/demo\n  s3: {bucket: b-oidc, region: us-east-1, prefix: demo}\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\nbindings:\n- {namespace: default, serviceAccount: app, policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}\n",
        )
        .expect("valid")
    }

    #[test]
    fn fresh_then_converged_then_drift() {
        let desired =
            Desired::from_config(&cfg(), "111122223333", "us-east-1", "{}", "{\"keys\":[]}");
        let plan = diff(&desired, &Actual::default(), &BTreeSet::new());
        let symbols: String = plan.changes.iter().map(|c| c.symbol).collect();
        assert_eq!(
            symbols,
            "+~~+++++",
            "{:#?}",
            plan.changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        assert!(plan.conflicts.is_empty());
        let role = &desired.roles[0];
        let converged = Actual {
            bucket: Some(desired.owner_tags()),
            public_policy_allowed: true,
            bucket_policy: desired.merged_bucket_policy(None),
            objects: desired
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), (v.clone(), "application/json".into())))
                .collect(),
            providers: [(
                desired.provider_host_path.clone(),
                ActualProvider {
                    arn: "a".into(),
                    client_ids: desired.client_ids.clone(),
                    thumbprints: Vec::new(),
                    tags: desired.owner_tags(),
                },
            )]
            .into(),
            account_providers: 1,
            roles: [(
                role.name.clone(),
                ActualRole {
                    trust: role.trust.clone(),
                    managed: role.managed.clone(),
                    inline: BTreeMap::new(),
                    max_session: 3600,
                    boundary: None,
                    path: role_path("demo"),
                    tags: role.tags.clone(),
                },
            )]
            .into(),
            path_roles: BTreeMap::new(),
        };
        let mut converged = converged;
        converged.path_roles = converged.roles.clone();
        assert!(diff(&desired, &converged, &BTreeSet::new()).is_empty());
        let mut drift = converged.clone();
        drift
            .roles
            .get_mut(&role.name)
            .expect("role")
            .managed
            .clear();
        drift
            .roles
            .get_mut(&role.name)
            .expect("role")
            .tags
            .remove("irsa.dev/service-account");
        let plan = diff(&desired, &drift, &BTreeSet::new());
        assert_eq!(plan.changes.len(), 2, "{:?}", plan.changes);
        // Not ours: a conflict, never a change.
        let mut foreign = converged;
        foreign
            .roles
            .get_mut(&role.name)
            .expect("role")
            .tags
            .clear();
        foreign.roles.get_mut(&role.name).expect("role").max_session = 7200;
        let plan = diff(&desired, &foreign, &BTreeSet::new());
        assert!(
            plan.changes.is_empty() && plan.conflicts.len() == 1,
            "{plan:?}"
        );
        assert!(!diff(&desired, &foreign, &[role.name.clone()].into())
            .changes
            .is_empty());
    }

    #[test]
    fn shared_bucket_keeps_other_statements() {
        let desired =
            Desired::from_config(&cfg(), "111122223333", "us-east-1", "{}", "{\"keys\":[]}");
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
                Action::PutBucketPolicy(p) => Some(p.clone()),
                _ => None,
            })
            .expect("policy change");
        assert_eq!(put["Statement"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            put["Statement"][0], other,
            "the other cluster's statement is kept"
        );
        assert!(
            !plan
                .changes
                .iter()
                .any(|c| matches!(c.action, Action::AllowPublicPolicy | Action::TagBucket)),
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
                Action::PutBucketPolicy(p) => Some(p.clone()),
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
    fn lanes_keep_order_within_a_resource() {
        let desired =
            Desired::from_config(&cfg(), "111122223333", "us-east-1", "{}", "{\"keys\":[]}");
        let plan = diff(&desired, &Actual::default(), &BTreeSet::new());
        let lanes = lanes(&plan.changes);
        assert_eq!(lanes.len(), 3, "s3, provider, one role");
        assert!(matches!(lanes[0][0].action, Action::CreateBucket));
        assert!(matches!(lanes[2][0].action, Action::CreateRole(_)));
        assert!(matches!(lanes[2][1].action, Action::AttachPolicy(..)));
        assert_eq!(
            lanes.iter().map(Vec::len).sum::<usize>(),
            plan.changes.len()
        );
    }

    #[test]
    fn issuer_change_keeps_the_old_provider_and_trust() {
        let text = "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://new.example.com/demo\n  previousUrls: [https://old.example.com/demo]\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\nbindings:\n- {namespace: default, serviceAccount: app}\n";
        let cfg = IrsaConfig::from_yaml(text).expect("valid");
        let desired = Desired::from_config(&cfg, "111122223333", "us-east-1", "{}", "{}");
        let trust = &desired.roles[0].trust;
        assert_eq!(trust["Statement"].as_array().map(Vec::len), Some(2));
        assert!(trust["Statement"][1]["Condition"]["StringEquals"]
            .get("old.example.com/demo:sub")
            .is_some());
        // The old provider is expected to exist: a conflict if it does not,
        // never created anew; the new one is created.
        let plan = diff(&desired, &Actual::default(), &BTreeSet::new());
        assert!(plan
            .changes
            .iter()
            .any(|c| c.action == Action::CreateProvider("new.example.com/demo".into())));
        assert!(!plan
            .changes
            .iter()
            .any(|c| c.action == Action::CreateProvider("old.example.com/demo".into())));
        assert!(
            plan.conflicts
                .iter()
                .any(|c| c.contains("old.example.com/demo")),
            "{plan:?}"
        );
        // Destroy removes both owned providers.
        let owned = ActualProvider {
            arn: "arn:aws:iam::111122223333:oidc-provider/old.example.com/demo".into(),
            client_ids: desired.client_ids.clone(),
            thumbprints: Vec::new(),
            tags: desired.owner_tags(),
        };
        let actual = Actual {
            providers: [
                ("old.example.com/demo".to_string(), owned.clone()),
                (
                    "new.example.com/demo".to_string(),
                    ActualProvider {
                        arn: "n".into(),
                        ..owned
                    },
                ),
            ]
            .into(),
            ..Actual::default()
        };
        let gone = destroy(&desired, &actual, true);
        assert_eq!(
            gone.changes
                .iter()
                .filter(|c| matches!(c.action, Action::DeleteProvider(_)))
                .count(),
            2
        );
        // The account's provider quota.
        let full = Actual {
            account_providers: MAX_OIDC_PROVIDERS,
            ..Actual::default()
        };
        let plan = diff(&desired, &full, &BTreeSet::new());
        assert!(!plan
            .changes
            .iter()
            .any(|c| matches!(c.action, Action::CreateProvider(_))));
        assert!(
            plan.conflicts.iter().any(|c| c.contains("quota")),
            "{plan:?}"
        );
    }
}
