//! The declarative `irsa.yaml` model.

use serde::{Deserialize, Deserializer, Serialize};

use crate::hosting::{CloudFrontConfig, PendingUrl};
use crate::issuer::{IssuerUrl, JwksPath, S3Location};
use crate::key::Algorithm;
use crate::timestamp::Timestamp;

mod pod_identity;
pub use pod_identity::{
    BindingMode, PodIdentityConfig, BROKER_ROLE_SUFFIX, DEFAULT_BROKER_NAMESPACE,
    DEFAULT_BROKER_SERVICE_ACCOUNT,
};

/// The `apiVersion` this build reads and writes.
pub const API_VERSION: &str = "irsa.dev/v1alpha1";
/// The `kind` of the config document.
pub const KIND: &str = "IrsaConfig";
/// Default token audience for AWS STS.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// IAM's limit on role names.
pub const MAX_ROLE_NAME: usize = 64;

/// Problems in `irsa.yaml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// YAML syntax or shape.
    #[error("irsa.yaml is not valid: {0}")]
    Yaml(String),
    /// Semantic problems, one per line.
    #[error("irsa.yaml has {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The whole `irsa.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IrsaConfig {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Cluster name; prefixes role names and tags AWS resources.
    pub cluster: String,
    /// Where tokens' issuer is served.
    pub issuer: IssuerConfig,
    /// Signing keys, in publication order.
    pub keys: Vec<KeyConfig>,
    /// Role bindings.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// The Pod Identity broker (`irsa agent`), for `mode: pod-identity`
    /// bindings; defaults apply when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<PodIdentityConfig>,
}

/// The issuer section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer URL (`--service-account-issuer`). Absent only while a
    /// CloudFront distribution without a custom domain is yet to be
    /// created: read it with [`IssuerConfig::url`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<IssuerUrl>,
    /// The S3 bucket that hosts the documents, if irsa publishes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
    /// Serve the bucket privately through CloudFront instead of as a
    /// public bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudfront: Option<CloudFrontConfig>,
    /// Where the JWKS lives under the issuer.
    #[serde(default)]
    pub jwks_path: JwksPath,
    /// Issuers this cluster used before `url` (when changing the issuer):
    /// the apiserver still accepts them after the new one, roles still
    /// trust them, and their IAM OIDC providers are kept, until removed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_urls: Vec<IssuerUrl>,
}

/// Lifecycle of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// The apiserver signs with it.
    Active,
    /// Published ahead of becoming active: verifies, does not sign.
    Next,
    /// Signed until a switch; still verifies and is published until the
    /// tokens it signed have expired.
    Previous,
    /// Rotated out: neither published nor given to the apiserver; kept in
    /// irsa.yaml as a record.
    Retired,
}

impl KeyState {
    /// Whether the key is published in the JWKS and verifies tokens.
    pub fn verifies(self) -> bool {
        !matches!(self, Self::Retired)
    }
}

/// One signing key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyConfig {
    /// Public key file, relative to `irsa.yaml`.
    pub public_key: String,
    /// Private key file, relative to `irsa.yaml`; absent when kept elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Signing algorithm.
    pub algorithm: Algorithm,
    /// Lifecycle state.
    pub state: KeyState,
    /// When the key was created, for rotation decisions.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "created"
    )]
    pub created: Option<Timestamp>,
    /// When the key started signing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "activated"
    )]
    pub activated: Option<Timestamp>,
    /// When the key stopped signing; its tokens expire after that.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deactivated"
    )]
    pub deactivated: Option<Timestamp>,
    /// When irsa first observed the cluster signing with this key (a
    /// TokenRequest token carrying its kid): the retire stage's wait counts
    /// from here when that is later than the switch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "first_observed"
    )]
    pub first_observed: Option<Timestamp>,
}

/// Reads a key's optional timestamp; an error names `field` (the YAML
/// path the parser adds stops at the key).
fn timestamp<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<Timestamp>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| {
            text.parse()
                .map_err(|e| serde::de::Error::custom(format!("{field}: {e}")))
        })
        .transpose()
}

fn created<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    timestamp(d, "created")
}

fn activated<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    timestamp(d, "activated")
}

fn deactivated<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    timestamp(d, "deactivated")
}

fn first_observed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    timestamp(d, "firstObserved")
}

