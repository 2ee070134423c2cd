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

/// What STS knows about a web-identity request, for [`evaluate`].
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// ARN of the OIDC provider for the token's issuer.
    pub provider_arn: &'a str,
    /// The issuer's `host/path` (condition keys are `{host_path}:sub` ...).
    pub host_path: &'a str,
    /// The token's `sub`.
    pub sub: &'a str,
    /// The token's audiences.
    pub aud: &'a [String],
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// IAM's `StringLike`: `*` any run of characters, `?` exactly one.
pub fn string_like(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Why one statement does not admit the request (empty: it does).
fn statement_gaps(st: &Value, req: &Request<'_>) -> Vec<String> {
    let mut gaps = Vec::new();
    let actions = strings(&st["Action"]);
    if !actions
        .iter()
        .any(|a| matches!(*a, "sts:AssumeRoleWithWebIdentity" | "sts:*" | "*"))
    {
        gaps.push(format!(
            "Action is {actions:?}, not sts:AssumeRoleWithWebIdentity"
        ));
    }
    let federated = strings(&st["Principal"]["Federated"]);
    if !federated.contains(&req.provider_arn) {
        gaps.push(format!(
            "Principal.Federated is {federated:?}, not the issuer's provider {}",
            req.provider_arn
        ));
    }
    let known = |key: &str| -> Option<Vec<&str>> {
        let (prefix, name) = key.rsplit_once(':')?;
        if prefix != req.host_path {
            return None;
        }
        match name {
            "sub" => Some(vec![req.sub]),
            "aud" => Some(req.aud.iter().map(String::as_str).collect()),
            _ => None,
        }
    };
    if let Some(conditions) = st["Condition"].as_object() {
        for (op, entries) in conditions {
            let Some(entries) = entries.as_object() else {
                gaps.push(format!("Condition {op} is not an object"));
                continue;
            };
            let base = op
                .trim_start_matches("ForAnyValue:")
                .trim_start_matches("ForAllValues:");
            for (key, wanted) in entries {
                let wanted = strings(wanted);
                let Some(actual) = known(key) else {
                    let hint = if key.starts_with("https://") || key.starts_with("http://") {
                        format!(
                            " (remove the scheme: STS sets {}:{})",
                            req.host_path,
                            key.rsplit(':').next().unwrap_or("sub")
                        )
                    } else if key.ends_with(":sub") || key.ends_with(":aud") {
                        format!(
                            " (STS sets {}:{} for this issuer)",
                            req.host_path,
                            key.rsplit(':').next().unwrap_or("sub")
                        )
                    } else {
                        String::new()
                    };
                    gaps.push(format!(
                        "{op} on {key:?}: STS does not set this key for this token{hint}"
                    ));
                    continue;
                };
                let matches = |a: &str| {
                    wanted.iter().any(|w| match base {
                        "StringEquals" => *w == a,
                        "StringLike" => string_like(w, a),
                        "StringEqualsIgnoreCase" => w.eq_ignore_ascii_case(a),
                        _ => false,
                    })
                };
                let ok = match base {
                    "StringEquals" | "StringLike" | "StringEqualsIgnoreCase" => {
                        actual.iter().any(|a| matches(a))
                    }
                    "StringNotEquals" => actual.iter().all(|a| !wanted.contains(a)),
                    "StringNotLike" => actual
                        .iter()
                        .all(|a| !wanted.iter().any(|w| string_like(w, a))),
                    other => {
                        gaps.push(format!(
                            "condition operator {other} is not evaluated by irsa; check it by hand"
                        ));
                        continue;
                    }
                };
                if !ok {
                    gaps.push(format!(
                        "{op} {key} requires {wanted:?} but the token has {actual:?}"
                    ));
                }
            }
        }
    }
    gaps
}

/// Evaluates a role's trust policy for a web-identity request the way STS
/// does for the keys it sets (`:sub`, `:aud`): some Allow statement must
/// match and no Deny statement may. Returns why not, statement by statement.
pub fn evaluate(policy: &Value, req: &Request<'_>) -> Result<(), Vec<String>> {
    let statements: Vec<&Value> = match &policy["Statement"] {
        Value::Array(a) => a.iter().collect(),
        v @ Value::Object(_) => vec![v],
        _ => return Err(vec!["the trust policy has no Statement".into()]),
    };
    let mut reasons = Vec::new();
    let mut allowed = false;
    for (i, st) in statements.iter().enumerate() {
        let gaps = statement_gaps(st, req);
        match st["Effect"].as_str() {
            Some("Deny") if gaps.is_empty() => {
                return Err(vec![format!("statement {} denies this token", i + 1)]);
            }
            Some("Allow") if gaps.is_empty() => allowed = true,
            Some("Allow") => reasons.extend(
                gaps.into_iter()
                    .map(|g| format!("statement {}: {g}", i + 1)),
            ),
            _ => {}
        }
    }
    if allowed {
        Ok(())
    } else {
        if reasons.is_empty() {
            reasons.push("no Allow statement".into());
        }
        Err(reasons)
    }
}

/// The trust policy for `binding` when several issuers may present its
/// tokens (an issuer change, or several clusters sharing a role): one
/// statement per issuer, each with its own `host/path` condition keys.
pub fn trust_policy_for(
    partition: &str,
    account: &str,
    issuers: &[&IssuerUrl],
    binding: &Binding,
) -> Value {
    let statements: Vec<Value> = issuers
        .iter()
        .map(|i| trust_policy(partition, account, i, binding)["Statement"][0].clone())
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// IAM's default limit on a role trust policy, in characters without
/// whitespace (a quota increase allows up to 4096).
pub const TRUST_POLICY_LIMIT: usize = 2048;

/// The length IAM counts for a policy: its characters without whitespace
/// outside strings (serde's compact form has none).
pub fn policy_length(policy: &Value) -> usize {
    policy.to_string().chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_like_sts() {
        let issuer = IssuerUrl::parse("https://b.s3.eu-west-1.amazonaws.com/prod").expect("valid");
        let arn = provider_arn("aws", "111122223333", &issuer);
        let aud = vec!["sts.amazonaws.com".to_string()];
        let req = |sub: &'static str| Request {
            provider_arn: &arn,
            host_path: issuer.host_path(),
            sub,
            aud: &aud,
        };
        let exact = trust_policy("aws", "111122223333", &issuer, &binding("s3-echoer"));
        assert!(evaluate(&exact, &req("system:serviceaccount:app:s3-echoer")).is_ok());
        let err =
            evaluate(&exact, &req("system:serviceaccount:other:s3-echoer")).expect_err("wrong ns");
        assert!(
            err[0].contains("requires [\"system:serviceaccount:app:s3-echoer\"]"),
            "{err:?}"
        );
        let pattern = trust_policy("aws", "111122223333", &issuer, &binding("job-*"));
        assert!(evaluate(&pattern, &req("system:serviceaccount:app:job-42")).is_ok());
        assert!(evaluate(&pattern, &req("system:serviceaccount:app:web")).is_err());
        // A scheme in the condition key never matches what STS sets.
        let bad: Value = serde_json::from_str(&exact.to_string().replace(
            "\"b.s3.eu-west-1.amazonaws.com/prod:sub\"",
            "\"https://b.s3.eu-west-1.amazonaws.com/prod:sub\"",
        ))
        .expect("json");
        let err = evaluate(&bad, &req("system:serviceaccount:app:s3-echoer")).expect_err("scheme");
        assert!(
            err.iter().any(|e| e.contains("remove the scheme")),
            "{err:?}"
        );
        // Wrong provider and wrong audience.
        let other = Request {
            provider_arn: "arn:aws:iam::111122223333:oidc-provider/x",
            ..req("system:serviceaccount:app:s3-echoer")
        };
        assert!(evaluate(&exact, &other).expect_err("provider")[0].contains("Principal.Federated"));
        let wrong_aud = vec!["api".to_string()];
        let r = Request {
            aud: &wrong_aud,
            ..req("system:serviceaccount:app:s3-echoer")
        };
        assert!(evaluate(&exact, &r).is_err());
        assert!(string_like("a*c?e", "abbbcde") && !string_like("a*c?e", "abbbce"));
    }

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
