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

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// The ServiceAccounts listed in an identities file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    /// Namespace to ServiceAccount names.
    by_namespace: BTreeMap<String, BTreeSet<String>>,
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
    /// Reads an identities file's content.
    pub fn parse(content: &[u8]) -> Result<Self, IdentitiesError> {
        let mut out = Self::default();
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
            if out.by_namespace.entry(namespace).or_default().insert(name) {
                out.len += 1;
            }
        }
        Ok(out)
    }

    /// Whether ServiceAccount `namespace/name` is listed.
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.by_namespace
            .get(namespace)
            .is_some_and(|names| names.contains(name))
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
}
