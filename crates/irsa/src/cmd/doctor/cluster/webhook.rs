//! Doctor's webhook link: gathers the facts `irsa_core::diagnosis::
//! judge_webhook` judges (the MutatingWebhookConfigurations, the
//! namespace's labels, whether something answers at each pod identity
//! webhook's endpoint, and a dry-run create of a pod of the
//! ServiceAccount) and records its finding.

use std::collections::BTreeMap;
use std::time::Duration;

use irsa_core::checks::Report;
use irsa_core::diagnosis::{self, DryRun, Hook, Reach, WebhookFinding};
use irsa_core::mutate::{SaIdentity, DEFAULT_PREFIX};
use irsa_core::stale::{self, Verdict};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::core::v1::{Container, Endpoints, Namespace, Pod, PodSpec};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::Client;

/// How long doctor waits for a TCP connection to a webhook's URL.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What doctor saw at a webhook's endpoint: the ready endpoints of its
/// Service, or a TCP connection to its URL from this machine.
async fn reach(client: &Client, hook: &MutatingWebhook) -> Reach {
    let config = &hook.client_config;
    if let Some(svc) = &config.service {
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &svc.namespace);
        return match api.get_opt(&svc.name).await {
            Ok(Some(ep)) => {
                let ready = ep
                    .subsets
                    .iter()
                    .flatten()
                    .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()));
                if ready {
                    Reach::Answers
                } else {
                    Reach::Unreachable(format!(
                        "Service {}/{} has no ready endpoint: no webhook pod is running and ready",
                        svc.namespace, svc.name
                    ))
                }
            }
            Ok(None) => Reach::Unreachable(format!(
                "Service {}/{} has no Endpoints object: the Service does not exist",
                svc.namespace, svc.name
            )),
            Err(_) => Reach::Unknown,
        };
    }
    let Some(url) = config.url.as_deref() else {
        return Reach::Unknown;
    };
    let Some(authority) = url
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
    else {
        return Reach::Unknown;
    };
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => Reach::Answers,
        Ok(Err(e)) => Reach::Unreachable(format!(
            "nothing accepts connections at {target} from this machine: {e}"
        )),
        Err(_) => Reach::Unreachable(format!(
            "no answer from {target} within {} s from this machine",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// Creates a pod of `ns/sa_name` with `labels` as a dry run (admission
/// runs, nothing is stored) and says whether it came back mutated.
/// The pod doctor creates as a dry run to see what admission does to new
/// pods of `sa_name` (with `labels`).
pub(in crate::cmd::doctor) fn probe_pod(sa_name: &str, labels: &BTreeMap<String, String>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            generate_name: Some("irsa-doctor-probe-".into()),
            labels: (!labels.is_empty()).then(|| labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(sa_name.to_string()),
            containers: vec![Container {
                name: "probe".into(),
                image: Some("irsa-doctor-probe".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn dry_run(
    client: &Client,
    ns: &str,
    sa_name: &str,
    sa: Option<&SaIdentity>,
    labels: &BTreeMap<String, String>,
) -> DryRun {
    if sa.and_then(|s| s.role_arn.as_ref()).is_none() {
        return DryRun::NotRun(format!(
            "{ns}/{sa_name} names no role, so the webhook leaves its pods alone"
        ));
    }
    let probe = probe_pod(sa_name, labels);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match Api::<Pod>::namespaced(client.clone(), ns)
        .create(&params, &probe)
        .await
    {
        Ok(pod) => match stale::judge(&pod, sa, DEFAULT_PREFIX) {
            Verdict::Current | Verdict::PodIdentity => DryRun::Mutated,
            _ => DryRun::NotMutated,
        },
        Err(kube::Error::Api(e)) if e.code == 403 => DryRun::NotRun(format!(
            "doctor may not create pods in {ns} (even as a dry run): {}",
            e.message
        )),
        Err(kube::Error::Api(e)) => DryRun::Refused(e.message),
        Err(e) => DryRun::NotRun(format!("the dry-run create failed: {e}")),
    }
}

/// Records the webhook link for pods of `ns/sa_name` (with `labels`, the
/// pod's own under `--pod`) and returns whether new pods get the mutation
/// (`None`: not checked).
pub(super) async fn webhook_link(
    r: &mut Report,
    client: &Client,
    ns: &str,
    sa_name: &str,
    sa: Option<&SaIdentity>,
    labels: &BTreeMap<String, String>,
) -> Option<bool> {
    let link = diagnosis::Link::WebhookMutates.name();
    let configs = match Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            r.warn(
                link,
                format!("cannot list MutatingWebhookConfigurations: {e}"),
                "run doctor with a kubeconfig allowed to list admissionregistration.k8s.io objects",
            );
            return None;
        }
    };
    let mut hooks = Vec::new();
    for config in configs {
        let name = config.metadata.name.unwrap_or_default();
        for webhook in config.webhooks.unwrap_or_default() {
            let reach = if diagnosis::is_pod_identity_hook(&name, &webhook) {
                reach(client, &webhook).await
            } else {
                Reach::Unknown
            };
            hooks.push(Hook {
                configuration: name.clone(),
                webhook,
                reach,
            });
        }
    }
    let namespace_labels = Api::<Namespace>::all(client.clone())
        .get_opt(ns)
        .await
        .ok()
        .flatten()
        .map(|n| n.metadata.labels.unwrap_or_default());
    let has_hook = hooks
        .iter()
        .any(|h| diagnosis::is_pod_identity_hook(&h.configuration, &h.webhook));
    let answer = if has_hook {
        dry_run(client, ns, sa_name, sa, labels).await
    } else {
        DryRun::NotRun("no pod identity webhook".into())
    };
    let finding: WebhookFinding =
        diagnosis::judge_webhook(&hooks, ns, namespace_labels.as_ref(), labels, &answer);
    let (status, detail, fix) = finding.explain(&format!("{ns}/{sa_name}"));
    r.record(link, status, detail, fix);
    finding.mutates()
}
