//! Pod mutation for IAM roles for service accounts, as a pure function:
//! `(pod JSON, ServiceAccount identity, config) -> JSON Patch`.
//!
//! Behaviour matches `amazon-eks-pod-identity-webhook` (annotations, env
//! order and skip rules, the `aws-iam-token` projected volume and mount),
//! with three deliberate differences: the patch only *adds* what is missing
//! (never replaces a container or an array, so fields unknown to any
//! Kubernetes version survive), an already-mutated pod gets an empty patch,
//! and `skip-containers` is honoured on the ServiceAccount too.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Name of the projected token volume.
pub const VOLUME_NAME: &str = "aws-iam-token";
/// File name of the token inside the volume.
pub const TOKEN_PATH: &str = "token";
/// Smallest token lifetime kube-apiserver accepts, in seconds.
pub const MIN_TOKEN_EXPIRATION: i64 = 600;
/// Default annotation prefix.
pub const DEFAULT_PREFIX: &str = "eks.amazonaws.com";
/// Default token mount path.
pub const DEFAULT_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";

/// Webhook-wide settings (the flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationConfig {
    /// Annotation prefix, e.g. `eks.amazonaws.com`.
    pub annotation_prefix: String,
    /// Default token audience.
    pub audience: String,
    /// Where the token volume is mounted.
    pub mount_path: String,
    /// Default token lifetime in seconds (clamped to at least 600).
    pub token_expiration: i64,
    /// Region for `AWS_DEFAULT_REGION`/`AWS_REGION`, if any.
    pub region: Option<String>,
    /// Default for `AWS_STS_REGIONAL_ENDPOINTS=regional`.
    pub regional_sts: bool,
    /// Pod `fsGroup` to set when the pod has none, so non-root containers can read the token.
    pub fs_group: Option<i64>,
}

impl Default for MutationConfig {
    fn default() -> Self {
        Self {
            annotation_prefix: DEFAULT_PREFIX.into(),
            audience: "sts.amazonaws.com".into(),
            mount_path: DEFAULT_MOUNT_PATH.into(),
            token_expiration: 86400,
            region: None,
            regional_sts: false,
            fs_group: None,
        }
    }
}

/// What a ServiceAccount's annotations say: the only fields the cache keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaIdentity {
    /// `P/role-arn` (None when absent or empty).
    pub role_arn: Option<String>,
    /// `P/audience` (Some("") means: omit the audience).
    pub audience: Option<String>,
    /// `P/sts-regional-endpoints`, when it parses as a bool.
    pub regional_sts: Option<bool>,
    /// `P/token-expiration`, when it parses (already clamped).
    pub token_expiration: Option<i64>,
    /// `P/skip-containers` on the ServiceAccount (an irsa extension).
    pub skip_containers: Vec<String>,
}

impl SaIdentity {
    /// Reads the annotations under `prefix`; `None` if there are none.
    pub fn from_annotations(annotations: &BTreeMap<String, String>, prefix: &str) -> Option<Self> {
        let get = |name: &str| annotations.get(&format!("{prefix}/{name}"));
        let id = Self {
            role_arn: get("role-arn").filter(|s| !s.is_empty()).cloned(),
            audience: get("audience").cloned(),
            regional_sts: get("sts-regional-endpoints").and_then(|s| parse_go_bool(s)),
            token_expiration: get("token-expiration")
                .and_then(|s| parse_go_int(s))
                .map(clamp_expiration),
            skip_containers: get("skip-containers")
                .map(|s| parse_csv_record(s))
                .unwrap_or_default(),
        };
        (id != Self::default()).then_some(id)
    }

