//! Pod mutation for IAM roles for service accounts, as a pure function:
//! `(pod JSON, ServiceAccount identity, config) -> JSON Patch`.
//!
//! Behaviour matches `amazon-eks-pod-identity-webhook` (annotations, env
//! order and skip rules, the `aws-iam-token` projected volume and mount),
//! with three deliberate differences: the patch only *adds* what is missing
//! (never replaces a container or an array, so fields unknown to any
//! Kubernetes version survive), an already-mutated pod gets an empty patch,
//! and `skip-containers` is honoured on the ServiceAccount too.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, ProjectedVolumeSource, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use serde::{Deserialize, Serialize};
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
        let Some(rest) = arn.strip_prefix("arn:aws") else {
            return false;
        };
        let Some((partition_tail, rest)) = rest.split_once(":iam::") else {
            return false;
        };
        let Some((account, role)) = rest.split_once(":role/") else {
            return false;
        };
        partition_tail
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && account.len() == 12
            && account.chars().all(|c| c.is_ascii_digit())
            && !role.is_empty()
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-/.@+=,".contains(c))
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

/// Lexically cleans a unix path like Go's `path.Clean`.
pub fn clean_path(path: &str) -> String {
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
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// One RFC 6902 operation; irsa only ever adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    /// Always `add`.
    pub op: &'static str,
    /// JSON pointer.
    pub path: String,
    /// Value to add (typed, serialised straight into the patch).
    pub value: PatchValue,
}

/// The values irsa adds, as k8s-openapi types.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PatchValue {
    /// A new `volumes` array.
    Volumes(Vec<Volume>),
    /// One volume.
    Volume(Box<Volume>),
    /// A new `env` array.
    Envs(Vec<EnvVar>),
    /// One env var.
    Env(EnvVar),
    /// A new `volumeMounts` array.
    Mounts(Vec<VolumeMount>),
    /// One mount.
    Mount(VolumeMount),
    /// Anything else (fsGroup, securityContext).
    Json(Value),
}

