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

use crate::hosting::distribution_arn;
use crate::plan::{role_path, Desired, DesiredCloudFront, DesiredRole, RoleKind};

/// The origin's id inside the distribution (as `apply` names it).
pub const ORIGIN_ID: &str = "irsa-issuer-bucket";

/// The AWS managed cache policy `CachingOptimized`, which follows the
/// documents' `Cache-Control` (as `apply` sets it).
pub const CACHING_OPTIMIZED: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";

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

/// Replaces every string in `doc` that is the ARN of one of `desired`'s
/// roles (a pod-identity role's broker principal, the broker's permission
/// to assume the pod-identity roles) by `reference(role name)`, so the
/// template orders their creation and works in any account.
fn with_role_refs(doc: &Value, desired: &Desired, reference: &dyn Fn(&str) -> Value) -> Value {
    let (broker_name, broker_arn) = &desired.broker;
    let prefix = broker_arn.strip_suffix(broker_name.as_str()).unwrap_or("");
    let role_of = |s: &str| -> Option<&'_ str> {
        let name = s.strip_prefix(prefix)?;
        desired
            .roles
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.name.as_str())
    };
    fn walk(v: &Value, f: &dyn Fn(&str) -> Option<Value>) -> Value {
        match v {
            Value::String(s) => f(s).unwrap_or_else(|| v.clone()),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, f)).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, x)| (k.clone(), walk(x, f))).collect())
            }
            other => other.clone(),
        }
    }
    walk(doc, &|s| role_of(s).map(reference))
}

/// Whether a policy document names one of `desired`'s roles.
fn names_a_role(doc: &Value, desired: &Desired) -> bool {
    with_role_refs(doc, desired, &|_| Value::Null) != *doc
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

/// A policy document as Terraform text: escaped, with the ARNs of this
/// bundle's roles as references to them.
fn tf_text(doc: &Value, desired: &Desired) -> String {
    const MARK: &str = "IRSA_ROLE_ARN:";
    let marked = with_role_refs(doc, desired, &|name| json!(format!("{MARK}{name}:")));
    let mut text = tf_escape(&marked.to_string());
    for role in &desired.roles {
        let id = ident("role_", &role.name, false);
        text = text.replace(
            &format!("{MARK}{}:", role.name),
            &format!("${{aws_iam_role.{id}.arn}}"),
        );
    }
    text
}

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
        let private = desired.cloudfront.is_some();
        add(
            "aws_s3_bucket_public_access_block",
            "issuer".into(),
            json!({"bucket": "${aws_s3_bucket.issuer.id}", "block_public_acls": true,
                "ignore_public_acls": true, "block_public_policy": private, "restrict_public_buckets": private}),
        );
        if let Some(cf) = &desired.cloudfront {
            add(
                "aws_cloudfront_origin_access_control",
                "issuer".into(),
                json!({"name": cf.names.oac_name, "description": cf.oac_description(&desired.cluster),
                    "origin_access_control_origin_type": "s3", "signing_behavior": "always", "signing_protocol": "sigv4"}),
            );
            add(
                "aws_cloudfront_distribution",
                "issuer".into(),
                tf_distribution(desired, cf),
            );
            if let Some(statement) = desired.statement(Some(DISTRIBUTION_ID)) {
                let policy = json!({"Version": "2012-10-17", "Statement": [statement]});
                let policy = tf_escape(&policy.to_string()).replace(
                    &distribution_arn(&cf.account, DISTRIBUTION_ID),
                    "${aws_cloudfront_distribution.issuer.arn}",
                );
                add(
                    "aws_s3_bucket_policy",
                    "issuer".into(),
                    json!({"bucket": "${aws_s3_bucket.issuer.id}", "policy": policy,
                        "depends_on": ["aws_s3_bucket_public_access_block.issuer"]}),
                );
            }
        }
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
    if desired.needs_provider {
        add(
            "aws_iam_openid_connect_provider",
            "irsa".into(),
            json!({"url": format!("https://{}", desired.provider_host_path),
                "client_id_list": desired.client_ids, "tags": tf_tags(&desired.owner_tags())}),
        );
    }
    for role in &desired.roles {
        let id = ident("role_", &role.name, false);
        // Escape the policy text first, then put the reference in.
        let trust = if role.kind == RoleKind::PodIdentity {
            role.trust.as_value().clone()
        } else {
            with_principal(role.trust.as_value(), json!("IRSA_PROVIDER_ARN"))
        };
        let trust = tf_text(&trust, desired).replace("IRSA_PROVIDER_ARN", TF_PROVIDER_ARN);
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
                    "policy": tf_text(doc, desired)}),
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
    let mut out = json!({
        "//": format!("Generated by `irsa export terraform` for cluster {}. Regenerate rather than edit.", desired.cluster),
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": TF_AWS_PROVIDER}}},
        "resource": resource,
        "output": outputs,
    });
    // The bucket's region is fixed by irsa.yaml; without a bucket only
    // IAM (a global service) is written, in whatever region the provider
    // is configured with.
    match &desired.s3 {
        Some(s3) => out["provider"] = json!({"aws": {"region": s3.region}}),
        None => {
            out["//"] = json!(format!("Generated by `irsa export terraform` for cluster {}. Regenerate rather than edit. Only IAM (global) is written: configure the aws provider's region as usual (AWS_REGION or a provider block).", desired.cluster));
        }
    }
    out
}

