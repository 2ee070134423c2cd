//! Which key the cluster signs with, as observed, against the key list of
//! `irsa.yaml`: the judgement `keys status`, `keys rotate --stage retire`
//! and doctor share.
//!
//! irsa.yaml says which key *should* sign (`active`); only a token the
//! cluster issues says which key *does*. The caller asks the TokenRequest
//! API for one and passes its `kid` (or why it could not) together with the
//! kids of irsa.yaml's keys; nothing here talks to a cluster or reads the
//! clock.
//!
//! Rules:
//! - the active key signs: as expected. While a rotation is under way (a
//!   `previous` key still verifies) the first such observation is recorded
//!   on the active key (`firstObserved`); retirement waits from then when
//!   that is later than the switch, since the old key may have signed until
//!   the new one was rolled out.
//! - any other key signs (a `previous` key after the switch, a `next` key
//!   before it, a retired key, a key irsa.yaml does not list): unexpected,
//!   with the fix. A recorded `firstObserved` is forgotten, so the wait
//!   starts again from the next observation of the active key.
//! - nothing observed: said with the reason; retirement then needs
//!   `--assume-rolled-out` (or `--force`).

use crate::config::{KeyConfig, KeyState};
use crate::jwt;
use crate::timestamp::Timestamp;

/// The flag that lets `retire` go ahead without an observation.
pub const ASSUME_ROLLED_OUT: &str = "--assume-rolled-out";

/// What irsa learnt about the key the cluster signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A token the cluster issued just now carries this `kid`.
    Kid(String),
    /// Nothing observed: why (no cluster access, TokenRequest refused, the
    /// offline build).
    Unobserved(String),
}

impl Observation {
    /// Reads the `kid` from the header of a token the cluster just issued.
    pub fn from_token(token: &str) -> Self {
        match jwt::decode(token) {
            Ok(decoded) => match decoded.kid() {
                Some(kid) if !kid.is_empty() => Self::Kid(kid.to_string()),
                _ => {
                    Self::Unobserved("the token the cluster issued has no kid in its header".into())
                }
            },
            Err(e) => {
                Self::Unobserved(format!("the token the cluster issued does not decode: {e}"))
            }
        }
    }
}

/// Which key signs, as irsa.yaml knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// One of irsa.yaml's keys.
    Key {
        /// Its index in the key list.
        index: usize,
        /// Its state.
        state: KeyState,
    },
    /// A key irsa.yaml does not list.
    Unknown,
}

/// The verdict on what was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The cluster signs with the active key.
    Expected,
    /// The cluster signs with another key.
    Unexpected,
    /// Nothing observed.
    Unobserved,
}

/// What an observation changes in irsa.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Nothing.
    Keep,
    /// Set `firstObserved` of the key at `index` to `at`.
    FirstObserved {
        /// The active key's index.
        index: usize,
        /// When.
        at: Timestamp,
    },
    /// Clear `firstObserved` of the key at `index`: another key signed since.
    Forget {
        /// The active key's index.
        index: usize,
    },
}

/// The judgement of one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningFinding {
    /// The kid observed, if any.
    pub kid: Option<String>,
    /// Which key that is, if observed.
    pub signer: Option<Signer>,
    /// The verdict.
    pub verdict: Verdict,
    /// What was observed, in words.
    pub detail: String,
    /// What to do when the verdict is not [`Verdict::Expected`].
    pub fix: String,
    /// What to write into irsa.yaml.
    pub record: Record,
}

