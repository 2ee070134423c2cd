//! `irsa export terraform|cloudformation`: the resources `irsa apply`
//! manages, as infrastructure code for teams that deploy through their own
//! pipeline. The rendering is `irsa_core::export`; this command loads the
//! bundle, writes the result and says how to upload the documents.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use irsa_core::export::{cloudformation, terraform, ACCOUNT};

use crate::bundle::{Bundle, CONFIG_FILE};
use crate::fsutil;
use crate::output::status;

/// Target format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Terraform JSON configuration (`irsa.tf.json`); needs the hashicorp/aws
    /// provider >= 5.81.0, the first in which the OIDC provider's
    /// `thumbprint_list` may be left out.
    Terraform,
    /// AWS CloudFormation template (JSON).
    Cloudformation,
}

/// Arguments of `irsa export`.
#[derive(Args)]
#[command(
    after_help = "The Terraform configuration requires the hashicorp/aws provider >= 5.81.0: it leaves the OIDC provider's thumbprint_list out (IAM fills it in itself and ignores it for issuers whose certificate chains to a CA it trusts), which older provider versions reject."
)]
pub struct ExportArgs {
    /// What to write.
    #[arg(value_enum)]
    pub target: Target,
    /// The config file.
    #[arg(short = 'f', long = "file", default_value = CONFIG_FILE)]
    pub file: PathBuf,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `irsa export`.
pub fn run(a: ExportArgs) -> Result<()> {
    let bundle = Bundle::load_file(&a.file)?;
    let desired = bundle.desired(ACCOUNT)?;
    let doc = match a.target {
        Target::Terraform => terraform(&desired),
        Target::Cloudformation => cloudformation(&desired),
    };
    let text = serde_json::to_string_pretty(&doc).context("rendering")? + "\n";
    match &a.output {
        Some(path) => {
            if path.exists() && !a.force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            fsutil::write_atomic(path, text.as_bytes(), fsutil::PUBLIC)?;
            status!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    if a.target == Target::Cloudformation {
        if let Some(s3) = &desired.s3 {
            status!("CloudFormation cannot upload files: after the stack is created, upload the issuer documents:");
            for key in desired.objects.keys() {
                let local = bundle
                    .dir
                    .join(crate::bundle::ISSUER_DIR)
                    .join(key.strip_prefix(&format!("{}/", s3.prefix)).unwrap_or(key));
                status!(
                    "  aws s3 cp {} s3://{}/{key} --content-type application/json --cache-control max-age=300",
                    local.display(),
                    s3.bucket
                );
            }
        }
    }
    Ok(())
}
