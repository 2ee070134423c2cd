//! Names, one rule each: Kubernetes object names as the API server
//! validates them (DNS-1123 labels and subdomains) and IAM role names.
//!
//! The webhook checks a name read from an AdmissionReview here before it
//! becomes part of an API URL: anything else (`..`, `/`, `%`, upper case,
//! 10 KB of text) is not a ServiceAccount the API server could hold, so it
//! is never asked for. `irsa.yaml`'s cluster, namespaces and ServiceAccounts
//! and the cluster configuration's names use the same rules.

/// Why a name is not a valid Kubernetes name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The namespace is not a DNS-1123 label.
    #[error("namespace {0:?} is not a DNS-1123 label (1-63 of a-z, 0-9, '-', starting and ending with a letter or digit)")]
    Namespace(String),
    /// The ServiceAccount name is not a DNS-1123 subdomain.
    #[error("service account name {0:?} is not a DNS-1123 subdomain (up to 253 of a-z, 0-9, '-', '.', each dot-separated part starting and ending with a letter or digit)")]
    ServiceAccount(String),
}

/// Longest value echoed back in an error, so a huge name stays out of logs.
const ECHO: usize = 80;

fn echo(value: &str) -> String {
    value.chars().take(ECHO).collect()
}

fn is_label(bytes: &[u8]) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// Whether `s` is a DNS-1123 label: 1-63 of `a-z`, `0-9`, `-`, starting
/// and ending with a letter or digit (namespaces, cluster names).
pub fn is_dns_label(s: &str) -> bool {
    is_label(s.as_bytes())
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253
/// bytes in all (ServiceAccount names).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Longest role name IAM accepts.
pub const MAX_ROLE_NAME: usize = 64;

/// Whether IAM allows `c` in a role name (`[\w+=,.@-]`).
pub fn is_role_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// Whether `name` is an IAM role name: 1 to 64 of `[\w+=,.@-]`.
pub fn is_role_name(name: &str) -> bool {
    (1..=MAX_ROLE_NAME).contains(&name.len()) && name.chars().all(is_role_name_char)
}

/// Longest inline policy name IAM accepts.
pub const MAX_POLICY_NAME: usize = 128;

/// Whether `name` is an IAM inline policy name: 1 to 128 of `[\w+=,.@-]`.
pub fn is_policy_name(name: &str) -> bool {
    (1..=MAX_POLICY_NAME).contains(&name.len()) && name.chars().all(is_role_name_char)
}

/// Whether `doc` can be an IAM policy document: an object with a
/// `Statement`.
pub fn is_policy_document(doc: &serde_json::Value) -> bool {
    doc.get("Statement").is_some()
}

/// Checks a namespace: a DNS-1123 label.
pub fn check_namespace(namespace: &str) -> Result<(), NameError> {
    if is_label(namespace.as_bytes()) {
        Ok(())
    } else {
        Err(NameError::Namespace(echo(namespace)))
    }
}

/// Checks a ServiceAccount name: a DNS-1123 subdomain (dot-separated
/// labels, at most 253 bytes in all).
pub fn check_service_account(name: &str) -> Result<(), NameError> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(NameError::ServiceAccount(echo(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_dns_labels() {
        for ok in ["default", "a", "kube-system", "team-1", &"a".repeat(63)] {
            assert_eq!(check_namespace(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a/b",
            "..",
            "a%2fb",
            "ü",
            &"a".repeat(64),
        ] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn service_accounts_are_dns_subdomains() {
        for ok in ["default", "s3", "my.app-1", "a.b.c", &"a".repeat(63)] {
            assert_eq!(check_service_account(ok), Ok(()), "{ok}");
        }
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-.b",
            "A",
            "a/b",
            "../../pods",
            "a?b",
            "a b",
            &"a".repeat(64),
            &long,
        ] {
            assert!(check_service_account(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn role_names_follow_iam() {
        for ok in ["a", "s3-reader", "a+b=c,d.e@f_g-h", &"r".repeat(64)] {
            assert!(is_role_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "a b", "ü", "a:b", &"r".repeat(65)] {
            assert!(!is_role_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn errors_do_not_echo_huge_names() {
        let huge = "X".repeat(100_000);
        let message = check_service_account(&huge)
            .expect_err("too long")
            .to_string();
        assert!(message.len() < 400, "{}", message.len());
    }
}