    /// Whether a role ARN looks valid (only used to warn; invalid ARNs are still injected).
    pub fn role_arn_looks_valid(arn: &str) -> bool {
        // arn:aws[-partition]:iam::<12 digits>:role/<path and name>
        let mut parts = arn.splitn(6, ':');
        let mut next = || parts.next().unwrap_or_default();
        let (arn_, partition, service, region, account, resource) =
            (next(), next(), next(), next(), next(), next());
        let Some(partition_tail) = partition.strip_prefix("aws") else {
            return false;
        };
        let Some(role) = resource.strip_prefix("role/") else {
            return false;
        };
        arn_ == "arn"
            && service == "iam"
            && region.is_empty()
            && partition_tail
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !role.is_empty()
            && role.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'_' | b'-' | b'/' | b'.' | b'@' | b'+' | b'=' | b',')
            })
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.ParseInt(s, 10, 64)`.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Applies the 600 s minimum.
pub fn clamp_expiration(seconds: i64) -> i64 {
    seconds.max(MIN_TOKEN_EXPIRATION)
}

/// The first record of a CSV document (comma separated, `"` quoting, no trimming);
/// a malformed or empty record yields no names.
pub fn parse_csv_record(s: &str) -> Vec<String> {
    let line = s.split('\n').next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Vec::new();
    }
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Vec::new(),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return fields;
                }
                Some(',') => fields.push(field),
                Some(_) => return Vec::new(),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return fields;
                    }
                    Some(',') => break,
                    Some('"') => return Vec::new(),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// Whether `path.Clean` would return `path` unchanged: not empty, no
/// empty, `.` or `..` segment (but a leading `/`), no trailing `/`.
fn is_clean(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    !body.is_empty()
        && body
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Lexically cleans a unix path like Go's `path.Clean`; a path that is
/// already clean is returned as it is, without a copy.
pub fn clean_path(path: &str) -> Cow<'_, str> {
    if is_clean(path) {
        return Cow::Borrowed(path);
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    Cow::Owned(match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    })
}

/// One RFC 6902 operation; irsa only ever adds. The value is a tag: the
/// [`Outcome`] holding the operation knows the strings it stands for, and
/// serialises the whole patch in one pass (see [`Outcome::patch_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchOp {
    /// Always `add`.
    pub op: &'static str,
    /// JSON pointer.
    pub path: PatchPath,
    /// What is added.
    pub value: PatchValue,
}

/// A JSON pointer into the pod: `/spec/<field>[/<index>]<tail>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchPath {
    field: &'static str,
    index: Option<usize>,
    tail: &'static str,
}

impl PatchPath {
    /// Appends the pointer; every part is fixed ASCII or digits, so it
    /// needs no JSON escaping.
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"/spec/");
        out.extend_from_slice(self.field.as_bytes());
        if let Some(i) = self.index {
            out.push(b'/');
            json_int(out, i64::try_from(i).unwrap_or(i64::MAX));
        }
        out.extend_from_slice(self.tail.as_bytes());
    }
}

impl std::fmt::Display for PatchPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// The env vars irsa adds, in the order it adds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// `AWS_STS_REGIONAL_ENDPOINTS=regional`.
    StsRegional,
    /// `AWS_DEFAULT_REGION`.
    DefaultRegion,
    /// `AWS_REGION`.
    Region,
    /// `AWS_ROLE_ARN`.
    RoleArn,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
    TokenFile,
}

impl EnvKind {
    const ALL: [Self; 5] = [
        Self::StsRegional,
        Self::DefaultRegion,
        Self::Region,
        Self::RoleArn,
        Self::TokenFile,
    ];

    /// The variable's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::StsRegional => "AWS_STS_REGIONAL_ENDPOINTS",
            Self::DefaultRegion => "AWS_DEFAULT_REGION",
            Self::Region => "AWS_REGION",
            Self::RoleArn => "AWS_ROLE_ARN",
            Self::TokenFile => "AWS_WEB_IDENTITY_TOKEN_FILE",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`EnvKind`]s, listed in [`EnvKind`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvSet(u8);

impl EnvSet {
    fn insert(&mut self, kind: EnvKind) {
        self.0 |= kind.bit();
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in the order they are added to a container.
    pub fn iter(self) -> impl Iterator<Item = EnvKind> {
        EnvKind::ALL
            .into_iter()
            .filter(move |k| self.0 & k.bit() != 0)
    }
}

/// What an operation adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchValue {
    /// A new `volumes` array holding the token volume.
    Volumes,
    /// The token volume.
    Volume,
    /// A new `env` array with these variables.
    Envs(EnvSet),
    /// One env var.
    Env(EnvKind),
    /// A new `volumeMounts` array holding the token mount.
    Mounts,
    /// The token mount.
    Mount,
    /// A new `securityContext` with this `fsGroup`.
    SecurityContext(i64),
    /// `fsGroup`.
    FsGroup(i64),
}

fn add(
    field: &'static str,
    index: Option<usize>,
    tail: &'static str,
    value: PatchValue,
) -> PatchOp {
    PatchOp {
        op: "add",
        path: PatchPath { field, index, tail },
        value,
    }
}

/// The strings the operations of one [`Outcome`] stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchValues<'a> {
    /// The role ARN.
    pub role_arn: &'a str,
    /// The region, when one is set.
    pub region: Option<&'a str>,
    /// The token audience (`None`: the API server's default).
    pub audience: Option<&'a str>,
    /// The token lifetime in seconds.
    pub expiration: i64,
    /// Where the token volume is mounted.
    pub mount_path: Cow<'a, str>,
    /// The token file, as the container sees it.
    pub token_file: Cow<'a, str>,
}

