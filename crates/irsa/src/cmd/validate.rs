//! `irsa validate`: every link from key files to the served documents.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_core::bundle::{self as bundle_check, Checked};
use irsa_core::parse::parse_private_key;
use irsa_core::served;
use irsa_core::{IssuerUrl, PrivateKey};

use crate::bundle::{Bundle, CONFIG_FILE, ISSUER_DIR};
use crate::exit::Exit;
use crate::fetch::Network;
use crate::output::{print_report, Format};

/// Arguments of `irsa validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// Bundle directory (with irsa.yaml), or a directory holding the documents as served.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Also fetch the documents from this issuer over HTTPS and check what is served.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The private key the apiserver signs with (e.g. /etc/kubernetes/pki/sa.key).
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    #[command(flatten)]
    pub net: Network,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

/// Runs `irsa validate`.
pub fn run(a: ValidateArgs) -> Result<()> {
    let extra = match &a.private_key {
        Some(path) => {
            let bytes = fs::read(path)
                .with_context(|| format!("cannot read --private-key {}", path.display()))?;
            Some(parse_private_key(&bytes).with_context(|| format!("in {}", path.display()))?)
        }
        None => None,
    };
    let has_config = a.dir.join(CONFIG_FILE).exists();
    let (checked, config_issuer) = if has_config {
        let bundle = Bundle::load(&a.dir)?;
        let checked = bundle.check(extra.as_ref())?;
        (checked, Some(bundle.config.issuer.url()?.clone()))
    } else {
        let checked = check_documents_dir(&a.dir, a.issuer.as_deref(), extra.as_ref())?;
        (checked, None)
    };
    let Checked { mut report, jwks } = checked;
    if let Some(url) = &a.issuer {
        let fetcher = a.net.fetcher()?;
        served::check_issuer(
            &mut report,
            url,
            config_issuer.as_ref(),
            a.net.ca_cert.is_some(),
            jwks.as_ref(),
            &mut |u| fetcher.get(u),
        );
    }
    print_report(&report, a.output);
    if report.failed() {
        return Err(Exit::CHECKS_FAILED.into());
    }
    Ok(())
}

fn find_first(dir: &Path, candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(|c| dir.join(c)).find(|p| p.is_file())
}

/// Checks a directory of documents laid out as served, without irsa.yaml.
fn check_documents_dir(
    dir: &Path,
    issuer: Option<&str>,
    extra: Option<&PrivateKey>,
) -> Result<Checked> {
    let disc = find_first(
        dir,
        &[
            ".well-known/openid-configuration",
            "issuer/.well-known/openid-configuration",
        ],
    );
    let jwks_file = find_first(
        dir,
        &[
            "openid/v1/jwks",
            "keys.json",
            "issuer/openid/v1/jwks",
            "issuer/keys.json",
        ],
    );
    if disc.is_none() && jwks_file.is_none() {
        bail!(
            "{} has no {CONFIG_FILE} and no issuer documents ({ISSUER_DIR}/.well-known/openid-configuration, openid/v1/jwks or keys.json); pass a bundle directory or create one with `irsa init`",
            dir.display()
        );
    }
    let read = |p: &Option<PathBuf>| -> Result<Option<String>> {
        match p {
            Some(p) => Ok(Some(
                fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            )),
            None => Ok(None),
        }
    };
    let issuer = issuer.and_then(|u| IssuerUrl::parse(u).ok());
    Ok(bundle_check::check_documents(
        read(&jwks_file)?.as_deref(),
        read(&disc)?.as_deref(),
        issuer.as_ref(),
        extra,
        crate::cmd::now(),
    ))
}
