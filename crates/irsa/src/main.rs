//! `irsa`: IAM Roles for Service Accounts on any Kubernetes cluster.
//!
//! Exit codes (the table in docs/issuer-and-keys.md#exit-codes): 0
//! success; 1 a check failed (`validate`, `token verify`, `doctor`, a plan
//! with conflicts); 2 usage or input error (bad flags, unreadable or
//! invalid files), and a command this build leaves out (the offline build,
//! without the `online` feature, has no AWS, Kubernetes or HTTP code); 3
//! an AWS call failed (credentials, permissions, throttling, a service
//! error). `plan --detailed-exitcode` keeps Terraform's meaning instead: 0
//! no changes, 1 error, 2 changes.

mod bundle;
mod cfgedit;
mod cmd;
mod fetch;
mod fsutil;
#[cfg(feature = "online")]
mod k8s;
mod observe;
#[cfg(not(feature = "online"))]
mod offline;
mod output;
#[cfg(feature = "online")]
mod rt;
#[cfg(feature = "online")]
mod thumbprint;
mod yamledit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `irsa --version` prints after the name: the crate version and the
/// git commit the binary was built from (`unknown` when the build could not
/// tell; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IRSA_GIT_COMMIT"),
    ")"
);

/// IAM Roles for Service Accounts on any Kubernetes cluster.
#[derive(Parser)]
#[command(name = "irsa", version = VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log verbosity for progress messages on stderr (error, warn, info, debug) [default: warn].
    #[arg(long, global = true, env = "IRSA_LOG")]
    log: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a complete demo issuer bundle in a new directory (no AWS, no cluster).
    Demo(cmd::init::DemoArgs),
    /// Create irsa.yaml, a signing key pair and the issuer documents.
    Init(cmd::init::InitArgs),
    /// Signing key management.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Build a JWKS from public or private keys in any common format.
    Jwks(cmd::docs::JwksArgs),
    /// Build an OIDC discovery document.
    Discovery(cmd::docs::DiscoveryArgs),
    /// Regenerate the issuer documents of a bundle from irsa.yaml.
    Render(cmd::docs::RenderArgs),
    /// Show what would change in S3 and IAM to match irsa.yaml (read-only).
    #[cfg(feature = "online")]
    Plan(cmd::aws_args::PlanArgs),
    /// Show what would change in S3 and IAM to match irsa.yaml (read-only) [full build only]
    #[cfg(not(feature = "online"))]
    Plan(offline::Unavailable),
    /// Make S3 and IAM match irsa.yaml; idempotent.
    #[cfg(feature = "online")]
    Apply(cmd::aws_args::ApplyArgs),
    /// Make S3 and IAM match irsa.yaml; idempotent [full build only]
    #[cfg(not(feature = "online"))]
    Apply(offline::Unavailable),
    /// Remove what irsa created for this cluster (owned resources only).
    #[cfg(feature = "online")]
    Destroy(cmd::aws_args::ApplyArgs),
    /// Remove what irsa created for this cluster (owned resources only) [full build only]
    #[cfg(not(feature = "online"))]
    Destroy(offline::Unavailable),
    /// Bind a service account to an IAM role in irsa.yaml (like `eksctl create iamserviceaccount`).
    Bind(cmd::bind::BindArgs),
    /// Remove a service account's binding from irsa.yaml.
    Unbind(cmd::bind::UnbindArgs),
    /// Write the AWS resources as Terraform (JSON syntax) or CloudFormation.
    Export(cmd::export::ExportArgs),
    /// Print or run the verification workload for a binding (aws sts get-caller-identity).
    #[cfg(feature = "online")]
    Verify(cmd::verify::VerifyArgs),
    /// Print or run the verification workload for a binding (aws sts get-caller-identity) [full build only]
    #[cfg(not(feature = "online"))]
    Verify(offline::Unavailable),
    /// Walk the chain from a pod to STS and say which link is broken and how to fix it.
    #[cfg(feature = "online")]
    Doctor(cmd::doctor::DoctorArgs),
    /// Walk the chain from a pod to STS and say which link is broken and how to fix it [full build only]
    #[cfg(not(feature = "online"))]
    Doctor(offline::Unavailable),
    /// Check keys, JWKS and discovery document locally and as served.
    Validate(cmd::validate::ValidateArgs),
    /// Decode or verify service-account tokens.
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// The pod identity webhook: serve, certificates, install manifests.
    #[command(subcommand)]
    Webhook(cmd::webhook::WebhookCommand),
    /// Cluster side: what each kind of cluster needs for the issuer.
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCommand),
    /// Pod Identity for self-hosted clusters: the credentials broker and node agent.
    #[cfg(feature = "online")]
    #[command(subcommand)]
    Agent(cmd::agent::AgentCommand),
    /// Pod Identity for self-hosted clusters: the credentials broker and node agent [full build only]
    #[cfg(not(feature = "online"))]
    Agent(offline::Unavailable),
}

