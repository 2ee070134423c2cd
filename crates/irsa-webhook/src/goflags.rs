//! The command line of `amazon-eks-pod-identity-webhook`, so an existing
//! Deployment's arguments start irsa unchanged.
//!
//! The Go webhook parses its flags with pflag, which accepts `--flag=value`
//! and `--flag value`, and for a boolean flag a bare `--flag` or
//! `--flag=true|false` (Go's `strconv.ParseBool` spellings). It also
//! registers klog's logging flags, whose names use underscores and whose
//! verbosity has the shorthand `-v`. [`GO_FLAGS`] lists every one of them;
//! the flags that have a meaning in irsa are ordinary [`crate::Settings`]
//! fields, the rest are read here and reported at start-up.

use clap::Args;

/// Parses a boolean flag value as pflag does (`1`, `t`, `T`, `TRUE`,
/// `true`, `True` and their false counterparts).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    irsa_core::mutate::parse_go_bool(s)
        .ok_or_else(|| format!("{s:?} is not a boolean; write true or false (or 1, 0, t, f)"))
}

/// What the Go flag takes on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoKind {
    /// A boolean: `--flag`, `--flag=true`, `--flag=false`.
    Bool,
    /// A value (`--flag=value` or `--flag value`); this one is valid.
    Value(&'static str),
}

/// One flag of the Go webhook's command line.
#[derive(Debug, Clone, Copy)]
pub struct GoFlag {
    /// The long name, without dashes.
    pub name: &'static str,
    /// Boolean or valued, with a valid example value.
    pub kind: GoKind,
    /// Whether klog registers it (logging), rather than the webhook.
    pub klog: bool,
}

const fn flag(name: &'static str, kind: GoKind) -> GoFlag {
    GoFlag {
        name,
        kind,
        klog: false,
    }
}

const fn klog(name: &'static str, kind: GoKind) -> GoFlag {
    GoFlag {
        name,
        kind,
        klog: true,
    }
}

use GoKind::{Bool, Value};

/// Every flag of `amazon-eks-pod-identity-webhook` (v0.6 and the flags
/// added since: `--tls-cipher-suites`, `--tls-min-version`), then klog's.
pub const GO_FLAGS: &[GoFlag] = &[
    flag("port", Value("8443")),
    flag("metrics-port", Value("9999")),
    flag("kubeconfig", Value("/etc/kubernetes/webhook.kubeconfig")),
    flag("kube-api", Value("https://127.0.0.1:6443")),
    flag("tls-key", Value("/etc/webhook/certs/tls.key")),
    flag("tls-cert", Value("/etc/webhook/certs/tls.crt")),
    flag(
        "tls-cipher-suites",
        Value("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ),
    flag("tls-min-version", Value("1.2")),
    flag("in-cluster", Bool),
    flag("service-name", Value("pod-identity-webhook")),
    flag("namespace", Value("kube-system")),
    flag("tls-secret", Value("pod-identity-webhook")),
    flag("annotation-prefix", Value("eks.amazonaws.com")),
    flag("token-audience", Value("sts.amazonaws.com")),
    flag(
        "token-mount-path",
        Value("/var/run/secrets/eks.amazonaws.com/serviceaccount"),
    ),
    flag("token-expiration", Value("86400")),
    flag("aws-default-region", Value("eu-west-1")),
    flag("sts-regional-endpoint", Bool),
    flag("watch-config-map", Bool),
    flag("compose-role-arn", Bool),
    flag(
        "watch-container-credentials-config",
        Value("/etc/webhook/config/pod-identity.json"),
    ),
    flag(
        "container-credentials-audience",
        Value("pods.eks.amazonaws.com"),
    ),
    flag(
        "container-credentials-token-mount-path",
        Value("/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"),
    ),
    flag(
        "container-credentials-token-volume-name",
        Value("eks-pod-identity-token"),
    ),
    flag(
        "container-credentials-token-path",
        Value("eks-pod-identity-token"),
    ),
    flag(
        "container-credentials-full-uri",
        Value("http://169.254.170.23/v1/credentials"),
    ),
    flag("version", Bool),
    flag("enable-debugging-handlers", Bool),
    flag("service-account-lookup-grace-period", Value("500ms")),
    flag("resync-period", Value("60s")),
    klog("add_dir_header", Bool),
    klog("alsologtostderr", Bool),
    klog("alsologtostderrthreshold", Value("ERROR")),
    klog("legacy_stderr_threshold_behavior", Bool),
    klog("log_backtrace_at", Value("main.go:42")),
    klog("log_dir", Value("/var/log/webhook")),
    klog("log_file", Value("/var/log/webhook.log")),
    klog("log_file_max_size", Value("1800")),
    klog("logtostderr", Bool),
    klog("one_output", Bool),
    klog("skip_headers", Bool),
    klog("skip_log_headers", Bool),
    klog("stderrthreshold", Value("WARNING")),
    klog("v", Value("4")),
    klog("vmodule", Value("cache=5,handler=4")),
];

/// Flags of the Go webhook that mean nothing to irsa: accepted (hidden) so
/// an existing Deployment's arguments keep working, each reported once at
/// start-up by [`GoCompat::ignored`].
#[derive(Args, Debug, Clone, Default)]
pub struct GoCompat {
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    in_cluster: Option<bool>,
    #[arg(long, hide = true)]
    namespace: Option<String>,
    #[arg(long, hide = true)]
    service_name: Option<String>,
    #[arg(long, hide = true)]
    tls_secret: Option<String>,
    #[arg(long, hide = true)]
    resync_period: Option<String>,
    #[arg(long, hide = true)]
    service_account_lookup_grace_period: Option<String>,
    /// Print the version and exit (`--version`, `--version=true|false`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    version: Option<bool>,
    /// klog's flags.
    #[command(flatten)]
    pub klog: crate::klog::KlogFlags,
}

impl GoCompat {
    /// `--namespace`: where `--watch-config-map` looks (Go's default `eks`).
    pub fn config_map_namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .unwrap_or(crate::configmap::DEFAULT_NAMESPACE)
    }

    /// Whether `--version` asks for the version instead of serving.
    pub fn version(&self) -> bool {
        self.version == Some(true)
    }

    /// One line per accepted-but-ignored flag that was set, for start-up
    /// warnings. With `config_map_watched`, `--namespace` is in use (it names
    /// the ConfigMap's namespace) and not reported.
    pub fn ignored(&self, config_map_watched: bool) -> Vec<String> {
        let GoCompat {
            in_cluster,
            namespace,
            service_name,
            tls_secret,
            resync_period,
            service_account_lookup_grace_period,
            version: _,
            klog,
        } = self;
        let mut out = Vec::new();
        if *in_cluster == Some(true) {
            out.push("--in-cluster=true (CSR-issued certificates) is not supported: irsa serves --tls-cert/--tls-key".to_string());
        }
        for (name, value, why) in [
            (
                "--namespace",
                &namespace.as_ref().filter(|_| !config_map_watched).cloned(),
                "only used by --in-cluster and --watch-config-map",
            ),
            ("--service-name", service_name, "only used by --in-cluster"),
            ("--tls-secret", tls_secret, "only used by --in-cluster"),
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
        ] {
            if value.is_some() {
                out.push(format!("{name} is ignored: {why}"));
            }
        }
        out.extend(klog.ignored());
        out
    }
}
