//! `irsa jwks`, `irsa discovery` and `irsa render`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_core::parse::parse_keys;
use irsa_core::{Algorithm, Discovery, IssuerUrl, Jwks, JwksPath, PublicKey};

use crate::bundle::Bundle;
use crate::exit::Exit;
use crate::fsutil;
use crate::output::status;

/// Arguments of `irsa jwks`.
#[derive(Args)]
pub struct JwksArgs {
    /// Key files (`-` for stdin): PEM/DER public or private keys, certificates,
    /// OpenSSH public keys, JWKS, or a `{cluster}-sa` Secret YAML. Several keys
    /// make one JWKS, in order (rotation).
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
    /// Also publish each key with `kid: ""` for apiservers older than 1.16.
    #[arg(long)]
    pub legacy_empty_kid: bool,
    /// Algorithm for RSA keys (EC keys always use their curve's).
    #[arg(long, value_parser = crate::args::parse_alg)]
    pub algorithm: Option<Algorithm>,
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `irsa discovery`.
#[derive(Args)]
pub struct DiscoveryArgs {
    /// Issuer URL (https, no trailing slash), exactly as --service-account-issuer.
    #[arg(long)]
    pub issuer: String,
    /// JWKS URL; default ISSUER/openid/v1/jwks (or ISSUER/keys.json with --jwks-path).
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// Path of the JWKS under the issuer when --jwks-uri is not given.
    #[arg(long, default_value = "openid/v1/jwks")]
    pub jwks_path: String,
    /// Take the signing algorithms from this JWKS file.
    #[arg(long, value_name = "FILE", conflicts_with = "algorithm")]
    pub jwks: Option<PathBuf>,
    /// Signing algorithms to advertise (repeatable); default RS256.
    #[arg(long, value_parser = crate::args::parse_alg)]
    pub algorithm: Vec<Algorithm>,
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `irsa render`.
#[derive(Args)]
pub struct RenderArgs {
    /// Bundle directory holding irsa.yaml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Write nothing; exit 1 if the documents on disk differ from irsa.yaml.
    #[arg(long)]
    pub check: bool,
}

fn emit(out: Option<&PathBuf>, text: &str) -> Result<()> {
    match out {
        Some(path) => {
            fsutil::write_atomic(path, text.as_bytes(), fsutil::PUBLIC)?;
            status!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Runs `irsa jwks`.
pub fn jwks(a: JwksArgs) -> Result<()> {
    let mut keys: Vec<(PublicKey, Algorithm)> = Vec::new();
    for file in &a.keys {
        let bytes = fsutil::read_input(file)?;
        let found = parse_keys(&bytes).with_context(|| format!("in {file}"))?;
        for k in found {
            let alg = match (&k.public, a.algorithm, k.declared_alg) {
                (PublicKey::Rsa { .. }, Some(alg), _) => alg,
                (_, _, Some(declared)) => declared,
                (public, _, None) => public.default_algorithm(),
            };
            k.public
                .check_algorithm(alg)
                .with_context(|| format!("in {file}"))?;
            tracing::info!(file, kid = %k.public.kid(), origin = k.origin, "key");
            keys.push((k.public, alg));
        }
    }
    let jwks = Jwks::build(keys.iter().map(|(k, a)| (k, *a)), a.legacy_empty_kid);
    emit(a.out.as_ref(), &jwks.to_json())
}

/// Runs `irsa discovery`.
pub fn discovery(a: DiscoveryArgs) -> Result<()> {
    let issuer = IssuerUrl::parse(&a.issuer)?;
    let jwks_uri = match a.jwks_uri {
        Some(u) => {
            if !u.starts_with("https://") {
                bail!("--jwks-uri {u:?} is not https; STS fetches keys over HTTPS only");
            }
            u
        }
        None => {
            let path = match a.jwks_path.trim_matches('/') {
                "openid/v1/jwks" => JwksPath::OpenidV1Jwks,
                "keys.json" => JwksPath::KeysJson,
                other => bail!("--jwks-path {other:?} is not supported: use openid/v1/jwks or keys.json, or pass --jwks-uri"),
            };
            issuer.jwks_url(path)
        }
    };
    let algs: Vec<String> = match (&a.jwks, a.algorithm.is_empty()) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let jwks = Jwks::from_json(&text).with_context(|| format!("in {}", file.display()))?;
            let algs = jwks.algorithms();
            if algs.is_empty() {
                bail!(
                    "{} declares no alg on any key; regenerate it with `irsa jwks`",
                    file.display()
                );
            }
            algs
        }
        (None, true) => vec!["RS256".into()],
        (None, false) => a.algorithm.iter().map(|x| x.to_string()).collect(),
    };
    emit(
        a.out.as_ref(),
        &Discovery::new(&issuer, jwks_uri, &algs).to_json(),
    )
}

/// Runs `irsa render`.
pub fn render(a: RenderArgs) -> Result<()> {
    let bundle = Bundle::load(&a.dir)?;
    let docs = bundle.render()?;
    if a.check {
        let mut stale = Vec::new();
        for (path, want) in [
            (bundle.discovery_path(), &docs.discovery),
            (bundle.jwks_path(), &docs.jwks),
        ] {
            if std::fs::read_to_string(&path).ok().as_ref() != Some(want) {
                stale.push(path.display().to_string());
            }
        }
        if stale.is_empty() {
            println!("documents are up to date with irsa.yaml");
            return Ok(());
        }
        println!(
            "out of date with irsa.yaml: {} (run `irsa render {}`)",
            stale.join(", "),
            a.dir.display()
        );
        return Err(Exit::CHECKS_FAILED.into());
    }
    bundle.write_documents(&docs)?;
    println!("wrote {}", bundle.discovery_path().display());
    println!("wrote {}", bundle.jwks_path().display());
    Ok(())
}
