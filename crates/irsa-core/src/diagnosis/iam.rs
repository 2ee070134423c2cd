//! Doctor's IAM links for a web-identity token, judged from what IAM
//! returned: the role ARN the pod is annotated with, the OIDC provider for
//! the token's issuer and its client IDs, and the role's trust policy for
//! this token (evaluated by [`crate::trust::evaluate`]). The CLI only reads
//! IAM and prints.

use crate::arn::RoleArn;
use crate::checks::Report;
use crate::diagnosis::Link;
use crate::plan::{ActualProvider, ActualRole};
use crate::trust::{self, Request};

/// The role ARN as the annotation gives it, or a failed link.
pub fn role_arn(report: &mut Report, role_arn: &str) -> Option<RoleArn> {
    match RoleArn::parse(role_arn) {
        Ok(arn) => Some(arn),
        Err(_) => {
            report.fail(
                Link::IamRoleArn.name(),
                format!("{role_arn:?} is not a role ARN"),
                "use arn:aws:iam::ACCOUNT:role/[PATH/]NAME",
            );
            None
        }
    }
}

/// The ARN of the OIDC provider for `host_path` that STS looks for: in
/// the role's account and partition.
pub fn expected_provider(role: &RoleArn, host_path: &str) -> String {
    crate::arn::oidc_provider(role.partition(), role.account(), host_path)
}

/// The provider link: it exists (`found`, or why IAM could not be read),
/// its client IDs hold the token's audiences `aud`, and it is the one in
/// the role's account.
pub fn provider(
    report: &mut Report,
    role: &RoleArn,
    host_path: &str,
    aud: &[String],
    found: Result<Option<&ActualProvider>, String>,
) {
    match found {
        Ok(Some(p)) => {
            report.pass(Link::IamProvider.name(), format!("{} exists", p.arn));
            let missing: Vec<&String> = aud.iter().filter(|x| !p.client_ids.contains(*x)).collect();
            report.check(
                missing.is_empty(),
                Link::IamClientIds.name(),
                format!("client IDs {:?} include the token's audience", p.client_ids),
                format!("the token's audience {missing:?} is not among the client IDs {:?} (STS: \"Incorrect token audience\")", p.client_ids),
                "add it: set the binding's `audience:` in irsa.yaml and `irsa apply`, or request the token with audience sts.amazonaws.com",
            );
            if p.arn != expected_provider(role, host_path) {
                report.warn(
                    Link::IamProvider.name(),
                    format!(
                        "the provider is {} but the role is in account {}",
                        p.arn,
                        role.account()
                    ),
                    "the provider must be in the role's account",
                );
            }
        }
        Ok(None) => report.fail(
            Link::IamProvider.name(),
            format!("no IAM OIDC provider for {host_path} (STS: \"No OpenIDConnect provider found\")"),
            format!("create it: `irsa apply` (provider URL https://{host_path}, no trailing slash)"),
        ),
        Err(e) => report.warn(
            Link::IamProvider.name(),
            format!("cannot read IAM: {e}"),
            "run doctor with credentials allowed iam:ListOpenIDConnectProviders and iam:GetOpenIDConnectProvider, or pass --no-aws",
        ),
    }
}

/// The token doctor judges the trust policy for.
#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    /// The issuer's `host/path`.
    pub host_path: &'a str,
    /// Its `sub`.
    pub sub: &'a str,
    /// Its audiences.
    pub aud: &'a [String],
}

