//! `irsa keys generate`, and staged rotation: `irsa keys rotate`,
//! `irsa keys status`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use irsa_core::config::{KeyConfig, KeyState};
use irsa_core::rotation::{self, RetireOverrides, RotationError, Served, TokenWait, Verdict};
use irsa_core::{Algorithm, PrivateKey, Timestamp};

use crate::bundle::Bundle;
use crate::cfgedit::ConfigEdit;
use crate::fsutil;
use crate::output::status;
use crate::output::Format;

/// Key commands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a service-account signing key pair (private key written 0600).
    Generate(GenerateArgs),
    /// Rotate the signing key in stages: publish, switch, retire.
    Rotate(RotateArgs),
    /// Show where a key rotation stands and what to do next.
    Status(StatusArgs),
}

/// Rotation stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Generate the next key; the JWKS and apiserver config carry both keys.
    Publish,
    /// Sign with the next key, once the published JWKS holds it.
    Switch,
    /// Drop the previous key, once every token it signed has expired.
    Retire,
}

/// Arguments of `irsa keys rotate`.
#[derive(Args)]
pub struct RotateArgs {
    /// Which stage to carry out.
    #[arg(long, value_enum)]
    pub stage: Stage,
    /// The bundle's config file.
    #[arg(short = 'f', long = "file", default_value = crate::bundle::CONFIG_FILE)]
    pub file: PathBuf,
    /// Skip the safety checks of this stage (switch: the published JWKS;
    /// retire: the key the cluster signs with and the token lifetime).
    #[arg(long)]
    pub force: bool,
    /// Retire without observing the cluster, on your word that every
    /// kube-apiserver signs with the active key: if one still signs with the
    /// previous key, retiring breaks every pod's AWS access. The token wait
    /// still applies; a cluster observed signing with another key still refuses.
    #[arg(long)]
    pub assume_rolled_out: bool,
    /// Kubeconfig of the cluster to observe (default: $KUBECONFIG,
    /// ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Longest token lifetime in use, in seconds (the webhook's and pods'
    /// token expiration; kube-apiserver --service-account-max-token-expiration).
    #[arg(long, default_value_t = 86_400)]
    pub max_token_lifetime: i64,
    /// Extra wait after that, in seconds (clock skew, caches, slow kubelets).
    #[arg(long, default_value_t = 3_600)]
    pub margin: i64,
    /// Algorithm of the next key (default: the active key's).
    #[arg(long, value_parser = crate::args::parse_alg)]
    pub algorithm: Option<Algorithm>,
    #[command(flatten)]
    pub net: crate::fetch::Network,
}

/// Arguments of `irsa keys status`.
#[derive(Args)]
pub struct StatusArgs {
    /// The bundle's config file.
    #[arg(short = 'f', long = "file", default_value = crate::bundle::CONFIG_FILE)]
    pub file: PathBuf,
    /// Longest token lifetime in use, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub max_token_lifetime: i64,
    /// Extra wait after that, in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub margin: i64,
    /// Kubeconfig of the cluster to observe (default: $KUBECONFIG,
    /// ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
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
    #[arg(long, default_value = "RS256", value_parser = crate::args::parse_alg)]
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

mod status;

use status::{judged, signing_lines};

/// Runs a keys subcommand.
pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Generate(a) => generate(a),
        KeysCommand::Rotate(a) => rotate(a),
        KeysCommand::Status(a) => status::status(a),
    }
}

/// After a stage: the step that follows it.
fn print_next(bundle: &Bundle, wait: TokenWait, file: &std::path::Path) {
    let now = Timestamp::saturating_from_unix(crate::cmd::now());
    let (_, next) =
        rotation::describe(&bundle.config, wait, &file.display().to_string(), None, now);
    println!("next: {next}");
}

/// A stage's refusal as the CLI reports it: a failed safety check is
/// printed and exits 1; anything else is an input error (exit 2).
fn refused(e: RotationError) -> anyhow::Error {
    if e.is_safety_check() {
        status!("irsa: {}", e.to_string().replace('\n', "\n      "));
        crate::exit::Exit::CHECKS_FAILED.into()
    } else {
        e.into()
    }
}

/// Writes `keys` into the config read under `edit`, then the documents.
fn save(edit: &ConfigEdit, bundle: &Bundle, keys: &[KeyConfig]) -> Result<Bundle> {
    save_keys(edit, bundle, keys)?;
    save_documents(bundle)
}

/// Writes `keys` into the config read under `edit`.
fn save_keys(edit: &ConfigEdit, bundle: &Bundle, keys: &[KeyConfig]) -> Result<()> {
    let path = bundle.dir.join(crate::bundle::CONFIG_FILE);
    let new_text = crate::yamledit::replace_keys(edit.text(), keys)
        .with_context(|| format!("cannot update {}", path.display()))?;
    edit.commit(&new_text)
}

/// Re-reads the saved bundle and writes its documents.
fn save_documents(bundle: &Bundle) -> Result<Bundle> {
    let bundle = Bundle::load(&bundle.dir)?;
    let docs = bundle.render()?;
    bundle.write_documents(&docs)?;
    Ok(bundle)
}