/// Appends `s` as a JSON string. Strings without a character JSON must
/// escape (control characters, `"` and `\`) are copied as they are; any
/// other goes through serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20 && b != b'"' && b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn json_int(out: &mut Vec<u8>, n: i64) {
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// The values irsa adds are Kubernetes' `Volume`, `EnvVar`, `VolumeMount`
/// and `PodSecurityContext`, written directly from borrowed strings (a
/// unit test reads each back into k8s-openapi's type, losslessly).
impl PatchValues<'_> {
    fn volume(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":\"");
        out.extend_from_slice(VOLUME_NAME.as_bytes());
        out.extend_from_slice(b"\",\"projected\":{\"sources\":[{\"serviceAccountToken\":{");
        if let Some(audience) = self.audience {
            out.extend_from_slice(b"\"audience\":");
            json_str(out, audience);
            out.push(b',');
        }
        out.extend_from_slice(b"\"expirationSeconds\":");
        json_int(out, self.expiration);
        out.extend_from_slice(b",\"path\":\"");
        out.extend_from_slice(TOKEN_PATH.as_bytes());
        out.extend_from_slice(b"\"}}]}}");
    }

    fn env(&self, kind: EnvKind, out: &mut Vec<u8>) {
        let value = match kind {
            EnvKind::StsRegional => "regional",
            EnvKind::DefaultRegion | EnvKind::Region => self.region.unwrap_or_default(),
            EnvKind::RoleArn => self.role_arn,
            EnvKind::TokenFile => &self.token_file,
        };
        out.extend_from_slice(b"{\"name\":\"");
        out.extend_from_slice(kind.name().as_bytes());
        out.extend_from_slice(b"\",\"value\":");
        json_str(out, value);
        out.push(b'}');
    }

    fn mount(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":\"");
        out.extend_from_slice(VOLUME_NAME.as_bytes());
        out.extend_from_slice(b"\",\"mountPath\":");
        json_str(out, &self.mount_path);
        out.extend_from_slice(b",\"readOnly\":true}");
    }

    fn write_value(&self, value: PatchValue, out: &mut Vec<u8>) {
        match value {
            PatchValue::Volumes => {
                out.push(b'[');
                self.volume(out);
                out.push(b']');
            }
            PatchValue::Volume => self.volume(out),
            PatchValue::Envs(set) => {
                out.push(b'[');
                for (n, kind) in set.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    self.env(kind, out);
                }
                out.push(b']');
            }
            PatchValue::Env(kind) => self.env(kind, out),
            PatchValue::Mounts => {
                out.push(b'[');
                self.mount(out);
                out.push(b']');
            }
            PatchValue::Mount => self.mount(out),
            PatchValue::SecurityContext(gid) => {
                out.extend_from_slice(b"{\"fsGroup\":");
                json_int(out, gid);
                out.push(b'}');
            }
            PatchValue::FsGroup(gid) => json_int(out, gid),
        }
    }
}

/// Why the pod was or was not mutated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The ServiceAccount has no role annotation (or is unknown).
    NoRole,
    /// Patched; the number of containers that changed.
    Mutated {
        /// Containers (init included) that got env vars or a mount.
        containers: usize,
    },
    /// Everything was already in place.
    AlreadyMutated,
}

/// The result of [`mutate`].
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    /// The operations (empty when nothing is to change).
    pub patch: Vec<PatchOp>,
    /// The strings the operations stand for.
    pub values: PatchValues<'a>,
    /// The decision.
    pub decision: Decision,
}

