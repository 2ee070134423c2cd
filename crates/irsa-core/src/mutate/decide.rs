//! The decision: which operations a pod needs, given its ServiceAccount
//! and the webhook's settings.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::patch::{add, EnvKind, EnvSet, PatchOp, PatchValue, PatchValues};
use super::pod::{name_of, ContainerView, PodView, SpecView};
use super::{
    clamp_expiration, clean_path, parse_csv_record, parse_go_int, MutateError, MutationConfig,
    SaIdentity, TOKEN_PATH, VOLUME_NAME,
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
