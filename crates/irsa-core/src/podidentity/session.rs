//! The AssumeRole request for a pod: EKS Pod Identity's session tags (all
//! transitive, so ABAC policies written for EKS work unchanged), a session
//! name that names the pod, and the session length.
//!
//! STS's limits: at most 50 tags, keys ≤ 128 and values ≤ 256 characters
//! of letters, digits, white space and `_ . : / = + - @`; a session name
//! of 2–64 characters of `[\w+=,.@-]`; a role assumed with credentials
//! that are themselves a role session (role chaining) lasts at most 1 h.

use super::review::PodIdentity;

/// Tag key: the cluster's name (`--cluster-name`).
pub const TAG_CLUSTER: &str = "eks-cluster-name";
/// Tag key: the pod's namespace.
pub const TAG_NAMESPACE: &str = "kubernetes-namespace";
/// Tag key: the pod's ServiceAccount.
pub const TAG_SERVICE_ACCOUNT: &str = "kubernetes-service-account";
/// Tag key: the pod's name.
pub const TAG_POD_NAME: &str = "kubernetes-pod-name";
/// Tag key: the pod's UID.
pub const TAG_POD_UID: &str = "kubernetes-pod-uid";

/// Session length asked for: role chaining's cap, which applies when the
/// broker's own credentials are a role session (IRSA, Roles Anywhere).
pub const SESSION_SECONDS: i32 = 3600;

const MAX_TAG_VALUE: usize = 256;

/// A tag value STS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {key} session tag value {value:?} is not accepted by STS: at most 256 letters, digits, spaces and _.:/=+-@")]
pub struct TagError {
    /// The tag key.
    pub key: &'static str,
    /// The value.
    pub value: String,
}

fn tag_value_ok(v: &str) -> bool {
    v.chars().count() <= MAX_TAG_VALUE
        && v.chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// Checks a cluster name as a tag value (at start-up: `--cluster-name`).
pub fn check_cluster_name(name: &str) -> Result<(), TagError> {
    if !name.is_empty() && tag_value_ok(name) {
        Ok(())
    } else {
        Err(TagError {
            key: TAG_CLUSTER,
            value: name.into(),
        })
    }
}

/// The session tags for `pod` in `cluster`, in a fixed order; every key
/// is also a transitive tag key.
pub fn session_tags(
    cluster: &str,
    pod: &PodIdentity,
) -> Result<Vec<(&'static str, String)>, TagError> {
    let tags = vec![
        (TAG_CLUSTER, cluster.to_string()),
        (TAG_NAMESPACE, pod.namespace.clone()),
        (TAG_SERVICE_ACCOUNT, pod.service_account.clone()),
        (TAG_POD_NAME, pod.pod_name.clone()),
        (TAG_POD_UID, pod.pod_uid.clone()),
    ];
    for (key, value) in &tags {
        if !tag_value_ok(value) {
            return Err(TagError {
                key,
                value: value.clone(),
            });
        }
    }
    Ok(tags)
}

const MAX_SESSION_NAME: usize = 64;

fn session_char(c: char) -> char {
    if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
        c
    } else {
        '-'
    }
}

/// The RoleSessionName for `pod`: `NAMESPACE.POD`, characters STS refuses
/// replaced by `-`. When longer than 64 characters it is cut to 55 and
/// ends with `-` and the first 8 characters of the pod UID, so two long
/// names that share a prefix still differ. Deterministic.
pub fn session_name(pod: &PodIdentity) -> String {
    let full: String = format!("{}.{}", pod.namespace, pod.pod_name)
        .chars()
        .map(session_char)
        .collect();
    let name = if full.len() <= MAX_SESSION_NAME {
        full
    } else {
        let uid: String = pod
            .pod_uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let keep = MAX_SESSION_NAME - 1 - uid.len();
        format!("{}-{uid}", &full[..keep])
    };
    if name.len() < 2 {
        format!("pod-{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, uid: &str) -> PodIdentity {
        PodIdentity {
            namespace: ns.into(),
            service_account: "s3".into(),
            pod_name: name.into(),
            pod_uid: uid.into(),
        }
    }

    fn sts_ok(name: &str) -> bool {
        (2..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    }

    #[test]
    fn the_session_name_names_the_pod_within_sts_limits() {
        assert_eq!(session_name(&pod("app", "web-0", "u")), "app.web-0");
        let long = "w".repeat(253);
        let a = session_name(&pod("app", &long, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        assert_eq!(a.len(), 64);
        assert!(a.starts_with("app.www") && a.ends_with("-0f1e2d3c"), "{a}");
        let b = session_name(&pod("app", &long, "11111111-0000"));
        assert_ne!(a, b, "long names differ by UID");
        assert_eq!(
            a,
            session_name(&pod("app", &long, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"))
        );
        for name in [
            a,
            b,
            session_name(&pod("", "", "")),
            session_name(&pod("ns", "p:ö/x", "")),
            session_name(&pod("n", "w".repeat(70).as_str(), "!!")),
        ] {
            assert!(sts_ok(&name), "{name}");
        }
    }

    #[test]
    fn tags_are_eks_pod_identitys_and_checked() {
        let tags = session_tags("prod", &pod("app", "web-0", "u-1"));
        let keys: Vec<&str> = tags.iter().flatten().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "eks-cluster-name",
                "kubernetes-namespace",
                "kubernetes-service-account",
                "kubernetes-pod-name",
                "kubernetes-pod-uid"
            ]
        );
        let values: Vec<String> = tags.into_iter().flatten().map(|(_, v)| v).collect();
        assert_eq!(values, ["prod", "app", "s3", "web-0", "u-1"]);
        assert!(check_cluster_name("prod-eu_1").is_ok());
        for bad in ["", "a,b", "x".repeat(257).as_str(), "tab\u{7}"] {
            assert!(check_cluster_name(bad).is_err(), "{bad:?}");
        }
        let e = session_tags("prod", &pod("app", "a*b", "u"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("kubernetes-pod-name session tag value \"a*b\""),
            "{e}"
        );
    }
}