impl Outcome<'_> {
    /// The JSON Patch document, as the AdmissionResponse carries it (before
    /// base64). Names and paths are fixed ASCII, written as they are.
    pub fn patch_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 160 * self.patch.len());
        out.push(b'[');
        for (n, op) in self.patch.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"op\":\"");
            out.extend_from_slice(op.op.as_bytes());
            out.extend_from_slice(b"\",\"path\":\"");
            op.path.write_to(&mut out);
            out.extend_from_slice(b"\",\"value\":");
            self.values.write_value(op.value, &mut out);
            out.push(b'}');
        }
        out.push(b']');
        out
    }
}

/// Why a pod could not be read.
#[derive(Debug, thiserror::Error)]
#[error("request object is not a Pod: {0}")]
pub struct MutateError(pub String);

/// A JSON string, borrowed from the request unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A JSON object of strings (`annotations`, `nodeSelector`), its entries
/// kept in document order; a key given twice reads as its last value, as
/// in a map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pairs<'a>(pub Vec<(Text<'a>, Text<'a>)>);

impl<'a> Pairs<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| **k == *key)
            .map(|(_, v)| &**v)
    }

    /// The value of `<prefix>/<name>`, found without building the key.
    pub fn get_prefixed(&self, prefix: &str, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| {
                k.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('/'))
                    == Some(name)
            })
            .map(|(_, v)| &**v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<Pairs<'a>>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Pairs<'a>, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<Text<'a>, Text<'a>>()? {
                    entries.push(entry);
                }
                Ok(Pairs(entries))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The pod fields the mutation reads, borrowed from the request bytes.
///
/// Field names and shapes are those of k8s-openapi's `Pod` (and a test
/// holds them to it); like k8s-openapi, a missing or `null` field reads as
/// empty. Every other field is skipped unread, so a pod from a newer
/// Kubernetes, with fields no crate knows yet, is read just as well, and the
/// admission path allocates only for what it uses.
#[derive(Debug, Default, Deserialize)]
pub struct PodView<'a> {
    /// `metadata`.
    #[serde(default, borrow)]
    pub metadata: Option<MetaView<'a>>,
    /// `spec`.
    #[serde(default, borrow)]
    pub spec: Option<SpecView<'a>>,
}

/// `metadata`: namespace and annotations.
#[derive(Debug, Default, Deserialize)]
pub struct MetaView<'a> {
    /// `metadata.namespace`.
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    /// `metadata.annotations`.
    #[serde(default, borrow)]
    pub annotations: Option<Pairs<'a>>,
}

/// `spec`: what decides the patch.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    /// `spec.serviceAccountName`.
    #[serde(default, borrow)]
    pub service_account_name: Option<Text<'a>>,
    /// `spec.nodeSelector` (for the Windows token path).
    #[serde(default, borrow)]
    pub node_selector: Option<Pairs<'a>>,
    /// `spec.volumes[].name`.
    #[serde(default, borrow)]
    pub volumes: Option<Vec<Named<'a>>>,
    /// `spec.containers`.
    #[serde(default, borrow)]
    pub containers: Option<Vec<ContainerView<'a>>>,
    /// `spec.initContainers`.
    #[serde(default, borrow)]
    pub init_containers: Option<Vec<ContainerView<'a>>>,
    /// `spec.securityContext.fsGroup`.
    #[serde(default)]
    pub security_context: Option<SecurityView>,
}

/// A container: its name, env var names and volume mount names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    /// `name`.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// `env[].name`.
    #[serde(default, borrow)]
    pub env: Option<Vec<Named<'a>>>,
    /// `volumeMounts[].name`.
    #[serde(default, borrow)]
    pub volume_mounts: Option<Vec<Named<'a>>>,
}

/// Any list item identified by `name` (volume, env var, mount).
#[derive(Debug, Default, Deserialize)]
pub struct Named<'a> {
    /// `name`.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
}

/// `spec.securityContext`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityView {
    /// `fsGroup`.
    #[serde(default)]
    pub fs_group: Option<i64>,
}

impl<'a> PodView<'a> {
    /// Reads the pod from the JSON the apiserver sent.
    pub fn from_json(json: &'a str) -> Result<Self, MutateError> {
        serde_json::from_str(json).map_err(|e| MutateError(e.to_string()))
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.as_ref()?.namespace.as_deref()
    }

    /// `spec.serviceAccountName`, if set.
    pub fn service_account_name(&self) -> Option<&str> {
        self.spec.as_ref()?.service_account_name.as_deref()
    }

