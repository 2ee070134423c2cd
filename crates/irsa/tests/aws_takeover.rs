//! `irsa destroy` and `irsa apply` never open a takeover, against a real
//! AWS API server (moto): the issuer bucket outlives every provider that
//! trusts it, a bundle never touches the roles of another bundle with the
//! same cluster name, and clusters sharing a bucket keep each other's
//! public-read statements.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::faults;
use common::moto::{Ctl, Moto};
use common::*;
use serde_json::Value;

fn irsa_aws(dir: &Path, moto: &Moto, proxy: Option<&faults::Proxy>, args: &[&str]) -> Output {
    let mut cmd = irsa();
    cmd.current_dir(dir).args(args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    if let Some(p) = proxy {
        cmd.env("AWS_ENDPOINT_URL", &p.endpoint)
            .env("AWS_MAX_ATTEMPTS", "1");
    }
    cmd.output().unwrap()
}

fn show(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(out), stderr(out))
}

/// `irsa init` for `cluster` publishing to `bucket` under `prefix`, with `bindings` (YAML list items).
fn init(dir: &Path, cluster: &str, bucket: &str, prefix: &str, bindings: &str) {
    let out = run_in(
        dir,
        &[
            "init",
            "--cluster",
            cluster,
            "--bucket",
            bucket,
            "--region",
            "eu-west-1",
            "--prefix",
            prefix,
            "--dir",
            ".",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = std::fs::read_to_string(dir.join("irsa.yaml")).unwrap();
    let yaml = yaml.replace("bindings: []", &format!("bindings:\n{bindings}"));
    std::fs::write(dir.join("irsa.yaml"), yaml).unwrap();
}

fn apply_ok(dir: &Path, moto: &Moto) {
    let out = irsa_aws(dir, moto, None, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
}

fn create_provider(ctl: &Ctl, url: &str) -> String {
    ctl.py(&format!(
        "print(iam.create_open_id_connect_provider(Url='{url}', ClientIDList=['sts.amazonaws.com'], ThumbprintList=['{}'])['OpenIDConnectProviderArn'])",
        "9".repeat(40)
    ))
}

fn delete_provider(ctl: &Ctl, arn: &str) {
    ctl.py(&format!(
        "iam.delete_open_id_connect_provider(OpenIDConnectProviderArn='{arn}')"
    ));
}

fn providers(ctl: &Ctl) -> usize {
    ctl.py("print(len(iam.list_open_id_connect_providers()['OpenIDConnectProviderList']))")
        .parse()
        .unwrap()
}

fn objects(ctl: &Ctl, bucket: &str) -> usize {
    ctl.py(&format!(
        "print(len(s3.list_objects_v2(Bucket='{bucket}').get('Contents', [])))"
    ))
    .parse()
    .unwrap()
}

const WEB: &str = "- {namespace: app, serviceAccount: web}\n";

#[test]
fn destroy_keeps_the_bucket_while_a_foreign_provider_trusts_the_issuer() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    init(d, "prod", "acme-oidc", "prod", WEB);
    // A provider for the issuer that irsa did not create (no owner tag).
    let foreign = create_provider(&ctl, "https://acme-oidc.s3.eu-west-1.amazonaws.com/prod");
    apply_ok(d, &moto);

    let out = irsa_aws(d, &moto, None, &["destroy", "--auto-approve"]);
    assert!(
        ctl.bucket_exists("acme-oidc"),
        "bucket kept: {}",
        show(&out)
    );
    assert_eq!(objects(&ctl, "acme-oidc"), 2, "documents kept");
    assert_eq!(
        out.status.code(),
        Some(1),
        "destroy is incomplete: {}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("still trust")
            && stdout(&out).contains("delete-open-id-connect-provider"),
        "says why and what to do: {}",
        show(&out)
    );
    assert!(!ctl.role_exists("prod-app-web"), "trust irsa owns is gone");

    // Another URL of the same documents (path-style) trusts them just the same.
    delete_provider(&ctl, &foreign);
    let alias = create_provider(&ctl, "https://s3.eu-west-1.amazonaws.com/acme-oidc/prod");
    let out = irsa_aws(d, &moto, None, &["destroy", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        ctl.bucket_exists("acme-oidc"),
        "bucket kept for the path-style provider"
    );

    delete_provider(&ctl, &alias);
    let out = irsa_aws(d, &moto, None, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !ctl.bucket_exists("acme-oidc"),
        "nothing trusts it any more: deleted"
    );
}

#[test]
fn destroy_keeps_the_bucket_when_the_provider_delete_fails() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    init(d, "prod", "acme-oidc", "prod", WEB);
    apply_ok(d, &moto);
    let proxy = faults::start(
        &moto.endpoint,
        faults::Fault::DenyAction("DeleteOpenIDConnectProvider"),
    );
    let out = irsa_aws(d, &moto, Some(&proxy), &["destroy", "--auto-approve"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("AccessDenied"), "{}", show(&out));
    assert_eq!(providers(&ctl), 1, "the provider is still there");
    assert!(
        ctl.bucket_exists("acme-oidc"),
        "so the bucket is too: {}",
        show(&out)
    );
    assert_eq!(objects(&ctl, "acme-oidc"), 2);

    // A run that can delete the provider finishes the job.
    let out = irsa_aws(d, &moto, None, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(providers(&ctl), 0);
    assert!(!ctl.bucket_exists("acme-oidc"));
}

#[test]
fn destroy_reads_iam_again_before_deleting_the_bucket() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    init(d, "prod", "acme-oidc", "prod", WEB);
    apply_ok(d, &moto);
    // The provider's delete is answered "done" but never happens.
    let proxy = faults::start(
        &moto.endpoint,
        faults::Fault::FakeSuccess("DeleteOpenIDConnectProvider"),
    );
    let out = irsa_aws(d, &moto, Some(&proxy), &["destroy", "--auto-approve"]);
    assert_eq!(providers(&ctl), 1);
    assert!(ctl.bucket_exists("acme-oidc"), "{}", show(&out));
    assert_eq!(objects(&ctl, "acme-oidc"), 2, "documents kept too");
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("IAM still has OIDC provider"),
        "{}",
        show(&out)
    );
}

fn trust_text(ctl: &Ctl, role: &str) -> String {
    ctl.py(&format!(
        "doc = iam.get_role(RoleName='{role}')['Role']['AssumeRolePolicyDocument']\nprint(doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True))"
    ))
}

#[test]
fn same_cluster_name_bundles_keep_each_others_roles() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let (ta, tb) = (tempdir(), tempdir());
    let (a, b) = (ta.path(), tb.path());
    // Two irsa.yaml files that both say `cluster: prod`, with their own issuers.
    init(
        a,
        "prod",
        "a-oidc",
        "prod",
        &format!("{WEB}- {{namespace: ops, serviceAccount: tool}}\n"),
    );
    init(
        b,
        "prod",
        "b-oidc",
        "prod",
        &format!("{WEB}- {{namespace: batch, serviceAccount: worker}}\n"),
    );
    apply_ok(a, &moto);
    let a_trust = trust_text(&ctl, "prod-app-web");

    // B binds the same name: the role is A's (it trusts A's issuer); B
    // leaves it alone and says so, and leaves A's other role alone too.
    let out = irsa_aws(b, &moto, None, &["apply", "--auto-approve"]);
    assert_eq!(
        trust_text(&ctl, "prod-app-web"),
        a_trust,
        "A's role not taken over: {}",
        show(&out)
    );
    assert!(
        ctl.role_exists("prod-ops-tool"),
        "A's other role not deleted as an orphan: {}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("iam role prod-app-web is tagged irsa.dev/cluster=prod but trusts none of this irsa.yaml's providers"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("i iam role prod-ops-tool"),
        "{}",
        show(&out)
    );
    assert_eq!(
        trust_text(&ctl, "prod-app-web"),
        a_trust,
        "A's role not taken over"
    );
    assert!(
        ctl.role_exists("prod-ops-tool"),
        "A's other role not deleted as an orphan"
    );
    assert!(ctl.role_exists("prod-batch-worker"));

    // A's destroy removes A's roles only.
    let out = irsa_aws(a, &moto, None, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!ctl.role_exists("prod-app-web") && !ctl.role_exists("prod-ops-tool"));
    assert!(
        ctl.role_exists("prod-batch-worker"),
        "B's role survives A's destroy"
    );
    assert!(
        stdout(&out)
            .contains("iam role prod-batch-worker is tagged irsa.dev/cluster=prod but trusts none"),
        "the plan says why it is left: {}",
        show(&out)
    );
    assert!(ctl.bucket_exists("b-oidc") && !ctl.bucket_exists("a-oidc"));

    // And B's own destroy still removes it.
    let out = irsa_aws(b, &moto, None, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!ctl.role_exists("prod-batch-worker"));
}

fn sids(ctl: &Ctl, bucket: &str) -> Vec<String> {
    let policy: Value = serde_json::from_str(&ctl.py(&format!(
        "print(s3.get_bucket_policy(Bucket='{bucket}')['Policy'])"
    )))
    .unwrap();
    let mut sids: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap().to_string())
        .collect();
    sids.sort();
    sids
}