fn add(path: String, value: PatchValue) -> PatchOp {
    PatchOp {
        op: "add",
        path,
        value,
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

/// The result of [`mutate_pod`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The patch (empty when nothing is to change).
    pub patch: Vec<PatchOp>,
    /// The decision.
    pub decision: Decision,
}

/// Why a pod could not be read.
#[derive(Debug, thiserror::Error)]
#[error("request object is not a Pod: {0}")]
pub struct MutateError(pub String);

/// Reads a pod from the JSON the apiserver sent.
pub fn parse_pod(json: &str) -> Result<Pod, MutateError> {
    serde_json::from_str(json).map_err(|e| MutateError(e.to_string()))
}

/// Computes the patch for `pod` (as a JSON value), see [`mutate`].
pub fn mutate_pod(
    pod_json: &Value,
    sa: Option<&SaIdentity>,
    cfg: &MutationConfig,
) -> Result<Outcome, MutateError> {
    let pod = Pod::deserialize(pod_json).map_err(|e| MutateError(e.to_string()))?;
    Ok(mutate(pod, sa, cfg))
}

/// Computes the patch for a pod. Only `add` operations with paths into the
/// pod as received: fields this crate does not know are never touched.
pub fn mutate(pod: Pod, sa: Option<&SaIdentity>, cfg: &MutationConfig) -> Outcome {
    let Some(role_arn) = sa.and_then(|s| s.role_arn.as_deref()) else {
        return Outcome {
            patch: Vec::new(),
            decision: Decision::NoRole,
        };
    };
    let sa = sa.cloned().unwrap_or_default();
    let spec = pod.spec.unwrap_or_default();
    let annotations = pod.metadata.annotations.unwrap_or_default();
    let prefix = &cfg.annotation_prefix;

    let mut expiration = sa
        .token_expiration
        .unwrap_or_else(|| clamp_expiration(cfg.token_expiration));
    if let Some(v) = annotations
        .get(&format!("{prefix}/token-expiration"))
        .and_then(|s| parse_go_int(s))
    {
        expiration = clamp_expiration(v);
    }
    let audience = sa.audience.clone().unwrap_or_else(|| cfg.audience.clone());
    let regional = sa.regional_sts.unwrap_or(cfg.regional_sts);
    let mut skip = sa.skip_containers.clone();
    if let Some(s) = annotations.get(&format!("{prefix}/skip-containers")) {
        skip.extend(parse_csv_record(s));
    }

    let mount_path = clean_path(&cfg.mount_path);
    let unix_token = clean_path(&format!("{mount_path}/{TOKEN_PATH}"));
    let selector = spec.node_selector.clone().unwrap_or_default();
    let windows = ["kubernetes.io/os", "beta.kubernetes.io/os"]
        .iter()
        .any(|k| selector.get(*k).map(String::as_str) == Some("windows"));
    let token_file = if windows {
        format!("C:{}", unix_token.replace('/', "\\"))
    } else {
        unix_token
    };

    let mut patch = Vec::new();
    let has_volume = spec
        .volumes
        .as_ref()
        .is_some_and(|v| v.iter().any(|v| v.name == VOLUME_NAME));
    if !has_volume {
        let volume = Volume {
            name: VOLUME_NAME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: (!audience.is_empty()).then(|| audience.clone()),
                        expiration_seconds: Some(expiration),
                        path: TOKEN_PATH.into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        if spec.volumes.is_none() {
            patch.push(add(
                "/spec/volumes".into(),
                PatchValue::Volumes(vec![volume]),
            ));
        } else {
            patch.push(add(
                "/spec/volumes/0".into(),
                PatchValue::Volume(Box::new(volume)),
            ));
        }
    }

    let env_plan = EnvPlan {
        role_arn,
        token_file: &token_file,
        region: cfg.region.as_deref(),
        regional,
    };
    let mut changed = 0;
    for (field, containers) in [
        ("containers", &spec.containers),
        (
            "initContainers",
            spec.init_containers.as_ref().unwrap_or(&Vec::new()),
        ),
    ] {
        for (i, c) in containers.iter().enumerate() {
            if skip.contains(&c.name) {
                continue;
            }
            let ops = container_ops(&format!("/spec/{field}/{i}"), c, &env_plan, &mount_path);
            if !ops.is_empty() {
                changed += 1;
            }
            patch.extend(ops);
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
                    "/spec/securityContext".into(),
                    PatchValue::Json(serde_json::json!({ "fsGroup": gid })),
                ));
            } else {
                patch.push(add(
                    "/spec/securityContext/fsGroup".into(),
                    PatchValue::Json(gid.into()),
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
    Outcome { patch, decision }
}

struct EnvPlan<'a> {
    role_arn: &'a str,
    token_file: &'a str,
    region: Option<&'a str>,
    regional: bool,
}

fn container_ops(base: &str, c: &Container, plan: &EnvPlan<'_>, mount_path: &str) -> Vec<PatchOp> {
    let env = c.env.as_deref().unwrap_or_default();
    let has = |n: &str| env.iter().any(|e| e.name == n);
    let identity = has("AWS_ROLE_ARN") || has("AWS_WEB_IDENTITY_TOKEN_FILE");
    let region = has("AWS_REGION") || has("AWS_DEFAULT_REGION");
    let sts = has("AWS_STS_REGIONAL_ENDPOINTS");
    if identity && region && sts {
        return Vec::new();
    }
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    let mut new = Vec::new();
    if !sts && plan.regional {
        new.push(var("AWS_STS_REGIONAL_ENDPOINTS", "regional"));
    }
    if let (false, Some(r)) = (region, plan.region.filter(|r| !r.is_empty())) {
        new.push(var("AWS_DEFAULT_REGION", r));
        new.push(var("AWS_REGION", r));
    }
    if !identity {
        new.push(var("AWS_ROLE_ARN", plan.role_arn));
        new.push(var("AWS_WEB_IDENTITY_TOKEN_FILE", plan.token_file));
    }
    let mut ops = Vec::new();
    if c.env.is_none() && !new.is_empty() {
        ops.push(add(format!("{base}/env"), PatchValue::Envs(new)));
    } else {
        ops.extend(
            new.into_iter()
                .map(|v| add(format!("{base}/env/-"), PatchValue::Env(v))),
        );
    }
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    if !mounts.iter().any(|m| m.name == VOLUME_NAME) {
        let mount = VolumeMount {
            name: VOLUME_NAME.into(),
            mount_path: mount_path.into(),
            read_only: Some(true),
            ..Default::default()
        };
        if c.volume_mounts.is_none() {
            ops.push(add(
                format!("{base}/volumeMounts"),
                PatchValue::Mounts(vec![mount]),
            ));
        } else {
            ops.push(add(
                format!("{base}/volumeMounts/-"),
                PatchValue::Mount(mount),
            ));
        }
    }
    ops
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
