//! Webhook flags, compatible with `amazon-eks-pod-identity-webhook` where
//! they make sense; every flag can also be set by an `IRSA_*` variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use irsa_core::mutate::{clamp_expiration, MutationConfig, DEFAULT_MOUNT_PATH, DEFAULT_PREFIX};

pub use crate::containercreds::PodIdentityFlags;
use crate::goflags::parse_bool;
pub use crate::goflags::GoCompat;
use crate::limits::{LimitFlags, DEFAULT_MAX_REQUEST_BYTES};

/// `irsa webhook serve` flags.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// HTTPS port for /mutate, /healthz and /readyz.
    #[arg(
        long,
        default_value_t = 443,
        env = "IRSA_PORT",
        help_heading = "Server"
    )]
    pub port: u16,
    /// Plain-HTTP port for /metrics.
    #[arg(
        long,
        default_value_t = 9999,
        env = "IRSA_METRICS_PORT",
        help_heading = "Server"
    )]
    pub metrics_port: u16,
    /// Address to listen on.
    #[arg(
        long,
        default_value = "0.0.0.0",
        env = "IRSA_BIND_ADDRESS",
        help_heading = "Server"
    )]
    pub bind_address: IpAddr,
    /// Address for the metrics listener (default: --bind-address); e.g.
    /// 127.0.0.1 to keep /metrics off the pod network.
    #[arg(long, env = "IRSA_METRICS_BIND_ADDRESS", help_heading = "Server")]
    pub metrics_bind_address: Option<IpAddr>,
    /// Serving certificate (PEM, chain allowed); reloaded when it changes.
    #[arg(
        long,
        default_value = "/etc/webhook/certs/tls.crt",
        env = "IRSA_TLS_CERT",
        help_heading = "Server"
    )]
    pub tls_cert: PathBuf,
    /// Serving key (PEM); reloaded together with the certificate.
    #[arg(
        long,
        default_value = "/etc/webhook/certs/tls.key",
        env = "IRSA_TLS_KEY",
        help_heading = "Server"
    )]
    pub tls_key: PathBuf,
    /// How often to check the certificate files for changes, in seconds.
    #[arg(
        long,
        default_value_t = 2,
        env = "IRSA_TLS_RELOAD_SECONDS",
        help_heading = "Server"
    )]
    pub tls_reload_seconds: u64,
    /// Comma-separated TLS 1.2 cipher suites, by their IANA/Go names (e.g.
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); TLS 1.3 suites are only
    /// restricted when the list names some. Default: rustls's suites.
    #[arg(long, env = "IRSA_TLS_CIPHER_SUITES", help_heading = "Server")]
    pub tls_cipher_suites: Option<String>,
    /// Lowest TLS version served: VersionTLS12 or 1.2 (the default: TLS 1.2
    /// and 1.3), VersionTLS13 or 1.3 (TLS 1.3 only). Go's VersionTLS10/11
    /// are accepted and serve TLS 1.2 and 1.3, the oldest irsa speaks.
    #[arg(long, env = "IRSA_TLS_MIN_VERSION", help_heading = "Server")]
    pub tls_min_version: Option<String>,
    /// Offer HTTP/2 (h2) in ALPN beside HTTP/1.1, served with the limits
    /// of docs/security.md. Off by default: kube-apiserver's webhook client
    /// (v1.28, as tested) offers only http/1.1, so only other clients would
    /// use it.
    #[arg(long, env = "IRSA_HTTP2", help_heading = "Server", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub http2: bool,
    /// Serve /debug/alpha/cache (the cached ServiceAccount settings, JSON)
    /// on the metrics listener.
    #[arg(long, env = "IRSA_ENABLE_DEBUGGING_HANDLERS", help_heading = "Server", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub enable_debugging_handlers: bool,
    /// Largest accepted AdmissionReview body, in bytes (HTTP 413 above).
    /// The API server refuses request bodies over 3 MiB, so any pod it
    /// could store fits in the default.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES, env = "IRSA_MAX_REQUEST_BYTES", help_heading = "Limits")]
    pub max_request_bytes: usize,
    /// Connection, deadline and memory limits.
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Seconds to drain in-flight requests on SIGTERM.
    #[arg(
        long,
        default_value_t = 10,
        env = "IRSA_SHUTDOWN_SECONDS",
        help_heading = "Server"
    )]
    pub shutdown_seconds: u64,
    /// Seconds to keep serving after SIGTERM, with /readyz failing, before
    /// the listener closes: time for the endpoints to drop this replica so
    /// no admission is sent to a closed port.
    #[arg(
        long,
        default_value_t = 5,
        env = "IRSA_SHUTDOWN_DELAY_SECONDS",
        help_heading = "Server"
    )]
    pub shutdown_delay_seconds: u64,

    /// Kubeconfig file; in-cluster configuration when empty.
    #[arg(long, env = "IRSA_KUBECONFIG", help_heading = "Kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// API server URL; replaces the server of the kubeconfig or in-cluster
    /// configuration, whose credentials and CA are kept.
    #[arg(long, env = "IRSA_KUBE_API", help_heading = "Kubernetes")]
    pub kube_api: Option<String>,
    /// Milliseconds to wait for a direct API GET when a ServiceAccount is not cached yet.
    #[arg(
        long,
        default_value_t = 2000,
        env = "IRSA_SA_LOOKUP_TIMEOUT_MS",
        help_heading = "Kubernetes"
    )]
    pub sa_lookup_timeout_ms: u64,
    /// API GETs for uncached ServiceAccounts in flight at once; further
    /// lookups wait (within --sa-lookup-timeout-ms).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..1025), env = "IRSA_SA_LOOKUP_CONCURRENCY", help_heading = "Kubernetes")]
    pub sa_lookup_concurrency: u64,

    /// Annotation prefix on ServiceAccounts and pods.
    #[arg(long, default_value = DEFAULT_PREFIX, env = "IRSA_ANNOTATION_PREFIX", help_heading = "Injection")]
    pub annotation_prefix: String,
    /// Default token audience (ServiceAccount annotation `audience` overrides).
    #[arg(
        long,
        default_value = "sts.amazonaws.com",
        env = "IRSA_TOKEN_AUDIENCE",
        help_heading = "Injection"
    )]
    pub token_audience: String,
    /// Where the token volume is mounted.
    #[arg(long, default_value = DEFAULT_MOUNT_PATH, env = "IRSA_TOKEN_MOUNT_PATH", help_heading = "Injection")]
    pub token_mount_path: String,
    /// Default token lifetime in seconds (at least 600).
    #[arg(
        long,
        default_value_t = 86400,
        env = "IRSA_TOKEN_EXPIRATION",
        help_heading = "Injection"
    )]
    pub token_expiration: i64,
    /// Inject AWS_DEFAULT_REGION and AWS_REGION with this value.
    #[arg(
        long,
        default_value = "",
        env = "IRSA_AWS_DEFAULT_REGION",
        help_heading = "Injection"
    )]
    pub aws_default_region: String,
    /// Inject AWS_STS_REGIONAL_ENDPOINTS=regional unless the ServiceAccount
    /// says otherwise (`--sts-regional-endpoint` or `=true|false`).
    #[arg(long, env = "IRSA_STS_REGIONAL_ENDPOINT", help_heading = "Injection", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub sts_regional_endpoint: bool,
    /// Also take ServiceAccount settings from the ConfigMap
    /// pod-identity-webhook in --namespace (default eks), watched; an
    /// account's own role-arn annotation wins.
    #[arg(long, env = "IRSA_WATCH_CONFIG_MAP", help_heading = "Injection", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub watch_config_map: bool,
    /// Read a role-arn annotation holding a role name (and path) as that
    /// role of this account: partition and account from EC2 instance
    /// metadata (IMDSv2), or from --aws-account-id/--aws-partition.
    #[arg(long, env = "IRSA_COMPOSE_ROLE_ARN", help_heading = "Injection", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub compose_role_arn: bool,
    /// With --compose-role-arn: the account id, instead of instance metadata.
    #[arg(long, env = "IRSA_AWS_ACCOUNT_ID", help_heading = "Injection")]
    pub aws_account_id: Option<String>,
    /// With --compose-role-arn: the partition (default: from the instance's
    /// region; with --aws-account-id, from --aws-default-region, else aws).
    #[arg(long, env = "IRSA_AWS_PARTITION", help_heading = "Injection")]
    pub aws_partition: Option<String>,
    /// Instance metadata service, for --compose-role-arn.
    #[arg(long, default_value = crate::imds::DEFAULT_ENDPOINT, env = "AWS_EC2_METADATA_SERVICE_ENDPOINT", help_heading = "Injection")]
    pub imds_endpoint: String,
    /// Set this pod fsGroup when a mutated pod has none, so non-root containers can read the token.
    #[arg(long, env = "IRSA_FS_GROUP", help_heading = "Injection")]
    pub fs_group: Option<i64>,

    /// EKS Pod Identity (container credentials) mode.
    #[command(flatten)]
    pub pod_identity: PodIdentityFlags,

    /// Flags of amazon-eks-pod-identity-webhook (and klog) that irsa accepts
    /// and reports at start-up.
    #[command(flatten)]
    pub go_compat: GoCompat,
}

impl Settings {
    /// The mutation settings.
    pub fn mutation(&self) -> MutationConfig {
        MutationConfig {
            annotation_prefix: self.annotation_prefix.trim_end_matches('/').to_string(),
            audience: self.token_audience.clone(),
            mount_path: self.token_mount_path.clone(),
            token_expiration: clamp_expiration(self.token_expiration),
            region: (!self.aws_default_region.is_empty()).then(|| self.aws_default_region.clone()),
            regional_sts: self.sts_regional_endpoint,
            fs_group: self.fs_group,
            container_credentials: self.pod_identity.unchecked(),
        }
    }

    /// The API fallback timeout.
    pub fn lookup_timeout(&self) -> Duration {
        Duration::from_millis(self.sa_lookup_timeout_ms)
    }
}