/// How a command ends with an exit code it has already reported the
/// reason for (a failed check, a plan with changes under
/// `--detailed-exitcode`): the process only exits with this code. Every
/// other error is printed as `irsa: {error:#}` and exits with
/// [`Exit::of_error`]: 3 when an AWS call failed, else 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl Exit {
    /// A check failed (`validate`, `token verify`, `doctor`, ...): exit 1.
    pub const CHECKS_FAILED: Exit = Exit(1);
    /// Usage or input error: exit 2.
    pub const USAGE: Exit = Exit(2);
    /// An AWS call failed: exit 3.
    pub const AWS_FAILED: Exit = Exit(3);

    /// The code an error exits with when it was not reported already: 3
    /// when an AWS call failed (an `AwsError` in its chain), else 2.
    pub fn of_error(e: &anyhow::Error) -> Exit {
        #[cfg(feature = "online")]
        if e.chain().any(|c| c.is::<irsa_aws::AwsError>()) {
            return Self::AWS_FAILED;
        }
        let _ = e;
        Self::USAGE
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            1 => f.write_str("one or more checks failed"),
            code => write!(f, "exit {code}"),
        }
    }
}

impl std::error::Error for Exit {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = match (&cli.log, &cli.command) {
        (Some(log), _) => log.as_str(),
        (None, Command::Webhook(c)) => c.log_level().unwrap_or("warn"),
        (None, Command::Agent(_)) => "info",
        (None, _) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = output::colour_logs(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Demo(a) => cmd::init::demo(a),
        Command::Init(a) => cmd::init::init(a),
        Command::Keys(c) => cmd::keys::run(c),
        Command::Jwks(a) => cmd::docs::jwks(a),
        Command::Discovery(a) => cmd::docs::discovery(a),
        Command::Render(a) => cmd::docs::render(a),
        #[cfg(feature = "online")]
        Command::Plan(a) => cmd::aws::plan(a),
        #[cfg(not(feature = "online"))]
        Command::Plan(a) => a.run("plan"),
        #[cfg(feature = "online")]
        Command::Apply(a) => cmd::aws::apply(a),
        #[cfg(not(feature = "online"))]
        Command::Apply(a) => a.run("apply"),
        #[cfg(feature = "online")]
        Command::Destroy(a) => cmd::aws::destroy(a),
        #[cfg(not(feature = "online"))]
        Command::Destroy(a) => a.run("destroy"),
        Command::Bind(a) => cmd::bind::bind(a),
        Command::Unbind(a) => cmd::bind::unbind(a),
        Command::Export(a) => cmd::export::run(a),
        #[cfg(feature = "online")]
        Command::Doctor(a) => cmd::doctor::run(a),
        #[cfg(not(feature = "online"))]
        Command::Doctor(a) => a.run("doctor"),
        #[cfg(feature = "online")]
        Command::Verify(a) => cmd::verify::run(a),
        #[cfg(not(feature = "online"))]
        Command::Verify(a) => a.run("verify"),
        Command::Validate(a) => cmd::validate::run(a),
        Command::Token(c) => cmd::token::run(c),
        Command::Webhook(c) => cmd::webhook::run(c),
        Command::Cluster(c) => cmd::cluster::run(c),
        #[cfg(feature = "online")]
        Command::Agent(c) => cmd::agent::run(c),
        #[cfg(not(feature = "online"))]
        Command::Agent(a) => a.run("agent"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(exit) => ExitCode::from(exit.0),
            None => {
                eprintln!("irsa: {e:#}");
                ExitCode::from(Exit::of_error(&e).0)
            }
        },
    }
}
