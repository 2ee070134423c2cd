//! Every transition and every refusal of the rotation state machine.
#![allow(clippy::unwrap_used)]

use super::*;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;
const DAY: i64 = 86_400;
/// When the tokens signed until `t(0)` have expired, with `wait()`.
const READY: i64 = DAY + 3_600;

/// `secs` seconds after T0.
fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix(T0 + secs).unwrap()
}

fn key(name: &str, state: KeyState) -> KeyConfig {
    KeyConfig {
        public_key: format!("keys/{name}.pub"),
        private_key: Some(format!("keys/{name}.key")),
        algorithm: Algorithm::RS256,
        state,
        created: Some("2025-01-01T00:00:00Z".parse().unwrap()),
        activated: None,
        deactivated: None,
        first_observed: None,
    }
}

fn idle() -> Vec<KeyConfig> {
    vec![key("old", KeyState::Retired), key("a", KeyState::Active)]
}

fn wait() -> TokenWait {
    TokenWait::new(DAY, 3_600).unwrap()
}

/// `idle()` after publish and switch at T0.
fn switched() -> Vec<KeyConfig> {
    let published = publish(&idle(), None, t(-60), false).unwrap().keys;
    switch(&published, t(0)).unwrap().keys
}

fn states(keys: &[KeyConfig]) -> Vec<KeyState> {
    keys.iter().map(|k| k.state).collect()
}

#[test]
fn publish_adds_a_next_key_named_after_the_time() {
    let p = publish(&idle(), None, t(0), false).unwrap();
    assert_eq!(p.public_key, "keys/sa-signer-20260101-000000.pub");
    assert_eq!(p.private_key, "keys/sa-signer-20260101-000000.key");
    assert_eq!(p.algorithm, Algorithm::RS256, "the active key's algorithm");
    assert_eq!(&p.keys[..2], &idle()[..], "existing keys unchanged");
    assert_eq!(
        p.keys[2],
        KeyConfig {
            public_key: p.public_key.clone(),
            private_key: Some(p.private_key.clone()),
            algorithm: Algorithm::RS256,
            state: KeyState::Next,
            created: Some(t(0)),
            activated: None,
            deactivated: None,
            first_observed: None,
        }
    );
    let es = publish(&idle(), Some(Algorithm::ES256), t(0), false).unwrap();
    assert_eq!(es.algorithm, Algorithm::ES256);
    assert_eq!(es.keys[2].algorithm, Algorithm::ES256, "the one asked for");
}

#[test]
fn publish_refuses_while_a_rotation_is_under_way_even_forced() {
    let published = publish(&idle(), None, t(0), false).unwrap().keys;
    for force in [false, true] {
        let err = publish(&published, None, t(1), force).unwrap_err();
        assert_eq!(
            err,
            RotationError::RotationUnderWay {
                next: "keys/sa-signer-20260101-000000.pub".into()
            }
        );
        assert!(err.to_string().contains("--stage switch"), "{err}");
        assert!(!err.is_safety_check());
    }
}

#[test]
fn publish_refuses_while_a_previous_key_verifies_unless_forced() {
    let err = publish(&switched(), None, t(1), false).unwrap_err();
    assert_eq!(err, RotationError::PreviousNotRetired);
    assert!(err.to_string().contains("--stage retire"), "{err}");
    let forced = publish(&switched(), None, t(1), true).unwrap();
    assert_eq!(
        states(&forced.keys),
        [
            KeyState::Retired,
            KeyState::Previous,
            KeyState::Active,
            KeyState::Next
        ]
    );
}

#[test]
fn every_stage_refuses_a_list_without_an_active_key() {
    let keys = vec![key("a", KeyState::Next), key("b", KeyState::Previous)];
    assert_eq!(
        publish(&keys, None, t(0), true).unwrap_err(),
        RotationError::NoActiveKey
    );
    assert_eq!(switch(&keys, t(0)).unwrap_err(), RotationError::NoActiveKey);
    assert_eq!(
        retire(&keys, wait(), t(0), true).unwrap_err(),
        RotationError::NoActiveKey
    );
    assert!(RotationError::NoActiveKey
        .to_string()
        .contains("state: active"));
}

