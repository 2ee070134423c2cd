//! The decision: which operations a pod needs, given its ServiceAccount
//! and the webhook's settings.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::patch::{add, add_meta, EnvKind, EnvSet, PatchOp, PatchValue, PatchValues};
use super::pod::{name_of, ContainerView, PodView, SpecView};
use super::{
    clamp_expiration, clean_path, parse_csv_record, parse_go_int, MutateError, MutationConfig,
    SaIdentity, DEFAULT_TOKEN_EXPIRATION, POD_IDENTITY_JITTER_FLOOR, POD_IDENTITY_LABEL,
    TOKEN_PATH, VOLUME_NAME,
};

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

/// [`POD_IDENTITY_LABEL`] as a JSON pointer segment (`/` escaped as `~1`).
const LABEL_POINTER: &str = "/eks.amazonaws.com~1pod-identity";

/// Which credentials a pod is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// IAM roles for service accounts: the ServiceAccount's role-arn
    /// annotation (no role, no change).
    WebIdentity,
    /// EKS Pod Identity (container credentials): the ServiceAccount is
    /// listed in the identities file. `jitter` is a random draw: a token
    /// that would live exactly the default 86400 s lives
    /// `79200 + jitter % 7201` s instead, so the tokens of many pods do
    /// not all expire together (the Go webhook's rule).
    PodIdentity {
        /// Any random number.
        jitter: u64,
    },
}

/// Computes the patch for `pod` (as a JSON value), see [`mutate`].
pub fn mutate_pod<'a>(
    pod_json: &Value,
    sa: Option<&'a SaIdentity>,
    cfg: &'a MutationConfig,
) -> Result<Outcome<'a>, MutateError> {
    mutate_pod_with(pod_json, sa, Injection::WebIdentity, cfg)
}

/// Computes the patch for `pod` (as a JSON value), see [`mutate_with`].
pub fn mutate_pod_with<'a>(
    pod_json: &Value,
    sa: Option<&'a SaIdentity>,
    injection: Injection,
    cfg: &'a MutationConfig,
) -> Result<Outcome<'a>, MutateError> {
    let pod = PodView::deserialize(pod_json).map_err(|e| MutateError(e.to_string()))?;
    Ok(mutate_with(&pod, sa, injection, cfg))
}

/// Computes the IRSA patch for a pod ([`Injection::WebIdentity`]), see
/// [`mutate_with`].
pub fn mutate<'a>(
    pod: &PodView<'_>,
    sa: Option<&'a SaIdentity>,
    cfg: &'a MutationConfig,
) -> Outcome<'a> {
    mutate_with(pod, sa, Injection::WebIdentity, cfg)
}

