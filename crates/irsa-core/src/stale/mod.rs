//! Stale pods: the webhook mutates a pod only when it is created, so a pod
//! keeps the role its ServiceAccount named at that moment. This module
//! judges one pod against its ServiceAccount's annotations *now* (role
//! changed, never mutated, role removed) and names the fix for the pod's
//! owner. Pure: the CLI lists the pods and resolves the owners.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::checks::Status;
use crate::diagnosis::Link;
use crate::mutate::{parse_csv_record, EnvKind, SaIdentity, VOLUME_NAME};

/// The env var holding the role the webhook injected.
pub const ROLE_ARN_ENV: &str = EnvKind::RoleArn.name();
/// The env var pointing at the projected token.
pub const TOKEN_FILE_ENV: &str = EnvKind::TokenFile.name();
/// The env var the webhook injects in EKS Pod Identity mode.
pub const CONTAINER_CREDENTIALS_ENV: &str = EnvKind::FullUri.name();

/// One container's injected `AWS_ROLE_ARN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The container (init containers included).
    pub container: String,
    /// The value of its `AWS_ROLE_ARN`.
    pub role_arn: String,
}

/// What a pod's spec says when set against its ServiceAccount now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Mutated with the annotation's role, or every container the webhook
    /// would change is skipped (`skip-containers`).
    Current,
    /// The ServiceAccount names no role and the webhook gave the pod none.
    OutOfScope,
    /// The webhook gave the pod EKS Pod Identity credentials
    /// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), which take precedence over
    /// the role-arn annotation: the annotation's role is not expected.
    PodIdentity,
    /// Containers carry a role other than the annotation's.
    RoleChanged {
        /// The containers whose role differs, with the role they carry.
        injected: Vec<Injected>,
        /// The annotation's role.
        current: String,
    },
    /// The ServiceAccount names a role but the pod was not mutated: created
    /// before the webhook ran, or while it was down.
    NotMutated {
        /// Containers (not skipped) without `AWS_ROLE_ARN` or
        /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
        containers: Vec<String>,
        /// Whether the `aws-iam-token` volume is missing.
        volume_missing: bool,
    },
    /// The pod carries a role from the webhook but the ServiceAccount no
    /// longer names one.
    RoleRemoved {
        /// The containers and the role they carry.
        injected: Vec<Injected>,
    },
}

impl Verdict {
    /// Whether the pod needs recreating.
    pub fn is_stale(&self) -> bool {
        !matches!(self, Self::Current | Self::OutOfScope | Self::PodIdentity)
    }
}

/// Judges `pod` against its ServiceAccount's annotations (`None` when it
/// has none, or does not exist); `prefix` is the annotation prefix, e.g.
/// `eks.amazonaws.com`. Skipped containers (`P/skip-containers` on the pod
/// or the ServiceAccount) are not expected to carry anything.
pub fn judge(pod: &Pod, sa: Option<&SaIdentity>, prefix: &str) -> Verdict {
    let Some(spec) = pod.spec.as_ref() else {
        return match sa.and_then(|s| s.role_arn.as_deref()) {
            Some(_) => Verdict::NotMutated {
                containers: Vec::new(),
                volume_missing: true,
            },
            None => Verdict::OutOfScope,
        };
    };
    let pod_skip = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{prefix}/skip-containers")))
        .map(|s| parse_csv_record(s))
        .unwrap_or_default();
    let sa_skip = sa.map(|s| s.skip_containers.as_slice()).unwrap_or_default();
    // Skipped containers are the user's own: they may carry another role.
    let judged: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter(|c| !pod_skip.contains(&c.name) && !sa_skip.contains(&c.name))
        .collect();
    let has_volume = spec.volumes.iter().flatten().any(|v| v.name == VOLUME_NAME);
    // Only literal values can be compared; a valueFrom is the user's own.
    let injected: Vec<Injected> = judged
        .iter()
        .filter_map(|c| {
            let role_arn = env(c, ROLE_ARN_ENV)?.value.clone()?;
            Some(Injected {
                container: c.name.clone(),
                role_arn,
            })
        })
        .collect();
    // Pod Identity mode takes precedence over the annotation: such a pod
    // carries no AWS_ROLE_ARN by design.
    if injected.is_empty()
        && judged
            .iter()
            .any(|c| env(c, CONTAINER_CREDENTIALS_ENV).is_some())
    {
        return Verdict::PodIdentity;
    }
    let Some(role) = sa.and_then(|s| s.role_arn.as_deref()) else {
        // Without the token volume the variable was not the webhook's.
        return if has_volume && !injected.is_empty() {
            Verdict::RoleRemoved { injected }
        } else {
            Verdict::OutOfScope
        };
    };
    let changed: Vec<Injected> = injected
        .into_iter()
        .filter(|i| i.role_arn != role)
        .collect();
    if !changed.is_empty() {
        return Verdict::RoleChanged {
            injected: changed,
            current: role.to_string(),
        };
    }
    if judged.is_empty() {
        return Verdict::Current;
    }
    let bare: Vec<String> = judged
        .iter()
        .filter(|c| env(c, ROLE_ARN_ENV).is_none() && env(c, TOKEN_FILE_ENV).is_none())
        .map(|c| c.name.clone())
        .collect();
    if bare.is_empty() && has_volume {
        Verdict::Current
    } else {
        Verdict::NotMutated {
            containers: bare,
            volume_missing: !has_volume,
        }
    }
}

