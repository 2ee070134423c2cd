//! IAM trust policies for service-account roles.

use serde_json::{json, Value};

use crate::config::Binding;
use crate::issuer::IssuerUrl;

/// The AWS partition of a region: `aws`, `aws-cn` or `aws-us-gov`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// ARN of the IAM OIDC provider for `issuer`.
pub fn provider_arn(partition: &str, account: &str, issuer: &IssuerUrl) -> String {
    format!(
        "arn:{partition}:iam::{account}:oidc-provider/{}",
        issuer.host_path()
    )
}

/// The trust policy letting `binding`'s service account(s) assume the role:
/// `sts:AssumeRoleWithWebIdentity` from the provider, `sub` pinned to
/// `system:serviceaccount:NS:SA` (StringLike for patterns) and `aud` to the audience.
pub fn trust_policy(
    partition: &str,
    account: &str,
    issuer: &IssuerUrl,
    binding: &Binding,
) -> Value {
    let host = issuer.host_path();
    let sub = format!(
        "system:serviceaccount:{}:{}",
        binding.namespace, binding.service_account
    );
    let mut condition = serde_json::Map::new();
    condition.insert(
        "StringEquals".into(),
        json!({ format!("{host}:aud"): binding.audience() }),
    );
    if binding.service_account.contains('*') {
        condition.insert("StringLike".into(), json!({ format!("{host}:sub"): sub }));
    } else if let Some(Value::Object(eq)) = condition.get_mut("StringEquals") {
        eq.insert(format!("{host}:sub"), Value::String(sub));
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": provider_arn(partition, account, issuer) },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(sa: &str) -> Binding {
        serde_yaml::from_str(&format!("{{namespace: app, serviceAccount: '{sa}'}}"))
            .expect("binding")
    }

    #[test]
    fn exact_and_pattern_conditions() {
        let issuer = IssuerUrl::parse("https://b.s3.eu-west-1.amazonaws.com/prod").expect("valid");
        let p = trust_policy("aws", "111122223333", &issuer, &binding("s3-echoer"));
        let st = &p["Statement"][0];
        assert_eq!(
            st["Principal"]["Federated"],
            "arn:aws:iam::111122223333:oidc-provider/b.s3.eu-west-1.amazonaws.com/prod"
        );
        assert_eq!(
            st["Condition"]["StringEquals"]["b.s3.eu-west-1.amazonaws.com/prod:sub"],
            "system:serviceaccount:app:s3-echoer"
        );
        assert_eq!(
            st["Condition"]["StringEquals"]["b.s3.eu-west-1.amazonaws.com/prod:aud"],
            "sts.amazonaws.com"
        );
        assert!(!p.to_string().contains("https://"));
        let p = trust_policy("aws", "111122223333", &issuer, &binding("batch-*"));
        assert_eq!(
            p["Statement"][0]["Condition"]["StringLike"]["b.s3.eu-west-1.amazonaws.com/prod:sub"],
            "system:serviceaccount:app:batch-*"
        );
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }
}