#[test]
fn clusters_prod_1_and_prod1_sharing_a_bucket_keep_both_statements() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let (ta, tb) = (tempdir(), tempdir());
    let (dash, plain) = (ta.path(), tb.path());
    init(dash, "prod-1", "shared-oidc", "prod-1", WEB);
    init(plain, "prod1", "shared-oidc", "prod1", WEB);
    apply_ok(dash, &moto);
    // As an earlier irsa wrote it: the statement id without the dash, the
    // same id cluster prod1's statement had.
    ctl.py("p = json.loads(s3.get_bucket_policy(Bucket='shared-oidc')['Policy'])\np['Statement'][0]['Sid'] = 'IrsaPublicIssuerprod1'\ns3.put_bucket_policy(Bucket='shared-oidc', Policy=json.dumps(p))");
    apply_ok(plain, &moto);
    assert_eq!(
        sids(&ctl, "shared-oidc"),
        ["IrsaIssuerprod1Zprod1", "IrsaPublicIssuerprod1"],
        "prod1 adds its statement and keeps prod-1's old one"
    );
    apply_ok(dash, &moto);
    assert_eq!(
        sids(&ctl, "shared-oidc"),
        ["IrsaIssuerprod1Zprod1", "IrsaIssuerprodX2D1ZprodX2D1"],
        "prod-1 replaces its old statement"
    );
    for d in [dash, plain] {
        let out = irsa_aws(d, &moto, None, &["plan", "--detailed-exitcode"]);
        assert_eq!(out.status.code(), Some(0), "converged: {}", show(&out));
    }
    let out = irsa_aws(dash, &moto, None, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        sids(&ctl, "shared-oidc"),
        ["IrsaIssuerprod1Zprod1"],
        "{}",
        show(&out)
    );
    assert!(ctl.bucket_exists("shared-oidc"));
    let out = irsa_aws(plain, &moto, None, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "prod1 untouched: {}",
        show(&out)
    );
}

