//! Each rule of the observed signing key: the verdict, what it records in
//! irsa.yaml, and how the retire stage follows it.
#![allow(clippy::unwrap_used)]

use super::*;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;
const HOUR: i64 = 3_600;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix(T0 + secs).unwrap()
}

fn key(name: &str, state: KeyState) -> KeyConfig {
    KeyConfig {
        public_key: format!("keys/{name}.pub"),
        private_key: Some(format!("keys/{name}.key")),
        algorithm: Algorithm::RS256,
        state,
        created: None,
        activated: None,
        deactivated: None,
        first_observed: None,
    }
}

/// Kids named after the files: `kid-old`, `kid-new`, ...
fn kids(keys: &[KeyConfig]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let name = k
                .public_key
                .trim_start_matches("keys/")
                .trim_end_matches(".pub");
            format!("kid-{name}")
        })
        .collect()
}

/// Old key `previous` since the switch at T0, new key `active`.
fn switched() -> Vec<KeyConfig> {
    let mut old = key("old", KeyState::Previous);
    old.deactivated = Some(t(0));
    let mut new = key("new", KeyState::Active);
    new.activated = Some(t(0));
    vec![key("gone", KeyState::Retired), old, new]
}

fn seen(keys: &[KeyConfig], kid: &str, now: Timestamp) -> SigningFinding {
    let kids = kids(keys);
    let kids: Vec<&str> = kids.iter().map(String::as_str).collect();
    judge(keys, &kids, &Observation::Kid(kid.into()), now)
}

fn unseen(keys: &[KeyConfig]) -> SigningFinding {
    let kids = kids(keys);
    let kids: Vec<&str> = kids.iter().map(String::as_str).collect();
    judge(
        keys,
        &kids,
        &Observation::Unobserved("no kubeconfig".into()),
        t(0),
    )
}

fn wait(secs: i64) -> TokenWait {
    TokenWait::new(secs, 0).unwrap()
}

const PLAIN: RetireOverrides = RetireOverrides {
    force: false,
    assume_rolled_out: false,
};

#[test]
fn the_active_key_signing_is_expected_and_recorded_once_while_rotating() {
    let keys = switched();
    let f = seen(&keys, "kid-new", t(100));
    assert_eq!(f.verdict, Verdict::Expected);
    assert_eq!(f.kid.as_deref(), Some("kid-new"));
    assert_eq!(
        f.signer,
        Some(Signer::Key {
            index: 2,
            state: KeyState::Active
        })
    );
    assert!(
        f.detail.contains("active key keys/new.pub (kid kid-new)"),
        "{}",
        f.detail
    );
    assert_eq!(
        f.record,
        Record::FirstObserved {
            index: 2,
            at: t(100)
        }
    );
    let recorded = apply_record(&keys, f.record).unwrap();
    assert_eq!(recorded[2].first_observed, Some(t(100)));
    // Seen again later: the first time stays.
    let again = seen(&recorded, "kid-new", t(500));
    assert_eq!(again.record, Record::Keep);
    assert_eq!(apply_record(&recorded, again.record), None);
}

#[test]
fn no_time_is_recorded_outside_a_rotation() {
    let keys = vec![key("gone", KeyState::Retired), key("new", KeyState::Active)];
    let f = seen(&keys, "kid-new", t(0));
    assert_eq!(f.verdict, Verdict::Expected);
    assert_eq!(f.record, Record::Keep);
}

#[test]
fn the_previous_key_still_signing_after_the_switch_is_unexpected() {
    let f = seen(&switched(), "kid-old", t(100));
    assert_eq!(f.verdict, Verdict::Unexpected);
    assert_eq!(
        f.signer,
        Some(Signer::Key {
            index: 1,
            state: KeyState::Previous
        })
    );
    assert!(
        f.detail
            .contains("still signs with the previous key keys/old.pub (kid kid-old)")
            && f.detail.contains("not rolled out"),
        "{}",
        f.detail
    );
    assert!(f.fix.contains("restart every kube-apiserver"), "{}", f.fix);
    assert_eq!(f.record, Record::Keep, "nothing recorded to forget");
}

#[test]
fn another_key_signing_after_the_active_one_was_seen_restarts_the_wait() {
    let mut keys = switched();
    keys[2].first_observed = Some(t(100));
    let f = seen(&keys, "kid-old", t(200));
    assert_eq!(f.record, Record::Forget { index: 2 });
    let forgotten = apply_record(&keys, f.record).unwrap();
    assert_eq!(forgotten[2].first_observed, None);
    // The next observation of the active key starts the wait anew.
    let f = seen(&forgotten, "kid-new", t(300));
    assert_eq!(
        f.record,
        Record::FirstObserved {
            index: 2,
            at: t(300)
        }
    );
}

#[test]
fn the_next_key_signing_before_the_switch_is_unexpected() {
    let keys = vec![key("a", KeyState::Active), key("n", KeyState::Next)];
    let f = seen(&keys, "kid-n", t(0));
    assert_eq!(f.verdict, Verdict::Unexpected);
    assert!(
        f.detail
            .contains("next key keys/n.pub (kid kid-n) before the switch"),
        "{}",
        f.detail
    );
    assert!(f.fix.contains("--stage switch"), "{}", f.fix);
}

#[test]
fn a_retired_or_unknown_key_signing_is_unexpected() {
    let f = seen(&switched(), "kid-gone", t(0));
    assert_eq!(f.verdict, Verdict::Unexpected);
    assert!(
        f.detail.contains("retired key keys/gone.pub"),
        "{}",
        f.detail
    );
    let f = seen(&switched(), "kid-stranger", t(0));
    assert_eq!(f.verdict, Verdict::Unexpected);
    assert_eq!(f.signer, Some(Signer::Unknown));
    assert!(
        f.detail.contains(
            "kid kid-stranger, none of irsa.yaml's keys (active: keys/new.pub (kid kid-new))"
        ),
        "{}",
        f.detail
    );
}

