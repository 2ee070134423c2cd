//! The local checks of an issuer bundle, judged from what was read off
//! disk: one public key per file, the algorithm fits the key, each private
//! key matches its public half and is readable by its owner only, the
//! documents exist, parse, publish every key and are byte-identical to a
//! fresh render of irsa.yaml, and the active key signs a token the JWKS
//! verifies. `irsa validate DIR` and `irsa init`/`irsa demo` (on the bundle
//! they just wrote) both report these; the CLI only reads the files.

use crate::checks::{self, Report};
use crate::config::{IrsaConfig, KeyState};
use crate::hosting::PendingUrl;
use crate::issuer::IssuerUrl;
use crate::jwks::Jwks;
use crate::key::{Algorithm, PublicKey};
use crate::parse::{parse_keys, parse_private_key};
use crate::private::PrivateKey;

/// A file as read: its path as shown to the user, and its bytes or why it
/// could not be read.
#[derive(Debug, Clone)]
pub struct FileRead {
    /// The path, as the messages name it.
    pub path: String,
    /// The contents, or the reading error's text.
    pub bytes: Result<Vec<u8>, String>,
}

/// A private key file as read: its permission bits too (`None`: it does
/// not exist).
#[derive(Debug, Clone)]
pub struct PrivateFile {
    /// The path, as the messages name it.
    pub path: String,
    /// `st_mode & 0o777`, or `None` when there is no such file.
    pub mode: Option<u32>,
    /// The contents, or the reading error's text.
    pub bytes: Result<Vec<u8>, String>,
}

/// The files of one `keys:` entry of irsa.yaml.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// `publicKey`.
    pub public: FileRead,
    /// `privateKey`, when the entry names one.
    pub private: Option<PrivateFile>,
}

/// What the checks look at: the parsed irsa.yaml and its files.
#[derive(Debug, Clone)]
pub struct BundleFiles<'a> {
    /// irsa.yaml.
    pub config: &'a IrsaConfig,
    /// The bundle directory as the user names it (in fixes such as
    /// `irsa render DIR`).
    pub dir: String,
    /// One per `config.keys` entry, in the same order.
    pub keys: Vec<KeyFiles>,
    /// The JWKS as rendered into the bundle.
    pub jwks: FileRead,
    /// The discovery document as rendered into the bundle.
    pub discovery: FileRead,
}

