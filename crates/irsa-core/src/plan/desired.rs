//! The desired state: what `irsa.yaml` and the rendered documents ask of
//! S3 and IAM.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::OWNER_TAG;
use crate::config::{Binding, IrsaConfig};
use crate::discovery::Discovery;
use crate::hosting::{distribution_arn, CloudFrontNames, CLOUDFRONT_PRINCIPAL};
use crate::issuer::{JwksPath, S3Location, DISCOVERY_PATH};
use crate::jwks::Jwks;
use crate::partition::Partition;
use crate::sid;
use crate::trust::{provider_arn, trust_policy_for, TrustPolicy};

/// Which of irsa's roles a role is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoleKind {
    /// A binding's role, assumed with a projected token through the OIDC
    /// provider.
    #[default]
    Irsa,
    /// The Pod Identity broker's own role.
    Broker,
    /// A binding's role assumed by the broker for its pods: its trust names
    /// the broker role, which must exist first and go last.
    PodIdentity,
}

/// Tag on the broker role and the pod-identity roles (`pod-identity-broker`,
/// `pod-identity`); IRSA roles do not carry it.
pub const MODE_TAG: &str = "irsa.dev/mode";
/// [`MODE_TAG`]'s value on the broker role.
pub const BROKER_MODE: &str = "pod-identity-broker";

/// What one role should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRole {
    /// Role name.
    pub name: String,
    /// Which of irsa's roles it is.
    pub kind: RoleKind,
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
    /// a role is this bundle's only if it trusts one of them (or the broker,
    /// below).
    pub own_provider_arns: BTreeSet<String>,
    /// The Pod Identity broker role's name and ARN (named whether or not a
    /// binding uses it: roles that still trust it are this bundle's).
    pub broker: (String, String),
    /// The external principal the broker role trusts, if configured.
    pub broker_principal: Option<String>,
    /// Whether any role trusts the current issuer's OIDC provider (false
    /// when every binding is pod-identity and the broker runs as an
    /// external principal): then no provider is created.
    pub needs_provider: bool,
    /// ARNs of every object this issuer may have published (both JWKS
    /// paths), to recognise a statement of an earlier version as ours.
    pub issuer_documents: BTreeSet<String>,
    /// The private bucket's CloudFront distribution, in CloudFront mode.
    pub cloudfront: Option<DesiredCloudFront>,
    /// The issuer URL is not known yet (CloudFront without a custom
    /// domain, before the distribution exists): only hosting is planned.
    pub url_pending: bool,
}

/// What the CloudFront mode asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredCloudFront {
    /// Names and the origin.
    pub names: CloudFrontNames,
    /// The account (for the distribution's ARN).
    pub account: String,
    /// Custom domain names.
    pub aliases: Vec<String>,
    /// ACM certificate for the aliases.
    pub certificate_arn: Option<String>,
    /// The two documents' paths under the issuer (`/…`), for invalidations.
    pub paths: Vec<String>,
    /// ARNs of the two objects CloudFront may read.
    pub object_arns: Vec<String>,
    /// The distribution's own host name recorded as the issuer URL (no
    /// custom domain): the distribution must be the one with that name.
    pub recorded_host: Option<String>,
}

