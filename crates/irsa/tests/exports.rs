//! `irsa export`: what the generated infrastructure code needs from the tool
//! that deploys it (provider version) and keeps on replacement.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

fn bundle(d: &Path) {
    let out = run_in(
        d,
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
            "--dir",
            ".",
        ],
    );
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
