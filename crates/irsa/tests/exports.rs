//! `irsa export`: what the generated infrastructure code needs from the tool
//! that deploys it (provider version) and keeps on replacement.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

fn bundle(d: &Path) {
    let out = init_prod(d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Regression: the Terraform export leaves `thumbprint_list` out but asked
/// for any hashicorp/aws provider >= 5.0; before 5.81.0 that attribute is
/// required, so `terraform plan` failed on every older 5.x provider.
#[test]
fn terraform_export_requires_the_provider_with_optional_thumbprints() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let out = run_in(d, &["export", "terraform"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tf = json(&out.stdout);
    let provider = &tf["resource"]["aws_iam_openid_connect_provider"]["irsa"];
    assert!(provider.is_object(), "{tf}");
    assert!(
        provider.get("thumbprint_list").is_none(),
        "the export relies on thumbprint_list being optional: {provider}"
    );
    assert_eq!(
        tf["terraform"]["required_providers"]["aws"],
        serde_json::json!({"source": "hashicorp/aws", "version": ">= 5.81.0"})
    );
    let help = stdout(&run_in(d, &["export", "--help"]));
    assert!(
        help.contains(">= 5.81.0") && help.contains("thumbprint_list"),
        "`irsa export --help` names the provider version and why:\n{help}"
    );
}

/// Regression: the issuer bucket had `DeletionPolicy: Retain` only, so a
/// stack update that replaces it (a changed bucket name) deleted the old
/// bucket, whose name anyone can then register while a provider still
/// trusts it. `UpdateReplacePolicy: Retain` keeps it on replacement too.
#[test]
fn cloudformation_retains_the_issuer_bucket_on_delete_and_on_replace() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let out = run_in(d, &["export", "cloudformation"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cfn = json(&out.stdout);
    let bucket = &cfn["Resources"]["IssuerBucket"];
    assert_eq!(bucket["Type"], "AWS::S3::Bucket");
    assert_eq!(bucket["DeletionPolicy"], "Retain", "{bucket}");
    assert_eq!(bucket["UpdateReplacePolicy"], "Retain", "{bucket}");
}

/// Runs `cfn-lint` (PyPI; `scripts/test` installs it) on the CloudFormation
/// export of the bundle in `d`; its exit code is a bit mask (2 errors,
/// 4 warnings, 8 informational), and a template irsa writes has none of
/// the first two.
fn cfn_lint(d: &Path) {
    let out = run_in(d, &["export", "cloudformation"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let template = d.join("template.json");
    std::fs::write(&template, &out.stdout).unwrap();
    // The module's entry point, not the `cfn-lint` script, which pip may put
    // in a directory that is not on PATH.
    let lint = std::process::Command::new("python3")
        .args(["-c", "import sys; from cfnlint.runner import main; sys.exit(main())"])
        .arg("--format")
        .arg("parseable")
        .arg(&template)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for this test (with cfn-lint: pip install cfn-lint; scripts/test installs it): {e}")
        });
    let code = lint.status.code().unwrap_or(-1);
    assert!(
        code >= 0 && code & 0b110 == 0,
        "cfn-lint found errors or warnings in the CloudFormation export (exit {code}):\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

/// Both hosting modes' CloudFormation exports, with a role, pass cfn-lint:
/// resource types, properties, references and policy documents as
/// CloudFormation's own schemas define them.
#[test]
fn cloudformation_exports_of_both_hosting_modes_pass_cfn_lint() {
    let t = tempdir();
    let public = t.path().join("public");
    std::fs::create_dir(&public).unwrap();
    bundle(&public);
    let cloudfront = t.path().join("cloudfront");
    let out = run_in(
        t.path(),
        &[
            "init",
            "--cluster",
            "prod",
            "--bucket",
            "acme-oidc",
            "--region",
            "eu-west-1",
            "--prefix",
            "prod",
            "--hosting",
            "cloudfront",
            "--domain",
            "oidc.example.com",
            "--certificate-arn",
            "arn:aws:acm:us-east-1:111122223333:certificate/0a1b2c3d-1111-2222-3333-444455556666",
            "--dir",
            "cloudfront",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for d in [&public, &cloudfront] {
        let out = run_in(
            d,
            &[
                "bind",
                "-n",
                "app",
                "-s",
                "web",
                "--account",
                "111122223333",
                "--policy-arn",
                "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
                "--no-plan",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        cfn_lint(d);
    }
}

/// A bundle with a pod-identity binding: the broker role, its permission
/// as a separate `AWS::IAM::RolePolicy` and the role that trusts it pass
/// cfn-lint too.
#[test]
fn cloudformation_export_with_pod_identity_passes_cfn_lint() {
    let t = tempdir();
    let d = t.path();
    bundle(d);
    let out = run_in(
        d,
        &[
            "bind",
            "-f",
            "irsa.yaml",
            "-n",
            "app",
            "-s",
            "reader",
            "--pod-identity",
            "--policy-arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "--no-plan",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    cfn_lint(d);
}