/// Placeholder distribution id in [`Desired::statement`], replaced by a
/// reference to the distribution.
const DISTRIBUTION_ID: &str = "IRSADISTRIBUTION";

/// The distribution as `apply` creates it, in Terraform.
fn tf_distribution(desired: &Desired, cf: &DesiredCloudFront) -> Value {
    let shape = cf.shape("${aws_cloudfront_origin_access_control.issuer.id}");
    let certificate = match &shape.certificate_arn {
        Some(arn) => json!({"acm_certificate_arn": arn, "ssl_support_method": "sni-only",
            "minimum_protocol_version": "TLSv1.2_2021"}),
        None => json!({"cloudfront_default_certificate": true}),
    };
    json!({
        "enabled": true,
        "comment": shape.comment,
        "default_root_object": "",
        "aliases": shape.aliases,
        "origin": [{"domain_name": shape.origin_domain, "origin_path": shape.origin_path,
            "origin_id": ORIGIN_ID, "origin_access_control_id": shape.oac_id}],
        "default_cache_behavior": [{"target_origin_id": ORIGIN_ID,
            "viewer_protocol_policy": shape.viewer_protocol_policy,
            "allowed_methods": shape.allowed_methods, "cached_methods": shape.allowed_methods,
            "cache_policy_id": CACHING_OPTIMIZED, "compress": true}],
        "restrictions": [{"geo_restriction": [{"restriction_type": "none"}]}],
        "viewer_certificate": [certificate],
        "tags": tf_tags(&desired.owner_tags()),
    })
}

/// The distribution and its OAC as `apply` creates them, in CloudFormation.
fn cfn_cloudfront(desired: &Desired, cf: &DesiredCloudFront, resources: &mut Map<String, Value>) {
    resources.insert(
        "IssuerOriginAccessControl".into(),
        json!({"Type": "AWS::CloudFront::OriginAccessControl", "Properties": {"OriginAccessControlConfig": {
            "Name": cf.names.oac_name, "Description": cf.oac_description(&desired.cluster),
            "OriginAccessControlOriginType": "s3", "SigningBehavior": "always", "SigningProtocol": "sigv4"}}}),
    );
    let shape = cf.shape("");
    let certificate = match &shape.certificate_arn {
        Some(arn) => json!({"AcmCertificateArn": arn, "SslSupportMethod": "sni-only",
            "MinimumProtocolVersion": "TLSv1.2_2021"}),
        None => json!({"CloudFrontDefaultCertificate": true}),
    };
    let mut config = json!({
        "Enabled": true,
        "Comment": shape.comment,
        "DefaultRootObject": "",
        "Origins": [{"Id": ORIGIN_ID, "DomainName": shape.origin_domain, "OriginPath": shape.origin_path,
            "OriginAccessControlId": {"Fn::GetAtt": ["IssuerOriginAccessControl", "Id"]},
            "S3OriginConfig": {"OriginAccessIdentity": ""}}],
        "DefaultCacheBehavior": {"TargetOriginId": ORIGIN_ID,
            "ViewerProtocolPolicy": shape.viewer_protocol_policy,
            "AllowedMethods": shape.allowed_methods, "CachedMethods": shape.allowed_methods,
            "CachePolicyId": CACHING_OPTIMIZED, "Compress": true},
        "ViewerCertificate": certificate,
    });
    if !shape.aliases.is_empty() {
        config["Aliases"] = json!(shape.aliases);
    }
    resources.insert(
        "IssuerDistribution".into(),
        json!({"Type": "AWS::CloudFront::Distribution", "Properties": {
            "DistributionConfig": config, "Tags": cfn_tags(&desired.owner_tags())}}),
    );
    if let Some(mut statement) = desired.statement(Some(DISTRIBUTION_ID)) {
        statement["Condition"]["StringEquals"]["AWS:SourceArn"] = json!({"Fn::Sub":
            "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${IssuerDistribution}"});
        resources.insert(
            "IssuerBucketPolicy".into(),
            json!({"Type": "AWS::S3::BucketPolicy", "Properties": {
                "Bucket": {"Ref": "IssuerBucket"},
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement]}}}),
        );
    }
}

