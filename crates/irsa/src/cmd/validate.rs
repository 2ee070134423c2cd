//! `irsa validate`: every link from key files to the served documents.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_core::checks::{self, Report};
use irsa_core::config::KeyState;
use irsa_core::parse::{parse_keys, parse_private_key};
use irsa_core::served::{self, Document};
use irsa_core::{Algorithm, IssuerUrl, Jwks, PrivateKey, PublicKey};

use crate::bundle::{Bundle, CONFIG_FILE, ISSUER_DIR};
use crate::fetch::{Fetched, Fetcher, Network};
use crate::fsutil;
use crate::output::{print_report, Format};
use crate::Exit;

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
        let report = check_bundle(&bundle, extra.as_ref())?;
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

fn load_private(path: &Path, report: &mut Report, name: &str) -> Option<PrivateKey> {
    match fsutil::mode_of(path) {
        None => {
            report.fail(format!("{name}: private key file"), format!("{} does not exist", path.display()), "restore it from backup, or remove privateKey from irsa.yaml if the key lives elsewhere");
            return None;
        }
        Some(mode) if mode & 0o077 != 0 => report.fail(
            format!("{name}: private key permissions"),
            format!(
                "{} is mode {mode:04o}; others can read the signing key",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        ),
        Some(mode) => report.pass(
            format!("{name}: private key permissions"),
            format!("mode {mode:04o}"),
        ),
    }
    match fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(parse_private_key(&b)?))
    {
        Ok(k) => Some(k),
        Err(e) => {
            report.fail(
                format!("{name}: private key parses"),
                format!("{e:#}"),
                "point privateKey at the PEM signing key",
            );
            None
        }
    }
}

/// Local checks of a bundle: config, key files, documents, drift, signing.
pub fn check_bundle(bundle: &Bundle, extra: Option<&PrivateKey>) -> Result<Report> {
    let mut report = Report::default();
    let cfg = &bundle.config;
    let url = cfg.issuer.url()?;
    report.pass(
        "irsa.yaml: valid",
        format!("cluster {}, issuer {url}", cfg.cluster),
    );
    let mut published: Vec<(String, PublicKey, Algorithm)> = Vec::new();
    let mut active_private: Option<(PrivateKey, Algorithm)> = None;
    for entry in &cfg.keys {
        let name = format!("key {}", entry.public_key);
        let path = bundle.resolve(&entry.public_key);
        let parsed = fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(parse_keys(&b)?))
            .with_context(|| format!("cannot use public key {}", path.display()));
        let public = match parsed {
            Ok(keys) if keys.len() == 1 => keys.into_iter().next().map(|k| k.public),
            Ok(keys) => {
                report.fail(
                    format!("{name}: one key per file"),
                    format!("{} keys found", keys.len()),
                    "keep one public key per file",
                );
                None
            }
            Err(e) => {
                report.fail(
                    format!("{name}: parses"),
                    format!("{e:#}"),
                    "point publicKey at the PEM public key",
                );
                None
            }
        };
        let Some(public) = public else { continue };
        if let Err(e) = public.check_algorithm(entry.algorithm) {
            report.fail(
                format!("{name}: algorithm fits key"),
                e.to_string(),
                "fix algorithm in irsa.yaml",
            );
            continue;
        }
        report.pass(
            format!("{name}: parses"),
            format!(
                "{} {} {}, kid {}",
                public.describe(),
                entry.algorithm,
                state_name(entry.state),
                public.kid()
            ),
        );
        if let Some(private_file) = &entry.private_key {
            if let Some(private) = load_private(&bundle.resolve(private_file), &mut report, &name) {
                let ok = report.check(
                    private.public_key() == &public,
                    &format!("{name}: private and public key match"),
                    "same key pair",
                    format!(
                        "{private_file} (kid {}) is not the private half of {} (kid {})",
                        private.public_key().kid(),
                        entry.public_key,
                        public.kid()
                    ),
                    "list the matching pair, or regenerate with `irsa keys generate`",
                );
                if ok && entry.state == KeyState::Active {
                    active_private = Some((private, entry.algorithm));
                }
            }
        }
        published.push((entry.public_key.clone(), public, entry.algorithm));
    }

    let disc_path = bundle.discovery_path();
    let jwks_path = bundle.jwks_path();
    let jwks_text = fs::read_to_string(&jwks_path);
    let disc_text = fs::read_to_string(&disc_path);
    let jwks = match &jwks_text {
        Ok(t) => checks::check_jwks("jwks", t, &mut report),
        Err(e) => {
            report.fail(
                "jwks: exists",
                format!("{}: {e}", jwks_path.display()),
                format!("run `irsa render {}`", bundle.dir.display()),
            );
            None
        }
    };
    match &disc_text {
        Ok(t) => {
            checks::check_discovery(
                "discovery",
                t,
                Some(url),
                Some(cfg.issuer.jwks_path),
                jwks.as_ref(),
                &mut report,
            );
        }
        Err(e) => report.fail(
            "discovery: exists",
            format!("{}: {e}", disc_path.display()),
            format!("run `irsa render {}`", bundle.dir.display()),
        ),
    }
    if let Some(jwks) = &jwks {
        checks::check_keys_published("jwks", &published, jwks, &mut report);
    }
    if published.len() == cfg.keys.len() {
        let keys: Vec<(PublicKey, Algorithm)> =
            published.iter().map(|(_, k, a)| (k.clone(), *a)).collect();
        let docs = irsa_core::documents::render(cfg, &keys)?;
        let same = disc_text.as_ref().ok() == Some(&docs.discovery)
            && jwks_text.as_ref().ok() == Some(&docs.jwks);
        report.check(
            same,
            "documents: up to date with irsa.yaml",
            "byte-identical to a fresh render",
            format!(
                "{} or {} differs from what irsa.yaml renders",
                disc_path.display(),
                jwks_path.display()
            ),
            format!(
                "run `irsa render {}` and publish again",
                bundle.dir.display()
            ),
        );
    }
    if let (Some(jwks), Some((private, alg))) = (&jwks, &active_private) {
        checks::check_sign_verify(private, *alg, url, jwks, crate::cmd::now(), &mut report);
    }
    if let (Some(jwks), Some(extra)) = (&jwks, extra) {
        // The active key signed a probe above: the same key once is enough.
        let signed_already = active_private
            .as_ref()
            .is_some_and(|(k, _)| k.public_key() == extra.public_key());
        check_extra_private(extra, url, jwks, !signed_already, &mut report);
    }
    Ok(report)
}

