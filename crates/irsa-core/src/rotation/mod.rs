//! Staged rotation of the service-account signing key: a pure state machine
//! over the `keys:` list of `irsa.yaml`.
//!
//! | stage   | from                                   | to                                              |
//! |---------|----------------------------------------|-------------------------------------------------|
//! | publish | one `active` key, no `next`/`previous` | a new `next` key: published, not signing        |
//! | switch  | `active` and `next`                    | `next` becomes `active`, `active` `previous`    |
//! | retire  | `previous` keys whose tokens expired, the cluster observed signing with the active key | those keys `retired`: no longer published |
//!
//! A new key is published before the apiserver signs with it, and an old
//! key stays published until every token it signed has expired, so no
//! running pod loses its AWS access. Nothing here reads files, the clock or
//! the network: the caller passes the current time, for the switch what the
//! issuer serves, and for the retire which key a token the cluster just
//! issued names ([`signing`]); it writes the key list each transition
//! returns.

mod signing;

pub use signing::{
    apply_record, judge, Observation, Record, Signer, SigningFinding, Verdict, ASSUME_ROLLED_OUT,
};

use crate::config::{KeyConfig, KeyState};
use crate::jwks::Jwks;
use crate::key::Algorithm;
use crate::timestamp::Timestamp;

/// Why a rotation stage refuses to go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// The key list has no `active` key.
    #[error("irsa.yaml has no active key; mark the key the apiserver signs with `state: active`")]
    NoActiveKey,
    /// Publish: a `next` key already exists.
    #[error("a rotation is already under way: {next} is the next key; carry on with `irsa keys rotate --stage switch` (`irsa keys status` shows where it stands)")]
    RotationUnderWay {
        /// The next key's public key file.
        next: String,
    },
    /// Publish: a `previous` key still verifies.
    #[error("the previous rotation is not finished (a `previous` key still verifies): run `irsa keys rotate --stage retire` first")]
    PreviousNotRetired,
    /// Switch: there is no `next` key.
    #[error("no next key to switch to: start with `irsa keys rotate --stage publish`")]
    NoNextKey,
    /// Switch: the `next` key lists no private key file.
    #[error("the next key {next} has no privateKey in irsa.yaml; the apiserver needs it to sign: add the private key file's path")]
    NextKeyWithoutPrivateKey {
        /// The next key's public key file.
        next: String,
    },
    /// Switch: the issuer's JWKS does not list the next key.
    #[error("{url} does not publish the next key (kid {kid}) yet; switching now would break every pod's AWS access until it does.\nRun `irsa apply` (or upload issuer/ to your host), wait for caches to expire, and retry. (--force skips this check.)")]
    NotPublished {
        /// The JWKS URL.
        url: String,
        /// The next key's `kid`.
        kid: String,
    },
    /// Switch: the issuer's JWKS cannot be read.
    #[error("{problem}\nThe switch needs proof that STS can fetch the next key. (--force skips this check.)")]
    JwksUnreadable {
        /// What went wrong, naming the URL.
        problem: String,
    },
    /// Retire: there is no `previous` key.
    #[error("no previous key to retire (`irsa keys status` shows where the rotation stands)")]
    NoPreviousKey,
    /// Retire: tokens the previous key signed may still be valid.
    #[error("tokens signed by the old key may be valid until {until} ({remaining} s from now): retiring it earlier would break pods still holding them.\nRetry then, or pass --force if no such token is in use (--max-token-lifetime and --margin set the wait).")]
    TokensMayBeValid {
        /// When the previous key may be retired.
        until: Timestamp,
        /// Seconds from now until then.
        remaining: i64,
    },
    /// Retire: the cluster was observed signing with another key than the
    /// active one.
    #[error("{detail}.\nRetiring now would unpublish the key that signs the tokens pods hold: every pod's STS call would fail.\nFix: {fix}. (--force skips this check.)")]
    WrongSigner {
        /// What was observed.
        detail: String,
        /// What to do.
        fix: String,
    },
    /// Retire: irsa could not observe which key the cluster signs with.
    #[error("{detail}.\nirsa cannot check that the cluster signs with the active key; if any kube-apiserver still signs with the previous key, retiring unpublishes the key its tokens need and every pod's STS call fails.\nFix: {fix}; or check every kube-apiserver's --service-account-signing-key-file yourself and pass --assume-rolled-out.")]
    Unobserved {
        /// Why nothing was observed.
        detail: String,
        /// How to give irsa access.
        fix: String,
    },
    /// Retire: no `previous` key says when it stopped signing.
    #[error("the previous key has no `deactivated` time in irsa.yaml; pass --force once its tokens have expired")]
    NoDeactivatedTime,
    /// A wait given in seconds is negative.
    #[error("{flag} is {value}; give a number of seconds, 0 or more")]
    NegativeWait {
        /// The flag that set it.
        flag: &'static str,
        /// The value given.
        value: i64,
    },
}

