//! `irsa keys status`, and the observation of the signing key that
//! `status` and the retire stage share: the CLI side of
//! `irsa_core::rotation::judge` (the asking is `crate::net::signing_key`).

use std::path::Path;

use anyhow::Result;
use irsa_core::rotation::{self, Observation, Record, Signer, SigningFinding, TokenWait, Verdict};
use irsa_core::Timestamp;

use super::{save_keys, StatusArgs};
use crate::bundle::Bundle;
use crate::cfgedit::ConfigEdit;
use crate::output::{status, Format};

/// The kids of the bundle's keys, in the order of irsa.yaml.
fn kids(bundle: &Bundle) -> Result<Vec<String>> {
    Ok(bundle
        .keys()?
        .iter()
        .map(|k| k.public.kid().to_string())
        .collect())
}

/// Judges `observation` against the bundle's keys.
pub(super) fn judged(
    bundle: &Bundle,
    observation: &Observation,
    now: Timestamp,
) -> Result<SigningFinding> {
    let kids = kids(bundle)?;
    let kids: Vec<&str> = kids.iter().map(String::as_str).collect();
    Ok(rotation::judge(
        &bundle.config.keys,
        &kids,
        observation,
        now,
    ))
}

/// One line (and a fix) on what the cluster was observed signing with.
pub(super) fn signing_lines(finding: &SigningFinding) -> String {
    match finding.verdict {
        Verdict::Expected => format!(
            "cluster signs with: {} (observed just now)",
            finding.detail.trim_start_matches("the cluster signs with ")
        ),
        Verdict::Unexpected => format!(
            "cluster signs with: kid {} — WRONG KEY: {}\n  fix: {}",
            finding.kid.as_deref().unwrap_or("?"),
            finding.detail,
            finding.fix
        ),
        Verdict::Unobserved => format!(
            "cluster signs with: not observed — {}\n  fix: {}",
            finding.detail, finding.fix
        ),
    }
}

/// Writes what `finding` records into irsa.yaml, re-judged under the lock
/// on the file as it is now. Returns what was written.
fn record(file: &Path, observation: &Observation, now: Timestamp) -> Result<Record> {
    let edit = ConfigEdit::open(file)?;
    let bundle = Bundle::from_text(file, edit.text())?;
    let finding = judged(&bundle, observation, now)?;
    if let Some(keys) = rotation::apply_record(&bundle.config.keys, finding.record) {
        save_keys(&edit, &bundle, &keys)?;
    }
    Ok(finding.record)
}

pub(super) fn status(a: StatusArgs) -> Result<()> {
    let wait = TokenWait::new(a.max_token_lifetime, a.margin)?;
    let bundle = Bundle::load_file(&a.file)?;
    let now = Timestamp::saturating_from_unix(crate::cmd::now());
    let observation = crate::net::signing_key(a.kubeconfig.as_deref());
    let finding = judged(&bundle, &observation, now)?;
    let bundle = match finding.record {
        Record::Keep => bundle,
        _ => match record(&a.file, &observation, now) {
            Ok(written) => {
                match written {
                    Record::FirstObserved { at, .. } => status!("recorded in {}: the cluster was first observed signing with the active key at {at} (firstObserved); the retire wait counts from here", a.file.display()),
                    Record::Forget { .. } => status!("recorded in {}: firstObserved cleared, since the cluster signs with another key again; the retire wait starts anew once it signs with the active key", a.file.display()),
                    Record::Keep => {}
                }
                Bundle::load_file(&a.file)?
            }
            Err(e) => {
                status!(
                    "warning: cannot record the observation in {}: {e:#}",
                    a.file.display()
                );
                bundle
            }
        },
    };
    let keys = bundle.keys()?;
    let (state, next) = irsa_core::rotation::describe(
        &bundle.config,
        wait,
        &a.file.display().to_string(),
        Some(&finding),
        now,
    );
    if a.output == Format::Json {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                let e = &k.entry;
                serde_json::json!({
                    "publicKey": e.public_key, "state": e.state, "kid": k.public.kid().to_string(),
                    "created": e.created, "activated": e.activated,
                    "deactivated": e.deactivated, "firstObserved": e.first_observed,
                })
            })
            .collect();
        let signer = match &finding.signer {
            Some(Signer::Key { index, state }) => serde_json::json!({
                "publicKey": bundle.config.keys.get(*index).map(|k| k.public_key.as_str()), "state": state,
            }),
            Some(Signer::Unknown) | None => serde_json::Value::Null,
        };
        let verdict = match finding.verdict {
            Verdict::Expected => "active",
            Verdict::Unexpected => "wrong-key",
            Verdict::Unobserved => "unobserved",
        };
        let value = serde_json::json!({
            "keys": keys,
            "signing": {
                "observed": finding.kid.is_some(), "kid": finding.kid, "key": signer,
                "verdict": verdict, "detail": finding.detail,
                "fix": (finding.verdict != Verdict::Expected).then_some(&finding.fix),
            },
            "retireReady": rotation::retire_ready(&bundle.config.keys, wait),
            "stage": state, "next": next,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    for k in &keys {
        let e = &k.entry;
        println!(
            "{:<9} {:<32} kid {}  created {}{}{}{}",
            format!("{:?}", e.state).to_lowercase(),
            e.public_key,
            k.public.kid(),
            e.created.map_or_else(|| "?".into(), |t| t.to_string()),
            e.activated
                .map(|t| format!(", active in irsa.yaml since {t}"))
                .unwrap_or_default(),
            e.first_observed
                .map(|t| format!(", first observed signing {t}"))
                .unwrap_or_default(),
            e.deactivated
                .map(|t| format!(", switched out in irsa.yaml {t}"))
                .unwrap_or_default(),
        );
    }
    println!("\n{state}\n{}\nnext: {next}", signing_lines(&finding));
    Ok(())
}
