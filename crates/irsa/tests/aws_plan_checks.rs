//! What `plan` and `apply` check before writing, against moto: a managed
//! policy IAM does not have refuses the plan with no write (moto without
//! its AWS managed policies), the same bundle passes where they exist, and
//! a converged plan reads no policy. And the exit codes: one meaning each.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;

use common::faults::{self, Fault};
use common::moto::{Ctl, Moto};
use common::*;

const POLICY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
const ROLE: &str = "prod-app-s3-echoer";

/// The prod bundle with one binding that attaches [`POLICY`].
fn setup(dir: &Path) {
    let out = init_prod(dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = std::fs::read_to_string(dir.join("irsa.yaml"))
        .unwrap()
        .replace(
            "bindings: []",
            &format!(
            "bindings:\n- namespace: app\n  serviceAccount: s3-echoer\n  policyArns: [{POLICY}]\n"
        ),
        );
    std::fs::write(dir.join("irsa.yaml"), yaml).unwrap();
}

/// irsa in `dir` against moto through `proxy`.
fn via(dir: &Path, moto: &Moto, proxy: &faults::Proxy, args: &[&str]) -> Output {
    let mut cmd = irsa();
    cmd.current_dir(dir).args(args).envs(moto.env());
    cmd.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    cmd.output().unwrap()
}

/// The read count of `plan`'s "(N AWS reads, M writes)" line.
fn reads(out: &Output) -> usize {
    let text = stderr(out);
    let line = text
        .lines()
        .find(|l| l.contains("AWS reads"))
        .unwrap_or_else(|| panic!("{text}"));
    line.trim_start_matches('(')
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_missing_managed_policy_is_refused_before_any_write() {
    // moto without AWS's managed policies: AmazonS3ReadOnlyAccess is not there.
    let moto = Moto::start_with(false);
    let t = tempdir();
    let d = t.path();
    setup(d);
    let proxy = faults::start(&moto.endpoint, Fault::None);
    for args in [
        &["plan"][..],
        &["apply", "--auto-approve"][..],
        &["plan", "--detailed-exitcode"][..],
    ] {
        let out = via(d, &moto, &proxy, args);
        let code = if args.contains(&"--detailed-exitcode") {
            1
        } else {
            2
        };
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{POLICY} (role {ROLE})"))
                && err.contains("nothing was changed")
                && err.contains("policyArns"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        proxy.counts.writes.load(Ordering::SeqCst),
        0,
        "no write at all"
    );
    let ctl = Ctl::new(&moto);
    assert!(!ctl.role_exists(ROLE) && !ctl.bucket_exists("acme-oidc"));
}

#[test]
fn existing_policies_pass_and_a_converged_plan_reads_none() {
    let moto = Moto::start();
    let t = tempdir();
    let d = t.path();
    setup(d);
    let proxy = faults::start(&moto.endpoint, Fault::None);
    let fresh = via(d, &moto, &proxy, &["plan"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    // Without permission to read a policy, the plan says it could not check.
    let denied = faults::start(&moto.endpoint, Fault::DenyAction("GetPolicy"));
    let out = via(d, &moto, &denied, &["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot check that policy {POLICY} exists")),
        "{}",
        stderr(&out)
    );
    let apply = via(d, &moto, &proxy, &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert!(Ctl::new(&moto).role_exists(ROLE));
    let converged = via(d, &moto, &proxy, &["plan"]);
    assert!(converged.status.success(), "{}", stderr(&converged));
    assert!(
        stdout(&converged).contains("no changes"),
        "{}",
        stdout(&converged)
    );
    eprintln!(
        "plan reads: fresh account {}, converged {}",
        reads(&fresh),
        reads(&converged)
    );
    // A converged plan does not read the attached policy: with GetPolicy
    // denied it has nothing to warn about, where a fresh one has.
    let out = via(d, &moto, &denied, &["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("cannot check that policy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(reads(&out), reads(&converged));
}

#[test]
fn exit_codes_mean_one_thing_each() {
    let moto = Moto::start();
    let t = tempdir();
    let d = t.path();
    setup(d);
    let ok = faults::start(&moto.endpoint, Fault::None);
    let code = |proxy: &faults::Proxy, args: &[&str]| via(d, &moto, proxy, args).status.code();
    // 2: usage or input.
    assert_eq!(code(&ok, &["plan", "--no-such-flag"]), Some(2));
    assert_eq!(code(&ok, &["plan", "-f", "missing.yaml"]), Some(2));
    // 3: an AWS call failed (a permission missing), in plan and apply.
    let denied = faults::start(
        &moto.endpoint,
        Fault::DenyAction("ListOpenIDConnectProviders"),
    );
    let out = via(d, &moto, &denied, &["plan"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let no_role = faults::start(&moto.endpoint, Fault::DenyAction("CreateRole"));
    let out = via(d, &moto, &no_role, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("apply stopped"), "{}", stderr(&out));
    // --detailed-exitcode keeps Terraform's meaning: 2 changes, 1 error, 0 none.
    assert_eq!(code(&ok, &["plan", "--detailed-exitcode"]), Some(2));
    assert_eq!(code(&denied, &["plan", "--detailed-exitcode"]), Some(1));
    assert_eq!(code(&ok, &["apply", "--auto-approve"]), Some(0));
    assert_eq!(code(&ok, &["plan", "--detailed-exitcode"]), Some(0));
    // 1: a check failed (doctor with a token that does not decode).
    std::fs::write(d.join("token"), "not a token").unwrap();
    let out = via(
        d,
        &moto,
        &ok,
        &[
            "doctor",
            "--token",
            "token",
            "--role-arn",
            "arn:aws:iam::123456789012:role/x",
            "--no-aws",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