impl RotationError {
    /// Whether a safety check refused the stage (the issuer does not serve
    /// the next key yet, old tokens may still be valid), as opposed to a key
    /// list or input the stage cannot work with. `--force` skips the former.
    pub fn is_safety_check(&self) -> bool {
        matches!(
            self,
            Self::NotPublished { .. }
                | Self::JwksUnreadable { .. }
                | Self::TokensMayBeValid { .. }
                | Self::WrongSigner { .. }
                | Self::Unobserved { .. }
        )
    }
}

/// How long a token signed by a key that stopped signing may stay valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenWait {
    max_token_lifetime: i64,
    margin: i64,
}

impl TokenWait {
    /// The longest token lifetime in use plus a margin (clock skew, caches,
    /// slow kubelets), both in seconds and not negative.
    pub fn new(max_token_lifetime: i64, margin: i64) -> Result<Self, RotationError> {
        for (flag, value) in [
            ("--max-token-lifetime", max_token_lifetime),
            ("--margin", margin),
        ] {
            if value < 0 {
                return Err(RotationError::NegativeWait { flag, value });
            }
        }
        Ok(Self {
            max_token_lifetime,
            margin,
        })
    }

    /// The whole wait in seconds.
    pub fn seconds(self) -> i64 {
        self.max_token_lifetime.saturating_add(self.margin)
    }
}

/// Where a rotation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No rotation under way.
    Idle,
    /// Publish done: the next key (its index in the key list) is published
    /// and the apiserver still signs with the active key.
    Published {
        /// Index of the `next` key.
        next: usize,
    },
    /// Switch done: irsa.yaml's active key is the new one and the previous
    /// keys still verify. Whether the apiserver signs with the new key is
    /// for an observation to say ([`judge`]).
    Switched {
        /// Indexes of the `previous` keys.
        previous: Vec<usize>,
        /// When they may be retired, if known.
        retire_ready: Option<Timestamp>,
    },
}

/// Where the rotation of `keys` stands.
pub fn standing(keys: &[KeyConfig], wait: TokenWait) -> Standing {
    if let Some(next) = keys.iter().position(|k| k.state == KeyState::Next) {
        return Standing::Published { next };
    }
    let previous = indexes(keys, KeyState::Previous);
    if previous.is_empty() {
        return Standing::Idle;
    }
    Standing::Switched {
        retire_ready: retire_ready(keys, wait),
        previous,
    }
}

/// When the `previous` keys may be retired: the latest time one of them
/// stopped signing (the switch), or, when later, the time irsa first
/// observed the cluster signing with the active key (`firstObserved`),
/// plus the wait. `None` when no previous key records when it stopped.
pub fn retire_ready(keys: &[KeyConfig], wait: TokenWait) -> Option<Timestamp> {
    let switched = keys
        .iter()
        .filter(|k| k.state == KeyState::Previous)
        .filter_map(|k| k.deactivated)
        .max()?;
    let observed = keys
        .iter()
        .filter(|k| k.state == KeyState::Active)
        .filter_map(|k| k.first_observed)
        .max();
    Some(
        observed
            .map_or(switched, |o| o.max(switched))
            .saturating_add(wait.seconds()),
    )
}

/// The outcome of the publish stage: a new `next` key to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// The new key's algorithm: the one asked for, else the active key's.
    pub algorithm: Algorithm,
    /// Where to write the new public key, relative to `irsa.yaml`.
    pub public_key: String,
    /// Where to write the new private key, relative to `irsa.yaml`.
    pub private_key: String,
    /// The key list to write once both files exist.
    pub keys: Vec<KeyConfig>,
}

/// Publish: adds a `next` key, named after `now`, next to the active key.
/// Refuses while a rotation is under way, and (unless `force`) while a
/// `previous` key still verifies.
pub fn publish(
    keys: &[KeyConfig],
    algorithm: Option<Algorithm>,
    now: Timestamp,
    force: bool,
) -> Result<Publish, RotationError> {
    let active = active_index(keys)?;
    if let Some(n) = keys.iter().find(|k| k.state == KeyState::Next) {
        return Err(RotationError::RotationUnderWay {
            next: n.public_key.clone(),
        });
    }
    if !force && keys.iter().any(|k| k.state == KeyState::Previous) {
        return Err(RotationError::PreviousNotRetired);
    }
    let algorithm = algorithm.unwrap_or(keys[active].algorithm);
    let tag = now.file_tag();
    let public_key = format!("keys/sa-signer-{tag}.pub");
    let private_key = format!("keys/sa-signer-{tag}.key");
    let mut keys = keys.to_vec();
    keys.push(KeyConfig {
        public_key: public_key.clone(),
        private_key: Some(private_key.clone()),
        algorithm,
        state: KeyState::Next,
        created: Some(now),
        activated: None,
        deactivated: None,
        first_observed: None,
    });
    Ok(Publish {
        algorithm,
        public_key,
        private_key,
        keys,
    })
}