/// A service account (or pattern) bound to an IAM role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Binding {
    /// Namespace.
    pub namespace: String,
    /// Service account name, or a pattern with `*`.
    pub service_account: String,
    /// How the role is assumed: `irsa` (default) or `pod-identity`.
    #[serde(default, skip_serializing_if = "BindingMode::is_irsa")]
    pub mode: BindingMode,
    /// IAM role name; defaults to `{cluster}-{namespace}-{serviceAccount}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// Managed policy ARNs to attach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_arns: Vec<String>,
    /// Inline policies by name (JSON policy documents written as YAML).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub inline_policies: std::collections::BTreeMap<String, serde_json::Value>,
    /// Token audience; defaults to `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Maximum session duration in seconds (3600-43200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_duration: Option<u32>,
    /// Permissions boundary policy ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// Extra tags on the role (irsa's own `irsa.dev/*` tags are added).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Other clusters' issuers whose tokens for the same namespace and
    /// service account may assume this role too (their providers must exist
    /// in this account; irsa trusts them but does not manage them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_issuers: Vec<IssuerUrl>,
    /// Other clusters' broker roles (ARNs) that may assume this
    /// pod-identity role too, each for its own cluster's pods of the same
    /// namespace and ServiceAccount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_brokers: Vec<String>,
}

impl IssuerConfig {
    /// The region that decides the AWS partition: the bucket's, else us-east-1.
    pub fn region(&self) -> &str {
        self.s3.as_ref().map_or("us-east-1", |s| s.region.as_str())
    }

    /// The issuer URL, or [`PendingUrl`] while the CloudFront distribution
    /// that gives it does not exist yet.
    pub fn url(&self) -> Result<&IssuerUrl, PendingUrl> {
        self.url.as_ref().ok_or(PendingUrl)
    }

    /// Every issuer URL this cluster's tokens may carry: the current one
    /// (when known) and the previous ones.
    pub fn all_urls(&self) -> impl Iterator<Item = &IssuerUrl> {
        self.url.iter().chain(&self.previous_urls)
    }
}

impl Binding {
    /// The role name, explicit or derived: `{cluster}-{namespace}-{sa}`
    /// (`*` spelled `any`). A derived name is always a valid IAM role name,
    /// whatever the input: if it is longer than IAM's 64 characters, or has
    /// characters IAM does not allow (only in a config that fails
    /// validation), those are replaced by `_`, it is cut to 55 and suffixed
    /// with `-` and 8 hex digits of the SHA-256 of the full name, so it stays
    /// deterministic and distinct.
    pub fn role_name(&self, cluster: &str) -> String {
        self.role_name.clone().unwrap_or_else(|| {
            let sa = self.service_account.replace('*', "any");
            let name = format!("{cluster}-{}-{sa}", self.namespace);
            let clean: String = name
                .chars()
                .map(|c| if is_role_name_char(c) { c } else { '_' })
                .collect();
            if clean == name && name.len() <= MAX_ROLE_NAME {
                return name;
            }
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
            let hex: String = digest.as_ref()[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            // `clean` is ASCII: its characters are its bytes.
            let head: String = clean.chars().take(MAX_ROLE_NAME - 9).collect();
            format!("{head}-{hex}")
        })
    }
    /// The audience, explicit or default.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE)
    }
}

pub use crate::names::is_role_name_char;
use crate::names::{is_dns_label, is_dns_subdomain, is_role_name};

impl IrsaConfig {
    /// The ARN of this bundle's role `name`: under the cluster's path, in
    /// the partition of the issuer's region, in `account`. `None` shows
    /// `placeholder` in the account's place (the other parts are checked
    /// all the same).
    pub fn role_arn(
        &self,
        name: &str,
        account: Option<&str>,
        placeholder: &str,
    ) -> Result<String, crate::arn::RoleArnProblem> {
        let arn = crate::arn::RoleArn::new(
            crate::Partition::of_region(self.issuer.region()).id(),
            account.unwrap_or("000000000000"),
            &crate::plan::role_path(&self.cluster),
            name,
        )?;
        Ok(match account {
            Some(_) => arn.to_string(),
            None => arn.display_account_as(placeholder).to_string(),
        })
    }
}

impl IrsaConfig {
    /// Parses and validates `irsa.yaml` text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Renders deterministic YAML with a header comment.
    pub fn to_yaml(&self) -> String {
        let body = serde_yaml::to_string(self).unwrap_or_default();
        format!("# irsa configuration: the single source of truth for this cluster's issuer, keys and roles.\n# Documents, trust policies and apiserver flags are derived from it (`irsa render`, `irsa validate`).\n{body}")
    }

