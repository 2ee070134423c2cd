//! The AWS resources `irsa apply` manages, as infrastructure code: a
//! Terraform JSON configuration and a CloudFormation template, both
//! rendered from the same [`Desired`] state `irsa plan` uses, so names,
//! tags, trust and bucket policies are identical.
//!
//! Terraform is written in its JSON syntax (`*.tf.json`): it is exact to
//! generate (no quoting rules to get wrong) and Terraform reads it like
//! HCL. In both, the trust policy's condition keys (`<host/path>:sub`,
//! `<host/path>:aud`) are literal strings: CloudFormation cannot compute
//! map keys, and irsa knows them.

use serde_json::{json, Map, Value};

use crate::plan::{role_path, Desired, DesiredRole};

/// Account placeholder inside [`Desired`]; every use is replaced by a
/// reference to the provider's ARN or the deploying account.
pub const ACCOUNT: &str = "000000000000";

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

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: irsa.dev/v1alpha1
kind: IrsaConfig
cluster: prod
issuer:
  url: https://prod-oidc.s3.eu-west-1.amazonaws.com/prod
  s3: {bucket: prod-oidc, region: eu-west-1, prefix: prod}
keys:
- {publicKey: a.pub, algorithm: RS256, state: active}
bindings:
- namespace: app
  serviceAccount: web
  inlinePolicies:
    own: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "s3:GetObject", Resource: "arn:aws:s3:::b/${aws:username}/*"}]}
"#;

    fn desired() -> Desired {
        let cfg = crate::IrsaConfig::from_yaml(CONFIG).expect("valid");
        Desired::from_config(
            &cfg,
            ACCOUNT,
            "eu-west-1",
            &crate::Discovery::for_issuer(
                cfg.issuer.url().expect("url"),
                cfg.issuer.jwks_path,
                &[],
            ),
            &crate::Jwks::default(),
        )
    }

    #[test]
    fn terraform_refers_to_the_provider_and_escapes_templates() {
        let tf = terraform(&desired());
        let role = &tf["resource"]["aws_iam_role"]["role_prod_app_web"];
        let trust = role["assume_role_policy"].as_str().expect("string");
        assert!(trust.contains(TF_PROVIDER_ARN), "{trust}");
        assert!(!trust.contains(ACCOUNT), "{trust}");
        let policy = tf["resource"]["aws_iam_role_policy"]["role_prod_app_web_own"]["policy"]
            .as_str()
            .expect("string");
        assert!(policy.contains("$${aws:username}"), "{policy}");
        assert_eq!(
            tf["output"]["role_prod_app_web_arn"]["value"],
            "${aws_iam_role.role_prod_app_web.arn}"
        );
    }

    #[test]
    fn cloudformation_builds_the_whole_trust_document() {
        let cfn = cloudformation(&desired());
        let props = &cfn["Resources"]["RoleProdAppWeb"]["Properties"];
        let statement = &props["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(
            statement["Principal"]["Federated"],
            json!({"Fn::GetAtt": ["OidcProvider", "Arn"]})
        );
        let condition = statement["Condition"].to_string();
        assert!(
            condition.contains("prod-oidc.s3.eu-west-1.amazonaws.com/prod:sub"),
            "{condition}"
        );
        assert_eq!(cfn["Resources"]["IssuerBucket"]["DeletionPolicy"], "Retain");
    }

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