impl Desired {
    /// Derives the desired state from the config and the two documents
    /// the issuer serves (rendered here, as S3 is to hold them).
    pub fn from_config(
        cfg: &IrsaConfig,
        account: &str,
        region: &str,
        discovery: &Discovery,
        jwks: &Jwks,
    ) -> Self {
        let partition =
            Partition::of_region(cfg.issuer.s3.as_ref().map_or(region, |s| s.region.as_str()));
        let part = partition.id();
        let owner = |extra: &[(&str, &str)]| {
            let mut tags: BTreeMap<String, String> =
                [(OWNER_TAG.to_string(), cfg.cluster.clone())].into();
            tags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            tags
        };
        let mut objects = BTreeMap::new();
        let mut bucket_statement = None;
        let mut issuer_documents = BTreeSet::new();
        let mut cloudfront = None;
        let url_pending = cfg.issuer.url().is_err();
        if let Some(s3) = &cfg.issuer.s3 {
            issuer_documents = [
                DISCOVERY_PATH,
                JwksPath::OpenidV1Jwks.as_str(),
                JwksPath::KeysJson.as_str(),
            ]
            .iter()
            .map(|p| crate::arn::s3_object(partition, &s3.bucket, &s3.key(p)))
            .collect();
            let keys = [
                s3.key(DISCOVERY_PATH),
                s3.key(cfg.issuer.jwks_path.as_str()),
            ];
            // Never publish a document whose issuer is not yet known.
            if !url_pending {
                objects.insert(keys[0].clone(), discovery.to_json());
                objects.insert(keys[1].clone(), jwks.to_json());
            }
            let resources: Vec<String> = keys
                .iter()
                .map(|k| crate::arn::s3_object(partition, &s3.bucket, k))
                .collect();
            if let Some(cf) = &cfg.issuer.cloudfront {
                // The statement names the distribution: see `Desired::statement`.
                cloudfront = Some(DesiredCloudFront {
                    names: CloudFrontNames::new(&cfg.cluster, s3),
                    account: account.to_string(),
                    aliases: cf.aliases.clone(),
                    certificate_arn: cf.certificate_arn.clone(),
                    paths: [DISCOVERY_PATH, cfg.issuer.jwks_path.as_str()]
                        .iter()
                        .map(|p| format!("/{p}"))
                        .collect(),
                    object_arns: resources,
                    recorded_host: match (cfg.issuer.url(), cf.aliases.is_empty()) {
                        (Ok(url), true) => Some(url.host().to_string()),
                        _ => None,
                    },
                });
            } else {
                bucket_statement = Some(json!({
                    "Sid": sid::statement_sid(&cfg.cluster, &s3.prefix),
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": resources,
                }));
            }
        }
        let path = super::role_path(&cfg.cluster);
        let role_arn =
            |name: &str| crate::arn::role_of_name(part, account, &format!("{}{name}", &path[1..]));
        let pi = cfg.pod_identity();
        let broker_name = pi.role_name(&cfg.cluster);
        let broker_arn = role_arn(&broker_name);
        let role_tags = |b: &Binding, extra: &[(&str, &str)]| {
            let mut tags = b.tags.clone();
            let sa = format!("{}.{}", b.namespace, b.service_account.replace('*', "_"));
            let mut own = vec![("irsa.dev/service-account", sa.as_str())];
            own.extend_from_slice(extra);
            tags.extend(owner(&own));
            tags
        };
        let mut roles: Vec<DesiredRole> = cfg
            .bindings
            .iter()
            .filter(|_| !url_pending)
            .map(|b| {
                let (kind, trust, extra): (_, _, &[(&str, &str)]) = if b.is_pod_identity() {
                    let brokers: Vec<String> = std::iter::once(broker_arn.clone())
                        .chain(b.extra_brokers.iter().cloned())
                        .collect();
                    (
                        RoleKind::PodIdentity,
                        crate::podidentity::role_trust(&brokers, &b.namespace, &b.service_account),
                        &[(MODE_TAG, "pod-identity")],
                    )
                } else {
                    let issuers: Vec<&crate::issuer::IssuerUrl> =
                        cfg.issuer.all_urls().chain(&b.extra_issuers).collect();
                    (
                        RoleKind::Irsa,
                        trust_policy_for(part, account, &issuers, b),
                        &[],
                    )
                };
                DesiredRole {
                    name: b.role_name(&cfg.cluster),
                    kind,
                    trust,
                    managed: b.policy_arns.iter().cloned().collect(),
                    inline: b.inline_policies.clone().into_iter().collect(),
                    max_session: b.max_session_duration.map_or(3600, |d| d as i32),
                    boundary: b.permissions_boundary.clone(),
                    tags: role_tags(b, extra),
                }
            })
            .collect();
        if cfg.has_pod_identity_bindings() && !url_pending {
            let (ns, sa) = pi.service_account();
            let broker_binding = Binding {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
                ..Binding::default()
            };
            let trust = match &pi.broker_principal {
                Some(principal) => crate::podidentity::external_broker_trust(principal),
                None => {
                    let issuers: Vec<&crate::issuer::IssuerUrl> = cfg.issuer.all_urls().collect();
                    trust_policy_for(part, account, &issuers, &broker_binding)
                }
            };
            let assumable: Vec<String> = roles
                .iter()
                .filter(|r| r.kind == RoleKind::PodIdentity)
                .map(|r| role_arn(&r.name))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            roles.insert(
                0,
                DesiredRole {
                    name: broker_name.clone(),
                    kind: RoleKind::Broker,
                    trust,
                    managed: BTreeSet::new(),
                    inline: [(
                        crate::podidentity::BROKER_POLICY_NAME.to_string(),
                        crate::podidentity::broker_policy(&assumable),
                    )]
                    .into(),
                    max_session: 3600,
                    boundary: None,
                    tags: role_tags(&broker_binding, &[(MODE_TAG, BROKER_MODE)]),
                },
            );
        }
        Self {
            cluster: cfg.cluster.clone(),
            s3: cfg.issuer.s3.clone(),
            objects,
            bucket_statement,
            provider_host_path: cfg
                .issuer
                .url()
                .map(|u| u.host_path().to_string())
                .unwrap_or_default(),
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
            own_provider_arns: cfg
                .issuer
                .all_urls()
                .map(|u| provider_arn(part, account, u))
                .collect(),
            issuer_documents,
            cloudfront,
            url_pending,
            broker: (broker_name, broker_arn),
            broker_principal: pi.broker_principal.clone(),
            needs_provider: cfg.needs_oidc_provider(),
        }
    }

