//! The Pod Identity identities file (`--watch-container-credentials-config`):
//! the ServiceAccounts whose pods get container credentials.
//!
//! The format is the Go webhook's:
//! `{"identities":[{"namespace":"app","serviceAccount":"s3-reader"}]}`,
//! read as Go's `encoding/json` reads it: key names match in any case,
//! unknown keys are ignored and `null` counts as absent. An empty file
//! lists nobody. Stricter than Go: an entry without a namespace or a
//! ServiceAccount name (a misspelt key, most likely) makes the file
//! invalid rather than silently matching nothing.
//!
//! The same file is `irsa agent`'s associations file: an entry may carry
//! the role its pods get (`"roleArn": "arn:aws:iam::…:role/…"`), which the
//! Go webhook's parser ignores. A `roleArn` that is not a role ARN, or two
//! entries giving one ServiceAccount different roles, make the file invalid.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::arn::RoleArn;

/// The ServiceAccounts listed in an identities file, each with its role
/// when the entry names one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    /// Namespace to ServiceAccount names to role.
    by_namespace: BTreeMap<String, BTreeMap<String, Option<RoleArn>>>,
    len: usize,
}

/// Why an identities file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentitiesError {
    /// Not JSON at all.
    #[error("the identities file is not JSON ({0}); write {{\"identities\":[{{\"namespace\":\"NS\",\"serviceAccount\":\"NAME\"}}]}}")]
    Json(#[source] serde_json::Error),
    /// JSON of the wrong shape.
    #[error("the identities file is not of the form {{\"identities\":[{{\"namespace\":\"NS\",\"serviceAccount\":\"NAME\"}}]}}: {0}")]
    Shape(String),
    /// Larger than [`Identities::MAX_BYTES`].
    #[error("the identities file has {0} bytes, more than the {max} irsa reads; list fewer ServiceAccounts", max = Identities::MAX_BYTES)]
    TooLarge(usize),
}