    /// Checks every rule, reporting all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        if self.api_version != API_VERSION {
            p.push(format!(
                "apiVersion is {:?}; this irsa reads {API_VERSION:?}",
                self.api_version
            ));
        }
        if self.kind != KIND {
            p.push(format!("kind is {:?}; expected {KIND:?}", self.kind));
        }
        if !is_dns_label(&self.cluster) || self.cluster.len() > 32 {
            p.push(format!(
                "cluster {:?} must be 1-32 lower-case letters, digits or '-'",
                self.cluster
            ));
        }
        if let Some(s3) = &self.issuer.s3 {
            if let Err(e) = S3Location::new(&s3.bucket, &s3.region, &s3.prefix) {
                p.push(e.to_string());
            } else if s3.prefix.starts_with('/') || s3.prefix.ends_with('/') {
                p.push(format!(
                    "issuer.s3.prefix {:?} must not start or end with '/'",
                    s3.prefix
                ));
            }
        }
        match (&self.issuer.cloudfront, &self.issuer.url) {
            (Some(cf), url) => p.extend(cf.problems(url.as_ref(), self.issuer.s3.as_ref())),
            (None, None) => p.push(
                "issuer.url is missing: set it to the https:// URL the documents are served at (irsa init writes it)".to_string(),
            ),
            (None, Some(_)) => {}
        }
        let active = self
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .count();
        if active != 1 {
            p.push(format!(
                "keys: exactly one key must be `state: active`, found {active}"
            ));
        }
        for (i, prev) in self.issuer.previous_urls.iter().enumerate() {
            if self.issuer.url.as_ref() == Some(prev)
                || self.issuer.previous_urls[..i].contains(prev)
            {
                p.push(format!(
                    "issuer.previousUrls: {} is listed twice or equals issuer.url",
                    prev.as_str()
                ));
            }
        }
        let next = self
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Next)
            .count();
        if next > 1 {
            p.push(format!(
                "keys: at most one key may be `state: next`, found {next}"
            ));
        }
        let mut publics: Vec<&str> = Vec::new();
        for k in &self.keys {
            if publics.contains(&k.public_key.as_str()) {
                p.push(format!("keys: {:?} is listed twice", k.public_key));
            }
            publics.push(&k.public_key);
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut roles: Vec<String> = Vec::new();
        for b in &self.bindings {
            let at = format!("binding {}/{}", b.namespace, b.service_account);
            if !is_dns_label(&b.namespace) {
                p.push(format!(
                    "{at}: namespace must be a DNS label (lower-case letters, digits, '-')"
                ));
            }
            let pattern_ok =
                b.service_account == "*" || is_dns_subdomain(&b.service_account.replace('*', "x"));
            if !pattern_ok {
                p.push(format!(
                    "{at}: serviceAccount must be a DNS subdomain name, or a pattern with '*'"
                ));
            }
            let key = (b.namespace.clone(), b.service_account.clone());
            if seen.contains(&key) {
                p.push(format!("{at}: bound twice; merge the two entries"));
            }
            seen.push(key);
            let role = b.role_name(&self.cluster);
            let role_ok = is_role_name(&role);
            if !role_ok {
                p.push(format!("{at}: role name {role:?} must be 1-64 characters of letters, digits and +=,.@_-"));
            }
            if roles.contains(&role) {
                p.push(format!(
                    "{at}: role name {role:?} is used by another binding; set roleName"
                ));
            }
            roles.push(role);
            if let Some(d) = b.max_session_duration {
                if !(3600..=43200).contains(&d) {
                    p.push(format!(
                        "{at}: maxSessionDuration {d} must be between 3600 and 43200 seconds"
                    ));
                }
            }
            for arn in &b.policy_arns {
                if !arn.starts_with("arn:")
                    || arn.split(':').count() < 6
                    || !arn.contains(":policy/")
                {
                    p.push(format!(
                        "{at}: {arn:?} is not a policy ARN (arn:aws:iam::aws:policy/NAME)"
                    ));
                }
            }
            for (name, doc) in &b.inline_policies {
                if !crate::names::is_policy_name(name) {
                    p.push(format!("{at}: inline policy name {name:?} must be 1-128 characters of letters, digits and +=,.@_-"));
                }
                if !crate::names::is_policy_document(doc) {
                    p.push(format!("{at}: inline policy {name:?} has no \"Statement\": it must be an IAM policy document ({{\"Version\": \"2012-10-17\", \"Statement\": [...]}})"));
                }
            }
            if let Some(arn) = &b.permissions_boundary {
                if !arn.starts_with("arn:") || !arn.contains(":policy/") {
                    p.push(format!(
                        "{at}: permissionsBoundary {arn:?} is not a policy ARN"
                    ));
                }
            }
            for (k, v) in &b.tags {
                if k.starts_with("irsa.dev/") || k.starts_with("aws:") {
                    p.push(format!(
                        "{at}: tag {k:?} is reserved (irsa.dev/ and aws: prefixes)"
                    ));
                } else if k.is_empty() || k.len() > 128 || v.len() > 256 {
                    p.push(format!(
                        "{at}: tag {k:?} must have a 1-128 character key and a value of at most 256"
                    ));
                }
            }
            for extra in &b.extra_issuers {
                if self.issuer.url.as_ref() == Some(extra)
                    || self.issuer.previous_urls.contains(extra)
                {
                    p.push(format!(
                        "{at}: extraIssuers lists {}, which this cluster already trusts",
                        extra.as_str()
                    ));
                }
            }
            if b.tags.len() > 45 {
                p.push(format!(
                    "{at}: at most 45 tags (IAM allows 50; irsa uses a few)"
                ));
            }
            if b.audience.as_deref() == Some("") {
                p.push(format!(
                    "{at}: audience is empty; omit it for sts.amazonaws.com"
                ));
            }
        }
        self.pod_identity_problems(&mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p))
        }
    }

    /// The active key.
    pub fn active_key(&self) -> Option<&KeyConfig> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