/// Judges `observation` against `keys`, whose kids are `kids` (same order
/// and length), at `now`.
pub fn judge(
    keys: &[KeyConfig],
    kids: &[&str],
    observation: &Observation,
    now: Timestamp,
) -> SigningFinding {
    let active = keys.iter().position(|k| k.state == KeyState::Active);
    let rotating = keys.iter().any(|k| k.state == KeyState::Previous);
    let active_name = active.map_or_else(
        || "(none: irsa.yaml has no active key)".to_string(),
        |i| describe(keys, kids, i),
    );
    let rollout = "roll out the active key: `irsa cluster config -f irsa.yaml ... -o DIR --force`, copy DIR/pki/ to every control-plane node and restart every kube-apiserver (and kube-controller-manager)";
    let kid = match observation {
        Observation::Unobserved(why) => {
            return SigningFinding {
                kid: None,
                signer: None,
                verdict: Verdict::Unobserved,
                detail: format!("could not observe which key the cluster signs with: {why}"),
                fix: "give irsa cluster access (--kubeconfig FILE, $KUBECONFIG or ~/.kube/config) allowed to create and delete a ServiceAccount in namespace default and to request its token".into(),
                record: Record::Keep,
            }
        }
        Observation::Kid(kid) => kid,
    };
    let index = kids.iter().position(|k| k == kid);
    let signer = index.map_or(Signer::Unknown, |index| Signer::Key {
        index,
        state: keys[index].state,
    });
    let forget = match active {
        Some(i) if keys[i].first_observed.is_some() => Record::Forget { index: i },
        _ => Record::Keep,
    };
    let (verdict, detail, fix, record) = match &signer {
        Signer::Key {
            state: KeyState::Active,
            index,
        } => {
            let record = match keys[*index].first_observed {
                None if rotating => Record::FirstObserved { index: *index, at: now },
                _ => Record::Keep,
            };
            (
                Verdict::Expected,
                format!("the cluster signs with the active key {}", describe(keys, kids, *index)),
                String::new(),
                record,
            )
        }
        Signer::Key { state: KeyState::Previous, index } => (
            Verdict::Unexpected,
            format!(
                "the cluster still signs with the previous key {}, not the active key {active_name}: the new key is not rolled out (or an apiserver was restarted with the old key file)",
                describe(keys, kids, *index)
            ),
            format!("{rollout}; retire the previous key only once `irsa keys status` shows the active key signing"),
            forget,
        ),
        Signer::Key { state: KeyState::Next, index } => (
            Verdict::Unexpected,
            format!(
                "the cluster signs with the next key {} before the switch; irsa.yaml's active key is {active_name}",
                describe(keys, kids, *index)
            ),
            "run `irsa keys rotate -f irsa.yaml --stage switch` (it checks that the JWKS serves the next key; until it does, STS refuses the new tokens), or roll the active key back out".to_string(),
            forget,
        ),
        Signer::Key { state: KeyState::Retired, index } => (
            Verdict::Unexpected,
            format!(
                "the cluster signs with the retired key {}, which irsa no longer publishes: STS refuses every token signed from now on",
                describe(keys, kids, *index)
            ),
            rollout.to_string(),
            forget,
        ),
        Signer::Unknown => (
            Verdict::Unexpected,
            format!(
                "the cluster signs with kid {kid}, none of irsa.yaml's keys (active: {active_name})"
            ),
            format!("{rollout}; or, if that key is meant to sign, add its public key to irsa.yaml's keys and `irsa apply`"),
            forget,
        ),
    };
    SigningFinding {
        kid: Some(kid.clone()),
        signer: Some(signer),
        verdict,
        detail,
        fix,
        record,
    }
}

/// `keys/sa-signer.pub (kid …)`.
fn describe(keys: &[KeyConfig], kids: &[&str], index: usize) -> String {
    format!(
        "{} (kid {})",
        keys[index].public_key,
        kids.get(index).copied().unwrap_or("?")
    )
}

/// The key list with `record` applied, or `None` when it changes nothing.
pub fn apply_record(keys: &[KeyConfig], record: Record) -> Option<Vec<KeyConfig>> {
    let mut keys = keys.to_vec();
    match record {
        Record::Keep => return None,
        Record::FirstObserved { index, at } => keys.get_mut(index)?.first_observed = Some(at),
        Record::Forget { index } => keys.get_mut(index)?.first_observed = None,
    }
    Some(keys)
}
