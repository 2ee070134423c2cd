//! Whether the role a ServiceAccount's annotation (or doctor's
//! `--role-arn`) names is the one irsa.yaml binds to that ServiceAccount:
//! a role bound to another ServiceAccount trusts only that one, so STS
//! refuses the token although every trust policy is as irsa.yaml says.

use crate::arn::RoleArn;
use crate::checks::Status;
use crate::config::Binding;
use crate::plan::role_path;
use crate::trust::string_like;

use super::Link;

/// Where the role doctor checks came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleSource {
    /// The ServiceAccount's `eks.amazonaws.com/role-arn` annotation.
    Annotation,
    /// `irsa doctor --role-arn` (with `--token`).
    RoleArnFlag,
}

/// What irsa.yaml says about the role named for `namespace/service_account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingFinding {
    /// The role is one irsa.yaml binds to this ServiceAccount.
    Bound {
        /// The role's ARN.
        role: RoleArn,
    },
    /// irsa.yaml binds `right` to this ServiceAccount, but `named` is
    /// another role: bound to another ServiceAccount (`named_for`), or not
    /// one of irsa.yaml's roles at all (`None`).
    WrongRole {
        /// The ServiceAccount, `ns/sa`.
        subject: String,
        /// The role named.
        named: RoleArn,
        /// The binding (`ns/sa`) the named role belongs to, if any.
        named_for: Option<String>,
        /// The role irsa.yaml binds to the ServiceAccount.
        right: RoleArn,
    },
    /// irsa.yaml binds no role to this ServiceAccount; `named_for` is the
    /// binding the named role belongs to, if any.
    Unbound {
        /// The ServiceAccount, `ns/sa`.
        subject: String,
        /// The role named.
        named: RoleArn,
        /// The binding (`ns/sa`) the named role belongs to, if any.
        named_for: Option<String>,
    },
}

/// The ARN of `binding`'s role in the named role's partition and account.
fn role_of(cluster: &str, binding: &Binding, like: &RoleArn) -> Option<RoleArn> {
    RoleArn::new(
        like.partition(),
        like.account(),
        &role_path(cluster),
        &binding.role_name(cluster),
    )
    .ok()
}

/// Judges the role `named` for ServiceAccount `namespace/service_account`
/// against the bindings of irsa.yaml for `cluster` (an exact binding
/// first, then patterns).
pub fn judge_binding(
    cluster: &str,
    bindings: &[Binding],
    namespace: &str,
    service_account: &str,
    named: &RoleArn,
) -> BindingFinding {
    let subject = format!("{namespace}/{service_account}");
    let mut for_subject: Vec<&Binding> = bindings
        .iter()
        .filter(|b| b.namespace == namespace && string_like(&b.service_account, service_account))
        .collect();
    // The exact binding is the one to name when several match.
    for_subject.sort_by_key(|b| b.service_account.contains('*'));
    let roles: Vec<RoleArn> = for_subject
        .iter()
        .filter_map(|b| role_of(cluster, b, named))
        .collect();
    if roles.contains(named) {
        return BindingFinding::Bound {
            role: named.clone(),
        };
    }
    let named_for = bindings
        .iter()
        .find(|b| role_of(cluster, b, named).as_ref() == Some(named))
        .map(|b| format!("{}/{}", b.namespace, b.service_account));
    match roles.into_iter().next() {
        Some(right) => BindingFinding::WrongRole {
            subject,
            named: named.clone(),
            named_for,
            right,
        },
        None => BindingFinding::Unbound {
            subject,
            named: named.clone(),
            named_for,
        },
    }
}

impl BindingFinding {
    /// The link this finding reports on.
    pub fn link(&self) -> Link {
        Link::RoleBound
    }

    /// Whether the named role is another binding's: then STS refuses the
    /// token whatever the trust policies say, and the trust-policy link
    /// should point here rather than at `irsa plan`.
    pub fn names_another_bindings_role(&self) -> bool {
        matches!(
            self,
            Self::WrongRole {
                named_for: Some(_),
                ..
            } | Self::Unbound {
                named_for: Some(_),
                ..
            }
        )
    }

    /// Severity, detail and fix (empty when the link holds).
    pub fn explain(&self, source: RoleSource) -> (Status, String, String) {
        let what = match source {
            RoleSource::Annotation => "is annotated with",
            RoleSource::RoleArnFlag => "is checked (--role-arn) against",
        };
        let owner = |named_for: &Option<String>| {
            match named_for {
            Some(other) => format!(
                "the role irsa.yaml binds to {other}, whose trust policy admits only that ServiceAccount's tokens"
            ),
            None => "a role irsa.yaml does not bind to any ServiceAccount (irsa does not manage its trust policy)".to_string(),
        }
        };
        match self {
            Self::Bound { role } => (
                Status::Pass,
                format!("{role} is the role irsa.yaml binds to this ServiceAccount"),
                String::new(),
            ),
            Self::WrongRole {
                subject,
                named,
                named_for,
                right,
            } => {
                let (ns, sa) = subject.split_once('/').unwrap_or((subject, ""));
                let fix = match source {
                    RoleSource::Annotation => format!(
                        "annotate the ServiceAccount with its own role: kubectl annotate serviceaccount -n {ns} {sa} eks.amazonaws.com/role-arn={right} --overwrite; then recreate its pods (they keep the role they were created with)"
                    ),
                    RoleSource::RoleArnFlag => format!(
                        "check the token against the role irsa.yaml binds to {subject}: --role-arn {right} (or pass a token of the ServiceAccount the role is bound to)"
                    ),
                };
                let severity = if named_for.is_some() {
                    Status::Fail
                } else {
                    Status::Warn
                };
                (
                    severity,
                    format!(
                        "{subject} {what} {named}, {}; irsa.yaml binds {right} to {subject}",
                        owner(named_for)
                    ),
                    fix,
                )
            }
            Self::Unbound {
                subject,
                named,
                named_for,
            } => {
                let (ns, sa) = subject.split_once('/').unwrap_or((subject, ""));
                let severity = if named_for.is_some() {
                    Status::Fail
                } else {
                    Status::Warn
                };
                (
                    severity,
                    format!(
                        "irsa.yaml binds no role to {subject}; it {what} {named}, {}",
                        owner(named_for)
                    ),
                    format!(
                        "bind a role to it: `irsa bind -n {ns} -s {sa} --policy-arn ARN` then `irsa apply`, and annotate the ServiceAccount with the role ARN bind prints (kubectl annotate ... --overwrite)"
                    ),
                )
            }
        }
    }
}

