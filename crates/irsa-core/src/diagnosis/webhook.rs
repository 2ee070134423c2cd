//! Whether the pod identity webhook really mutates the pods of a
//! ServiceAccount, judged from what the apiserver answered to a dry-run
//! create of such a pod (`dryRun=All` runs admission and stores nothing),
//! the MutatingWebhookConfigurations, the namespace's labels and what
//! doctor could see of the webhook's endpoint. A registered webhook that
//! fails open (failurePolicy `Ignore`) admits every pod unmutated while it
//! is down, and says so nowhere a user looks.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::checks::Status;

use super::Link;

/// One webhook of a MutatingWebhookConfiguration.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// The MutatingWebhookConfiguration's name.
    pub configuration: String,
    /// The webhook.
    pub webhook: MutatingWebhook,
    /// What doctor saw of its endpoint.
    pub reach: Reach,
}

/// What doctor saw of a webhook's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reach {
    /// Not looked at.
    #[default]
    Unknown,
    /// Something answers there (its Service has ready endpoints, or its URL
    /// accepts connections from doctor's machine).
    Answers,
    /// Nothing answers there; why.
    Unreachable(String),
}

/// What the apiserver answered to the dry-run create of a pod of the
/// ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    /// The pod came back with the webhook's mutation (the ServiceAccount's
    /// role in `AWS_ROLE_ARN`, or EKS Pod Identity's variables).
    Mutated,
    /// The pod came back without it. A webhook failing open is not named
    /// in the answer: kube-apiserver v1.28 returns the unmutated pod with no
    /// warning (`doctor_faults` checks this on the test bed), so the
    /// absence of the mutation is the fact.
    NotMutated,
    /// The apiserver refused to create it; its message.
    Refused(String),
    /// Not run; why (e.g. the ServiceAccount names no role, or doctor may
    /// not create pods).
    NotRun(String),
}

/// Doctor's judgement of the webhook for one ServiceAccount's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookFinding {
    /// No MutatingWebhookConfiguration sends pod creations to a pod
    /// identity webhook.
    NotInstalled,
    /// The dry-run pod was mutated.
    Mutates {
        /// The configurations of the pod identity webhooks.
        configurations: Vec<String>,
    },
    /// Installed, but whether it mutates was not checked.
    Unchecked {
        /// The configurations.
        configurations: Vec<String>,
        /// Why it was not checked.
        why: String,
    },
    /// No pod identity webhook selects the pod: the apiserver never calls
    /// one for it.
    NotSelected {
        /// The configuration of the first webhook.
        configuration: String,
        /// Which selector does not match, and the labels it was matched against.
        why: String,
        /// A command that makes it match, when irsa can tell one.
        label: Option<String>,
    },
    /// A webhook selects the pod, fails open and the pod came back
    /// unmutated: the apiserver could not call it and admitted the pod.
    FailingOpen {
        /// Its configuration.
        configuration: String,
        /// What doctor saw of its endpoint, when it saw that nothing answers.
        unreachable: Option<String>,
    },
    /// A webhook selects the pod, fails closed, and the pod was admitted
    /// unmutated: it answered without a patch.
    AnsweredWithoutPatch {
        /// Its configuration.
        configuration: String,
    },
    /// The apiserver refused the pod (a webhook failing closed, or another
    /// admission step).
    Refused {
        /// The apiserver's message.
        message: String,
    },
}

/// Whether `selector` selects an object with `labels` (no selector, or an
/// empty one, selects everything). An operator the apiserver does not know
/// selects nothing.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

/// Whether `hook` sends pod creations to a pod identity webhook: its rules
/// cover `pods` on `CREATE`, and its name or its configuration's says
/// `pod-identity` or `irsa`.
pub fn is_pod_identity_hook(configuration: &str, hook: &MutatingWebhook) -> bool {
    let covers_pod_create = hook.rules.iter().flatten().any(|rule| {
        rule.resources
            .as_ref()
            .is_some_and(|res| res.iter().any(|x| x == "pods" || x == "*"))
            && rule
                .operations
                .as_ref()
                .is_some_and(|ops| ops.iter().any(|o| o == "CREATE" || o == "*"))
    });
    let named = |n: &str| n.contains("pod-identity") || n.contains("irsa");
    covers_pod_create && (named(&hook.name) || named(configuration))
}

fn describe(selector: Option<&LabelSelector>) -> String {
    serde_json::to_string(&selector).unwrap_or_default()
}