/// The outcome of the switch stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    /// Index of the key that signs from now on (was `next`).
    pub signing: usize,
    /// Index of the key that stopped signing (now `previous`).
    pub stopped: usize,
    /// The key list to write.
    pub keys: Vec<KeyConfig>,
}

/// Switch: the `next` key signs from `now` on, the active key becomes
/// `previous`. The caller first proves, with [`check_published`], that the
/// issuer serves the next key (unless forced).
pub fn switch(keys: &[KeyConfig], now: Timestamp) -> Result<Switch, RotationError> {
    let active = active_index(keys)?;
    let next = keys
        .iter()
        .position(|k| k.state == KeyState::Next)
        .ok_or(RotationError::NoNextKey)?;
    if keys[next].private_key.is_none() {
        return Err(RotationError::NextKeyWithoutPrivateKey {
            next: keys[next].public_key.clone(),
        });
    }
    let mut keys = keys.to_vec();
    keys[active].state = KeyState::Previous;
    keys[active].deactivated = Some(now);
    keys[next].state = KeyState::Active;
    keys[next].activated = Some(now);
    Ok(Switch {
        signing: next,
        stopped: active,
        keys,
    })
}

/// What a GET of the issuer's JWKS returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served<'a> {
    /// The request failed (connection, TLS, timeout): why.
    Unreachable(&'a str),
    /// An HTTP response.
    Response {
        /// HTTP status.
        status: u16,
        /// Body.
        body: &'a str,
    },
}

/// The switch's safety check: the JWKS served at `url` lists `kid`.
pub fn check_published(url: &str, kid: &str, served: Served<'_>) -> Result<(), RotationError> {
    let body = match served {
        Served::Unreachable(why) => {
            return Err(RotationError::JwksUnreadable {
                problem: format!("cannot fetch the published JWKS {url}: {why}"),
            })
        }
        Served::Response { status, .. } if status != 200 => {
            return Err(RotationError::JwksUnreadable {
                problem: format!("GET {url} returned {status}"),
            })
        }
        Served::Response { body, .. } => body,
    };
    let jwks = Jwks::from_json(body).map_err(|e| RotationError::JwksUnreadable {
        problem: format!("{url} is not a JWKS: {e}"),
    })?;
    if jwks.find(kid).next().is_none() {
        return Err(RotationError::NotPublished {
            url: url.into(),
            kid: kid.into(),
        });
    }
    Ok(())
}

/// The outcome of the retire stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Retire {
    /// Indexes of the keys retired.
    pub retired: Vec<usize>,
    /// The key list to write.
    pub keys: Vec<KeyConfig>,
}

impl Retire {
    /// How many keys still verify (and are published) after retirement.
    pub fn verifying(&self) -> usize {
        self.keys.iter().filter(|k| k.state.verifies()).count()
    }
}

/// Retire: every `previous` key becomes `retired`, once the tokens they
/// signed have expired ([`retire_ready`]), or at once with `force`.
pub fn retire(
    keys: &[KeyConfig],
    wait: TokenWait,
    now: Timestamp,
    force: bool,
) -> Result<Retire, RotationError> {
    active_index(keys)?;
    let previous = indexes(keys, KeyState::Previous);
    if previous.is_empty() {
        return Err(RotationError::NoPreviousKey);
    }
    if !force {
        match retire_ready(keys, wait) {
            Some(until) if until > now => {
                return Err(RotationError::TokensMayBeValid {
                    until,
                    remaining: until.unix().saturating_sub(now.unix()),
                })
            }
            None => return Err(RotationError::NoDeactivatedTime),
            Some(_) => {}
        }
    }
    let mut keys = keys.to_vec();
    for &i in &previous {
        keys[i].state = KeyState::Retired;
    }
    Ok(Retire {
        retired: previous,
        keys,
    })
}

/// How the operator lets `retire` go ahead despite a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetireOverrides {
    /// `--force`: skip every safety check (observed signer and token wait).
    pub force: bool,
    /// `--assume-rolled-out`: go ahead without an observation, on the
    /// operator's word that every apiserver signs with the active key. An
    /// observation of another key still refuses.
    pub assume_rolled_out: bool,
}

