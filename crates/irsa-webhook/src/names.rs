//! Kubernetes object names as the API server validates them. A name read
//! from an AdmissionReview is checked here before it becomes part of an API
//! URL: anything else (`..`, `/`, `%`, upper case, 10 KB of text) is not a
//! ServiceAccount the API server could hold, so it is never asked for.

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
    let ok = name.len() <= 253 && name.split('.').all(|part| is_label(part.as_bytes()));
    if ok {
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
    fn errors_do_not_echo_huge_names() {
        let huge = "X".repeat(100_000);
        let message = check_service_account(&huge)
            .expect_err("too long")
            .to_string();
        assert!(message.len() < 400, "{}", message.len());
    }
}