    /// The annotation `<prefix>/<name>`, if set.
    pub fn annotation(&self, prefix: &str, name: &str) -> Option<&str> {
        let annotations = self.metadata.as_ref()?.annotations.as_ref()?;
        annotations.get_prefixed(prefix, name)
    }
}

fn name_of<'n>(n: &'n Named<'_>) -> &'n str {
    n.name.as_deref().unwrap_or("")
}

/// Computes the patch for `pod` (as a JSON value), see [`mutate`].
pub fn mutate_pod<'a>(
    pod_json: &Value,
    sa: Option<&'a SaIdentity>,
    cfg: &'a MutationConfig,
) -> Result<Outcome<'a>, MutateError> {
    let pod = PodView::deserialize(pod_json).map_err(|e| MutateError(e.to_string()))?;
    Ok(mutate(&pod, sa, cfg))
}

/// Computes the patch for a pod. Only `add` operations with paths into the
/// pod as received: fields this crate does not know are never touched.
pub fn mutate<'a>(
    pod: &PodView<'_>,
    sa: Option<&'a SaIdentity>,
    cfg: &'a MutationConfig,
) -> Outcome<'a> {
    let Some((sa, role_arn)) = sa.and_then(|s| Some((s, s.role_arn.as_deref()?))) else {
        return Outcome {
            patch: Vec::new(),
            values: PatchValues::default(),
            decision: Decision::NoRole,
        };
    };
    let empty = SpecView::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let prefix = &cfg.annotation_prefix;

    let mut expiration = sa
        .token_expiration
        .unwrap_or_else(|| clamp_expiration(cfg.token_expiration));
    if let Some(v) = pod
        .annotation(prefix, "token-expiration")
        .and_then(parse_go_int)
    {
        expiration = clamp_expiration(v);
    }
    let audience = sa.audience.as_deref().unwrap_or(&cfg.audience);
    let regional = sa.regional_sts.unwrap_or(cfg.regional_sts);
    let pod_skip = pod
        .annotation(prefix, "skip-containers")
        .map(parse_csv_record)
        .unwrap_or_default();
    let skipped = |name: &str| {
        sa.skip_containers.iter().any(|s| s == name) || pod_skip.iter().any(|s| s == name)
    };

    let mount_path = clean_path(&cfg.mount_path);
    let windows = spec.node_selector.as_ref().is_some_and(|selector| {
        ["kubernetes.io/os", "beta.kubernetes.io/os"]
            .iter()
            .any(|k| selector.get(k) == Some("windows"))
    });
    // A clean directory joined with a plain file name is clean, but for
    // the two paths that end in no name.
    let unix_token = match &*mount_path {
        "/" => format!("/{TOKEN_PATH}"),
        "." => TOKEN_PATH.to_string(),
        dir => format!("{dir}/{TOKEN_PATH}"),
    };
    let token_file = if windows {
        format!("C:{}", unix_token.replace('/', "\\"))
    } else {
        unix_token
    };
    let values = PatchValues {
        role_arn,
        region: cfg.region.as_deref().filter(|r| !r.is_empty()),
        audience: (!audience.is_empty()).then_some(audience),
        expiration,
        mount_path,
        token_file: Cow::Owned(token_file),
    };

    let mut patch = Vec::new();
    let has_volume = spec
        .volumes
        .as_ref()
        .is_some_and(|v| v.iter().any(|v| name_of(v) == VOLUME_NAME));
    if !has_volume {
        if spec.volumes.is_none() {
            patch.push(add("volumes", None, "", PatchValue::Volumes));
        } else {
            patch.push(add("volumes", Some(0), "", PatchValue::Volume));
        }
    }

    let mut changed = 0;
    for (field, containers) in [
        ("containers", &spec.containers),
        ("initContainers", &spec.init_containers),
    ] {
        for (i, c) in containers.iter().flatten().enumerate() {
            if skipped(c.name.as_deref().unwrap_or("")) {
                continue;
            }
            let before = patch.len();
            container_ops(&mut patch, field, i, c, values.region.is_some(), regional);
            if patch.len() > before {
                changed += 1;
            }
        }
    }
    if let Some(gid) = cfg.fs_group {
        let has_fs_group = spec
            .security_context
            .as_ref()
            .is_some_and(|s| s.fs_group.is_some());
        if !has_fs_group && !patch.is_empty() {
            if spec.security_context.is_none() {
                patch.push(add(
                    "securityContext",
                    None,
                    "",
                    PatchValue::SecurityContext(gid),
                ));
            } else {
                patch.push(add(
                    "securityContext",
                    None,
                    "/fsGroup",
                    PatchValue::FsGroup(gid),
                ));
            }
        }
    }
    let decision = if patch.is_empty() {
        Decision::AlreadyMutated
    } else {
        Decision::Mutated {
            containers: changed,
        }
    };
    Outcome {
        patch,
        values,
        decision,
    }
}

