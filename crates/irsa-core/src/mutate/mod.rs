//! Pod mutation for IAM roles for service accounts, as a pure function:
//! `(pod JSON, ServiceAccount identity, config) -> JSON Patch`.
//!
//! Behaviour matches `amazon-eks-pod-identity-webhook` (annotations, env
//! order and skip rules, the `aws-iam-token` projected volume and mount),
//! with three deliberate differences: the patch only *adds* what is missing
//! (never replaces a container or an array, so fields unknown to any
//! Kubernetes version survive), an already-mutated pod gets an empty patch,
//! and `skip-containers` is honoured on the ServiceAccount too.

mod annotations;
mod decide;
mod patch;
mod path;
mod pod;

pub use annotations::{
    clamp_expiration, parse_csv_record, parse_go_bool, parse_go_int, SaIdentity,
};
pub use decide::{mutate, mutate_pod, Decision, Outcome};
pub use patch::{EnvKind, EnvSet, PatchOp, PatchPath, PatchValue, PatchValues};
pub use path::clean_path;
pub use pod::{ContainerView, MetaView, Named, Pairs, PodView, SecurityView, SpecView, Text};

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

/// Why a pod could not be read.
#[derive(Debug, thiserror::Error)]
#[error("request object is not a Pod: {0}")]
pub struct MutateError(pub String);
