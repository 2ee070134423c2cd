//! Doctor's links for a `mode: pod-identity` binding, judged from what
//! doctor read: the associations ConfigMap, a dry-run create of a pod of
//! the ServiceAccount, the ServiceAccount's pods, the broker's Deployment,
//! and from IAM the role's trust and the broker role's tags.
//!
//! The chain: the association names the role → the webhook gives new pods
//! the container-credentials variables → running pods have them → the
//! broker runs → the role's trust admits the broker's tagged AssumeRole.

use std::collections::BTreeMap;

use crate::checks::Status;
use crate::mutate::{EnvKind, Identities};
use crate::podidentity::{
    evaluate_assume, AssumeRequest, TAG_CLUSTER, TAG_NAMESPACE, TAG_SERVICE_ACCOUNT,
};
use crate::trust::TrustPolicy;

/// The variables the webhook injects in Pod Identity mode: where to ask,
/// and the token file to ask with.
const FULL_URI_ENV: &str = crate::stale::CONTAINER_CREDENTIALS_ENV;
const TOKEN_FILE_ENV: &str = EnvKind::AuthorizationTokenFile.name();

/// The links of a pod-identity binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodIdentityLink {
    /// The broker's associations file maps the ServiceAccount to its role.
    Association,
    /// The webhook injects the container-credentials variables into new pods.
    WebhookInjects,
    /// The ServiceAccount's running pods have them.
    PodVariables,
    /// The broker's Deployment has available replicas.
    BrokerRunning,
    /// The role's trust admits the broker's tagged AssumeRole.
    BrokerMayAssume,
}

impl PodIdentityLink {
    /// The report line's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Association => "pod-identity: association in the broker's ConfigMap",
            Self::WebhookInjects => "pod-identity: webhook injects container credentials",
            Self::PodVariables => "pod-identity: pods have the container-credentials variables",
            Self::BrokerRunning => "pod-identity: broker running",
            Self::BrokerMayAssume => "iam: broker role may assume the role (tag conditions)",
        }
    }
}

/// A judged link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which link.
    pub link: PodIdentityLink,
    /// The verdict.
    pub status: Status,
    /// What doctor observed.
    pub detail: String,
    /// The fix (empty when it holds).
    pub fix: String,
}

