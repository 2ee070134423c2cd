//! Webhook flags, compatible with `amazon-eks-pod-identity-webhook` where
//! they make sense; every flag can also be set by an `IRSA_*` variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use irsa_core::mutate::{clamp_expiration, MutationConfig, DEFAULT_MOUNT_PATH, DEFAULT_PREFIX};

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
    /// Inject AWS_STS_REGIONAL_ENDPOINTS=regional unless the ServiceAccount says otherwise.
    #[arg(long, env = "IRSA_STS_REGIONAL_ENDPOINT", help_heading = "Injection")]
    pub sts_regional_endpoint: bool,
    /// Set this pod fsGroup when a mutated pod has none, so non-root containers can read the token.
    #[arg(long, env = "IRSA_FS_GROUP", help_heading = "Injection")]
    pub fs_group: Option<i64>,

    /// Flags of amazon-eks-pod-identity-webhook that irsa accepts and ignores.
    #[command(flatten)]
    pub go_compat: GoCompat,
}

/// Flags of the Go webhook that have no meaning here; accepted (hidden) so an
/// existing Deployment's arguments keep working, with a warning at start-up.
#[derive(Args, Debug, Clone, Default)]
pub struct GoCompat {
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    in_cluster: Option<String>,
    #[arg(long, hide = true)]
    namespace: Option<String>,
    #[arg(long, hide = true)]
    service_name: Option<String>,
    #[arg(long, hide = true)]
    tls_secret: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    logtostderr: Option<String>,
    #[arg(short = 'v', long = "v", hide = true)]
    verbosity: Option<String>,
    #[arg(long, hide = true)]
    resync_period: Option<String>,
    #[arg(long, hide = true)]
    service_account_lookup_grace_period: Option<String>,
    #[arg(long, hide = true)]
    tls_min_version: Option<String>,
}

impl GoCompat {
    /// One line per ignored flag that was set, for start-up warnings.
    pub fn ignored(&self) -> Vec<String> {
        let GoCompat {
            in_cluster,
            namespace,
            service_name,
            tls_secret,
            logtostderr,
            verbosity,
            resync_period,
            service_account_lookup_grace_period,
            tls_min_version,
        } = self;
        let mut out = Vec::new();
        if in_cluster.as_deref().is_some_and(|v| v != "false") {
            out.push("--in-cluster=true (CSR-issued certificates) is not supported: irsa serves --tls-cert/--tls-key".to_string());
        }
        for (name, value, why) in [
            ("--namespace", namespace, "only used by --in-cluster"),
            ("--service-name", service_name, "only used by --in-cluster"),
            ("--tls-secret", tls_secret, "only used by --in-cluster"),
            ("--logtostderr", logtostderr, "irsa always logs to stderr"),
            ("-v", verbosity, "use --log debug"),
            (
                "--resync-period",
                resync_period,
                "irsa's watch needs no resync",
            ),
            (
                "--service-account-lookup-grace-period",
                service_account_lookup_grace_period,
                "irsa asks the API server on a miss (--sa-lookup-timeout-ms)",
            ),
            (
                "--tls-min-version",
                tls_min_version,
                "irsa always requires TLS 1.2 or later",
            ),
        ] {
            if value.is_some() {
                out.push(format!("{name} is ignored: {why}"));
            }
        }
        out
    }
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
        }
    }

    /// The API fallback timeout.
    pub fn lookup_timeout(&self) -> Duration {
        Duration::from_millis(self.sa_lookup_timeout_ms)
    }
}