fn rotate(a: RotateArgs) -> Result<()> {
    Bundle::dir_of(&a.file)?;
    let wait = TokenWait::new(a.max_token_lifetime, a.margin)?;
    // Locked until the new key list is written, so no other irsa edit interleaves.
    let edit = ConfigEdit::open(&a.file)?;
    let bundle = Bundle::from_text(&a.file, edit.text())?;
    let cfg = &bundle.config;
    let now = Timestamp::saturating_from_unix(crate::cmd::now());
    if a.assume_rolled_out && a.stage != Stage::Retire {
        bail!(
            "{} applies to --stage retire only; drop it",
            rotation::ASSUME_ROLLED_OUT
        );
    }
    match a.stage {
        Stage::Publish => {
            let publish =
                rotation::publish(&cfg.keys, a.algorithm, now, a.force).map_err(refused)?;
            let (public, private) = (&publish.public_key, &publish.private_key);
            let (pub_path, key_path) = (bundle.resolve(public), bundle.resolve(private));
            fsutil::ensure_writable(&[&key_path, &pub_path], false)?;
            let key = PrivateKey::generate(publish.algorithm, 2048)?;
            fsutil::write_atomic(&key_path, key.to_pem().as_bytes(), fsutil::PRIVATE)?;
            fsutil::write_atomic(
                &pub_path,
                key.public_key().to_pem().as_bytes(),
                fsutil::PUBLIC,
            )?;
            if let Err(e) = save_keys(&edit, &bundle, &publish.keys) {
                // Listed nowhere: do not leave an orphan key pair behind.
                let _ = std::fs::remove_file(&key_path);
                let _ = std::fs::remove_file(&pub_path);
                return Err(e);
            }
            let bundle = save_documents(&bundle)?;
            println!(
                "published next key {public} (kid {}); private key {private} (0600)",
                key.public_key().kid()
            );
            print_next(&bundle, wait, &a.file);
        }
        Stage::Switch => {
            let switch = rotation::switch(&cfg.keys, now).map_err(refused)?;
            let next_key = bundle
                .keys()?
                .into_iter()
                .find(|k| k.entry.state == KeyState::Next)
                .context("the next key cannot be read")?;
            let kid = next_key.public.kid();
            let url = format!(
                "{}/{}",
                cfg.issuer.url()?.as_str(),
                cfg.issuer.jwks_path.as_str()
            );
            if a.force {
                status!("warning: --force: not checking that {url} publishes kid {kid}");
            } else {
                let fetched = a.net.fetcher()?.get(&url);
                let served = match &fetched {
                    Ok(f) => Served::Response {
                        status: f.status,
                        body: &f.body,
                    },
                    Err(why) => Served::Unreachable(why),
                };
                rotation::check_published(&url, kid.as_str(), served).map_err(refused)?;
                println!("checked: {url} publishes the next key (kid {kid})");
            }
            let bundle = save(&edit, &bundle, &switch.keys)?;
            println!(
                "switched in irsa.yaml: {} is the active key, {} still verifies. The cluster still signs with the old key until you roll the new one out.",
                bundle.config.keys[switch.signing].public_key,
                bundle.config.keys[switch.stopped].public_key
            );
            print_next(&bundle, wait, &a.file);
        }
        Stage::Retire => {
            let observation = crate::net::signing_key(a.kubeconfig.as_deref());
            let finding = judged(&bundle, &observation, now)?;
            println!("{}", signing_lines(&finding));
            let overrides = RetireOverrides {
                force: a.force,
                assume_rolled_out: a.assume_rolled_out,
            };
            let retire = match rotation::retire_observed(&cfg.keys, &finding, wait, now, overrides)
            {
                Ok(retire) => retire,
                Err(e) => {
                    // What was observed is kept, even though retire refuses.
                    if let Some(keys) = rotation::apply_record(&cfg.keys, finding.record) {
                        save_keys(&edit, &bundle, &keys)?;
                    }
                    return Err(refused(e));
                }
            };
            match (a.force, finding.verdict) {
                (true, Verdict::Unexpected) => status!("warning: --force: retiring although {}", finding.detail),
                (true, Verdict::Unobserved) | (false, Verdict::Unobserved) => status!("warning: {}: retiring without having observed which key the cluster signs with", if a.force { "--force" } else { rotation::ASSUME_ROLLED_OUT }),
                _ => {}
            }
            save(&edit, &bundle, &retire.keys)?;
            println!(
                "retired {} key(s); the JWKS now holds {} key(s)",
                retire.retired.len(),
                retire.verifying()
            );
            println!("next: 1. `irsa apply -f {f}` (the old key leaves the JWKS); 2. `irsa cluster config -f {f} ... -o DIR --force` and roll out (the apiserver stops accepting the old key; NOTES.txt names the key files no longer used). The key files stay on disk.", f = a.file.display());
        }
    }
    Ok(())
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
        status!("warning: kube-apiserver always signs RSA keys with RS256; publish {} only for a signer that uses it", a.algorithm);
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