    /// The desired state while the issuer URL is not known yet
    /// ([`crate::hosting::PendingUrl`]): the bucket, the OAC and the
    /// distribution only; no document, provider or role.
    pub fn hosting_only(cfg: &IrsaConfig, account: &str, region: &str) -> Self {
        // Never rendered: `url_pending` keeps the objects out.
        let somewhere = cfg.issuer.s3.clone().unwrap_or(S3Location {
            bucket: "pending".into(),
            region: region.into(),
            prefix: String::new(),
        });
        let unused = crate::issuer::IssuerUrl::for_s3(&somewhere);
        let discovery = Discovery::for_issuer(&unused, cfg.issuer.jwks_path, &[]);
        Self::from_config(cfg, account, region, &discovery, &Jwks::default())
    }

    /// Host/paths of every provider irsa manages for this cluster, current first.
    pub fn managed_providers(&self) -> Vec<&str> {
        std::iter::once(self.provider_host_path.as_str())
            .filter(|h| !h.is_empty())
            .chain(self.previous_host_paths.iter().map(String::as_str))
            .collect()
    }

    /// This issuer's bucket-policy statement: public read of the two
    /// documents, or in CloudFront mode read by the CloudFront service
    /// principal on behalf of the distribution `distribution_id` only
    /// (`None` until that distribution exists).
    pub fn statement(&self, distribution_id: Option<&str>) -> Option<Value> {
        let Some(cf) = &self.cloudfront else {
            return self.bucket_statement.clone();
        };
        let id = distribution_id?;
        Some(json!({
            "Sid": self.statement_sid()?,
            "Effect": "Allow",
            "Principal": {"Service": CLOUDFRONT_PRINCIPAL},
            "Action": "s3:GetObject",
            "Resource": cf.object_arns,
            "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn(&cf.account, id)}},
        }))
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
        self.merged_policy(self.bucket_statement.as_ref()?, current)
    }

    /// The bucket policy after merging `ours` into `current`.
    pub fn merged_policy(&self, ours: &Value, current: Option<&Value>) -> Option<Value> {
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