/// Retire, judged on what was observed as well as on time: refuses while
/// the cluster signs with any key but the active one, and, without an
/// observation, unless the operator assumes the rollout. The wait counts
/// from the switch or from the first observation of the active key,
/// whichever is later ([`retire_ready`]); `finding.record` is applied to
/// the key list first (the caller writes it even when this refuses, with
/// [`apply_record`]).
pub fn retire_observed(
    keys: &[KeyConfig],
    finding: &SigningFinding,
    wait: TokenWait,
    now: Timestamp,
    overrides: RetireOverrides,
) -> Result<Retire, RotationError> {
    let recorded = apply_record(keys, finding.record);
    let keys = recorded.as_deref().unwrap_or(keys);
    active_index(keys)?;
    if !keys.iter().any(|k| k.state == KeyState::Previous) {
        return Err(RotationError::NoPreviousKey);
    }
    if !overrides.force {
        match finding.verdict {
            Verdict::Expected => {}
            Verdict::Unexpected => {
                return Err(RotationError::WrongSigner {
                    detail: finding.detail.clone(),
                    fix: finding.fix.clone(),
                })
            }
            Verdict::Unobserved if overrides.assume_rolled_out => {}
            Verdict::Unobserved => {
                return Err(RotationError::Unobserved {
                    detail: finding.detail.clone(),
                    fix: finding.fix.clone(),
                })
            }
        }
    }
    retire(keys, wait, now, overrides.force)
}

fn active_index(keys: &[KeyConfig]) -> Result<usize, RotationError> {
    keys.iter()
        .position(|k| k.state == KeyState::Active)
        .ok_or(RotationError::NoActiveKey)
}

fn indexes(keys: &[KeyConfig], state: KeyState) -> Vec<usize> {
    keys.iter()
        .enumerate()
        .filter(|(_, k)| k.state == state)
        .map(|(i, _)| i)
        .collect()
}

/// Where a rotation stands and what to do next, in words, for the bundle
/// whose config is `file`: (state, next step). `signing` is what the
/// cluster was observed signing with, when it was; `now` decides whether
/// the token wait has passed.
pub fn describe(
    cfg: &crate::IrsaConfig,
    wait: TokenWait,
    file: &str,
    signing: Option<&SigningFinding>,
    now: Timestamp,
) -> (String, String) {
    let f = file;
    match standing(&cfg.keys, wait) {
        Standing::Published { next } => (
            format!("stage publish done: {} is published as the next key", cfg.keys[next].public_key),
            format!("1. `irsa apply -f {f}` (the JWKS now carries both keys); 2. give every apiserver both public keys (`irsa cluster config -f {f} ... -o DIR --force`, copy DIR/pki/, restart), still signing with the active key; 3. `irsa keys rotate -f {f} --stage switch`"),
        ),
        Standing::Switched { previous, retire_ready } => {
            let rollout = format!("roll the new signing key out: `irsa cluster config -f {f} ... -o DIR --force`, copy DIR/pki/ to every control-plane node and restart every kube-apiserver and kube-controller-manager");
            let wait = match retire_ready {
                Some(t) if t > now => format!(
                    "wait until {t} ({} s from now) so every token the old key signed has expired, then `irsa keys rotate -f {f} --stage retire`",
                    t.unix() - now.unix()
                ),
                _ => format!("`irsa keys rotate -f {f} --stage retire` (the token wait has passed)"),
            };
            let next = match signing.map(|s| s.verdict) {
                Some(Verdict::Expected) => wait,
                Some(Verdict::Unexpected) => format!("1. {rollout}; 2. check with `irsa keys status -f {f}` until the cluster signs with the active key; 3. {wait}"),
                Some(Verdict::Unobserved) | None => format!("1. {rollout} if not done; 2. check with `irsa keys status -f {f} --kubeconfig FILE` that the cluster signs with the active key; 3. {wait}"),
            };
            (
                format!(
                    "stage switch done: {} is irsa.yaml's active key; {} still verif{}",
                    cfg.active_key().map_or("(none)", |k| k.public_key.as_str()),
                    previous
                        .iter()
                        .map(|&i| cfg.keys[i].public_key.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if previous.len() == 1 { "ies" } else { "y" }
                ),
                next,
            )
        }
        Standing::Idle => (
            "no rotation in progress".into(),
            format!("`irsa keys rotate -f {f} --stage publish` starts one"),
        ),
    }
}

#[cfg(test)]
mod signing_tests;
#[cfg(test)]
mod tests;