/// The checks of [`BundleFiles`], plus, for `extra` (the key an API
/// server signs with, given apart from irsa.yaml), that its public half is
/// published and signs a token the JWKS verifies. `now` is the time the
/// probe tokens are issued at.
pub fn check(
    files: &BundleFiles<'_>,
    extra: Option<&PrivateKey>,
    now: i64,
) -> Result<Checked, PendingUrl> {
    let mut report = Report::default();
    let cfg = files.config;
    let url = cfg.issuer.url()?;
    report.pass(
        "irsa.yaml: valid",
        format!("cluster {}, issuer {url}", cfg.cluster),
    );
    let mut published: Vec<(String, PublicKey, Algorithm)> = Vec::new();
    let mut active_private: Option<(PrivateKey, Algorithm)> = None;
    for (entry, key_files) in cfg.keys.iter().zip(&files.keys) {
        let name = format!("key {}", entry.public_key);
        let parsed = key_files
            .public
            .bytes
            .clone()
            .and_then(|b| parse_keys(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot use public key {}: {e}", key_files.public.path));
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
                    e,
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
        if let (Some(private_file), Some(file)) = (&entry.private_key, &key_files.private) {
            if let Some(private) = private_key(file, &mut report, &name) {
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

    let text = |f: &FileRead| {
        f.bytes
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|b| String::from_utf8(b.clone()).map_err(|e| e.to_string()))
    };
    let jwks_text = text(&files.jwks);
    let disc_text = text(&files.discovery);
    let jwks = match &jwks_text {
        Ok(t) => checks::check_jwks("jwks", t, &mut report),
        Err(e) => {
            report.fail(
                "jwks: exists",
                format!("{}: {e}", files.jwks.path),
                format!("run `irsa render {}`", files.dir),
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
            format!("{}: {e}", files.discovery.path),
            format!("run `irsa render {}`", files.dir),
        ),
    }
    if let Some(jwks) = &jwks {
        checks::check_keys_published("jwks", &published, jwks, &mut report);
    }
    if published.len() == cfg.keys.len() {
        let keys: Vec<(PublicKey, Algorithm)> =
            published.iter().map(|(_, k, a)| (k.clone(), *a)).collect();
        let docs = crate::documents::render(cfg, &keys)?;
        let same = disc_text.as_ref().ok() == Some(&docs.discovery)
            && jwks_text.as_ref().ok() == Some(&docs.jwks);
        report.check(
            same,
            "documents: up to date with irsa.yaml",
            "byte-identical to a fresh render",
            format!(
                "{} or {} differs from what irsa.yaml renders",
                files.discovery.path, files.jwks.path
            ),
            format!("run `irsa render {}` and publish again", files.dir),
        );
    }
    if let (Some(jwks), Some((private, alg))) = (&jwks, &active_private) {
        checks::check_sign_verify(private, *alg, url, jwks, now, &mut report);
    }
    if let (Some(jwks), Some(extra)) = (&jwks, extra) {
        // The active key signed a probe above: the same key once is enough.
        let signed_already = active_private
            .as_ref()
            .is_some_and(|(k, _)| k.public_key() == extra.public_key());
        check_extra_private(extra, url, jwks, !signed_already, now, &mut report);
    }
    Ok(Checked { report, jwks })
}

/// What [`check`] found: the report, and the bundle's JWKS when it parsed
/// (what `irsa validate --issuer` compares the served one with).
#[derive(Debug)]
pub struct Checked {
    /// The lines.
    pub report: Report,
    /// The JWKS as the bundle holds it.
    pub jwks: Option<Jwks>,
}

/// The checks of a directory laid out as an issuer serves it, without
/// irsa.yaml: the JWKS and the discovery document (each `None` when the
/// directory has no such file), the discovery document's issuer against
/// `issuer` when given, and `extra` (the key an API server signs with)
/// against the JWKS. The JWKS when it parsed.
pub fn check_documents(
    jwks_text: Option<&str>,
    discovery_text: Option<&str>,
    issuer: Option<&IssuerUrl>,
    extra: Option<&PrivateKey>,
    now: i64,
) -> Checked {
    let mut report = Report::default();
    let jwks = match jwks_text {
        Some(t) => checks::check_jwks("jwks", t, &mut report),
        None => {
            report.fail(
                "jwks: exists",
                "no openid/v1/jwks or keys.json",
                "generate it with `irsa jwks`",
            );
            None
        }
    };
    let doc = match discovery_text {
        Some(t) => {
            checks::check_discovery("discovery", t, issuer, None, jwks.as_ref(), &mut report)
        }
        None => {
            report.fail(
                "discovery: exists",
                "no .well-known/openid-configuration",
                "generate it with `irsa discovery`",
            );
            None
        }
    };
    // Without a given issuer, the discovery document's own names it.
    let named = doc.and_then(|d| IssuerUrl::parse(&d.issuer).ok());
    if let (Some(jwks), Some(extra), Some(issuer)) = (&jwks, extra, issuer.or(named.as_ref())) {
        check_extra_private(extra, issuer, jwks, true, now, &mut report);
    }
    Checked { report, jwks }
}

/// A private key file: present, readable by its owner only, parses.
fn private_key(file: &PrivateFile, report: &mut Report, name: &str) -> Option<PrivateKey> {
    match file.mode {
        None => {
            report.fail(
                format!("{name}: private key file"),
                format!("{} does not exist", file.path),
                "restore it from backup, or remove privateKey from irsa.yaml if the key lives elsewhere",
            );
            return None;
        }
        Some(mode) if mode & 0o077 != 0 => report.fail(
            format!("{name}: private key permissions"),
            format!(
                "{} is mode {mode:04o}; others can read the signing key",
                file.path
            ),
            format!("chmod 600 {}", file.path),
        ),
        Some(mode) => report.pass(
            format!("{name}: private key permissions"),
            format!("mode {mode:04o}"),
        ),
    }
    match file
        .bytes
        .clone()
        .and_then(|b| parse_private_key(&b).map_err(|e| e.to_string()))
    {
        Ok(k) => Some(k),
        Err(e) => {
            report.fail(
                format!("{name}: private key parses"),
                e,
                "point privateKey at the PEM signing key",
            );
            None
        }
    }
}

/// `--private-key`: its public half is published and (with `sign`) it
/// signs tokens the JWKS verifies.
pub fn check_extra_private(
    key: &PrivateKey,
    issuer: &crate::IssuerUrl,
    jwks: &Jwks,
    sign: bool,
    now: i64,
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
        checks::check_sign_verify(key, alg, issuer, jwks, now, report);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[test]
    fn a_served_layout_is_checked_for_both_documents_and_the_signing_key() {
        let cfg = IrsaConfig::from_yaml(crate::config::tests::GOOD).unwrap();
        let key = PrivateKey::generate(Algorithm::ES256, 0).unwrap();
        let docs = crate::documents::render(&cfg, &[(key.public_key().clone(), Algorithm::ES256)])
            .unwrap();
        let issuer = cfg.issuer.url().unwrap();
        let now = 1_800_000_000;
        let checked = check_documents(
            Some(&docs.jwks),
            Some(&docs.discovery),
            Some(issuer),
            Some(&key),
            now,
        );
        assert!(!checked.report.failed(), "{:?}", checked.report);
        assert_eq!(checked.jwks.unwrap().keys.len(), 1);
        // Without --issuer, the discovery document's own issuer is the one
        // the key is checked against.
        let checked = check_documents(
            Some(&docs.jwks),
            Some(&docs.discovery),
            None,
            Some(&key),
            now,
        );
        assert!(!checked.report.failed(), "{:?}", checked.report);
        // A key the JWKS does not publish fails; a missing document is named.
        let other = PrivateKey::generate(Algorithm::ES256, 0).unwrap();
        let checked = check_documents(Some(&docs.jwks), None, Some(issuer), Some(&other), now);
        let failed: Vec<&str> = checked
            .report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert!(failed.contains(&"discovery: exists"), "{failed:?}");
        assert!(failed.len() >= 2, "the foreign key fails too: {failed:?}");
    }
}
