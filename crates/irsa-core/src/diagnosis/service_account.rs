//! Doctor's ServiceAccount link: the role ARN its annotation names, read
//! the way the webhook reads it ([`SaIdentity`], so an empty annotation is
//! no annotation, as for the webhook).

use crate::arn::RoleArn;
use crate::checks::Report;
use crate::diagnosis::Link;
use crate::mutate::SaIdentity;

/// Judges ServiceAccount `ns/sa`'s role annotation under `prefix`; the
/// role ARN when it is one.
pub fn role_annotation(
    report: &mut Report,
    ns: &str,
    sa: &str,
    identity: Option<&SaIdentity>,
    prefix: &str,
) -> Option<String> {
    let annotation = format!("{prefix}/role-arn");
    match identity.and_then(|i| i.role_arn.as_deref()) {
        Some(arn) if RoleArn::parse(arn).is_ok() => {
            report.pass(Link::RoleAnnotation.name(), format!("{ns}/{sa}: {arn}"));
            Some(arn.to_string())
        }
        Some(arn) => {
            report.fail(
                Link::RoleAnnotation.name(),
                format!("{annotation} is {arn:?}, not a role ARN"),
                "set it to arn:aws:iam::ACCOUNT:role/[PATH/]NAME (`irsa bind` prints the exact value)",
            );
            None
        }
        None => {
            report.fail(
                Link::RoleAnnotation.name(),
                format!("{ns}/{sa} has no {annotation} annotation, so the webhook leaves its pods alone"),
                format!("kubectl annotate serviceaccount -n {ns} {sa} {annotation}=arn:aws:iam::ACCOUNT:role/... (or `irsa bind -n {ns} -s {sa}`)"),
            );
            None
        }
    }
}

/// `--pod` named a pod the API server does not have.
pub fn pod_missing(report: &mut Report, ns: &str, pod: &str) {
    report.fail(
        Link::PodExists.name(),
        format!("no pod {ns}/{pod}"),
        "check the name and namespace (-n)",
    );
}

/// The ServiceAccount doctor was asked about (or the pod's) is not there.
pub fn service_account_missing(report: &mut Report, ns: &str, sa: &str) {
    report.fail(
        Link::ServiceAccountExists.name(),
        format!("no ServiceAccount {ns}/{sa}"),
        format!("create it: `irsa bind -n {ns} -s {sa} ...` prints the manifest"),
    );
}

/// The TokenRequest link: whether the API server issued a token for
/// `ns/sa` with `audience` (`None`: the API server's own, because the
/// audience annotation is empty), or why not.
pub fn token_request(
    report: &mut Report,
    ns: &str,
    sa: &str,
    audience: Option<&str>,
    issued: Result<(), String>,
) {
    let audience = audience.unwrap_or("the API server's own (the audience annotation is empty)");
    match issued {
        Ok(()) => report.pass(
            Link::TokenRequest.name(),
            format!("token issued for {ns}/{sa}, audience {audience}"),
        ),
        Err(e) => report.fail(
            Link::TokenRequest.name(),
            format!("the apiserver did not issue a token for {ns}/{sa} with audience {audience}: {e}"),
            "the apiserver needs --service-account-signing-key-file and --service-account-issuer (`irsa cluster config`)",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::checks::Status;

    fn judged(annotations: &[(&str, &str)]) -> (Option<String>, Status, String) {
        let map: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let identity = SaIdentity::from_annotations(&map, "eks.amazonaws.com");
        let mut r = Report::default();
        let arn = role_annotation(&mut r, "app", "s3", identity.as_ref(), "eks.amazonaws.com");
        (arn, r.checks[0].status, r.checks[0].detail.clone())
    }

    #[test]
    fn the_annotation_is_read_as_the_webhook_reads_it() {
        let role = "arn:aws:iam::111122223333:role/s3";
        assert_eq!(
            judged(&[("eks.amazonaws.com/role-arn", role)]).0.as_deref(),
            Some(role)
        );
        let (arn, status, detail) = judged(&[("eks.amazonaws.com/role-arn", "s3-reader")]);
        assert_eq!((arn, status), (None, Status::Fail));
        assert!(detail.contains("not a role ARN"), "{detail}");
        // Empty is absent, for the webhook as for doctor.
        for annotations in [&[("eks.amazonaws.com/role-arn", "")][..], &[]] {
            let (arn, status, detail) = judged(annotations);
            assert_eq!((arn, status), (None, Status::Fail));
            assert!(
                detail.contains("has no eks.amazonaws.com/role-arn annotation"),
                "{detail}"
            );
        }
    }

    #[test]
    fn the_token_audience_is_the_annotation_else_the_default_and_empty_is_none() {
        let read = |a: &[(&str, &str)]| {
            let map: BTreeMap<String, String> = a
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            SaIdentity::from_annotations(&map, "eks.amazonaws.com")
        };
        let custom = read(&[("eks.amazonaws.com/audience", "custom")]);
        assert_eq!(
            SaIdentity::token_audience(custom.as_ref(), "sts.amazonaws.com"),
            Some("custom")
        );
        assert_eq!(
            SaIdentity::token_audience(None, "sts.amazonaws.com"),
            Some("sts.amazonaws.com")
        );
        let empty = read(&[("eks.amazonaws.com/audience", "")]);
        assert_eq!(
            SaIdentity::token_audience(empty.as_ref(), "sts.amazonaws.com"),
            None
        );
    }

    #[test]
    fn missing_objects_and_the_token_request_name_their_link_and_fix() {
        let mut r = Report::default();
        pod_missing(&mut r, "app", "web-1");
        service_account_missing(&mut r, "app", "s3");
        token_request(&mut r, "app", "s3", None, Ok(()));
        token_request(
            &mut r,
            "app",
            "s3",
            Some("sts.amazonaws.com"),
            Err("forbidden".into()),
        );
        let lines: Vec<(&str, Status)> = r
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            lines,
            [
                (Link::PodExists.name(), Status::Fail),
                (Link::ServiceAccountExists.name(), Status::Fail),
                (Link::TokenRequest.name(), Status::Pass),
                (Link::TokenRequest.name(), Status::Fail),
            ]
        );
        assert!(r.checks[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("irsa bind -n app -s s3"));
        assert!(
            r.checks[2].detail.contains("the API server's own"),
            "{:?}",
            r.checks[2]
        );
        assert!(
            r.checks[3]
                .detail
                .ends_with("audience sts.amazonaws.com: forbidden"),
            "{:?}",
            r.checks[3]
        );
    }
}