/// The role link: the role exists (`found`, or why it could not be read)
/// and its trust policy admits `token` through the provider STS would
/// use. `fix` replaces the trust fix when an earlier link found the real
/// fault (a role bound to another ServiceAccount).
pub fn role_trust(
    report: &mut Report,
    role: &RoleArn,
    token: Token<'_>,
    found: Result<Option<&ActualRole>, String>,
    fix: Option<String>,
) {
    let name = role.name();
    match found {
        Ok(Some(actual)) => {
            let provider_arn = expected_provider(role, token.host_path);
            let request = Request {
                provider_arn: &provider_arn,
                host_path: token.host_path,
                sub: token.sub,
                aud: token.aud,
            };
            match trust::evaluate(&actual.trust, &request) {
                Ok(()) => report.pass(
                    Link::IamTrust.name(),
                    format!("role {name} trusts {}", token.sub),
                ),
                Err(reasons) => report.fail(
                    Link::IamTrust.name(),
                    reasons.join("; "),
                    fix.unwrap_or_else(|| "fix the trust policy: `irsa plan` shows the repair for roles irsa manages (condition keys are host/path:sub without https://)".into()),
                ),
            }
        }
        Ok(None) => report.fail(
            Link::IamRoleExists.name(),
            format!("no role {name}"),
            "create it: add the binding (`irsa bind`) and `irsa apply`",
        ),
        Err(e) => report.warn(
            Link::IamTrust.name(),
            format!("cannot read the role: {e}"),
            "run doctor with iam:GetRole permission, or pass --no-aws",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checks::Status;

    const HOST: &str = "oidc.example.com/prod";

    fn role() -> RoleArn {
        RoleArn::parse("arn:aws:iam::111122223333:role/irsa/prod/app").unwrap()
    }

    fn statuses(r: &Report) -> Vec<(String, Status)> {
        r.checks
            .iter()
            .map(|c| (c.name.clone(), c.status))
            .collect()
    }

    #[test]
    fn a_bad_role_arn_is_its_own_failed_link() {
        let mut r = Report::default();
        assert!(role_arn(&mut r, "arn:aws:iam::1:user/x").is_none());
        assert_eq!(statuses(&r), [("iam: role ARN".to_string(), Status::Fail)]);
        let mut r = Report::default();
        assert!(role_arn(&mut r, &role().to_string()).is_some());
        assert!(r.checks.is_empty());
    }

    #[test]
    fn the_provider_must_exist_hold_the_audience_and_be_in_the_roles_account() {
        let aud = ["sts.amazonaws.com".to_string()];
        let mut good = ActualProvider {
            arn: expected_provider(&role(), HOST),
            client_ids: ["sts.amazonaws.com".to_string()].into(),
            ..ActualProvider::default()
        };
        let mut r = Report::default();
        provider(&mut r, &role(), HOST, &aud, Ok(Some(&good)));
        assert!(
            !r.failed() && r.checks.iter().all(|c| c.status == Status::Pass),
            "{r:?}"
        );

        good.client_ids = ["other".to_string()].into();
        good.arn = "arn:aws:iam::999999999999:oidc-provider/oidc.example.com/prod".into();
        let mut r = Report::default();
        provider(&mut r, &role(), HOST, &aud, Ok(Some(&good)));
        assert_eq!(
            statuses(&r),
            [
                ("iam: OIDC provider".to_string(), Status::Pass),
                ("iam: provider client IDs".to_string(), Status::Fail),
                ("iam: OIDC provider".to_string(), Status::Warn),
            ]
        );

        let mut r = Report::default();
        provider(&mut r, &role(), HOST, &aud, Ok(None));
        assert_eq!(
            statuses(&r),
            [("iam: OIDC provider".to_string(), Status::Fail)]
        );
        let mut r = Report::default();
        provider(&mut r, &role(), HOST, &aud, Err("AccessDenied".into()));
        assert_eq!(
            statuses(&r),
            [("iam: OIDC provider".to_string(), Status::Warn)]
        );
        assert!(r.checks[0].detail.contains("AccessDenied"));
    }

    #[test]
    fn the_trust_policy_is_evaluated_for_the_token_through_the_expected_provider() {
        let aud = ["sts.amazonaws.com".to_string()];
        let token = Token {
            host_path: HOST,
            sub: "system:serviceaccount:app:s3",
            aud: &aud,
        };
        let trusting = |sub: &str| ActualRole {
            trust: serde_json::from_value(serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Federated": expected_provider(&role(), HOST)},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {
                        format!("{HOST}:sub"): sub,
                        format!("{HOST}:aud"): "sts.amazonaws.com"
                    }}
                }]
            }))
            .unwrap(),
            ..ActualRole::default()
        };
        let mut r = Report::default();
        role_trust(
            &mut r,
            &role(),
            token,
            Ok(Some(&trusting("system:serviceaccount:app:s3"))),
            None,
        );
        assert_eq!(
            statuses(&r),
            [(
                "iam: trust policy admits the token".to_string(),
                Status::Pass
            )]
        );

        let mut r = Report::default();
        let other = trusting("system:serviceaccount:app:other");
        role_trust(
            &mut r,
            &role(),
            token,
            Ok(Some(&other)),
            Some("bind app/s3".into()),
        );
        assert_eq!(r.checks[0].status, Status::Fail);
        assert_eq!(
            r.checks[0].fix.as_deref(),
            Some("bind app/s3"),
            "the earlier link's fix"
        );

        let mut r = Report::default();
        role_trust(&mut r, &role(), token, Ok(None), None);
        assert_eq!(
            statuses(&r),
            [("iam: role exists".to_string(), Status::Fail)]
        );
    }
}
