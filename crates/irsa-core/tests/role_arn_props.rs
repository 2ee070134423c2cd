//! Property tests of `arn::RoleArn`: printing a parsed ARN gives the string
//! back, for every valid ARN; parsing any string returns (never panics), and
//! what it accepts prints back unchanged.
#![allow(clippy::unwrap_used)]

use irsa_core::arn::RoleArn;
use proptest::prelude::*;

/// Valid role ARNs, built from IAM's rules part by part.
fn valid_arn() -> impl Strategy<Value = String> {
    let partition = prop_oneof![Just("aws".to_string()), "aws(-[a-z0-9]{1,5}){1,3}",];
    let account = "[0-9]{12}";
    let path = prop_oneof![
        Just("/".to_string()),
        // `!` to `~`, the path characters IAM takes, slashes included.
        "/[!-~]{1,40}/",
    ];
    let name = "[A-Za-z0-9+=,.@_-]{1,64}";
    (partition, account, path, name)
        .prop_map(|(p, a, path, n)| format!("arn:{p}:iam::{a}:role{path}{n}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn display_after_parse_is_identity(arn in valid_arn()) {
        let parsed = RoleArn::parse(&arn).unwrap();
        prop_assert_eq!(parsed.to_string(), arn);
        prop_assert_eq!(RoleArn::parse(&parsed.to_string()).unwrap(), parsed.clone());
    }

    #[test]
    fn parse_never_panics(s in ".{0,200}") {
        if let Ok(arn) = RoleArn::parse(&s) {
            prop_assert_eq!(arn.to_string(), s);
        }
    }

    #[test]
    fn parse_never_panics_near_arns(s in "arn:[a-z-]{0,8}:(iam|sts)?:[a-z0-9-]{0,3}:[0-9a]{0,13}:(role|user)?[/: a-z\u{e9}]{0,20}") {
        if let Ok(arn) = RoleArn::parse(&s) {
            prop_assert_eq!(arn.to_string(), s);
        }
    }
}
