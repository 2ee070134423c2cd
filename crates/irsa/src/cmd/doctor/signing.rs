//! Doctor's signing-key link: the key a token the cluster just issued
//! names, against irsa.yaml's active key (judged by
//! `irsa_core::rotation::judge`). A warning, not a failure: pods still get
//! credentials while the key that signs is published, but a rotation is
//! not where irsa.yaml says it is, and retiring then breaks them.

use irsa_core::checks::Report;
use irsa_core::diagnosis::{self, Link};
use irsa_core::rotation::{self, Observation};
use irsa_core::Timestamp;

use super::DoctorArgs;
use crate::bundle::Bundle;

/// Adds the link when doctor has irsa.yaml. `issued` is the token the
/// TokenRequest API issued during this run, if any; without one (and
/// without `--token`, whose file says nothing about what the cluster signs
/// with now) a throwaway ServiceAccount's token is asked for.
pub(super) fn signing_link(
    r: &mut Report,
    a: &DoctorArgs,
    bundle: Option<&Bundle>,
    issued: Option<&str>,
) {
    let Some(bundle) = bundle else {
        return;
    };
    let observation = match issued {
        Some(token) => Observation::from_token(token),
        None if a.token.is_some() => return,
        None => crate::net::signing_key(a.kubeconfig.as_deref()),
    };
    let kids: Vec<String> = match bundle.keys() {
        Ok(keys) => keys.iter().map(|k| k.public.kid().to_string()).collect(),
        Err(e) => {
            r.warn(
                Link::SigningKey.name(),
                format!("cannot read irsa.yaml's keys: {e:#}"),
                "fix the keys irsa.yaml lists (`irsa validate` says what is wrong)",
            );
            return;
        }
    };
    let kids: Vec<&str> = kids.iter().map(String::as_str).collect();
    let now = Timestamp::saturating_from_unix(crate::cmd::now());
    let finding = rotation::judge(&bundle.config.keys, &kids, &observation, now);
    let (status, detail, fix) = diagnosis::signing_key(&finding);
    r.record(Link::SigningKey.name(), status, detail, fix);
}