/// Computes the patch for a pod. Only `add` operations with paths into the
/// pod as received: fields this crate does not know are never touched.
///
/// Under [`Injection::PodIdentity`] the ServiceAccount's role-arn and
/// audience annotations do not count: containers get
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, the token has the
/// container-credentials audience and lives in its own volume, and the pod
/// is labelled [`POD_IDENTITY_LABEL`]`=enabled`. Region, regional STS,
/// token lifetime and skipped containers follow the same rules in both.
pub fn mutate_with<'a>(
    pod: &PodView<'_>,
    sa: Option<&'a SaIdentity>,
    injection: Injection,
    cfg: &'a MutationConfig,
) -> Outcome<'a> {
    let (role_arn, jitter) = match injection {
        Injection::PodIdentity { jitter } => ("", Some(jitter)),
        Injection::WebIdentity => match sa.and_then(|s| s.role_arn.as_deref()) {
            Some(arn) => (arn, None),
            None => {
                return Outcome {
                    patch: Vec::new(),
                    values: PatchValues::default(),
                    decision: Decision::NoRole,
                }
            }
        },
    };
    let pod_identity = jitter.is_some();
    let empty = SpecView::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let prefix = &cfg.annotation_prefix;

    let mut expiration = sa
        .and_then(|s| s.token_expiration)
        .unwrap_or_else(|| clamp_expiration(cfg.token_expiration));
    if let Some(v) = pod
        .annotation(prefix, "token-expiration")
        .and_then(parse_go_int)
    {
        expiration = clamp_expiration(v);
    }
    if let Some(jitter) = jitter {
        if expiration == DEFAULT_TOKEN_EXPIRATION {
            let span = DEFAULT_TOKEN_EXPIRATION - POD_IDENTITY_JITTER_FLOOR + 1;
            // `span` is positive, so the remainder fits an i64.
            let offset = i64::try_from(jitter % span.unsigned_abs()).unwrap_or(0);
            expiration = POD_IDENTITY_JITTER_FLOOR + offset;
        }
    }
    let cc = &cfg.container_credentials;
    let audience = if pod_identity {
        cc.audience.as_str()
    } else {
        SaIdentity::token_audience(sa, &cfg.audience).unwrap_or_default()
    };
    let regional = sa.and_then(|s| s.regional_sts).unwrap_or(cfg.regional_sts);
    let pod_skip = pod
        .annotation(prefix, "skip-containers")
        .map(parse_csv_record)
        .unwrap_or_default();
    let sa_skip = sa.map(|s| &s.skip_containers[..]).unwrap_or_default();
    let skipped =
        |name: &str| sa_skip.iter().any(|s| s == name) || pod_skip.iter().any(|s| s == name);

    let (mount_path, volume_name, token_path) = if pod_identity {
        (
            clean_path(&cc.mount_path),
            &cc.volume_name[..],
            &cc.token_path[..],
        )
    } else {
        (clean_path(&cfg.mount_path), VOLUME_NAME, TOKEN_PATH)
    };
    let windows = spec.node_selector.as_ref().is_some_and(|selector| {
        ["kubernetes.io/os", "beta.kubernetes.io/os"]
            .iter()
            .any(|k| selector.get(k) == Some("windows"))
    });
    // A clean directory joined with a plain file name is clean, but for
    // the two paths that end in no name; any other name is joined and
    // cleaned as Go's `filepath.Join` does.
    let unix_token = match (&*mount_path, pod_identity) {
        (_, true) => clean_path(&format!("{mount_path}/{token_path}")).into_owned(),
        ("/", false) => format!("/{TOKEN_PATH}"),
        (".", false) => TOKEN_PATH.to_string(),
        (dir, false) => format!("{dir}/{TOKEN_PATH}"),
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
        volume_name,
        token_path,
        full_uri: &cc.full_uri,
    };

    let mut patch = Vec::new();
    if pod_identity {
        let meta = pod.metadata.as_ref();
        match meta.and_then(|m| m.labels.as_ref()) {
            Some(labels) if labels.get(POD_IDENTITY_LABEL) == Some("enabled") => {}
            Some(_) => patch.push(add_meta("labels", LABEL_POINTER, PatchValue::Label)),
            None if meta.is_some() => patch.push(add_meta("labels", "", PatchValue::Labels)),
            None => patch.push(add_meta("", "", PatchValue::Metadata)),
        }
    }
    let has_volume = spec
        .volumes
        .as_ref()
        .is_some_and(|v| v.iter().any(|v| name_of(v) == volume_name));
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
            let wants = Wants {
                region: values.region.is_some(),
                regional,
                pod_identity,
                volume_name,
            };
            container_ops(&mut patch, field, i, c, &wants);
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

/// What every container should get.
struct Wants<'v> {
    /// `AWS_DEFAULT_REGION`/`AWS_REGION`.
    region: bool,
    /// `AWS_STS_REGIONAL_ENDPOINTS=regional`.
    regional: bool,
    /// Container-credentials variables instead of the web identity ones.
    pod_identity: bool,
    /// The token volume to mount.
    volume_name: &'v str,
}

/// Appends what container `i` of `field` lacks: env vars (same order and
/// skip rules as the Go webhook) and the token mount.
fn container_ops(
    patch: &mut Vec<PatchOp>,
    field: &'static str,
    i: usize,
    c: &ContainerView<'_>,
    wants: &Wants<'_>,
) {
    let env = c.env.as_deref().unwrap_or_default();
    let has = |n: &str| env.iter().any(|e| name_of(e) == n);
    let (first, second) = if wants.pod_identity {
        (EnvKind::FullUri, EnvKind::AuthorizationTokenFile)
    } else {
        (EnvKind::RoleArn, EnvKind::TokenFile)
    };
    let identity = has(first.name()) || has(second.name());
    let region = has("AWS_REGION") || has("AWS_DEFAULT_REGION");
    let sts = has("AWS_STS_REGIONAL_ENDPOINTS");
    if identity && region && sts {
        return;
    }
    let mut new = EnvSet::default();
    if !sts && wants.regional {
        new.insert(EnvKind::StsRegional);
    }
    if !region && wants.region {
        new.insert(EnvKind::DefaultRegion);
        new.insert(EnvKind::Region);
    }
    if !identity {
        new.insert(first);
        new.insert(second);
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
    if !mounts.iter().any(|m| name_of(m) == wants.volume_name) {
        if c.volume_mounts.is_none() {
            patch.push(add(field, Some(i), "/volumeMounts", PatchValue::Mounts));
        } else {
            patch.push(add(field, Some(i), "/volumeMounts/-", PatchValue::Mount));
        }
    }
}