/// `--adopt` takes over a bucket and a provider someone made by hand:
/// without it, the plan leaves the bucket's policy and the provider alone
/// (the bucket named as a conflict with the fix); with it, both are tagged,
/// the documents published, and `destroy` then removes them like its own.
#[test]
fn adopt_takes_over_a_hand_made_bucket_and_provider() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    init(d, "prod", "hand-made", "prod", WEB);
    ctl.py("s3.create_bucket(Bucket='hand-made', CreateBucketConfiguration={'LocationConstraint': 'eu-west-1'})");
    let host = "hand-made.s3.eu-west-1.amazonaws.com/prod";
    create_provider(&ctl, &format!("https://{host}"));
    let provider_tags = || {
        ctl.py("p = iam.list_open_id_connect_providers()['OpenIDConnectProviderList'][0]['Arn']\nprint(iam.get_open_id_connect_provider(OpenIDConnectProviderArn=p).get('Tags', []))")
    };
    // Without --adopt: the bucket is a conflict naming the fix; neither is
    // changed.
    let out = irsa_aws(d, &moto, None, &["plan"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("--adopt hand-made"), "{text}");
    assert!(!text.contains("~ iam oidc-provider"), "{text}");
    assert!(!provider_tags().contains("irsa.dev/cluster"));
    // With --adopt for both: tagged, completed, converged.
    let out = irsa_aws(
        d,
        &moto,
        None,
        &[
            "apply",
            "--auto-approve",
            "--adopt",
            "hand-made",
            "--adopt",
            host,
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let bucket_tags = ctl.py("print(s3.get_bucket_tagging(Bucket='hand-made')['TagSet'])");
    assert!(
        bucket_tags.contains("'irsa.dev/cluster', 'Value': 'prod'"),
        "{bucket_tags}"
    );
    assert!(
        provider_tags().contains("irsa.dev/cluster"),
        "{}",
        provider_tags()
    );
    assert_eq!(objects(&ctl, "hand-made"), 2, "the documents are published");
    let again = irsa_aws(d, &moto, None, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    // Now irsa's: destroy removes them.
    let out = irsa_aws(d, &moto, None, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(providers(&ctl), 0);
    assert!(!ctl.bucket_exists("hand-made"));
}