fn env<'c>(c: &'c Container, name: &str) -> Option<&'c k8s_openapi::api::core::v1::EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

/// A controller of an object: the `ownerReferences` entry with
/// `controller: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its kind, e.g. `ReplicaSet`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

impl Owner {
    /// The controller named in `meta`, if any.
    pub fn of(meta: &ObjectMeta) -> Option<Self> {
        meta.owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| Self {
                kind: r.kind.clone(),
                name: r.name.clone(),
            })
    }

    /// Whether the CLI should look one level further up: a ReplicaSet's
    /// Deployment, a Job's CronJob.
    pub fn has_known_parent(&self) -> bool {
        matches!(self.kind.as_str(), "ReplicaSet" | "Job")
    }
}

/// The fix for a stale pod `ns/pod`: `owners` is its controller chain,
/// nearest first (empty for a bare pod), e.g. `[ReplicaSet, Deployment]`.
pub fn fix(ns: &str, pod: &str, owners: &[Owner]) -> String {
    let Some(nearest) = owners.first() else {
        return format!(
            "a bare pod is never mutated again: delete the pod (kubectl delete pod -n {ns} {pod}) and create it again from its own manifest, not from `kubectl get -o yaml`, which keeps the old AWS_* variables so the webhook leaves the pod alone"
        );
    };
    let top = owners.last().unwrap_or(nearest);
    match top.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" => format!(
            "restart its {} {}: kubectl rollout restart {}/{} -n {ns}",
            top.kind,
            top.name,
            top.kind.to_ascii_lowercase(),
            top.name
        ),
        "CronJob" => format!(
            "the next Job of CronJob {} is mutated anew; for this run delete the pod so Job {} creates it again: kubectl delete pod -n {ns} {pod}",
            top.name, nearest.name
        ),
        kind => format!(
            "delete the pod so its {kind} {} creates it again: kubectl delete pod -n {ns} {pod}",
            top.name
        ),
    }
}

