//! IAM trust policies for service-account roles.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Binding;
use crate::issuer::IssuerUrl;

/// An IAM role trust policy document: one irsa renders, or one read from
/// IAM. It keeps the document exactly as given, so statements irsa does not
/// model (other principals, Sids, other conditions) round-trip unchanged,
/// and it serialises to the same JSON bytes (compact with `Display`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrustPolicy(Value);

impl TrustPolicy {
    /// The document as JSON.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The document as JSON, by value.
    pub fn into_value(self) -> Value {
        self.0
    }

    /// Its statements: the `Statement` array, or a lone `Statement` object;
    /// none when the document has no `Statement`.
    pub fn statements(&self) -> Vec<&Value> {
        match &self.0["Statement"] {
            Value::Array(a) => a.iter().collect(),
            v @ Value::Object(_) => vec![v],
            _ => Vec::new(),
        }
    }

    /// The AWS principals (ARNs, or IAM's unique IDs of deleted ones) its
    /// Allow statements name.
    pub fn aws_principals(&self) -> std::collections::BTreeSet<String> {
        self.allowed_principals("AWS")
    }

    /// The provider ARNs its Allow statements federate to.
    pub fn federated_providers(&self) -> std::collections::BTreeSet<String> {
        self.allowed_principals("Federated")
    }

    /// The principals of one kind (`AWS`, `Federated`) its Allow
    /// statements name.
    fn allowed_principals(&self, kind: &str) -> std::collections::BTreeSet<String> {
        self.statements()
            .into_iter()
            .filter(|s| s["Effect"].as_str() == Some("Allow"))
            .flat_map(|s| strings(&s["Principal"][kind]))
            .map(String::from)
            .collect()
    }
}

impl From<Value> for TrustPolicy {
    fn from(document: Value) -> Self {
        Self(document)
    }
}

impl PartialEq<Value> for TrustPolicy {
    fn eq(&self, other: &Value) -> bool {
        &self.0 == other
    }
}

impl PartialEq<TrustPolicy> for Value {
    fn eq(&self, other: &TrustPolicy) -> bool {
        self == &other.0
    }
}

impl std::ops::Index<&str> for TrustPolicy {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        &self.0[key]
    }
}

/// Compact JSON, as IAM is sent it.
impl fmt::Display for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// ARN of the IAM OIDC provider for `issuer` (`partition` is an id such
/// as `aws-cn`, see [`crate::Partition`]).
pub fn provider_arn(partition: &str, account: &str, issuer: &IssuerUrl) -> String {
    crate::arn::oidc_provider(partition, account, issuer.host_path())
}

/// The trust policy letting `binding`'s service account(s) assume the role:
/// `sts:AssumeRoleWithWebIdentity` from the provider, `sub` pinned to
/// `system:serviceaccount:NS:SA` (StringLike for patterns) and `aud` to the audience.
pub fn trust_policy(
    partition: &str,
    account: &str,
    issuer: &IssuerUrl,
    binding: &Binding,
) -> TrustPolicy {
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
    TrustPolicy(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": provider_arn(partition, account, issuer) },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }]
    }))
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