/// The `kubectl label` command that makes `selector`'s `matchLabels` hold
/// for `target` (`namespace NAME` or `pod -n NS NAME`), when it has only
/// those.
fn label_command(selector: Option<&LabelSelector>, target: &str) -> Option<String> {
    let s = selector?;
    if s.match_expressions.as_ref().is_some_and(|e| !e.is_empty()) {
        return None;
    }
    let labels = s.match_labels.as_ref().filter(|l| !l.is_empty())?;
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(format!("kubectl label {target} {}", pairs.join(" ")))
}

/// What the apiserver does for pods of `namespace` with `pod_labels`, given
/// `hooks` (every webhook of every MutatingWebhookConfiguration), the
/// namespace's labels (`None`: not readable) and the dry run's answer.
pub fn judge_webhook(
    hooks: &[Hook],
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    pod_labels: &BTreeMap<String, String>,
    dry_run: &DryRun,
) -> WebhookFinding {
    let ours: Vec<&Hook> = hooks
        .iter()
        .filter(|h| is_pod_identity_hook(&h.configuration, &h.webhook))
        .collect();
    let configurations = || {
        let mut c: Vec<String> = ours.iter().map(|h| h.configuration.clone()).collect();
        c.dedup();
        c
    };
    let Some(first) = ours.first() else {
        return WebhookFinding::NotInstalled;
    };
    match dry_run {
        DryRun::Mutated => {
            return WebhookFinding::Mutates {
                configurations: configurations(),
            }
        }
        DryRun::NotRun(why) => {
            return WebhookFinding::Unchecked {
                configurations: configurations(),
                why: why.clone(),
            }
        }
        DryRun::Refused(message) => {
            return WebhookFinding::Refused {
                message: message.clone(),
            }
        }
        DryRun::NotMutated => {}
    }
    let ns_selected = |h: &Hook| {
        namespace_labels.is_none_or(|l| selects(h.webhook.namespace_selector.as_ref(), l))
    };
    let selected: Vec<&&Hook> = ours
        .iter()
        .filter(|h| ns_selected(h) && selects(h.webhook.object_selector.as_ref(), pod_labels))
        .collect();
    let Some(hook) = selected.first() else {
        let h = first;
        let (why, label) = if !ns_selected(h) {
            (
                format!(
                    "its namespaceSelector {} does not match namespace {namespace}'s labels {}",
                    describe(h.webhook.namespace_selector.as_ref()),
                    serde_json::to_string(&namespace_labels).unwrap_or_default()
                ),
                label_command(
                    h.webhook.namespace_selector.as_ref(),
                    &format!("namespace {namespace}"),
                ),
            )
        } else {
            (
                format!(
                    "its objectSelector {} does not match the pod's labels {}",
                    describe(h.webhook.object_selector.as_ref()),
                    serde_json::to_string(pod_labels).unwrap_or_default()
                ),
                None,
            )
        };
        return WebhookFinding::NotSelected {
            configuration: h.configuration.clone(),
            why,
            label,
        };
    };
    // The apiserver's default for admissionregistration.k8s.io/v1 is Fail.
    let fails_open = hook.webhook.failure_policy.as_deref() == Some("Ignore");
    if fails_open {
        WebhookFinding::FailingOpen {
            configuration: hook.configuration.clone(),
            unreachable: match &hook.reach {
                Reach::Unreachable(why) => Some(why.clone()),
                _ => None,
            },
        }
    } else {
        WebhookFinding::AnsweredWithoutPatch {
            configuration: hook.configuration.clone(),
        }
    }
}

impl WebhookFinding {
    /// The link this finding reports on.
    pub fn link(&self) -> Link {
        Link::WebhookMutates
    }

    /// Whether new pods of the ServiceAccount get the mutation (`None`:
    /// not checked): until they do, recreating a pod gives another
    /// unmutated one.
    pub fn mutates(&self) -> Option<bool> {
        match self {
            Self::Mutates { .. } => Some(true),
            Self::Unchecked { .. } => None,
            _ => Some(false),
        }
    }

