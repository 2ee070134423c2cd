//! The arguments of `irsa plan`, `irsa apply` and `irsa destroy`, shared with
//! `irsa bind`/`unbind`; part of every build, so that the offline one parses
//! the same command lines.

use std::path::PathBuf;

use clap::Args;

use crate::bundle::CONFIG_FILE;
use crate::output::Format;

/// Options shared by plan, apply and destroy.
#[derive(Args, Clone)]
pub struct Common {
    /// The config file.
    #[arg(short = 'f', long = "file", default_value = CONFIG_FILE)]
    pub file: PathBuf,
    /// AWS profile.
    #[arg(long, env = "AWS_PROFILE", help_heading = "AWS")]
    pub profile: Option<String>,
    /// AWS region (default: the issuer bucket's region, then the AWS chain).
    #[arg(long, help_heading = "AWS")]
    pub region: Option<String>,
    /// Take over an existing resource without irsa's owner tag (role name, bucket, or provider host/path).
    #[arg(long, value_name = "NAME")]
    pub adopt: Vec<String>,
    /// Reaching the issuer's host, to read its certificate chain for the provider thumbprint.
    #[command(flatten)]
    pub net: crate::fetch::Network,
    /// How many independent AWS calls may run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "AWS")]
    pub parallelism: u16,
}

/// Arguments of `irsa plan`.
#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: Common,
    /// Exit 0 with no changes, 2 with changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

/// Arguments of `irsa apply` and `irsa destroy`.
#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}
