//! Pod mutation for IAM roles for service accounts, as a pure function:
//! `(pod JSON, ServiceAccount identity, config) -> JSON Patch`.
//!
//! Behaviour matches `amazon-eks-pod-identity-webhook` (annotations, env
//! order and skip rules, the `aws-iam-token` projected volume and mount),
//! with three deliberate differences: the patch only *adds* what is missing
//! (never replaces a container or an array, so fields unknown to any
//! Kubernetes version survive), an already-mutated pod gets an empty patch,
//! and `skip-containers` is honoured on the ServiceAccount too.
//!
//! A ServiceAccount listed in the Pod Identity identities file (see
//! [`Identities`]) gets the container-credentials injection instead
//! ([`Injection::PodIdentity`]), whatever its role-arn annotation says.

mod annotations;
mod decide;
mod identities;
mod patch;
mod path;
mod pod;

pub use annotations::{
    clamp_expiration, parse_csv_record, parse_go_bool, parse_go_int, SaIdentity,
};
pub use decide::{mutate, mutate_pod, mutate_pod_with, mutate_with, Decision, Injection, Outcome};
pub use identities::{Identities, IdentitiesError};
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

/// The default token lifetime, in seconds; under Pod Identity a token
/// that would get exactly this lifetime gets a random one between
/// [`POD_IDENTITY_JITTER_FLOOR`] and this instead, as in the Go webhook.
pub const DEFAULT_TOKEN_EXPIRATION: i64 = 86400;
/// The shortest jittered Pod Identity token lifetime, in seconds.
pub const POD_IDENTITY_JITTER_FLOOR: i64 = 79200;
/// The label set on pods that get Pod Identity credentials (value `enabled`).
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";

/// The container-credentials (EKS Pod Identity) settings: the Go webhook's
/// `--container-credentials-*` flags, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCredentials {
    /// Audience of the projected token.
    pub audience: String,
    /// Where the token volume is mounted.
    pub mount_path: String,
    /// Name of the projected token volume.
    pub volume_name: String,
    /// File name of the token inside the volume.
    pub token_path: String,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`: where the SDKs ask for credentials.
    pub full_uri: String,
}

impl Default for ContainerCredentials {
    fn default() -> Self {
        Self {
            audience: "pods.eks.amazonaws.com".into(),
            mount_path: "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount".into(),
            volume_name: "eks-pod-identity-token".into(),
            token_path: "eks-pod-identity-token".into(),
            full_uri: "http://169.254.170.23/v1/credentials".into(),
        }
    }
}

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
    /// The Pod Identity injection's settings.
    pub container_credentials: ContainerCredentials,
}

impl Default for MutationConfig {
    fn default() -> Self {
        Self {
            annotation_prefix: DEFAULT_PREFIX.into(),
            audience: "sts.amazonaws.com".into(),
            mount_path: DEFAULT_MOUNT_PATH.into(),
            token_expiration: DEFAULT_TOKEN_EXPIRATION,
            region: None,
            regional_sts: false,
            fs_group: None,
            container_credentials: ContainerCredentials::default(),
        }
    }
}

/// Why a pod could not be read.
#[derive(Debug, thiserror::Error)]
#[error("request object is not a Pod: {0}")]
pub struct MutateError(pub String);