fn found(
    link: PodIdentityLink,
    status: Status,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        link,
        status,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Judges the associations file (`None`: the ConfigMap or its key is
/// missing, as `where_` says) for `ns/sa`, whose role irsa.yaml names
/// `role_suffix` (`:role/PATH/NAME`, the ARN without its account part).
pub fn judge_association(
    file: Result<&str, String>,
    ns: &str,
    sa: &str,
    role_suffix: &str,
) -> Finding {
    use PodIdentityLink::Association as L;
    let render = "render it from irsa.yaml and apply it: `irsa agent manifests -f irsa.yaml -o DIR` then `kubectl apply -k DIR`";
    let text = match file {
        Ok(t) => t,
        Err(missing) => return found(L, Status::Fail, missing, render),
    };
    let ids = match Identities::parse(text.as_bytes()) {
        Ok(ids) => ids,
        Err(e) => {
            return found(
                L,
                Status::Fail,
                format!("the broker refuses the file: {e}"),
                render,
            )
        }
    };
    match ids.role(ns, sa) {
        None if !ids.contains(ns, sa) => found(
            L,
            Status::Fail,
            format!("{ns}/{sa} is not listed ({} ServiceAccounts are): the broker answers its pods 403", ids.len()),
            render,
        ),
        None => found(
            L,
            Status::Fail,
            format!("{ns}/{sa} is listed without a roleArn: the webhook injects the variables, the broker answers 403"),
            render,
        ),
        Some(arn) if arn.to_string().ends_with(role_suffix) => found(
            L,
            Status::Pass,
            format!("{ns}/{sa} → {arn}"),
            "",
        ),
        Some(arn) => found(
            L,
            Status::Fail,
            format!("{ns}/{sa} → {arn}, but irsa.yaml binds it to the role ending {role_suffix}"),
            render,
        ),
    }
}

/// What a dry-run create of a pod of the ServiceAccount answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRunPod {
    /// The admitted pod's containers, by their environment variable names.
    Admitted(Vec<Vec<String>>),
    /// The API server refused the pod (its message).
    Refused(String),
    /// Doctor could not run it (why).
    NotRun(String),
}

fn has_variables(env: &[String]) -> bool {
    env.iter().any(|e| e == FULL_URI_ENV) && env.iter().any(|e| e == TOKEN_FILE_ENV)
}

/// Judges the dry-run create.
pub fn judge_dry_run(answer: &DryRunPod, ns: &str, sa: &str) -> Finding {
    use PodIdentityLink::WebhookInjects as L;
    match answer {
        DryRunPod::Admitted(containers) if !containers.is_empty() && containers.iter().all(|c| has_variables(c)) => found(
            L,
            Status::Pass,
            format!("a dry-run pod of {ns}/{sa} was admitted with {FULL_URI_ENV} and {TOKEN_FILE_ENV}"),
            "",
        ),
        DryRunPod::Admitted(_) => found(
            L,
            Status::Fail,
            format!("a dry-run pod of {ns}/{sa} was admitted without {FULL_URI_ENV}: the webhook does not list the ServiceAccount, or does not run"),
            "give the webhook the associations: --watch-container-credentials-config on the same ConfigMap (the webhook-associations-patch.yaml that `irsa agent manifests` writes), and check `irsa doctor` on an IRSA binding for the webhook itself",
        ),
        DryRunPod::Refused(message) => found(
            L,
            Status::Fail,
            format!("the API server refused a dry-run pod of {ns}/{sa}: {message}"),
            "fix what it names (a failing webhook with failurePolicy Fail, a quota, a policy)",
        ),
        DryRunPod::NotRun(why) => found(
            L,
            Status::Warn,
            format!("not checked: {why}"),
            "run doctor with a kubeconfig that may create pods (dry run) in the namespace",
        ),
    }
}

/// Judges the running pods of the ServiceAccount: each by name with its
/// containers' environment variable names.
pub fn judge_pods(pods: &[(String, Vec<Vec<String>>)], ns: &str, sa: &str) -> Finding {
    use PodIdentityLink::PodVariables as L;
    if pods.is_empty() {
        return found(
            L,
            Status::Warn,
            format!("no pod of {ns}/{sa} to check"),
            "start one; pods created before the association need a restart to get the variables",
        );
    }
    let missing: Vec<&str> = pods
        .iter()
        .filter(|(_, containers)| !containers.iter().all(|c| has_variables(c)))
        .map(|(name, _)| name.as_str())
        .collect();
    if missing.is_empty() {
        return found(
            L,
            Status::Pass,
            format!("all {} pod(s) of {ns}/{sa} have them", pods.len()),
            "",
        );
    }
    found(
        L,
        Status::Fail,
        format!(
            "{} of {} pod(s) lack {FULL_URI_ENV}: {}",
            missing.len(),
            pods.len(),
            missing.join(", ")
        ),
        format!("restart them once the webhook injects the variables (kubectl -n {ns} rollout restart ...)"),
    )
}

/// Judges the broker's Deployment as the API server reports it
/// (`None`: it does not exist).
pub fn judge_broker(deployment: Option<(i32, i32)>, ns: &str, name: &str) -> Finding {
    use PodIdentityLink::BrokerRunning as L;
    match deployment {
        None => found(
            L,
            Status::Fail,
            format!("no Deployment {ns}/{name}"),
            "install the broker: `irsa agent manifests -f irsa.yaml -o DIR` then `kubectl apply -k DIR`",
        ),
        Some((available, _)) if available > 0 => found(
            L,
            Status::Pass,
            format!("{available} available replica(s) of {ns}/{name} (as the API server reports; doctor does not call the broker, which serves inside the cluster)"),
            "",
        ),
        Some((_, wanted)) => found(
            L,
            Status::Fail,
            format!("{ns}/{name} has no available replica of {wanted}: pods asking for credentials get no answer"),
            format!("kubectl -n {ns} describe deployment {name}; its pods' logs name the cause (the Secret irsa-agent-broker-tls, the associations, AWS credentials)"),
        ),
    }
}

/// Judges the role's trust for the broker's request for a pod of `ns/sa`
/// in `cluster`, with the broker role's tags as IAM holds them.
pub fn judge_broker_trust(
    trust: &TrustPolicy,
    broker_arn: &str,
    broker_tags: &BTreeMap<String, String>,
    ns: &str,
    sa: &str,
    cluster: &str,
) -> Finding {
    use PodIdentityLink::BrokerMayAssume as L;
    let request: BTreeMap<String, String> = [
        (TAG_CLUSTER, cluster),
        (TAG_NAMESPACE, ns),
        (TAG_SERVICE_ACCOUNT, sa),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let req = AssumeRequest {
        principal: broker_arn,
        principal_tags: broker_tags,
        request_tags: &request,
    };
    match evaluate_assume(trust, &req) {
        Ok(()) => found(
            L,
            Status::Pass,
            format!("the trust admits {broker_arn} with the tags of {ns}/{sa} in {cluster} (evaluated by irsa from IAM's documents)"),
            "",
        ),
        Err(reasons) => found(
            L,
            Status::Fail,
            reasons.join("; "),
            "`irsa apply` writes the trust irsa.yaml implies (the broker role as principal, sts:AssumeRole and sts:TagSession, the namespace, ServiceAccount and cluster tag conditions)",
        ),
    }
}

/// What doctor read for the broker link; each `Err` says why a read
/// failed.
#[derive(Debug, Clone)]
pub struct BrokerIam<'a> {
    /// The bound role's trust policy (`None`: IAM has no such role).
    pub role: Result<Option<&'a TrustPolicy>, String>,
    /// The broker role's tags (`None`: IAM has no such role).
    pub broker: Result<Option<&'a BTreeMap<String, String>>, String>,
    /// The credentials' account, which names the broker role's ARN.
    pub account: Result<&'a str, String>,
}

/// The broker link for `binding` of `cfg` from what IAM holds (`None`:
/// not read, `--no-aws`): both roles exist and the bound role's trust
/// admits the broker's tagged AssumeRole ([`judge_broker_trust`]). A
/// missing role is named before a read that failed; what was not read is
/// a warning that says what the risk is.
pub fn judge_broker_iam(
    read: Option<BrokerIam<'_>>,
    cfg: &crate::IrsaConfig,
    binding: &crate::config::Binding,
) -> Finding {
    use PodIdentityLink::BrokerMayAssume as L;
    let Some(read) = read else {
        return found(
            L,
            Status::Warn,
            "not checked (--no-aws): a trust without the broker or its tag conditions makes STS refuse the broker",
            "run doctor without --no-aws, with credentials allowed iam:GetRole and iam:ListRoleTags",
        );
    };
    let broker_name = cfg.pod_identity().role_name(&cfg.cluster);
    match (read.role, read.broker, read.account) {
        (Ok(Some(trust)), Ok(Some(tags)), Ok(account)) => {
            match cfg.role_arn(&broker_name, Some(account), "") {
                Ok(arn) => judge_broker_trust(
                    trust,
                    &arn,
                    tags,
                    &binding.namespace,
                    &binding.service_account,
                    &cfg.cluster,
                ),
                Err(e) => found(
                    L,
                    Status::Warn,
                    format!("cannot name the broker role in account {account}: {e}"),
                    "check podIdentity.roleName and the credentials' account",
                ),
            }
        }
        (Ok(None), _, _) => found(
            L,
            Status::Fail,
            format!("IAM has no role {}", binding.role_name(&cfg.cluster)),
            "create it: `irsa apply`",
        ),
        (_, Ok(None), _) => found(
            L,
            Status::Fail,
            format!("IAM has no broker role {broker_name}"),
            "create it: `irsa apply`",
        ),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => found(
            L,
            Status::Warn,
            format!("cannot read IAM: {e}"),
            "run doctor with credentials allowed iam:GetRole, iam:ListRoleTags and sts:GetCallerIdentity, or pass --no-aws",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUFFIX: &str = ":role/irsa/prod/prod-app-reader";

    #[test]
    fn the_association_is_found_or_its_absence_named() {
        let good = r#"{"identities":[{"namespace":"app","serviceAccount":"reader","roleArn":"arn:aws:iam::111122223333:role/irsa/prod/prod-app-reader"}]}"#;
        assert_eq!(
            judge_association(Ok(good), "app", "reader", SUFFIX).status,
            Status::Pass
        );
        let f = judge_association(Ok(good), "app", "writer", SUFFIX);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.detail.contains("not listed") && f.fix.contains("irsa agent manifests"),
            "{f:?}"
        );
        let other = good.replace("prod-app-reader", "prod-app-other");
        let f = judge_association(Ok(&other), "app", "reader", SUFFIX);
        assert!(f.detail.contains("but irsa.yaml binds it"), "{f:?}");
        let bare = r#"{"identities":[{"namespace":"app","serviceAccount":"reader"}]}"#;
        assert!(judge_association(Ok(bare), "app", "reader", SUFFIX)
            .detail
            .contains("without a roleArn"));
        assert!(judge_association(Ok("{"), "app", "reader", SUFFIX)
            .detail
            .contains("refuses the file"));
        let f = judge_association(
            Err("no ConfigMap irsa-system/irsa-agent-associations".into()),
            "app",
            "reader",
            SUFFIX,
        );
        assert_eq!(f.status, Status::Fail);
    }

    #[test]
    fn pods_and_dry_runs_need_both_variables_in_every_container() {
        let both = vec![FULL_URI_ENV.to_string(), TOKEN_FILE_ENV.to_string()];
        let one = vec![FULL_URI_ENV.to_string()];
        assert_eq!(
            judge_dry_run(&DryRunPod::Admitted(vec![both.clone()]), "a", "s").status,
            Status::Pass
        );
        assert_eq!(
            judge_dry_run(
                &DryRunPod::Admitted(vec![both.clone(), one.clone()]),
                "a",
                "s"
            )
            .status,
            Status::Fail
        );
        assert_eq!(
            judge_dry_run(&DryRunPod::NotRun("403".into()), "a", "s").status,
            Status::Warn
        );
        assert_eq!(judge_pods(&[], "a", "s").status, Status::Warn);
        let f = judge_pods(
            &[("p1".into(), vec![both]), ("p2".into(), vec![one])],
            "a",
            "s",
        );
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.detail.contains("1 of 2") && f.detail.contains("p2"),
            "{f:?}"
        );
    }

    #[test]
    fn the_broker_and_its_trust() {
        assert_eq!(judge_broker(None, "irsa-system", "b").status, Status::Fail);
        assert_eq!(
            judge_broker(Some((0, 2)), "irsa-system", "b").status,
            Status::Fail
        );
        assert_eq!(
            judge_broker(Some((1, 2)), "irsa-system", "b").status,
            Status::Pass
        );
        let broker = "arn:aws:iam::111122223333:role/irsa/prod/prod-irsa-agent-broker";
        let tags: BTreeMap<String, String> =
            [("irsa.dev/cluster".to_string(), "prod".to_string())].into();
        let trust = crate::podidentity::role_trust(&[broker.into()], "app", "reader");
        assert_eq!(
            judge_broker_trust(&trust, broker, &tags, "app", "reader", "prod").status,
            Status::Pass
        );
        let f = judge_broker_trust(&trust, broker, &BTreeMap::new(), "app", "reader", "prod");
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.contains("eks-cluster-name"), "{f:?}");
    }

    #[test]
    fn the_broker_link_names_a_missing_role_before_a_failed_read() {
        let cfg = crate::IrsaConfig::from_yaml(&format!(
            "{}  - {{namespace: app, serviceAccount: reader, mode: pod-identity}}\n",
            crate::config::tests::GOOD
        ))
        .expect("a pod-identity binding");
        let binding = cfg
            .bindings
            .iter()
            .find(|b| b.is_pod_identity())
            .expect("the pod-identity binding");
        let role = binding.role_name(&cfg.cluster);
        let broker = cfg.pod_identity().role_name(&cfg.cluster);
        let trust = TrustPolicy::default();
        let tags = BTreeMap::new();
        let judged = |read| judge_broker_iam(read, &cfg, binding);
        let read = |role, broker, account| {
            Some(BrokerIam {
                role,
                broker,
                account,
            })
        };
        assert_eq!(judged(None).status, Status::Warn);
        let f = judged(read(
            Ok(None),
            Err("AccessDenied".into()),
            Ok("111122223333"),
        ));
        assert_eq!(
            (f.status, f.detail),
            (Status::Fail, format!("IAM has no role {role}"))
        );
        let f = judged(read(
            Err("AccessDenied".into()),
            Ok(None),
            Ok("111122223333"),
        ));
        assert_eq!(
            (f.status, f.detail),
            (Status::Fail, format!("IAM has no broker role {broker}"))
        );
        let f = judged(read(
            Ok(Some(&trust)),
            Ok(Some(&tags)),
            Err("ExpiredToken".into()),
        ));
        assert_eq!(
            (f.status, f.detail.as_str()),
            (Status::Warn, "cannot read IAM: ExpiredToken")
        );
        // Everything read: the trust is evaluated (an empty trust admits no one).
        let f = judged(read(Ok(Some(&trust)), Ok(Some(&tags)), Ok("111122223333")));
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.link, PodIdentityLink::BrokerMayAssume);
    }
}