/// The value of `name` in `object`, the key matched in any case as Go
/// does (an exact match first); `null` reads as absent.
fn field<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object
        .get(name)
        .or_else(|| {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

impl Identities {
    /// The largest file read (a line per ServiceAccount fits tens of
    /// thousands of accounts).
    pub const MAX_BYTES: usize = 8 << 20;

    /// Reads an identities file's content.
    pub fn parse(content: &[u8]) -> Result<Self, IdentitiesError> {
        let mut out = Self::default();
        if content.len() > Self::MAX_BYTES {
            return Err(IdentitiesError::TooLarge(content.len()));
        }
        if content.iter().all(u8::is_ascii_whitespace) {
            return Ok(out);
        }
        let root: Value = serde_json::from_slice(content).map_err(IdentitiesError::Json)?;
        let list = match &root {
            Value::Null => return Ok(out),
            Value::Object(object) => match field(object, "identities") {
                None => return Ok(out),
                Some(Value::Array(list)) => list,
                Some(other) => {
                    return Err(IdentitiesError::Shape(format!(
                        "\"identities\" is {}, not a list",
                        kind(other)
                    )))
                }
            },
            other => {
                return Err(IdentitiesError::Shape(format!(
                    "the file holds {}, not an object",
                    kind(other)
                )))
            }
        };
        for (i, item) in list.iter().enumerate() {
            let Value::Object(entry) = item else {
                return Err(IdentitiesError::Shape(format!(
                    "identities[{i}] is {}, not an object",
                    kind(item)
                )));
            };
            let text = |name: &str| match field(entry, name) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::String(_)) | None => Err(IdentitiesError::Shape(format!(
                    "identities[{i}] has no {name:?}"
                ))),
                Some(other) => Err(IdentitiesError::Shape(format!(
                    "identities[{i}].{name} is {}, not a string",
                    kind(other)
                ))),
            };
            let (namespace, name) = (text("namespace")?, text("serviceAccount")?);
            let role = match field(entry, "roleArn") {
                None => None,
                Some(Value::String(arn)) => Some(RoleArn::parse(arn).map_err(|e| {
                    IdentitiesError::Shape(format!("identities[{i}].roleArn: {e}"))
                })?),
                Some(other) => {
                    return Err(IdentitiesError::Shape(format!(
                        "identities[{i}].roleArn is {}, not a string",
                        kind(other)
                    )))
                }
            };
            let names = out.by_namespace.entry(namespace).or_default();
            match names.get(&name) {
                None => {
                    names.insert(name, role);
                    out.len += 1;
                }
                Some(before) if role.is_none() || before.as_ref() == role.as_ref() => {}
                Some(None) => {
                    names.insert(name, role);
                }
                Some(Some(before)) => {
                    return Err(IdentitiesError::Shape(format!(
                        "identities[{i}] gives {name:?} the role {} but an earlier entry gave it {before}; keep one",
                        role.map(|r| r.to_string()).unwrap_or_default()
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Whether ServiceAccount `namespace/name` is listed.
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.by_namespace
            .get(namespace)
            .is_some_and(|names| names.contains_key(name))
    }

    /// The role associated with ServiceAccount `namespace/name`, if it is
    /// listed with one.
    pub fn role(&self, namespace: &str, name: &str) -> Option<&RoleArn> {
        self.by_namespace.get(namespace)?.get(name)?.as_ref()
    }

    /// How many ServiceAccounts are listed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody is listed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_go_format_as_go_does() {
        let ids = Identities::parse(
            br#"{"identities":[{"namespace":"app","serviceAccount":"s3"},
                {"Namespace":"app","ServiceAccount":"other","extra":1},
                {"namespace":"app","serviceAccount":"s3"}],"version":2}"#,
        )
        .map_err(|e| e.to_string());
        let ids = ids.as_ref().map_err(String::as_str);
        assert_eq!(ids.map(Identities::len), Ok(2));
        let ids = ids.ok();
        assert!(ids.is_some_and(|i| i.contains("app", "s3") && i.contains("app", "other")));
        assert!(ids.is_some_and(|i| !i.contains("other", "s3") && !i.contains("app", "S3")));
        for nobody in [&b""[..], b"  \n", b"null", b"{}", b"{\"identities\":null}"] {
            assert!(
                Identities::parse(nobody).is_ok_and(|i| i.is_empty()),
                "{nobody:?}"
            );
        }
    }

    #[test]
    fn a_bad_file_names_the_problem() {
        for (bad, says) in [
            (&b"{\"identities\":["[..], "not JSON"),
            (b"[]", "holds a list"),
            (b"{\"identities\":{}}", "\"identities\" is an object"),
            (b"{\"identities\":[1]}", "identities[0] is a number"),
            (
                b"{\"identities\":[{\"namespace\":\"a\",\"service_account\":\"b\"}]}",
                "identities[0] has no \"serviceAccount\"",
            ),
            (
                b"{\"identities\":[{\"namespace\":7,\"serviceAccount\":\"b\"}]}",
                "identities[0].namespace is a number",
            ),
        ] {
            let error = Identities::parse(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(says), "{error}");
        }
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/irsa/prod/app-s3";

    #[test]
    fn an_entry_may_carry_its_role_for_the_agent() {
        let file = format!(
            r#"{{"identities":[{{"namespace":"app","serviceAccount":"s3","roleArn":"{ROLE}"}},
               {{"namespace":"app","serviceAccount":"plain"}},
               {{"namespace":"app","serviceAccount":"s3"}},
               {{"namespace":"app","serviceAccount":"plain","RoleArn":"{ROLE}"}}]}}"#
        );
        let ids = Identities::parse(file.as_bytes()).map_err(|e| e.to_string());
        let ids = ids.as_ref().ok();
        let role = |ns, sa| ids.and_then(|i| i.role(ns, sa)).map(|r| r.to_string());
        assert_eq!(ids.map(Identities::len), Some(2));
        assert_eq!(role("app", "s3").as_deref(), Some(ROLE));
        assert_eq!(
            role("app", "plain").as_deref(),
            Some(ROLE),
            "a later entry may add the role"
        );
        assert_eq!(role("app", "other"), None);
        let only_listed =
            Identities::parse(br#"{"identities":[{"namespace":"a","serviceAccount":"b"}]}"#);
        assert!(only_listed.is_ok_and(|i| i.contains("a", "b") && i.role("a", "b").is_none()));
    }

    #[test]
    fn a_bad_role_or_two_roles_for_one_account_are_refused() {
        let other = "arn:aws:iam::111122223333:role/other";
        for (bad, says) in [
            (
                r#"{"identities":[{"namespace":"a","serviceAccount":"b","roleArn":"arn:aws:iam::1:role/x"}]}"#.to_string(),
                "identities[0].roleArn: \"arn:aws:iam::1:role/x\" is not an IAM role ARN",
            ),
            (
                r#"{"identities":[{"namespace":"a","serviceAccount":"b","roleArn":7}]}"#.to_string(),
                "identities[0].roleArn is a number",
            ),
            (
                format!(r#"{{"identities":[{{"namespace":"a","serviceAccount":"b","roleArn":"{ROLE}"}},{{"namespace":"a","serviceAccount":"b","roleArn":"{other}"}}]}}"#),
                "identities[1] gives \"b\" the role arn:aws:iam::111122223333:role/other but an earlier entry gave it",
            ),
        ] {
            let error = Identities::parse(bad.as_bytes()).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(says), "{error}");
        }
        let huge = vec![b' '; Identities::MAX_BYTES + 1];
        let error = Identities::parse(&huge)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("more than the 8388608 irsa reads"),
            "{error}"
        );
    }
}