/// A policy field that is one string or a list of them, as strings.
pub(crate) fn strings(v: &Value) -> Vec<&str> {
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
pub fn evaluate(policy: &TrustPolicy, req: &Request<'_>) -> Result<(), Vec<String>> {
    if policy.statements().is_empty() && !policy["Statement"].is_array() {
        return Err(vec!["the trust policy has no Statement".into()]);
    }
    evaluate_statements(policy, "token", |st| statement_gaps(st, req))
}

/// IAM's evaluation of a trust policy given why each statement does not
/// match a request (`gaps`, empty when it does): a matching Deny refuses,
/// else some matching Allow admits. Returns why not, statement by
/// statement; `what` names the request in the Deny message.
pub(crate) fn evaluate_statements(
    policy: &TrustPolicy,
    what: &str,
    gaps: impl Fn(&Value) -> Vec<String>,
) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    let mut allowed = false;
    for (i, st) in policy.statements().iter().enumerate() {
        let gaps = gaps(st);
        match st["Effect"].as_str() {
            Some("Deny") if gaps.is_empty() => {
                return Err(vec![format!("statement {} denies this {what}", i + 1)]);
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
) -> TrustPolicy {
    let statements: Vec<Value> = issuers
        .iter()
        .map(|i| trust_policy(partition, account, i, binding)["Statement"][0].clone())
        .collect();
    TrustPolicy(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// IAM's default limit on a role trust policy, in characters without
/// whitespace (a quota increase allows up to 4096).
pub const TRUST_POLICY_LIMIT: usize = 2048;

/// The length IAM counts for a policy: its characters without whitespace
/// outside strings (serde's compact form has none).
pub fn policy_length(policy: &TrustPolicy) -> usize {
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
        let bad: TrustPolicy = serde_json::from_str(&exact.to_string().replace(
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
    }

    #[test]
    fn a_rendered_policy_is_the_json_irsa_sends_to_iam() {
        let issuer = IssuerUrl::parse("https://b.s3.eu-west-1.amazonaws.com/prod").expect("valid");
        let p = trust_policy("aws", "111122223333", &issuer, &binding("s3-echoer"));
        let sent = concat!(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","#,
            r#""Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/b.s3.eu-west-1.amazonaws.com/prod"},"#,
            r#""Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"#,
            r#""b.s3.eu-west-1.amazonaws.com/prod:aud":"sts.amazonaws.com","#,
            r#""b.s3.eu-west-1.amazonaws.com/prod:sub":"system:serviceaccount:app:s3-echoer"}}}]}"#
        );
        assert_eq!(p.to_string(), sent);
        assert_eq!(serde_json::to_string(&p).expect("json"), sent);
        assert_eq!(policy_length(&p), sent.len());
    }

    #[test]
    fn statements_irsa_does_not_model_round_trip_unchanged() {
        let from_iam = concat!(
            r#"{"Version":"2012-10-17","Statement":["#,
            r#"{"Sid":"Ec2","Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},"#,
            r#"{"Effect":"Allow","Principal":{"Federated":["arn:aws:iam::1:oidc-provider/a","arn:aws:iam::1:oidc-provider/b"]},"#,
            r#""Action":["sts:AssumeRoleWithWebIdentity","sts:TagSession"],"Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},"#,
            r#"{"Effect":"Deny","Principal":{"Federated":"arn:aws:iam::1:oidc-provider/c"},"Action":"*"}],"#,
            r#""Custom":{"kept":true}}"#
        );
        let p: TrustPolicy = serde_json::from_str(from_iam).expect("json");
        assert_eq!(p.to_string(), from_iam, "nothing dropped or reordered");
        assert_eq!(p.statements().len(), 3);
        assert_eq!(
            p.federated_providers().into_iter().collect::<Vec<_>>(),
            [
                "arn:aws:iam::1:oidc-provider/a",
                "arn:aws:iam::1:oidc-provider/b"
            ],
            "Allow statements only"
        );
        let lone: TrustPolicy = serde_json::from_str(
            r#"{"Statement":{"Effect":"Allow","Principal":{"Federated":"x"}}}"#,
        )
        .expect("json");
        assert_eq!(lone.statements().len(), 1, "a lone Statement object");
        assert!(TrustPolicy::default().statements().is_empty());
        let none = Request {
            provider_arn: "x",
            host_path: "h",
            sub: "s",
            aud: &[],
        };
        assert_eq!(
            evaluate(&TrustPolicy::default(), &none),
            Err(vec!["the trust policy has no Statement".to_string()])
        );
        let empty: TrustPolicy = serde_json::from_str(r#"{"Statement":[]}"#).expect("json");
        assert_eq!(
            evaluate(&empty, &none),
            Err(vec!["no Allow statement".to_string()])
        );
    }
}