    /// Status, detail and fix (empty when the link holds) for the pods of
    /// `subject` (`ns/sa`).
    pub fn explain(&self, subject: &str) -> (Status, String, String) {
        let later = "pods created until then are not mutated either: recreate the ServiceAccount's pods only once doctor shows this link holding";
        match self {
            Self::NotInstalled => (
                Status::Fail,
                "no pod identity webhook is registered (no MutatingWebhookConfiguration sends pod creations to one): pods get no token volume or AWS_* variables".into(),
                "install it: `irsa webhook certs ...` then `irsa webhook manifests ... | kubectl apply -f -` (docs/webhook.md#install)".into(),
            ),
            Self::Mutates { configurations } => (
                Status::Pass,
                format!("a dry-run pod of {subject} came back mutated (MutatingWebhookConfiguration {configurations:?})"),
                String::new(),
            ),
            Self::Unchecked { configurations, why } => (
                Status::Warn,
                format!("MutatingWebhookConfiguration {configurations:?} is registered, but whether it mutates pods of {subject} was not checked: {why}"),
                "run doctor with a kubeconfig allowed to create pods with dryRun (nothing is stored), on a ServiceAccount annotated with a role".into(),
            ),
            Self::NotSelected { configuration, why, label } => (
                Status::Fail,
                format!("the webhook of {configuration} does not select pods of {subject}: {why}; the apiserver never calls it for them"),
                match label {
                    Some(cmd) => format!("{cmd} (see docs/webhook.md#admission-scope-base-opt-in-or-strict); {later}"),
                    None => format!("make the selector match the pods (docs/webhook.md#admission-scope-base-opt-in-or-strict); {later}"),
                },
            ),
            Self::FailingOpen { configuration, unreachable } => {
                let seen = match unreachable {
                    Some(why) => format!(" ({why})"),
                    None => String::new(),
                };
                (
                    Status::Fail,
                    format!("a dry-run pod of {subject} came back without the mutation although the webhook of {configuration} selects it: the apiserver could not call the webhook{seen} and, its failurePolicy being Ignore, admitted the pod unmutated without an error or a warning"),
                    format!("make the webhook reachable from the apiserver: its pods running, its Service's endpoints ready, its certificate matching the caBundle (docs/webhook.md#when-the-webhook-is-down); {later}"),
                )
            }
            Self::AnsweredWithoutPatch { configuration } => (
                Status::Fail,
                format!("the webhook of {configuration} selects pods of {subject} and admitted a dry-run pod without the mutation"),
                format!("check the webhook's logs and flags (--annotation-prefix, the ServiceAccount's role-arn annotation); {later}"),
            ),
            Self::Refused { message } => (
                Status::Fail,
                format!("the apiserver refused a dry-run pod of {subject}: {message}"),
                "a webhook failing closed (failurePolicy Fail) refuses every pod while it is down: make it reachable (docs/webhook.md#when-the-webhook-is-down); otherwise fix what the message names".into(),
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn hook(policy: Option<&str>, ns_selector: Option<LabelSelector>, reach: Reach) -> Hook {
        Hook {
            configuration: "irsa-pod-identity".into(),
            webhook: MutatingWebhook {
                name: "pod-identity-webhook.irsa.dev".into(),
                failure_policy: policy.map(String::from),
                namespace_selector: ns_selector,
                rules: Some(vec![RuleWithOperations {
                    operations: Some(vec!["CREATE".into()]),
                    resources: Some(vec!["pods".into()]),
                    ..RuleWithOperations::default()
                }]),
                ..MutatingWebhook::default()
            },
            reach,
        }
    }

    fn not_mutated() -> DryRun {
        DryRun::NotMutated
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let l = labels(&[("irsa.dev/webhook", "enabled"), ("tier", "web")]);
        assert!(selects(None, &l));
        assert!(selects(Some(&LabelSelector::default()), &l));
        let by_label = |k: &str, v: &str| LabelSelector {
            match_labels: Some(labels(&[(k, v)])),
            ..LabelSelector::default()
        };
        assert!(selects(Some(&by_label("irsa.dev/webhook", "enabled")), &l));
        assert!(!selects(Some(&by_label("irsa.dev/webhook", "off")), &l));
        let expr = |op: &str, values: Option<Vec<&str>>| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }]),
            ..LabelSelector::default()
        };
        assert!(selects(Some(&expr("In", Some(vec!["web", "db"]))), &l));
        assert!(!selects(Some(&expr("NotIn", Some(vec!["web"]))), &l));
        assert!(selects(
            Some(&expr("NotIn", Some(vec!["web"]))),
            &BTreeMap::new()
        ));
        assert!(selects(Some(&expr("Exists", None)), &l));
        assert!(!selects(Some(&expr("DoesNotExist", None)), &l));
        assert!(!selects(Some(&expr("Gt", Some(vec!["1"]))), &l));
    }

    #[test]
    fn a_mutated_dry_run_holds_and_no_hook_is_not_installed() {
        let hooks = [hook(Some("Ignore"), None, Reach::Unknown)];
        let ns = labels(&[]);
        let f = judge_webhook(&hooks, "app", Some(&ns), &ns, &DryRun::Mutated);
        assert_eq!(f.mutates(), Some(true));
        assert_eq!(f.explain("app/s3").0, Status::Pass);
        let f = judge_webhook(&[], "app", Some(&ns), &ns, &DryRun::Mutated);
        assert_eq!(f, WebhookFinding::NotInstalled);
        let (_, _, fix) = f.explain("app/s3");
        assert!(fix.contains("docs/webhook.md#install"), "{fix}");
        // Another mutating webhook is not a pod identity webhook.
        let mut other = hook(None, None, Reach::Unknown);
        other.configuration = "istio-sidecar-injector".into();
        other.webhook.name = "sidecar-injector.istio.io".into();
        assert_eq!(
            judge_webhook(&[other], "app", Some(&ns), &ns, &not_mutated()),
            WebhookFinding::NotInstalled
        );
    }

    #[test]
    fn an_unmutated_pod_is_explained_by_the_failure_policy_and_the_endpoint() {
        let ns = labels(&[("kubernetes.io/metadata.name", "app")]);
        let down = Reach::Unreachable(
            "connecting to 127.0.0.1:9 from this machine: connection refused".into(),
        );
        let f = judge_webhook(
            &[hook(Some("Ignore"), None, down)],
            "app",
            Some(&ns),
            &BTreeMap::new(),
            &not_mutated(),
        );
        assert!(
            matches!(
                f,
                WebhookFinding::FailingOpen {
                    unreachable: Some(_),
                    ..
                }
            ),
            "{f:?}"
        );
        assert_eq!(f.mutates(), Some(false));
        let (status, detail, fix) = f.explain("app/s3");
        assert_eq!(status, Status::Fail);
        assert!(
            detail.contains("failurePolicy being Ignore") && detail.contains("connection refused"),
            "{detail}"
        );
        assert!(
            fix.contains("recreate the ServiceAccount's pods only once"),
            "{fix}"
        );
        // Failing closed (the v1 default) yet admitted unmutated: the
        // webhook answered without a patch.
        let f = judge_webhook(
            &[hook(None, None, Reach::Answers)],
            "app",
            Some(&ns),
            &BTreeMap::new(),
            &not_mutated(),
        );
        assert!(
            matches!(f, WebhookFinding::AnsweredWithoutPatch { .. }),
            "{f:?}"
        );
        let f = judge_webhook(
            &[hook(None, None, Reach::Unknown)],
            "app",
            Some(&ns),
            &BTreeMap::new(),
            &DryRun::Refused("failed calling webhook".into()),
        );
        assert_eq!(f.explain("app/s3").0, Status::Fail);
    }

    #[test]
    fn a_namespace_the_selector_leaves_out_names_the_label() {
        let opt_in = LabelSelector {
            match_labels: Some(labels(&[("irsa.dev/webhook", "enabled")])),
            ..LabelSelector::default()
        };
        let hooks = [hook(Some("Ignore"), Some(opt_in), Reach::Answers)];
        let ns = labels(&[("kubernetes.io/metadata.name", "app")]);
        let f = judge_webhook(&hooks, "app", Some(&ns), &BTreeMap::new(), &not_mutated());
        let (status, detail, fix) = f.explain("app/s3");
        assert_eq!(status, Status::Fail);
        assert!(detail.contains("namespaceSelector"), "{detail}");
        assert!(
            fix.starts_with("kubectl label namespace app irsa.dev/webhook=enabled"),
            "{fix}"
        );
        // Labelled: selected, so the unmutated pod is the failure policy's.
        let labelled = labels(&[("irsa.dev/webhook", "enabled")]);
        let f = judge_webhook(
            &hooks,
            "app",
            Some(&labelled),
            &BTreeMap::new(),
            &not_mutated(),
        );
        assert!(
            matches!(
                f,
                WebhookFinding::FailingOpen {
                    unreachable: None,
                    ..
                }
            ),
            "{f:?}"
        );
        // Namespace labels unreadable: not held against the selector.
        let f = judge_webhook(&hooks, "app", None, &BTreeMap::new(), &not_mutated());
        assert!(matches!(f, WebhookFinding::FailingOpen { .. }), "{f:?}");
        // Not checked: a warning, and no verdict on mutation.
        let f = judge_webhook(
            &hooks,
            "app",
            Some(&ns),
            &BTreeMap::new(),
            &DryRun::NotRun("no role".into()),
        );
        assert_eq!((f.mutates(), f.explain("app/s3").0), (None, Status::Warn));
    }
}