/// The report line and detail for `verdict` of `ns/pod`, `None` when the
/// pod is not stale.
pub fn explain(verdict: &Verdict, ns: &str, pod: &str) -> Option<(Link, String)> {
    let list = |injected: &[Injected]| {
        injected
            .iter()
            .map(|i| format!("{} in {}", i.role_arn, i.container))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match verdict {
        Verdict::Current | Verdict::OutOfScope | Verdict::PodIdentity => None,
        Verdict::RoleChanged { injected, current } => Some((
            Link::PodRoleCurrent,
            format!(
                "{ns}/{pod}: {ROLE_ARN_ENV} is {} but the ServiceAccount now says {current}; a pod keeps the role it was created with",
                list(injected)
            ),
        )),
        Verdict::NotMutated {
            containers,
            volume_missing,
        } => {
            let mut missing = Vec::new();
            if *volume_missing {
                missing.push(format!("volume {VOLUME_NAME}"));
            }
            if !containers.is_empty() {
                missing.push(format!(
                    "{ROLE_ARN_ENV}/{TOKEN_FILE_ENV} in {}",
                    containers.join(", ")
                ));
            }
            Some((
                Link::PodMutated,
                format!(
                    "{ns}/{pod}: no {} although its ServiceAccount names a role: created before the webhook was installed or while it was down",
                    missing.join(", no ")
                ),
            ))
        }
        Verdict::RoleRemoved { injected } => Some((
            Link::PodRoleCurrent,
            format!(
                "{ns}/{pod}: {ROLE_ARN_ENV} is {} but the ServiceAccount no longer names a role (unless the webhook takes it from its ConfigMap, --watch-config-map)",
                list(injected)
            ),
        )),
    }
}

/// The line for one pod doctor was asked about (`--pod`): a pass for a
/// pod that holds, else the failure and the fix. `owners` is the pod's
/// controller chain, nearest first (read only for a stale pod, see
/// [`Verdict::is_stale`]).
pub fn pod_line(
    verdict: &Verdict,
    ns: &str,
    pod: &str,
    owners: &[Owner],
) -> (Link, Status, String, String) {
    match verdict {
        Verdict::Current => (
            Link::PodMutated,
            Status::Pass,
            format!("{ns}/{pod}: {ROLE_ARN_ENV}, {TOKEN_FILE_ENV} and volume {VOLUME_NAME} present, with the ServiceAccount's role"),
            String::new(),
        ),
        Verdict::PodIdentity => (
            Link::PodMutated,
            Status::Pass,
            format!("{ns}/{pod}: EKS Pod Identity ({CONTAINER_CREDENTIALS_ENV}) injected, which takes precedence over the role-arn annotation"),
            String::new(),
        ),
        Verdict::OutOfScope => (
            Link::PodMutated,
            Status::Fail,
            format!("{ns}/{pod}: not mutated (no volume {VOLUME_NAME} with {ROLE_ARN_ENV}) and its ServiceAccount names no role"),
            "pods are mutated only when created: make sure the webhook is installed and the ServiceAccount annotated (below), then delete the pod so its controller recreates it (kubectl rollout restart)".into(),
        ),
        stale => {
            let (link, detail) = explain(stale, ns, pod).unwrap_or((Link::PodMutated, String::new()));
            (link, Status::Fail, detail, fix(ns, pod, owners))
        }
    }
}

/// What one listing of a ServiceAccount's unfinished pods found, for the
/// summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing<'a> {
    /// The label selector that narrowed the listing.
    pub selector: Option<&'a str>,
    /// Pods judged.
    pub judged: usize,
    /// Of them, in phase Running.
    pub running: usize,
    /// Of them, in phase Pending.
    pub pending: usize,
    /// Of them, stale (each has a line of its own).
    pub stale: usize,
    /// The API server had more pods than the listing's limit.
    pub truncated: bool,
}

/// The summary line of the listing of `ns/sa`'s pods: a warning when it
/// was cut short (the pods past the limit were not judged), a pass when
/// none is stale, nothing when the stale pods' own lines say it.
pub fn listing_line(ns: &str, sa: &str, l: &Listing<'_>) -> Option<(Status, String, String)> {
    let judged = l.judged;
    let narrowed = l
        .selector
        .map_or(String::new(), |s| format!(" matching {s}"));
    if l.truncated {
        return Some((
            Status::Warn,
            format!("more than {judged} unfinished pods of {ns}/{sa}{narrowed}: only the first {judged} were judged"),
            "narrow the listing with --selector LABELS, or raise --max-pods".into(),
        ));
    }
    if l.stale > 0 {
        return None;
    }
    let other = match judged.saturating_sub(l.running + l.pending) {
        0 => String::new(),
        n => format!(", {n} in another phase"),
    };
    Some((
        Status::Pass,
        format!(
            "{judged} unfinished pod(s) of {ns}/{sa}{narrowed} ({} running, {} pending{other}), none stale",
            l.running, l.pending
        ),
        String::new(),
    ))
}

#[cfg(test)]
mod tests;
