//! `irsa export terraform|cloudformation`: the resources `irsa apply`
//! manages, as infrastructure code for teams that deploy through their own
//! pipeline. Both come from the same desired state `irsa plan` uses, so
//! names, tags, trust and bucket policies are identical.
//!
//! Terraform is written in its JSON syntax (`*.tf.json`): it is exact to
//! generate (no quoting rules to get wrong) and Terraform reads it like
//! HCL. CloudFormation is a JSON template. In both, the trust policy's
//! condition keys (`<host/path>:sub`, `<host/path>:aud`) are literal
//! strings: CloudFormation cannot compute map keys, and irsa knows them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use irsa_core::plan::{role_path, Desired, DesiredRole};
use serde_json::{json, Map, Value};

use crate::bundle::{Bundle, CONFIG_FILE};
use crate::fsutil;
use crate::output::status;

/// Target format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Terraform JSON configuration (`irsa.tf.json`); needs the hashicorp/aws
    /// provider >= 5.81.0, the first in which the OIDC provider's
    /// `thumbprint_list` may be left out.
    Terraform,
    /// AWS CloudFormation template (JSON).
    Cloudformation,
}

/// Arguments of `irsa export`.
#[derive(Args)]
#[command(
    after_help = "The Terraform configuration requires the hashicorp/aws provider >= 5.81.0: it leaves the OIDC provider's thumbprint_list out (IAM fills it in itself and ignores it for issuers whose certificate chains to a CA it trusts), which older provider versions reject."
)]
pub struct ExportArgs {
    /// What to write.
    #[arg(value_enum)]
    pub target: Target,
    /// The config file.
    #[arg(short = 'f', long = "file", default_value = CONFIG_FILE)]
    pub file: PathBuf,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Account placeholder inside [`Desired`]; every use is replaced by a
/// reference to the provider's ARN or the deploying account.
const ACCOUNT: &str = "000000000000";

/// A name usable as a Terraform resource name / CloudFormation logical ID.
fn ident(prefix: &str, name: &str, camel: bool) -> String {
    let mut out = String::from(prefix);
    let mut upper = camel;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else if camel {
            upper = true;
        } else {
            out.push('_');
        }
    }
    out
}

fn with_principal(trust: &Value, principal: Value) -> Value {
    let mut trust = trust.clone();
    if let Some(statements) = trust["Statement"].as_array_mut() {
        for s in statements {
            s["Principal"] = json!({ "Federated": principal.clone() });
        }
    }
    trust
}

/// Terraform templates treat `${` and `%{` in strings as expressions.
fn tf_escape(text: &str) -> String {
    text.replace("${", "$${").replace("%{", "%%{")
}

fn tf_tags(tags: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), Value::String(tf_escape(v))))
            .collect(),
    )
}

/// The oldest hashicorp/aws provider whose `aws_iam_openid_connect_provider`
/// accepts a configuration without `thumbprint_list` (optional since 5.81.0).
const TF_AWS_PROVIDER: &str = ">= 5.81.0";

const TF_PROVIDER_ARN: &str = "${aws_iam_openid_connect_provider.irsa.arn}";

/// The Terraform JSON configuration.
pub fn terraform(desired: &Desired) -> Value {
    let mut resource = Map::new();
    let mut add = |kind: &str, name: String, body: Value| {
        resource
            .entry(kind.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert(name, body));
    };
    if let Some(s3) = &desired.s3 {
        add(
            "aws_s3_bucket",
            "issuer".into(),
            json!({"bucket": s3.bucket, "tags": tf_tags(&desired.owner_tags())}),
        );
        add(
            "aws_s3_bucket_public_access_block",
            "issuer".into(),
            json!({"bucket": "${aws_s3_bucket.issuer.id}", "block_public_acls": true,
                "ignore_public_acls": true, "block_public_policy": false, "restrict_public_buckets": false}),
        );
        if let Some(policy) = desired.merged_bucket_policy(None) {
            add(
                "aws_s3_bucket_policy",
                "issuer".into(),
                json!({"bucket": "${aws_s3_bucket.issuer.id}", "policy": tf_escape(&policy.to_string()),
                    "depends_on": ["aws_s3_bucket_public_access_block.issuer"]}),
            );
        }
        for (i, (key, body)) in desired.objects.iter().enumerate() {
            let name = if i == 0 && key.ends_with("openid-configuration") {
                "discovery".to_string()
            } else if key.ends_with("openid-configuration") {
                format!("discovery_{i}")
            } else {
                "jwks".to_string()
            };
            add(
                "aws_s3_object",
                name,
                json!({"bucket": "${aws_s3_bucket.issuer.id}", "key": key, "content": tf_escape(body),
                    "content_type": "application/json", "cache_control": "max-age=300"}),
            );
        }
    }
    add(
        "aws_iam_openid_connect_provider",
        "irsa".into(),
        json!({"url": format!("https://{}", desired.provider_host_path),
            "client_id_list": desired.client_ids, "tags": tf_tags(&desired.owner_tags())}),
    );
    for role in &desired.roles {
        let id = ident("role_", &role.name, false);
        // Escape the policy text first, then put the reference in.
        let trust = with_principal(role.trust.as_value(), json!("IRSA_PROVIDER_ARN"));
        let trust = tf_escape(&trust.to_string()).replace("IRSA_PROVIDER_ARN", TF_PROVIDER_ARN);
        let mut body = json!({"name": role.name, "path": role_path(&desired.cluster),
            "assume_role_policy": trust, "max_session_duration": role.max_session,
            "tags": tf_tags(&role.tags)});
        if let Some(b) = &role.boundary {
            body["permissions_boundary"] = json!(b);
        }
        add("aws_iam_role", id.clone(), body);
        for (i, arn) in role.managed.iter().enumerate() {
            add(
                "aws_iam_role_policy_attachment",
                format!("{id}_{i}"),
                json!({"role": format!("${{aws_iam_role.{id}.name}}"), "policy_arn": arn}),
            );
        }
        for (name, doc) in &role.inline {
            add(
                "aws_iam_role_policy",
                ident(&format!("{id}_"), name, false),
                json!({"role": format!("${{aws_iam_role.{id}.name}}"), "name": name,
                    "policy": tf_escape(&doc.to_string())}),
            );
        }
    }
    let outputs: Map<String, Value> = desired
        .roles
        .iter()
        .map(|r| {
            let id = ident("role_", &r.name, false);
            (
                format!("{id}_arn"),
                json!({"value": format!("${{aws_iam_role.{id}.arn}}")}),
            )
        })
        .collect();
    json!({
        "//": format!("Generated by `irsa export terraform` for cluster {}. Regenerate rather than edit.", desired.cluster),
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": TF_AWS_PROVIDER}}},
        "resource": resource,
        "output": outputs,
    })
}

