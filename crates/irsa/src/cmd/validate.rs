//! `irsa validate`: every link from key files to the served documents.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_core::bundle as bundle_check;
use irsa_core::checks::{self, Report};
use irsa_core::parse::parse_private_key;
use irsa_core::served;
use irsa_core::{IssuerUrl, Jwks, PrivateKey};

use crate::bundle::{Bundle, CONFIG_FILE, ISSUER_DIR};
use crate::exit::Exit;
use crate::fetch::{Fetcher, Network};
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
    let (mut report, local_jwks, config_issuer) = if has_config {
        let bundle = Bundle::load(&a.dir)?;
        let report = bundle.check(extra.as_ref())?;
        let jwks = fs::read_to_string(bundle.jwks_path())
            .ok()
            .and_then(|t| Jwks::from_json(&t).ok());
        (report, jwks, Some(bundle.config.issuer.url()?.clone()))
    } else {
        let (report, jwks) = check_documents_dir(&a.dir, a.issuer.as_deref(), extra.as_ref())?;
        (report, jwks, None)
    };
    if let Some(url) = &a.issuer {
        let fetcher = a.net.fetcher()?;
        check_remote(
            &fetcher,
            url,
            config_issuer.as_ref(),
            local_jwks.as_ref(),
            a.net.ca_cert.is_some(),
            &mut report,
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
) -> Result<(Report, Option<Jwks>)> {
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
    let mut report = Report::default();
    let jwks = match &jwks_file {
        Some(p) => checks::check_jwks("jwks", &fs::read_to_string(p)?, &mut report),
        None => {
            report.fail(
                "jwks: exists",
                "no openid/v1/jwks or keys.json",
                "generate it with `irsa jwks`",
            );
            None
        }
    };
    let issuer = issuer.and_then(|u| IssuerUrl::parse(u).ok());
    let doc = match &disc {
        Some(p) => checks::check_discovery(
            "discovery",
            &fs::read_to_string(p)?,
            issuer.as_ref(),
            None,
            jwks.as_ref(),
            &mut report,
        ),
        None => {
            report.fail(
                "discovery: exists",
                "no .well-known/openid-configuration",
                "generate it with `irsa discovery`",
            );
            None
        }
    };
    let issuer = issuer.or_else(|| doc.as_ref().and_then(|d| IssuerUrl::parse(&d.issuer).ok()));
    if let (Some(jwks), Some(extra), Some(issuer)) = (&jwks, extra, &issuer) {
        bundle_check::check_extra_private(
            extra,
            issuer,
            jwks,
            true,
            crate::cmd::now(),
            &mut report,
        );
    }
    Ok((report, jwks))
}

/// Judges a fetched document with the rules `irsa doctor` applies too.
fn check_remote(
    fetcher: &Fetcher,
    url: &str,
    config_issuer: Option<&IssuerUrl>,
    local: Option<&Jwks>,
    private_ca: bool,
    report: &mut Report,
) {
    let issuer = match IssuerUrl::parse(url) {
        Ok(u) => u,
        Err(e) => {
            report.fail(
                "remote: issuer URL",
                e.to_string(),
                "pass the issuer exactly as --service-account-issuer",
            );
            return;
        }
    };
    if let Some(cfg) = config_issuer {
        report.check(
            cfg == &issuer,
            "remote: --issuer equals irsa.yaml issuer",
            issuer.to_string(),
            format!("--issuer {issuer} differs from irsa.yaml issuer {cfg}"),
            "check the issuer the apiserver and IAM use; they must be the same string",
        );
    }
    if private_ca {
        report.warn(
            "remote: certificate trust",
            "verified against --ca-cert only",
            "AWS STS trusts only public CAs; a private CA works here but not at AWS",
        );
    }
    let walked = served::walk(
        report,
        &issuer,
        ("remote discovery", "remote jwks"),
        &mut |url| fetcher.get(url),
    );
    if walked.reached {
        report.pass(
            "remote: TLS certificate",
            format!(
                "valid for {}",
                issuer.host_path().split('/').next().unwrap_or_default()
            ),
        );
    }
    let Some(remote) = walked.jwks else {
        return;
    };
    if let Some(local) = local {
        let remote_kids: Vec<&str> = remote
            .keys
            .iter()
            .filter_map(|k| k.kid.as_deref())
            .collect();
        let stale: Vec<&str> = local
            .keys
            .iter()
            .filter_map(|k| k.kid.as_deref())
            .filter(|k| !remote_kids.contains(k))
            .collect();
        report.check(
            stale.is_empty(),
            "remote jwks: has every local key",
            format!("{} kid(s) served", remote_kids.len()),
            format!("served JWKS lacks kid(s) {stale:?} from the local bundle"),
            "upload the bundle's JWKS (irsa apply)",
        );
    }
}