/// Appends what container `i` of `field` lacks: env vars (same order and
/// skip rules as the Go webhook) and the token mount.
fn container_ops(
    patch: &mut Vec<PatchOp>,
    field: &'static str,
    i: usize,
    c: &ContainerView<'_>,
    with_region: bool,
    regional: bool,
) {
    let env = c.env.as_deref().unwrap_or_default();
    let has = |n: &str| env.iter().any(|e| name_of(e) == n);
    let identity = has("AWS_ROLE_ARN") || has("AWS_WEB_IDENTITY_TOKEN_FILE");
    let region = has("AWS_REGION") || has("AWS_DEFAULT_REGION");
    let sts = has("AWS_STS_REGIONAL_ENDPOINTS");
    if identity && region && sts {
        return;
    }
    let mut new = EnvSet::default();
    if !sts && regional {
        new.insert(EnvKind::StsRegional);
    }
    if !region && with_region {
        new.insert(EnvKind::DefaultRegion);
        new.insert(EnvKind::Region);
    }
    if !identity {
        new.insert(EnvKind::RoleArn);
        new.insert(EnvKind::TokenFile);
    }
    if c.env.is_none() && !new.is_empty() {
        patch.push(add(field, Some(i), "/env", PatchValue::Envs(new)));
    } else {
        patch.extend(
            new.iter()
                .map(|kind| add(field, Some(i), "/env/-", PatchValue::Env(kind))),
        );
    }
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    if !mounts.iter().any(|m| name_of(m) == VOLUME_NAME) {
        if c.volume_mounts.is_none() {
            patch.push(add(field, Some(i), "/volumeMounts", PatchValue::Mounts));
        } else {
            patch.push(add(field, Some(i), "/volumeMounts/-", PatchValue::Mount));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parsers() {
        assert_eq!(parse_go_int("+3600"), Some(3600));
        assert_eq!(parse_go_int(" 3600"), None);
        assert_eq!(parse_go_int("1_000"), None);
        assert_eq!(parse_go_int("99999999999999999999"), None);
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(clamp_expiration(0), 600);
    }

    #[test]
    fn csv_first_record() {
        assert_eq!(parse_csv_record("a,b"), ["a", "b"]);
        assert_eq!(parse_csv_record("a, b"), ["a", " b"]);
        assert_eq!(parse_csv_record("\"a,b\",c\nd"), ["a,b", "c"]);
        assert!(parse_csv_record("a\"b").is_empty());
        assert!(parse_csv_record("").is_empty());
        assert!(parse_csv_record("\"open").is_empty());
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/var//run/./x/../token"), "/var/run/token");
        assert_eq!(clean_path("/a/b/"), "/a/b");
        assert_eq!(clean_path("//a"), "/a");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("."), ".");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path("/a/.b/c"), "/a/.b/c");
        for clean in ["/", "/a", "/var/run/secrets/x", "a/b", "..a/b.."] {
            assert!(
                matches!(clean_path(clean), Cow::Borrowed(p) if p == clean),
                "{clean} is clean"
            );
        }
    }

    /// Every value a patch adds is the JSON of the real Kubernetes type:
    /// it reads into k8s-openapi's type without loss and holds what
    /// irsa means to add.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn patch_values_are_kubernetes_types() {
        use k8s_openapi::api::core::v1::{
            EnvVar, PodSecurityContext, ProjectedVolumeSource, ServiceAccountTokenProjection,
            Volume, VolumeMount, VolumeProjection,
        };
        use serde::de::DeserializeOwned;
        use serde::Serialize;

        fn typed<T: DeserializeOwned + Serialize>(raw: &Value) -> T {
            let t: T = serde_json::from_value(raw.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&t).unwrap(), raw, "lossless");
            t
        }
        let volume = |audience: Option<&str>| Volume {
            name: VOLUME_NAME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: audience.map(Into::into),
                        expiration_seconds: Some(3600),
                        path: TOKEN_PATH.into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mount = VolumeMount {
            name: VOLUME_NAME.into(),
            mount_path: "/var/run/x".into(),
            read_only: Some(true),
            ..Default::default()
        };
        let env = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        };
        let arn = "arn:aws:iam::111122223333:role/a\"b";
        let all = [
            env("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
            env("AWS_DEFAULT_REGION", "eu-west-1"),
            env("AWS_REGION", "eu-west-1"),
            env("AWS_ROLE_ARN", arn),
            env("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/x/token"),
        ];
        let cfg = MutationConfig {
            region: Some("eu-west-1".into()),
            regional_sts: true,
            mount_path: "/var/run//x/".into(),
            token_expiration: 3600,
            fs_group: Some(65534),
            ..Default::default()
        };
        for (audience, shown) in [(Some("aud"), Some("aud")), (Some(""), None)] {
            let sa = SaIdentity {
                role_arn: Some(arn.into()),
                audience: audience.map(Into::into),
                ..Default::default()
            };
            // First: no volumes, env, mounts or securityContext; second: all present.
            let bare = r#"{"spec":{"containers":[{"name":"a"}]}}"#;
            let full = r#"{"spec":{"securityContext":{},"volumes":[],"containers":[{"name":"a","env":[],"volumeMounts":[]}]}}"#;
            for (pod, arrays) in [(bare, true), (full, false)] {
                let view = PodView::from_json(pod).unwrap();
                let outcome = mutate(&view, Some(&sa), &cfg);
                let ops: Vec<Value> = serde_json::from_slice(&outcome.patch_json()).unwrap();
                assert_eq!(ops.len(), if arrays { 4 } else { 8 }, "{ops:?}");
                let mut envs = Vec::new();
                for op in &ops {
                    assert_eq!(op["op"], "add");
                    let (path, value) = (op["path"].as_str().unwrap(), &op["value"]);
                    match path {
                        "/spec/volumes" => assert_eq!(typed::<Vec<Volume>>(value), [volume(shown)]),
                        "/spec/volumes/0" => assert_eq!(typed::<Volume>(value), volume(shown)),
                        "/spec/containers/0/env" => envs.extend(typed::<Vec<EnvVar>>(value)),
                        "/spec/containers/0/env/-" => envs.push(typed::<EnvVar>(value)),
                        "/spec/containers/0/volumeMounts" => {
                            assert_eq!(
                                typed::<Vec<VolumeMount>>(value),
                                std::slice::from_ref(&mount)
                            );
                        }
                        "/spec/containers/0/volumeMounts/-" => {
                            assert_eq!(typed::<VolumeMount>(value), mount);
                        }
                        "/spec/securityContext" => {
                            assert_eq!(typed::<PodSecurityContext>(value).fs_group, Some(65534))
                        }
                        "/spec/securityContext/fsGroup" => assert_eq!(value, 65534),
                        other => panic!("unexpected path {other}"),
                    }
                }
                assert_eq!(envs, all, "env vars in the Go webhook's order");
            }
        }
    }

    #[test]
    fn arn_check() {
        assert!(SaIdentity::role_arn_looks_valid(
            "arn:aws:iam::111122223333:role/s3-reader"
        ));
        assert!(SaIdentity::role_arn_looks_valid(
            "arn:aws-cn:iam::111122223333:role/path/x"
        ));
        assert!(!SaIdentity::role_arn_looks_valid("s3-reader"));
        for bad in [
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam:us-east-1:111122223333:role/x",
            "arn:aws:sts::111122223333:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:iam::111122223333:role/a:b",
            "arn:aws:iam::111122223333:role/a b",
            "arn:azure:iam::111122223333:role/x",
            "arn:aws_x:iam::111122223333:role/x",
            "xrn:aws:iam::111122223333:role/x",
        ] {
            assert!(!SaIdentity::role_arn_looks_valid(bad), "{bad}");
        }
    }

    #[test]
    fn no_annotations_is_none() {
        let mut a = BTreeMap::new();
        a.insert("other/x".to_string(), "y".to_string());
        assert_eq!(SaIdentity::from_annotations(&a, DEFAULT_PREFIX), None);
        a.insert("eks.amazonaws.com/role-arn".into(), "".into());
        assert_eq!(
            SaIdentity::from_annotations(&a, DEFAULT_PREFIX),
            None,
            "empty role is no role"
        );
    }
}