#[test]
fn switch_makes_the_next_key_sign_and_the_active_one_previous() {
    let published = publish(&idle(), None, t(-60), false).unwrap().keys;
    let s = switch(&published, t(0)).unwrap();
    assert_eq!((s.signing, s.stopped), (2, 1));
    assert_eq!(
        states(&s.keys),
        [KeyState::Retired, KeyState::Previous, KeyState::Active]
    );
    assert_eq!(s.keys[1].deactivated, Some(t(0)));
    assert_eq!(s.keys[2].activated, Some(t(0)));
    assert_eq!(s.keys[0], published[0], "retired record untouched");
}

#[test]
fn switch_refuses_without_a_next_key() {
    let err = switch(&idle(), t(0)).unwrap_err();
    assert_eq!(err, RotationError::NoNextKey);
    assert!(err.to_string().contains("--stage publish"), "{err}");
}

#[test]
fn switch_refuses_a_next_key_without_a_private_key() {
    let mut keys = idle();
    let mut next = key("n", KeyState::Next);
    next.private_key = None;
    keys.push(next);
    let err = switch(&keys, t(0)).unwrap_err();
    assert_eq!(
        err,
        RotationError::NextKeyWithoutPrivateKey {
            next: "keys/n.pub".into()
        }
    );
    assert!(err.to_string().contains("privateKey"), "{err}");
}

const URL: &str = "https://oidc.example.com/prod/openid/v1/jwks";

#[test]
fn the_switch_check_passes_when_the_served_jwks_lists_the_kid() {
    let body = r#"{"keys":[{"kty":"RSA","kid":"old"},{"kty":"RSA","kid":"new"}]}"#;
    assert_eq!(
        check_published(URL, "new", Served::Response { status: 200, body }),
        Ok(())
    );
}

#[test]
fn the_switch_check_refuses_a_jwks_without_the_kid() {
    let body = r#"{"keys":[{"kty":"RSA","kid":"old"}]}"#;
    let err = check_published(URL, "new", Served::Response { status: 200, body }).unwrap_err();
    assert_eq!(
        err,
        RotationError::NotPublished {
            url: URL.into(),
            kid: "new".into()
        }
    );
    assert!(err.is_safety_check());
    let text = err.to_string();
    assert!(
        text.contains("does not publish the next key (kid new)") && text.contains("irsa apply"),
        "{text}"
    );
}

#[test]
fn the_switch_check_refuses_what_is_not_a_served_jwks() {
    let cases = [
        (
            Served::Unreachable("connection refused"),
            format!("cannot fetch the published JWKS {URL}: connection refused"),
        ),
        (
            Served::Response {
                status: 404,
                body: r#"{"keys":[{"kty":"RSA","kid":"new"}]}"#,
            },
            format!("GET {URL} returned 404"),
        ),
        (
            Served::Response {
                status: 200,
                body: "<html>",
            },
            format!("{URL} is not a JWKS"),
        ),
    ];
    for (served, problem) in cases {
        let err = check_published(URL, "new", served).unwrap_err();
        assert!(err.is_safety_check());
        let text = err.to_string();
        assert!(text.starts_with(&problem), "{text}");
        assert!(text.contains("--force skips this check"), "{text}");
    }
}

#[test]
fn retire_waits_for_the_old_keys_tokens_to_expire() {
    let keys = switched();
    assert_eq!(retire_ready(&keys, wait()), Some(t(READY)));
    let err = retire(&keys, wait(), t(READY - 10), false).unwrap_err();
    assert_eq!(
        err,
        RotationError::TokensMayBeValid {
            until: t(READY),
            remaining: 10
        }
    );
    assert!(err.is_safety_check());
    assert!(
        err.to_string().starts_with(
            "tokens signed by the old key may be valid until 2026-01-02T01:00:00Z (10 s from now)"
        ),
        "{err}"
    );
    let r = retire(&keys, wait(), t(READY), false).unwrap();
    assert_eq!(r.retired, [1]);
    assert_eq!(
        states(&r.keys),
        [KeyState::Retired, KeyState::Retired, KeyState::Active]
    );
    assert_eq!(r.verifying(), 1);
    assert_eq!(r.keys[1].deactivated, keys[1].deactivated, "record kept");
}

#[test]
fn retire_forced_goes_ahead_early() {
    let r = retire(&switched(), wait(), t(1), true).unwrap();
    assert_eq!(r.retired, [1]);
    assert_eq!(r.verifying(), 1);
}