/// `--private-key`: its public half is published and (with `sign`) it
/// signs tokens the JWKS verifies.
fn check_extra_private(
    key: &PrivateKey,
    issuer: &IssuerUrl,
    jwks: &Jwks,
    sign: bool,
    report: &mut Report,
) {
    let kid = key.public_key().kid();
    let found = jwks.find(kid.as_str()).next().cloned();
    let alg = found
        .as_ref()
        .and_then(|j| j.alg.as_deref())
        .and_then(|a| a.parse().ok())
        .unwrap_or(key.public_key().default_algorithm());
    if report.check(
        found.is_some(),
        "--private-key: public half is published",
        format!("kid {kid}"),
        format!("kid {kid} of --private-key is not in the JWKS; STS will reject every token this apiserver signs"),
        "add its public key to irsa.yaml (or publish `irsa jwks` of it) and upload the JWKS",
    ) && sign
    {
        checks::check_sign_verify(key, alg, issuer, jwks, crate::cmd::now(), report);
    }
}

fn state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Active => "active",
        KeyState::Next => "next",
        KeyState::Previous => "previous",
        KeyState::Retired => "retired",
    }
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
        check_extra_private(extra, issuer, jwks, true, &mut report);
    }
    Ok((report, jwks))
}

/// Judges a fetched document with the rules `irsa doctor` applies too.
fn check_response(report: &mut Report, label: &str, document: Document, resp: &Fetched) -> bool {
    served::record(report, document, &resp.served(), |rule| {
        format!("{label}: {}", rule.title())
    })
}

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
    let disc = match fetcher.get(&issuer.discovery_url()) {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                "remote: discovery fetch",
                format!("{}: {e}", issuer.discovery_url()),
                "the issuer must be reachable over HTTPS with a certificate from a public CA (S3 and CloudFront are); check DNS, TLS and the path",
            );
            return;
        }
    };
    report.pass(
        "remote: TLS certificate",
        format!(
            "valid for {}",
            issuer.host_path().split('/').next().unwrap_or_default()
        ),
    );
    if !check_response(report, "remote discovery", Document::Discovery, &disc) {
        return;
    }
    let Some(doc) = checks::check_discovery(
        "remote discovery",
        &disc.body,
        Some(&issuer),
        None,
        None,
        report,
    ) else {
        return;
    };
    let jwks_resp = match fetcher.get(&doc.jwks_uri) {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                "remote: JWKS fetch",
                format!("{}: {e}", doc.jwks_uri),
                "serve the JWKS at jwks_uri over HTTPS",
            );
            return;
        }
    };
    if !check_response(report, "remote jwks", Document::Jwks, &jwks_resp) {
        return;
    }
    let Some(remote) = checks::check_jwks("remote jwks", &jwks_resp.body, report) else {
        return;
    };
    let algs = remote.algorithms();
    let missing: Vec<&String> = algs
        .iter()
        .filter(|a| !doc.id_token_signing_alg_values_supported.contains(a))
        .collect();
    report.check(
        missing.is_empty(),
        "remote discovery: algorithms match JWKS",
        format!("{algs:?}"),
        format!("served JWKS uses {missing:?}, not advertised by the served discovery document"),
        "re-render and re-upload both documents together",
    );
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
