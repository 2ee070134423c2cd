//! An AWS account whose S3 Block Public Access (account level, S3
//! Control) stops public bucket policies cannot host the issuer in a
//! public bucket: `plan` and `apply` refuse before any write, naming the
//! setting and the fix. Against moto, with the calls counted by the test
//! proxy in front of it.
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

/// moto's account, as STS GetCallerIdentity reports it.
const ACCOUNT: &str = "123456789012";

fn setup(dir: &Path) {
    let out = init_prod(dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Sets the account's Block Public Access through S3 Control with boto3
/// (which, like every S3 Control client, puts the account ID in front of
/// the endpoint's host: the hook sends it to moto's plain host).
fn account_block(ctl: &Ctl, block_public_policy: bool, restrict_public_buckets: bool) {
    let py = |b: bool| if b { "True" } else { "False" };
    ctl.py(&format!(
        "c = boto3.client('s3control', **kw)\ndef plain_host(request, **_):\n    request.url = request.url.replace('://{ACCOUNT}.', '://', 1)\nc.meta.events.register('before-send.s3-control.*', plain_host)\nc.put_public_access_block(AccountId='{ACCOUNT}', PublicAccessBlockConfiguration={{'BlockPublicAcls': True, 'IgnorePublicAcls': True, 'BlockPublicPolicy': {}, 'RestrictPublicBuckets': {}}})",
        py(block_public_policy),
        py(restrict_public_buckets)
    ));
}

/// Runs irsa through a proxy in front of moto; returns its output and the
/// write calls that reached moto.
fn run(dir: &Path, moto: &Moto, fault: Fault, args: &[&str]) -> (Output, usize) {
    let proxy = faults::start(&moto.endpoint, fault);
    let mut cmd = irsa();
    cmd.current_dir(dir).args(args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    let out = cmd.output().unwrap();
    (out, proxy.counts.writes.load(Ordering::SeqCst))
}

#[test]
fn an_account_blocking_public_policies_refuses_the_public_bucket_before_any_write() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    setup(d);
    let empty = ctl.inventory();

    for (policy, restrict, named) in [
        (true, false, "BlockPublicPolicy"),
        (false, true, "RestrictPublicBuckets"),
        (true, true, "BlockPublicPolicy and RestrictPublicBuckets"),
    ] {
        account_block(&ctl, policy, restrict);
        for args in [
            &["plan"][..],
            &["plan", "--detailed-exitcode"],
            &["apply", "--auto-approve"],
        ] {
            let (out, writes) = run(d, &moto, Fault::None, args);
            let err = stderr(&out);
            assert!(!out.status.success(), "{args:?} with {named}: {err}");
            assert_eq!(writes, 0, "{args:?} with {named} writes nothing");
            assert!(
                err.contains(named)
                    && err.contains(ACCOUNT)
                    && err.contains("acme-oidc")
                    && err.contains("irsa init --hosting cloudfront")
                    && err.contains("turn"),
                "{args:?}: the refusal names the setting and both fixes: {err}"
            );
        }
        assert_eq!(ctl.inventory(), empty, "{named}: nothing was created");
    }

    // With both settings off the same bundle applies.
    account_block(&ctl, false, false);
    let (out, writes) = run(d, &moto, Fault::None, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(writes >= 5, "apply wrote the bucket and IAM: {writes}");
}

#[test]
fn a_role_that_may_not_read_the_account_settings_gets_a_warning_not_a_failure() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    setup(d);
    // The settings would refuse the bucket, but the role cannot read them.
    account_block(&ctl, true, true);
    let deny = Fault::DenyPath("/v20180820/configuration/publicAccessBlock");
    let (out, writes) = run(d, &moto, deny, &["plan", "--detailed-exitcode"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "a plan with changes: {err}");
    assert_eq!(writes, 0);
    assert!(
        err.contains("warning: cannot read the account's S3 Block Public Access settings")
            && err.contains("AccessDenied")
            && err.contains("s3:GetAccountPublicAccessBlock"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("+ s3 bucket acme-oidc"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_account_without_block_public_access_settings_plans_as_before() {
    let moto = Moto::start();
    let t = tempdir();
    let d = t.path();
    setup(d);
    let (out, writes) = run(d, &moto, Fault::None, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(writes, 0);
    assert!(
        !stderr(&out).contains("Block Public Access"),
        "{}",
        stderr(&out)
    );
}
