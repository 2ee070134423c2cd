//! Doctor's ServiceAccount link: the role ARN its annotation names, read
//! the way the webhook reads it ([`SaIdentity`], so an empty annotation is
//! no annotation, as for the webhook).

use crate::arn::RoleArn;
use crate::checks::Report;
use crate::mutate::SaIdentity;

/// The link's name.
pub const ROLE_LINK: &str = "serviceaccount: role-arn annotation";

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
            report.pass(ROLE_LINK, format!("{ns}/{sa}: {arn}"));
            Some(arn.to_string())
        }
        Some(arn) => {
            report.fail(
                ROLE_LINK,
                format!("{annotation} is {arn:?}, not a role ARN"),
                "set it to arn:aws:iam::ACCOUNT:role/[PATH/]NAME (`irsa bind` prints the exact value)",
            );
            None
        }
        None => {
            report.fail(
                ROLE_LINK,
                format!("{ns}/{sa} has no {annotation} annotation, so the webhook leaves its pods alone"),
                format!("kubectl annotate serviceaccount -n {ns} {sa} {annotation}=arn:aws:iam::ACCOUNT:role/... (or `irsa bind -n {ns} -s {sa}`)"),
            );
            None
        }
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
}