fn cfn_tags(tags: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

fn cfn_ref(name: &str) -> Value {
    json!({"Fn::GetAtt": [ident("Role", name, true), "Arn"]})
}

/// The role's resource, and its inline policies that name other roles of
/// this template as resources of their own (inside the role they would
/// make a cycle: the broker may assume the pod-identity roles, which trust
/// the broker).
fn cfn_role(desired: &Desired, role: &DesiredRole) -> (Value, Vec<(String, Value)>) {
    let trust = if role.kind == RoleKind::PodIdentity {
        with_role_refs(role.trust.as_value(), desired, &cfn_ref)
    } else {
        with_principal(
            role.trust.as_value(),
            json!({"Fn::GetAtt": ["OidcProvider", "Arn"]}),
        )
    };
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
    let id = ident("Role", &role.name, true);
    let (separate, inside): (Vec<_>, Vec<_>) = role
        .inline
        .iter()
        .partition(|(_, d)| names_a_role(d, desired));
    if !inside.is_empty() {
        props["Policies"] = Value::Array(
            inside
                .iter()
                .map(|(n, d)| json!({"PolicyName": n, "PolicyDocument": d}))
                .collect(),
        );
    }
    if let Some(b) = &role.boundary {
        props["PermissionsBoundary"] = json!(b);
    }
    let policies = separate
        .into_iter()
        .map(|(n, d)| {
            (
                ident(&format!("{id}Policy"), n, true),
                json!({"Type": "AWS::IAM::RolePolicy", "Properties": {
                    "RoleName": {"Ref": id},
                    "PolicyName": n,
                    "PolicyDocument": with_role_refs(d, desired, &cfn_ref)}}),
            )
        })
        .collect();
    (
        json!({"Type": "AWS::IAM::Role", "Properties": props}),
        policies,
    )
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
                    "BlockPublicPolicy": desired.cloudfront.is_some(), "RestrictPublicBuckets": desired.cloudfront.is_some()},
                "Tags": cfn_tags(&desired.owner_tags())}}),
        );
        if let Some(cf) = &desired.cloudfront {
            cfn_cloudfront(desired, cf, &mut resources);
        }
        if let Some(policy) = desired.merged_bucket_policy(None) {
            resources.insert(
                "IssuerBucketPolicy".into(),
                json!({"Type": "AWS::S3::BucketPolicy", "Properties": {
                    "Bucket": {"Ref": "IssuerBucket"}, "PolicyDocument": policy}}),
            );
        }
    }
    if desired.needs_provider {
        resources.insert(
            "OidcProvider".into(),
            json!({"Type": "AWS::IAM::OIDCProvider", "Properties": {
                "Url": format!("https://{}", desired.provider_host_path),
                "ClientIdList": desired.client_ids,
                "Tags": cfn_tags(&desired.owner_tags())}}),
        );
    }
    for role in &desired.roles {
        let id = ident("Role", &role.name, true);
        let (resource, policies) = cfn_role(desired, role);
        resources.insert(id.clone(), resource);
        resources.extend(policies);
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
        // The bucket's region is the provider's.
        let region = desired().s3.expect("s3").region;
        assert_eq!(tf["provider"]["aws"]["region"], region.as_str());
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
