//! `irsa keys generate`, and staged rotation: `irsa keys rotate`,
//! `irsa keys status`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use irsa_core::config::{KeyConfig, KeyState};
use irsa_core::{Algorithm, PrivateKey};

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
    /// Skip the safety check of this stage (published JWKS; token lifetime).
    #[arg(long)]
    pub force: bool,
    /// Longest token lifetime in use, in seconds (the webhook's and pods'
    /// token expiration; kube-apiserver --service-account-max-token-expiration).
    #[arg(long, default_value_t = 86_400)]
    pub max_token_lifetime: i64,
    /// Extra wait after that, in seconds (clock skew, caches, slow kubelets).
    #[arg(long, default_value_t = 3_600)]
    pub margin: i64,
    /// Algorithm of the next key (default: the active key's).
    #[arg(long, value_parser = parse_alg)]
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
        KeysCommand::Rotate(a) => rotate(a),
        KeysCommand::Status(a) => status(a),
    }
}

fn parse_time(s: Option<&str>) -> Option<i64> {
    time::OffsetDateTime::parse(s?, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Where a rotation stands, and the next step.
fn describe(cfg: &irsa_core::IrsaConfig, lifetime: i64, margin: i64) -> (String, String) {
    let next = cfg.keys.iter().find(|k| k.state == KeyState::Next);
    let previous: Vec<&KeyConfig> = cfg
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Previous)
        .collect();
    if let Some(n) = next {
        return (
            format!("stage publish done: {} is published as the next key", n.public_key),
            "1. `irsa apply` (the JWKS now carries both keys); 2. give every apiserver both public keys (`irsa cluster config`), still signing with the active key; 3. `irsa keys rotate --stage switch`".into(),
        );
    }
    if !previous.is_empty() {
        let since = previous
            .iter()
            .filter_map(|k| parse_time(k.deactivated.as_deref()))
            .max();
        let when = since.map(|t| t + lifetime + margin);
        let wait = match when {
            Some(t) if t > crate::cmd::now() => format!(
                "wait until {} ({} s from now) so every token the old key signed has expired, then `irsa keys rotate --stage retire`",
                crate::cmd::rfc3339(t),
                t - crate::cmd::now()
            ),
            _ => "`irsa keys rotate --stage retire` (every token the old key signed has expired)".into(),
        };
        return (
            format!(
                "stage switch done: the apiserver signs with the new key; {} still verif{}",
                previous
                    .iter()
                    .map(|k| k.public_key.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if previous.len() == 1 { "ies" } else { "y" }
            ),
            format!(
                "1. roll out the new signing key (`irsa cluster config`) if not done; 2. {wait}"
            ),
        );
    }
    (
        "no rotation in progress".into(),
        "`irsa keys rotate --stage publish` starts one".into(),
    )
}

fn status(a: StatusArgs) -> Result<()> {
    let bundle = crate::bundle::Bundle::load_file(&a.file)?;
    for k in bundle.keys()? {
        let e = &k.entry;
        println!(
            "{:<9} {:<32} kid {}  created {}{}{}",
            format!("{:?}", e.state).to_lowercase(),
            e.public_key,
            k.public.kid(),
            e.created.as_deref().unwrap_or("?"),
            e.activated
                .as_deref()
                .map(|t| format!(", signing since {t}"))
                .unwrap_or_default(),
            e.deactivated
                .as_deref()
                .map(|t| format!(", stopped signing {t}"))
                .unwrap_or_default(),
        );
    }
    let (state, next) = describe(&bundle.config, a.max_token_lifetime, a.margin);
    println!("\n{state}\nnext: {next}");
    Ok(())
}

/// Writes `keys` into the config read under `edit`, then the documents.
fn save(
    edit: &ConfigEdit,
    bundle: &crate::bundle::Bundle,
    keys: &[KeyConfig],
) -> Result<crate::bundle::Bundle> {
    save_keys(edit, bundle, keys)?;
    save_documents(bundle)
}

/// Writes `keys` into the config read under `edit`.
fn save_keys(edit: &ConfigEdit, bundle: &crate::bundle::Bundle, keys: &[KeyConfig]) -> Result<()> {
    let path = bundle.dir.join(crate::bundle::CONFIG_FILE);
    let new_text = crate::yamledit::replace_keys(edit.text(), keys)
        .with_context(|| format!("cannot update {}", path.display()))?;
    edit.commit(&new_text)
}

/// Re-reads the saved bundle and writes its documents.
fn save_documents(bundle: &crate::bundle::Bundle) -> Result<crate::bundle::Bundle> {
    let bundle = crate::bundle::Bundle::load(&bundle.dir)?;
    let docs = bundle.render()?;
    bundle.write_documents(&docs)?;
    Ok(bundle)
}

fn rotate(a: RotateArgs) -> Result<()> {
    crate::bundle::Bundle::dir_of(&a.file)?;
    // Locked until the new key list is written, so no other irsa edit interleaves.
    let edit = ConfigEdit::open(&a.file)?;
    let bundle = crate::bundle::Bundle::from_text(&a.file, edit.text())?;
    let cfg = &bundle.config;
    let now = crate::cmd::now();
    let stamp = crate::cmd::rfc3339(now);
    let mut keys = cfg.keys.clone();
    let Some(active_at) = keys.iter().position(|k| k.state == KeyState::Active) else {
        bail!("irsa.yaml has no active key");
    };
    match a.stage {
        Stage::Publish => {
            if let Some(n) = keys.iter().find(|k| k.state == KeyState::Next) {
                bail!("a rotation is already under way: {} is the next key; carry on with `irsa keys rotate --stage switch` (`irsa keys status` shows where it stands)", n.public_key);
            }
            if keys.iter().any(|k| k.state == KeyState::Previous) && !a.force {
                bail!("the previous rotation is not finished (a `previous` key still verifies): run `irsa keys rotate --stage retire` first");
            }
            let algorithm = a.algorithm.unwrap_or(keys[active_at].algorithm);
            let tag = time::OffsetDateTime::from_unix_timestamp(now)
                .ok()
                .and_then(|t| {
                    t.format(time::macros::format_description!(
                        "[year][month][day]-[hour][minute][second]"
                    ))
                    .ok()
                })
                .unwrap_or_else(|| now.to_string());
            let public = format!("keys/sa-signer-{tag}.pub");
            let private = format!("keys/sa-signer-{tag}.key");
            let (pub_path, key_path) = (bundle.resolve(&public), bundle.resolve(&private));
            fsutil::ensure_writable(&[&key_path, &pub_path], false)?;
            let key = PrivateKey::generate(algorithm, 2048)?;
            fsutil::write_atomic(&key_path, key.to_pem().as_bytes(), fsutil::PRIVATE)?;
            fsutil::write_atomic(
                &pub_path,
                key.public_key().to_pem().as_bytes(),
                fsutil::PUBLIC,
            )?;
            keys.push(KeyConfig {
                public_key: public.clone(),
                private_key: Some(private.clone()),
                algorithm,
                state: KeyState::Next,
                created: Some(stamp),
                activated: None,
                deactivated: None,
            });
            if let Err(e) = save_keys(&edit, &bundle, &keys) {
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
            let (_, next) = describe(&bundle.config, a.max_token_lifetime, a.margin);
            println!("next: {next}");
        }
        Stage::Switch => {
            let Some(next_at) = keys.iter().position(|k| k.state == KeyState::Next) else {
                bail!("no next key to switch to: start with `irsa keys rotate --stage publish`");
            };
            let next_key = bundle
                .keys()?
                .into_iter()
                .find(|k| k.entry.state == KeyState::Next)
                .context("the next key cannot be read")?;
            if keys[next_at].private_key.is_none() {
                bail!(
                    "the next key has no privateKey in irsa.yaml; the apiserver needs it to sign"
                );
            }
            let kid = next_key.public.kid();
            let url = format!(
                "{}/{}",
                cfg.issuer.url.as_str(),
                cfg.issuer.jwks_path.as_str()
            );
            if a.force {
                status!("warning: --force: not checking that {url} publishes kid {kid}");
            } else {
                let fetcher = a.net.fetcher()?;
                let published = fetcher
                    .get(&url)
                    .map_err(|e| anyhow::anyhow!("cannot fetch the published JWKS {url}: {e}"))
                    .and_then(|f| {
                        if f.status != 200 {
                            bail!("GET {url} returned {}", f.status);
                        }
                        irsa_core::Jwks::from_json(&f.body)
                            .map_err(|e| anyhow::anyhow!("{url} is not a JWKS: {e}"))
                    });
                let has = published
                    .as_ref()
                    .map(|j| j.find(kid.as_str()).next().is_some());
                match has {
                    Ok(true) => println!("checked: {url} publishes the next key (kid {kid})"),
                    Ok(false) => {
                        status!("irsa: {url} does not publish the next key (kid {kid}) yet; switching now would break every pod's AWS access until it does.\n      Run `irsa apply` (or upload issuer/ to your host), wait for caches to expire, and retry. (--force skips this check.)");
                        return Err(crate::Exit::CHECKS_FAILED.into());
                    }
                    Err(e) => {
                        status!("irsa: {e:#}\n      The switch needs proof that STS can fetch the next key. (--force skips this check.)");
                        return Err(crate::Exit::CHECKS_FAILED.into());
                    }
                }
            }
            keys[active_at].state = KeyState::Previous;
            keys[active_at].deactivated = Some(stamp.clone());
            keys[next_at].state = KeyState::Active;
            keys[next_at].activated = Some(stamp);
            let bundle = save(&edit, &bundle, &keys)?;
            println!(
                "switched: {} signs from now on; {} still verifies",
                bundle.config.keys[next_at].public_key, bundle.config.keys[active_at].public_key
            );
            let (_, next) = describe(&bundle.config, a.max_token_lifetime, a.margin);
            println!("next: {next}");
        }
        Stage::Retire => {
            let previous: Vec<usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.state == KeyState::Previous)
                .map(|(i, _)| i)
                .collect();
            if previous.is_empty() {
                bail!("no previous key to retire (`irsa keys status` shows where the rotation stands)");
            }
            let since = previous
                .iter()
                .filter_map(|i| parse_time(keys[*i].deactivated.as_deref()))
                .max();
            let ready = since.map(|t| t + a.max_token_lifetime + a.margin);
            match ready {
                Some(t) if t > now && !a.force => {
                    status!(
                        "irsa: tokens signed by the old key may be valid until {} ({} s from now): retiring it earlier would break pods still holding them.\n      Retry then, or pass --force if no such token is in use (--max-token-lifetime and --margin set the wait).",
                        crate::cmd::rfc3339(t),
                        t - now
                    );
                    return Err(crate::Exit::CHECKS_FAILED.into());
                }
                None if !a.force => bail!("the previous key has no `deactivated` time in irsa.yaml; pass --force once its tokens have expired"),
                _ => {}
            }
            for i in &previous {
                keys[*i].state = KeyState::Retired;
            }
            let bundle = save(&edit, &bundle, &keys)?;
            println!(
                "retired {} key(s); the JWKS now holds {} key(s)",
                previous.len(),
                bundle
                    .config
                    .keys
                    .iter()
                    .filter(|k| k.state.verifies())
                    .count()
            );
            println!("next: 1. `irsa apply` (the old key leaves the JWKS); 2. `irsa cluster config` and roll out (the apiserver stops accepting the old key). The key files stay on disk.");
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
