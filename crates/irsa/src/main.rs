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

mod args;
mod bundle;
mod cfgedit;
mod cmd;
mod exit;
mod fetch;
mod fsutil;
mod manifest;
#[cfg(feature = "online")]
#[path = "net/enabled.rs"]
mod net;
#[cfg(not(feature = "online"))]
#[path = "net/disabled.rs"]
mod net;
mod output;
mod yamledit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exit::Exit;

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
    #[command(about = net::only("Show what would change in S3 and IAM to match irsa.yaml (read-only)"))]
    Plan(net::PlanArgs),
    #[command(about = net::only("Make S3 and IAM match irsa.yaml; idempotent"))]
    Apply(net::ApplyArgs),
    #[command(about = net::only("Remove what irsa created for this cluster (owned resources only)"))]
    Destroy(net::ApplyArgs),
    /// Bind a service account to an IAM role in irsa.yaml (like `eksctl create iamserviceaccount`).
    Bind(cmd::bind::BindArgs),
    /// Remove a service account's binding from irsa.yaml.
    Unbind(cmd::bind::UnbindArgs),
    /// Write the AWS resources as Terraform (JSON syntax) or CloudFormation.
    Export(cmd::export::ExportArgs),
    #[command(about = net::only("Print or run the verification workload for a binding (aws sts get-caller-identity)"))]
    Verify(net::VerifyArgs),
    #[command(about = net::only("Walk the chain from a pod to STS and say which link is broken and how to fix it"))]
    Doctor(net::DoctorArgs),
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
    #[command(about = net::only("Pod Identity for self-hosted clusters: the credentials broker and node agent"))]
    Agent(net::AgentArgs),
}

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
        Command::Plan(a) => net::plan(a),
        Command::Apply(a) => net::apply(a),
        Command::Destroy(a) => net::destroy(a),
        Command::Bind(a) => cmd::bind::bind(a),
        Command::Unbind(a) => cmd::bind::unbind(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Doctor(a) => net::doctor(a),
        Command::Verify(a) => net::verify(a),
        Command::Validate(a) => cmd::validate::run(a),
        Command::Token(c) => cmd::token::run(c),
        Command::Webhook(c) => cmd::webhook::run(c),
        Command::Cluster(c) => cmd::cluster::run(c),
        Command::Agent(a) => net::agent(a),
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