apiVersion: irsa.dev/v1alpha1
kind: IrsaConfig
cluster: demo
issuer:
  url: https://irsa-demo-oidc.s3.us-east-1.amazonaws.com/demo
  s3: {bucket: irsa-demo-oidc, region: us-east-1, prefix: demo}
keys:
  - {publicKey: keys/a.pub, privateKey: keys/a.key, algorithm: RS256, state: active}
bindings:
  - {namespace: default, serviceAccount: s3-echoer, policyArns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]}
"#;

    #[test]
    fn hand_written_inline_policies_are_held_to_the_rules_bind_applies() {
        let yaml = GOOD.replace(
            "policyArns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]}",
            "inlinePolicies: {\"read all!\": {Statement: []}, ok: {Version: '2012-10-17'}}}",
        );
        let err = IrsaConfig::from_yaml(&yaml)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("inline policy name \"read all!\" must be 1-128 characters"),
            "{err}"
        );
        assert!(
            err.contains("inline policy \"ok\" has no \"Statement\""),
            "{err}"
        );
        let fine = GOOD.replace(
            "policyArns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]}",
            "inlinePolicies: {read-all: {Version: '2012-10-17', Statement: []}}}",
        );
        IrsaConfig::from_yaml(&fine).expect("a named policy document is fine");
    }

    #[test]
    fn parses_and_round_trips() {
        let cfg = IrsaConfig::from_yaml(GOOD).expect("valid");
        assert_eq!(cfg.issuer.jwks_path, JwksPath::OpenidV1Jwks);
        assert_eq!(cfg.bindings[0].role_name("demo"), "demo-default-s3-echoer");
        assert_eq!(cfg.bindings[0].audience(), DEFAULT_AUDIENCE);
        let mut long = cfg.bindings[0].clone();
        long.namespace = "n".repeat(40);
        long.service_account = "s".repeat(40);
        let name = long.role_name("demo");
        assert_eq!(name.len(), MAX_ROLE_NAME);
        assert_eq!(name, long.role_name("demo"), "deterministic");
        long.service_account = format!("{}t", "s".repeat(39));
        assert_ne!(long.role_name("demo"), name, "distinct after the cut");
        assert_eq!(&long.role_name("demo")[..55], &name[..55]);
        assert_eq!(IrsaConfig::from_yaml(&cfg.to_yaml()).expect("valid"), cfg);
    }

    #[test]
    fn reports_every_problem() {
        let bad = GOOD
            .replace("state: active", "state: next")
            .replace("v1alpha1", "v9")
            .replace("namespace: default", "namespace: Default");
        let err = IrsaConfig::from_yaml(&bad)
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("3 problem(s)"), "{err}");
        assert!(err.contains("exactly one key"));
    }

    #[test]
    fn cloudfront_mode_reads_writes_and_explains_a_pending_url() {
        let pending = GOOD.replace(
            "  url: https://irsa-demo-oidc.s3.us-east-1.amazonaws.com/demo\n",
            "",
        );
        let err = IrsaConfig::from_yaml(&pending).expect_err("no url, no cloudfront");
        assert!(err.to_string().contains("issuer.url is missing"), "{err}");
        let pending = pending.replace("prefix: demo}", "prefix: demo}\n  cloudfront: {}");
        let cfg = IrsaConfig::from_yaml(&pending).expect("pending is valid");
        let why = cfg.issuer.url().expect_err("pending").to_string();
        assert!(why.contains("run `irsa apply` first"), "{why}");
        assert_eq!(IrsaConfig::from_yaml(&cfg.to_yaml()).expect("valid"), cfg);
        let custom = pending.replace(
            "cloudfront: {}",
            "cloudfront: {aliases: [oidc.example.com], certificateArn: 'arn:aws:acm:eu-west-1:111122223333:certificate/abc'}\n  url: https://oidc.example.com",
        );
        let err = IrsaConfig::from_yaml(&custom)
            .expect_err("region")
            .to_string();
        assert!(
            err.contains("only from us-east-1") && err.contains("1 problem"),
            "{err}"
        );
        let custom = custom.replace("eu-west-1:1111", "us-east-1:1111");
        let cfg = IrsaConfig::from_yaml(&custom).expect("custom domain");
        assert_eq!(
            cfg.issuer.url().map(IssuerUrl::as_str),
            Ok("https://oidc.example.com")
        );
        assert_eq!(IrsaConfig::from_yaml(&cfg.to_yaml()).expect("valid"), cfg);
    }

    #[test]
    fn unknown_fields_and_bad_issuer_are_rejected() {
        assert!(
            IrsaConfig::from_yaml(&GOOD.replace("cluster: demo", "cluster: demo\nclustr: x"))
                .is_err()
        );
        let err = IrsaConfig::from_yaml(&GOOD.replace("amazonaws.com/demo", "amazonaws.com/demo/"))
            .expect_err("slash");
        assert!(err.to_string().contains("ends with '/'"), "{err}");
    }

    /// The `keys:` block of `text`, as the lines after `keys:` up to the next top-level key.
    fn keys_block(text: &str) -> String {
        text.lines()
            .skip_while(|l| *l != "keys:")
            .skip(1)
            .take_while(|l| l.starts_with("- ") || l.starts_with("  "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn key_timestamps_read_and_write_byte_identically() {
        for text in [
            include_str!("../../../../examples/s3-issuer/irsa.yaml"),
            include_str!("../../../../examples/custom-issuer/irsa.yaml"),
        ] {
            let cfg = IrsaConfig::from_yaml(text).expect("valid");
            let created = cfg.keys[0].created.expect("created");
            assert_eq!(created.to_string(), "2026-12-01T05:22:00Z");
            assert_eq!(cfg.keys[0].activated, Some(created));
            // How irsa writes the key list back (yamledit::replace_keys).
            let block = keys_block(text);
            assert!(block.contains("created: 2026-12-01T05:22:00Z"), "{block}");
            assert_eq!(serde_yaml::to_string(&cfg.keys).expect("render"), block);
            assert_eq!(IrsaConfig::from_yaml(&cfg.to_yaml()).expect("valid"), cfg);
        }
        let stamped = GOOD.replace(
            "state: active}",
            "state: active, created: 2026-01-01T00:00:00Z, activated: '2026-01-01T00:00:00Z', deactivated: \"2026-01-02T00:00:00Z\"}",
        );
        let cfg = IrsaConfig::from_yaml(&stamped).expect("valid");
        let rendered = cfg.to_yaml();
        assert!(
            rendered.contains("  created: 2026-01-01T00:00:00Z\n  activated: 2026-01-01T00:00:00Z\n  deactivated: 2026-01-02T00:00:00Z\n"),
            "{rendered}"
        );
        assert_eq!(IrsaConfig::from_yaml(&rendered).expect("valid"), cfg);
        assert_eq!(
            IrsaConfig::from_yaml(&rendered).expect("valid").to_yaml(),
            rendered,
            "a file irsa wrote reads and writes byte-identically"
        );
    }

    #[test]
    fn a_bad_key_timestamp_is_an_error_naming_the_field() {
        for (field, value) in [
            ("created", "yesterday"),
            ("activated", "2026-13-01T00:00:00Z"),
            ("deactivated", "2026-01-01"),
        ] {
            let bad = GOOD.replace(
                "state: active}",
                &format!("state: active, {field}: {value}}}"),
            );
            let err = IrsaConfig::from_yaml(&bad)
                .expect_err("bad time")
                .to_string();
            assert!(
                err.contains(&format!("keys[0]: {field}: "))
                    && err.contains(&format!("{value:?}"))
                    && err.contains("write it like 2026-01-01T00:00:00Z"),
                "{err}"
            );
        }
    }
}
