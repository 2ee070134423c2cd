//! Judging the API server's TokenReview of a pod's token: who the token
//! names (namespace, ServiceAccount, pod) or why it is refused.

use k8s_openapi::api::authentication::v1::TokenReviewStatus;

use super::request::Refusal;

/// The extra of a pod-bound token's review naming the pod.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// The extra of a pod-bound token's review giving the pod's UID.
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// The pod a reviewed token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodIdentity {
    /// The pod's namespace.
    pub namespace: String,
    /// Its ServiceAccount's name.
    pub service_account: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's UID.
    pub pod_uid: String,
}

impl PodIdentity {
    /// Bytes held by the strings (for cache bounds).
    pub fn bytes(&self) -> usize {
        self.namespace.len() + self.service_account.len() + self.pod_name.len() + self.pod_uid.len()
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The pod identity in a TokenReview `status` for a review that asked for
/// `audience`, or the refusal (401) naming why: not authenticated (the
/// API server's own one-line error: expired, wrong audience, pod deleted),
/// another audience, not a ServiceAccount token, or a token not bound to a
/// pod.
pub fn judge(status: Option<&TokenReviewStatus>, audience: &str) -> Result<PodIdentity, Refusal> {
    let Some(status) = status else {
        return Err(Refusal::new(
            503,
            "the API server's TokenReview had no status; retry",
        ));
    };
    if status.authenticated != Some(true) {
        let why = status
            .error
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "no reason given".into());
        return Err(Refusal::new(
            401,
            format!("the API server did not accept the token: {why}"),
        ));
    }
    if let Some(audiences) = &status.audiences {
        if !audiences.iter().any(|a| a == audience) {
            return Err(Refusal::new(
                401,
                format!(
                    "the token is not for audience {audience:?}: project it with that audience"
                ),
            ));
        }
    }
    let user = status.user.as_ref();
    let username = user.and_then(|u| u.username.as_deref()).unwrap_or("");
    let (namespace, service_account) = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
        .ok_or_else(|| {
            Refusal::new(
                401,
                format!(
                    "the token is not a ServiceAccount's (user {:?})",
                    one_line(username)
                ),
            )
        })?;
    let extra = |key: &str| -> Option<String> {
        match user?.extra.as_ref()?.get(key)?.as_slice() {
            [one] if !one.is_empty() => Some(one.clone()),
            _ => None,
        }
    };
    let (Some(pod_name), Some(pod_uid)) = (extra(EXTRA_POD_NAME), extra(EXTRA_POD_UID)) else {
        return Err(Refusal::new(401, "the token is not bound to a pod: mount a projected ServiceAccount token (the webhook's container-credentials injection does)"));
    };
    Ok(PodIdentity {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        pod_name,
        pod_uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;
    use std::collections::BTreeMap;

    const AUD: &str = "pods.eks.amazonaws.com";

    fn reviewed(username: &str, extras: &[(&str, &str)]) -> TokenReviewStatus {
        let extra: BTreeMap<String, Vec<String>> = extras
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect();
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec![AUD.into()]),
            user: Some(UserInfo {
                username: Some(username.into()),
                extra: Some(extra),
                ..Default::default()
            }),
            error: None,
        }
    }

    #[test]
    fn a_pod_bound_service_account_token_names_its_pod() {
        let s = reviewed(
            "system:serviceaccount:app:s3",
            &[(EXTRA_POD_NAME, "web-0"), (EXTRA_POD_UID, "u-1")],
        );
        assert_eq!(
            judge(Some(&s), AUD),
            Ok(PodIdentity {
                namespace: "app".into(),
                service_account: "s3".into(),
                pod_name: "web-0".into(),
                pod_uid: "u-1".into()
            })
        );
    }

    #[test]
    fn refusals_say_why_in_one_line() {
        let pod = [(EXTRA_POD_NAME, "web-0"), (EXTRA_POD_UID, "u-1")];
        let refused = |s: Option<&TokenReviewStatus>| {
            judge(s, AUD)
                .err()
                .map(|r| (r.status, r.reason))
                .unwrap_or_default()
        };
        let mut s = reviewed("system:serviceaccount:app:s3", &pod);
        s.authenticated = Some(false);
        s.error =
            Some("[invalid bearer token,\nservice account token has been invalidated]".into());
        let (code, why) = refused(Some(&s));
        assert_eq!(code, 401);
        assert!(why.contains("did not accept the token: [invalid bearer token, service account token has been invalidated]"), "{why}");
        s = reviewed("system:serviceaccount:app:s3", &pod);
        s.audiences = Some(vec!["sts.amazonaws.com".into()]);
        assert!(refused(Some(&s))
            .1
            .contains("not for audience \"pods.eks.amazonaws.com\""));
        assert!(refused(Some(&reviewed("alice", &pod)))
            .1
            .contains("not a ServiceAccount's (user \"alice\")"));
        assert!(refused(Some(&reviewed("system:serviceaccount:app", &pod)))
            .1
            .contains("not a ServiceAccount's"));
        assert!(
            refused(Some(&reviewed("system:serviceaccount:app:s3", &pod[..1])))
                .1
                .contains("not bound to a pod")
        );
        assert_eq!(refused(None).0, 503);
    }
}