/// The `ns/sa` of a token's `sub` (`system:serviceaccount:NS:SA`).
pub fn subject_of(sub: &str) -> Option<(&str, &str)> {
    let rest = sub.strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    (!ns.is_empty() && !sa.is_empty() && !sa.contains(':')).then_some((ns, sa))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> Vec<Binding> {
        [
            ("app", "orders-api"),
            ("default", "s3-echoer"),
            ("jobs", "batch-*"),
        ]
        .into_iter()
        .map(|(ns, sa)| Binding {
            namespace: ns.into(),
            service_account: sa.into(),
            ..Binding::default()
        })
        .collect()
    }

    fn arn(name: &str) -> RoleArn {
        RoleArn::parse(&format!("arn:aws:iam::111122223333:role/irsa/prod/{name}")).unwrap()
    }

    #[test]
    fn another_bindings_role_names_the_right_one_and_the_command() {
        let c = config();
        let f = judge_binding(
            "prod",
            &c,
            "default",
            "s3-echoer",
            &arn("prod-app-orders-api"),
        );
        assert_eq!(
            f,
            BindingFinding::WrongRole {
                subject: "default/s3-echoer".into(),
                named: arn("prod-app-orders-api"),
                named_for: Some("app/orders-api".into()),
                right: arn("prod-default-s3-echoer"),
            }
        );
        assert!(f.names_another_bindings_role());
        let (sev, detail, fix) = f.explain(RoleSource::Annotation);
        assert_eq!(sev, Status::Fail);
        assert!(detail.contains("binds to app/orders-api"), "{detail}");
        assert!(
            fix.contains("kubectl annotate serviceaccount -n default s3-echoer eks.amazonaws.com/role-arn=arn:aws:iam::111122223333:role/irsa/prod/prod-default-s3-echoer --overwrite"),
            "{fix}"
        );
        let (_, _, fix) = f.explain(RoleSource::RoleArnFlag);
        assert!(
            fix.contains(
                "--role-arn arn:aws:iam::111122223333:role/irsa/prod/prod-default-s3-echoer"
            ),
            "{fix}"
        );
    }

    #[test]
    fn the_bound_role_and_a_pattern_binding_hold() {
        let c = config();
        let (sev, _, _) = judge_binding(
            "prod",
            &c,
            "default",
            "s3-echoer",
            &arn("prod-default-s3-echoer"),
        )
        .explain(RoleSource::Annotation);
        assert_eq!(sev, Status::Pass);
        let f = judge_binding("prod", &c, "jobs", "batch-7", &arn("prod-jobs-batch-any"));
        assert!(matches!(f, BindingFinding::Bound { .. }), "{f:?}");
        // Another account's role of the same name is not the bound one.
        let elsewhere =
            RoleArn::parse("arn:aws:iam::999988887777:role/irsa/prod/prod-default-s3-echoer")
                .unwrap();
        let f = judge_binding("prod", &c, "default", "s3-echoer", &elsewhere);
        assert!(matches!(f, BindingFinding::Bound { .. }), "{f:?}");
    }

    #[test]
    fn an_unbound_service_account_names_irsa_bind() {
        let c = config();
        let f = judge_binding("prod", &c, "web", "front", &arn("prod-app-orders-api"));
        let (sev, detail, fix) = f.explain(RoleSource::Annotation);
        assert_eq!(sev, Status::Fail);
        assert!(detail.contains("binds no role to web/front"), "{detail}");
        assert!(fix.contains("irsa bind -n web -s front"), "{fix}");
        // A role irsa does not know, on an unbound ServiceAccount: a warning.
        let foreign = RoleArn::parse("arn:aws:iam::111122223333:role/theirs").unwrap();
        let f = judge_binding("prod", &c, "web", "front", &foreign);
        assert!(!f.names_another_bindings_role());
        assert_eq!(f.explain(RoleSource::Annotation).0, Status::Warn);
        // ... and on a bound one: a warning naming the bound role.
        let f = judge_binding("prod", &c, "default", "s3-echoer", &foreign);
        let (sev, detail, _) = f.explain(RoleSource::Annotation);
        assert_eq!(sev, Status::Warn);
        assert!(detail.contains("prod-default-s3-echoer"), "{detail}");
    }

    #[test]
    fn subjects_parse_only_service_account_tokens() {
        assert_eq!(
            subject_of("system:serviceaccount:app:web"),
            Some(("app", "web"))
        );
        assert_eq!(subject_of("system:serviceaccount:app"), None);
        assert_eq!(subject_of("system:serviceaccount::web"), None);
        assert_eq!(subject_of("system:serviceaccount:a:b:c"), None);
        assert_eq!(subject_of("user"), None);
    }
}
