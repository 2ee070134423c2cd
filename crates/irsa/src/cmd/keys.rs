//! `irsa keys generate`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use irsa_core::{Algorithm, PrivateKey};

use crate::fsutil;
use crate::output::Format;

/// Key commands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a service-account signing key pair (private key written 0600).
    Generate(GenerateArgs),
}

/// Arguments of `irsa keys generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// Where to write the private key (PEM, mode 0600), e.g. sa.key.
    #[arg(long)]
    pub private_key: PathBuf,
    /// Where to write the public key (PEM SubjectPublicKeyInfo), e.g. sa.pub.
    #[arg(long)]
    pub public_key: PathBuf,
    /// Signing algorithm (kube-apiserver signs RSA keys with RS256).
    #[arg(long, default_value = "RS256", value_parser = parse_alg)]
    pub algorithm: Algorithm,
    /// RSA modulus size in bits: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 2048)]
    pub bits: usize,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// Output format for the key summary.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

/// Parses an algorithm name for clap.
pub fn parse_alg(s: &str) -> Result<Algorithm, String> {
    s.parse()
        .map_err(|e: irsa_core::key::UnknownAlgorithm| e.to_string())
}

/// Runs a keys subcommand.
pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Generate(a) => generate(a),
    }
}

fn generate(a: GenerateArgs) -> Result<()> {
    if a.private_key == a.public_key {
        bail!("--private-key and --public-key are the same file; give them different names (e.g. sa.key and sa.pub)");
    }
    if a.algorithm.is_rsa() && ![2048, 3072, 4096].contains(&a.bits) {
        bail!("--bits {} is not supported: use 2048, 3072 or 4096", a.bits);
    }
    fsutil::ensure_writable(&[&a.private_key, &a.public_key], a.force)?;
    let key = PrivateKey::generate(a.algorithm, a.bits)?;
    fsutil::write_atomic(&a.private_key, key.to_pem().as_bytes(), fsutil::PRIVATE)?;
    fsutil::write_atomic(
        &a.public_key,
        key.public_key().to_pem().as_bytes(),
        fsutil::PUBLIC,
    )?;
    if !a.algorithm.kube_apiserver_signs() {
        tracing::warn!(algorithm = %a.algorithm, "kube-apiserver signs RSA keys with RS256; use this algorithm only with a signer that uses it");
        eprintln!("warning: kube-apiserver always signs RSA keys with RS256; publish {} only for a signer that uses it", a.algorithm);
    }
    let kid = key.public_key().kid();
    match a.output {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "privateKey": a.private_key, "publicKey": a.public_key,
                "algorithm": a.algorithm, "key": key.public_key().describe(), "kid": kid,
            })
        ),
        Format::Text => {
            println!(
                "wrote {} (private, 0600) and {}",
                a.private_key.display(),
                a.public_key.display()
            );
            println!(
                "key: {} {}, kid {kid}",
                key.public_key().describe(),
                a.algorithm
            );
        }
    }
    Ok(())
}
