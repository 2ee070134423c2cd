//! The ServiceAccount's `<prefix>/*` annotations and the Go parsers that
//! read their values as the Go webhook does.

use std::collections::BTreeMap;

use super::MIN_TOKEN_EXPIRATION;

/// What a ServiceAccount's annotations say: the only fields the cache keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaIdentity {
    /// `P/role-arn` (None when absent or empty).
    pub role_arn: Option<String>,
    /// `P/audience` (Some("") means: omit the audience).
    pub audience: Option<String>,
    /// `P/sts-regional-endpoints`, when it parses as a bool.
    pub regional_sts: Option<bool>,
    /// `P/token-expiration`, when it parses (already clamped).
    pub token_expiration: Option<i64>,
    /// `P/skip-containers` on the ServiceAccount (an irsa extension).
    pub skip_containers: Vec<String>,
}

impl SaIdentity {
    /// Reads the annotations under `prefix`; `None` if there are none.
    pub fn from_annotations(annotations: &BTreeMap<String, String>, prefix: &str) -> Option<Self> {
        let get = |name: &str| annotations.get(&format!("{prefix}/{name}"));
        let id = Self {
            role_arn: get("role-arn").filter(|s| !s.is_empty()).cloned(),
            audience: get("audience").cloned(),
            regional_sts: get("sts-regional-endpoints").and_then(|s| parse_go_bool(s)),
            token_expiration: get("token-expiration")
                .and_then(|s| parse_go_int(s))
                .map(clamp_expiration),
            skip_containers: get("skip-containers")
                .map(|s| parse_csv_record(s))
                .unwrap_or_default(),
        };
        (id != Self::default()).then_some(id)
    }

    /// The audience the webhook gives this ServiceAccount's token: its
    /// `audience` annotation, else `default` (the webhook's
    /// `--token-audience`); `None` when that is empty (the token then
    /// carries the API server's own audiences).
    pub fn token_audience<'a>(this: Option<&'a Self>, default: &'a str) -> Option<&'a str> {
        let audience = this.and_then(|s| s.audience.as_deref()).unwrap_or(default);
        (!audience.is_empty()).then_some(audience)
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.ParseInt(s, 10, 64)`.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Applies the 600 s minimum.
pub fn clamp_expiration(seconds: i64) -> i64 {
    seconds.max(MIN_TOKEN_EXPIRATION)
}

/// The first record of a CSV document (comma separated, `"` quoting, no trimming);
/// a malformed or empty record yields no names.
pub fn parse_csv_record(s: &str) -> Vec<String> {
    let line = s.split('\n').next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Vec::new();
    }
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Vec::new(),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return fields;
                }
                Some(',') => fields.push(field),
                Some(_) => return Vec::new(),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return fields;
                    }
                    Some(',') => break,
                    Some('"') => return Vec::new(),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::DEFAULT_PREFIX;

    #[test]
    fn go_parsers() {
        assert_eq!(parse_go_int("+3600"), Some(3600));
        assert_eq!(parse_go_int(" 3600"), None);
        assert_eq!(parse_go_int("1_000"), None);
        assert_eq!(parse_go_int("99999999999999999999"), None);
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(clamp_expiration(0), 600);
    }

    #[test]
    fn csv_first_record() {
        assert_eq!(parse_csv_record("a,b"), ["a", "b"]);
        assert_eq!(parse_csv_record("a, b"), ["a", " b"]);
        assert_eq!(parse_csv_record("\"a,b\",c\nd"), ["a,b", "c"]);
        assert!(parse_csv_record("a\"b").is_empty());
        assert!(parse_csv_record("").is_empty());
        assert!(parse_csv_record("\"open").is_empty());
    }

    #[test]
    fn no_annotations_is_none() {
        let mut a = BTreeMap::new();
        a.insert("other/x".to_string(), "y".to_string());
        assert_eq!(SaIdentity::from_annotations(&a, DEFAULT_PREFIX), None);
        a.insert("eks.amazonaws.com/role-arn".into(), "".into());
        assert_eq!(
            SaIdentity::from_annotations(&a, DEFAULT_PREFIX),
            None,
            "empty role is no role"
        );
    }
}