fn cfn_tags(tags: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

fn cfn_role(desired: &Desired, role: &DesiredRole) -> Value {
    let trust = with_principal(
        role.trust.as_value(),
        json!({"Fn::GetAtt": ["OidcProvider", "Arn"]}),
    );
    let mut props = json!({
        "RoleName": role.name,
        "Path": role_path(&desired.cluster),
        "AssumeRolePolicyDocument": trust,
        "MaxSessionDuration": role.max_session,
        "Tags": cfn_tags(&role.tags),
    });
    if !role.managed.is_empty() {
        props["ManagedPolicyArns"] = json!(role.managed);
    }
    if !role.inline.is_empty() {
        props["Policies"] = Value::Array(
            role.inline
                .iter()
                .map(|(n, d)| json!({"PolicyName": n, "PolicyDocument": d}))
                .collect(),
        );
    }
    if let Some(b) = &role.boundary {
        props["PermissionsBoundary"] = json!(b);
    }
    json!({"Type": "AWS::IAM::Role", "Properties": props})
}

/// The CloudFormation template.
pub fn cloudformation(desired: &Desired) -> Value {
    let mut resources = Map::new();
    let mut outputs = Map::new();
    if let Some(s3) = &desired.s3 {
        resources.insert(
            "IssuerBucket".into(),
            json!({"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain", "Properties": {
                "BucketName": s3.bucket,
                "PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "IgnorePublicAcls": true,
                    "BlockPublicPolicy": false, "RestrictPublicBuckets": false},
                "Tags": cfn_tags(&desired.owner_tags())}}),
        );
        if let Some(policy) = desired.merged_bucket_policy(None) {
            resources.insert(
                "IssuerBucketPolicy".into(),
                json!({"Type": "AWS::S3::BucketPolicy", "Properties": {
                    "Bucket": {"Ref": "IssuerBucket"}, "PolicyDocument": policy}}),
            );
        }
    }
    resources.insert(
        "OidcProvider".into(),
        json!({"Type": "AWS::IAM::OIDCProvider", "Properties": {
            "Url": format!("https://{}", desired.provider_host_path),
            "ClientIdList": desired.client_ids,
            "Tags": cfn_tags(&desired.owner_tags())}}),
    );
    for role in &desired.roles {
        let id = ident("Role", &role.name, true);
        resources.insert(id.clone(), cfn_role(desired, role));
        outputs.insert(
            format!("{id}Arn"),
            json!({"Description": format!("eks.amazonaws.com/role-arn for {}", role.name),
                "Value": {"Fn::GetAtt": [id, "Arn"]}}),
        );
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("IRSA for cluster {} (generated by `irsa export cloudformation`; the issuer documents are uploaded separately, see its notes)", desired.cluster),
        "Resources": resources,
        "Outputs": outputs,
    })
}

/// Runs `irsa export`.
pub fn run(a: ExportArgs) -> Result<()> {
    let bundle = Bundle::load_file(&a.file)?;
    let desired = bundle.desired(ACCOUNT)?;
    let doc = match a.target {
        Target::Terraform => terraform(&desired),
        Target::Cloudformation => cloudformation(&desired),
    };
    let text = serde_json::to_string_pretty(&doc).context("rendering")? + "\n";
    match &a.output {
        Some(path) => {
            if path.exists() && !a.force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            fsutil::write_atomic(path, text.as_bytes(), fsutil::PUBLIC)?;
            status!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    if a.target == Target::Cloudformation {
        if let Some(s3) = &desired.s3 {
            status!("CloudFormation cannot upload files: after the stack is created, upload the issuer documents:");
            for key in desired.objects.keys() {
                let local = bundle
                    .dir
                    .join(crate::bundle::ISSUER_DIR)
                    .join(key.strip_prefix(&format!("{}/", s3.prefix)).unwrap_or(key));
                status!(
                    "  aws s3 cp {} s3://{}/{key} --content-type application/json --cache-control max-age=300",
                    local.display(),
                    s3.bucket
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_valid() {
        assert_eq!(
            ident("Role", "prod-app-s3.echoer", true),
            "RoleProdAppS3Echoer"
        );
        assert_eq!(
            ident("role_", "prod-app-s3.echoer", false),
            "role_prod_app_s3_echoer"
        );
        assert_eq!(tf_escape("${aws:username} %{x}"), "$${aws:username} %%{x}");
    }
}