#[test]
fn nothing_observed_says_why_and_how_to_give_access() {
    let f = unseen(&switched());
    assert_eq!(f.verdict, Verdict::Unobserved);
    assert_eq!((f.kid, f.signer, f.record), (None, None, Record::Keep));
    assert!(f.detail.ends_with(": no kubeconfig"), "{}", f.detail);
    assert!(f.fix.contains("--kubeconfig"), "{}", f.fix);
}

#[test]
fn a_token_names_its_kid_or_says_why_not() {
    let key = crate::PrivateKey::generate(Algorithm::ES256, 0).unwrap();
    let token = crate::jwt::sign(&key, Algorithm::ES256, &serde_json::json!({"sub": "s"})).unwrap();
    assert_eq!(
        Observation::from_token(&token),
        Observation::Kid(key.public_key().kid().to_string())
    );
    assert!(matches!(
        Observation::from_token("not a token"),
        Observation::Unobserved(why) if why.contains("does not decode")
    ));
}

#[test]
fn retire_refuses_while_the_previous_key_signs_even_after_the_wait() {
    let keys = switched();
    let f = seen(&keys, "kid-old", t(10 * HOUR));
    let err = retire_observed(&keys, &f, wait(0), t(10 * HOUR), PLAIN).unwrap_err();
    assert!(matches!(err, RotationError::WrongSigner { .. }), "{err:?}");
    assert!(err.is_safety_check());
    let text = err.to_string();
    assert!(
        text.contains("still signs with the previous key") && text.contains("every pod's STS call"),
        "{text}"
    );
    // --assume-rolled-out does not outweigh what was observed.
    let assumed = RetireOverrides {
        assume_rolled_out: true,
        ..PLAIN
    };
    assert!(retire_observed(&keys, &f, wait(0), t(10 * HOUR), assumed).is_err());
    // --force does.
    let forced = RetireOverrides {
        force: true,
        ..PLAIN
    };
    let r = retire_observed(&keys, &f, wait(0), t(10 * HOUR), forced).unwrap();
    assert_eq!(r.retired, [1]);
}

#[test]
fn retire_without_an_observation_needs_the_explicit_flag() {
    let keys = switched();
    let f = unseen(&keys);
    let err = retire_observed(&keys, &f, wait(0), t(HOUR), PLAIN).unwrap_err();
    assert!(matches!(err, RotationError::Unobserved { .. }), "{err:?}");
    assert!(err.is_safety_check());
    let text = err.to_string();
    assert!(
        text.contains("could not observe")
            && text.contains(ASSUME_ROLLED_OUT)
            && text.contains("every pod's STS call fails"),
        "{text}"
    );
    let assumed = RetireOverrides {
        assume_rolled_out: true,
        ..PLAIN
    };
    assert_eq!(
        retire_observed(&keys, &f, wait(0), t(HOUR), assumed)
            .unwrap()
            .retired,
        [1]
    );
    // The time-based wait still applies with the flag.
    let err = retire_observed(&keys, &f, wait(2 * HOUR), t(HOUR), assumed).unwrap_err();
    assert!(
        matches!(err, RotationError::TokensMayBeValid { .. }),
        "{err:?}"
    );
}

#[test]
fn the_wait_counts_from_the_first_observation_when_later_than_the_switch() {
    let keys = switched();
    // Switched at T0, rolled out and first seen at T0 + 5 h; wait 2 h.
    let first = seen(&keys, "kid-new", t(5 * HOUR));
    let err = retire_observed(&keys, &first, wait(2 * HOUR), t(5 * HOUR), PLAIN).unwrap_err();
    assert_eq!(
        err,
        RotationError::TokensMayBeValid {
            until: t(7 * HOUR),
            remaining: 2 * HOUR
        },
        "not T0 + 2 h: the old key may have signed until the rollout"
    );
    let recorded = apply_record(&keys, first.record).unwrap();
    assert_eq!(retire_ready(&recorded, wait(2 * HOUR)), Some(t(7 * HOUR)));
    let later = seen(&recorded, "kid-new", t(7 * HOUR));
    let r = retire_observed(&recorded, &later, wait(2 * HOUR), t(7 * HOUR), PLAIN).unwrap();
    assert_eq!(r.retired, [1]);
    assert_eq!(
        r.keys[2].first_observed,
        Some(t(5 * HOUR)),
        "the record is kept"
    );
}

#[test]
fn a_first_observation_before_the_switch_does_not_shorten_the_wait() {
    let mut keys = switched();
    keys[2].first_observed = Some(t(-HOUR));
    assert_eq!(retire_ready(&keys, wait(HOUR)), Some(t(HOUR)));
}

#[test]
fn retire_observed_keeps_the_structural_refusals() {
    let idle = vec![key("a", KeyState::Active)];
    let f = seen(&idle, "kid-a", t(0));
    assert_eq!(
        retire_observed(&idle, &f, wait(0), t(0), PLAIN).unwrap_err(),
        RotationError::NoPreviousKey
    );
    let headless = vec![key("b", KeyState::Previous)];
    let f = seen(&headless, "kid-b", t(0));
    assert_eq!(
        retire_observed(&headless, &f, wait(0), t(0), PLAIN).unwrap_err(),
        RotationError::NoActiveKey
    );
}