#[test]
fn retire_refuses_without_a_previous_key() {
    for force in [false, true] {
        let err = retire(&idle(), wait(), t(0), force).unwrap_err();
        assert_eq!(err, RotationError::NoPreviousKey);
        assert!(err.to_string().contains("irsa keys status"), "{err}");
    }
}

#[test]
fn retire_refuses_when_no_previous_key_says_when_it_stopped_unless_forced() {
    let mut keys = switched();
    keys[1].deactivated = None;
    assert_eq!(retire_ready(&keys, wait()), None);
    let err = retire(&keys, wait(), t(10 * DAY), false).unwrap_err();
    assert_eq!(err, RotationError::NoDeactivatedTime);
    assert!(!err.is_safety_check());
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        retire(&keys, wait(), t(0), true).unwrap().retired,
        [1],
        "forced"
    );
}

#[test]
fn retire_waits_for_the_latest_of_several_previous_keys() {
    let mut keys = switched();
    let mut older = key("older", KeyState::Previous);
    older.deactivated = Some("2025-12-01T00:00:00Z".parse().unwrap());
    keys.insert(0, older);
    let mut unstamped = key("unstamped", KeyState::Previous);
    unstamped.deactivated = None;
    keys.push(unstamped);
    assert_eq!(retire_ready(&keys, wait()), Some(t(READY)));
    assert!(retire(&keys, wait(), t(READY - 1), false).is_err());
    let r = retire(&keys, wait(), t(READY), false).unwrap();
    assert_eq!(r.retired, [0, 2, 4]);
    assert_eq!(r.verifying(), 1);
}

#[test]
fn standing_follows_the_stages() {
    assert_eq!(standing(&idle(), wait()), Standing::Idle);
    let published = publish(&idle(), None, t(-60), false).unwrap().keys;
    assert_eq!(
        standing(&published, wait()),
        Standing::Published { next: 2 }
    );
    assert_eq!(
        standing(&switched(), wait()),
        Standing::Switched {
            previous: vec![1],
            retire_ready: Some(t(READY))
        }
    );
    let forced = publish(&switched(), None, t(1), true).unwrap().keys;
    assert_eq!(
        standing(&forced, wait()),
        Standing::Published { next: 3 },
        "a next key comes first"
    );
    let retired = retire(&switched(), wait(), t(0), true).unwrap().keys;
    assert_eq!(standing(&retired, wait()), Standing::Idle);
}

#[test]
fn token_wait_refuses_negative_seconds_and_never_overflows() {
    assert_eq!(
        TokenWait::new(-1, 0),
        Err(RotationError::NegativeWait {
            flag: "--max-token-lifetime",
            value: -1
        })
    );
    let err = TokenWait::new(0, -5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--margin is -5; give a number of seconds, 0 or more"
    );
    assert_eq!(TokenWait::new(0, 0).unwrap().seconds(), 0);
    let huge = TokenWait::new(i64::MAX, i64::MAX).unwrap();
    assert_eq!(huge.seconds(), i64::MAX);
    assert_eq!(retire_ready(&switched(), huge), Some(Timestamp::MAX));
    assert!(retire(&switched(), huge, t(0), false).is_err());
}

#[test]
fn describe_names_the_stage_done_and_the_next_step_from_the_clock_and_the_observation() {
    let mut cfg = crate::IrsaConfig::from_yaml(crate::config::tests::GOOD).unwrap();
    cfg.keys = idle();
    let (state, next) = describe(&cfg, wait(), "b/irsa.yaml", None, t(0));
    assert_eq!(state, "no rotation in progress");
    assert!(
        next.contains("irsa keys rotate -f b/irsa.yaml --stage publish"),
        "{next}"
    );

    cfg.keys = switched();
    let (state, next) = describe(&cfg, wait(), "b/irsa.yaml", None, t(60));
    assert!(state.starts_with("stage switch done: keys/"), "{state}");
    assert!(
        next.contains("wait until") && next.contains("--kubeconfig FILE"),
        "not observed: roll out, check, wait: {next}"
    );
    let (_, after) = describe(&cfg, wait(), "b/irsa.yaml", None, t(READY + 60));
    assert!(after.contains("(the token wait has passed)"), "{after}");
}
