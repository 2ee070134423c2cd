//! Doctor's walk for a `mode: pod-identity` binding: gathers what the
//! judges of `irsa_core::diagnosis::pod_identity` need (the associations
//! ConfigMap, a dry-run pod, the ServiceAccount's pods, the broker's
//! Deployment; from IAM the role's trust and the broker role's tags) and
//! records their findings.

use anyhow::{Context, Result};
use irsa_core::checks::Report;
use irsa_core::config::Binding;
use irsa_core::diagnosis::pod_identity::{self as pi, DryRunPod, Finding};
use irsa_core::podidentity::{ASSOCIATIONS_CONFIGMAP, ASSOCIATIONS_KEY, BROKER_NAME};
use irsa_core::IrsaConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodSpec};
use kube::api::{Api, ListParams, PostParams};

use super::DoctorArgs;

fn record(r: &mut Report, f: Finding) {
    r.record(f.link.name(), f.status, f.detail, f.fix);
}

fn env_names(spec: Option<&PodSpec>) -> Vec<Vec<String>> {
    spec.map(|s| {
        s.containers
            .iter()
            .map(|c| c.env.iter().flatten().map(|e| e.name.clone()).collect())
            .collect()
    })
    .unwrap_or_default()
}

/// Walks the links of `binding` (pod-identity mode) and records them.
pub(super) fn links(
    r: &mut Report,
    a: &DoctorArgs,
    cfg: &IrsaConfig,
    binding: &Binding,
) -> Result<()> {
    let (ns, sa) = (binding.namespace.as_str(), binding.service_account.as_str());
    let pic = cfg.pod_identity();
    let (broker_ns, _) = pic.service_account();
    let role_name = binding.role_name(&cfg.cluster);
    let path = irsa_core::plan::role_path(&cfg.cluster);
    let suffix = format!(":role{path}{role_name}");
    crate::net::rt::block_on(async {
        let client = irsa_webhook::server::client_from(a.kubeconfig.as_deref())
            .await
            .context("doctor needs cluster access for the pod-identity links")?;
        let cm = Api::<ConfigMap>::namespaced(client.clone(), broker_ns)
            .get_opt(ASSOCIATIONS_CONFIGMAP)
            .await;
        let file = match &cm {
            Ok(Some(cm)) => cm
                .data
                .as_ref()
                .and_then(|d| d.get(ASSOCIATIONS_KEY))
                .map(String::as_str)
                .ok_or_else(|| format!("the ConfigMap {broker_ns}/{ASSOCIATIONS_CONFIGMAP} has no key {ASSOCIATIONS_KEY}")),
            Ok(None) => Err(format!("no ConfigMap {broker_ns}/{ASSOCIATIONS_CONFIGMAP}")),
            Err(e) => Err(format!("cannot read ConfigMap {broker_ns}/{ASSOCIATIONS_CONFIGMAP}: {e}")),
        };
        record(r, pi::judge_association(file, ns, sa, &suffix));

        let probe = super::cluster::webhook::probe_pod(sa, &Default::default());
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let answer = match pods.create(&params, &probe).await {
            Ok(pod) => DryRunPod::Admitted(env_names(pod.spec.as_ref())),
            Err(kube::Error::Api(e)) if e.code == 403 => {
                DryRunPod::NotRun(format!("doctor may not create pods in {ns}: {}", e.message))
            }
            Err(kube::Error::Api(e)) => DryRunPod::Refused(e.message),
            Err(e) => DryRunPod::NotRun(format!("the dry-run create failed: {e}")),
        };
        record(r, pi::judge_dry_run(&answer, ns, sa));

        let listed = pods
            .list(
                &ListParams::default()
                    .fields(&format!("spec.serviceAccountName={sa}"))
                    .limit(a.max_pods),
            )
            .await;
        match listed {
            Ok(list) => {
                let seen: Vec<(String, Vec<Vec<String>>)> = list
                    .items
                    .iter()
                    .map(|p| {
                        (
                            p.metadata.name.clone().unwrap_or_default(),
                            env_names(p.spec.as_ref()),
                        )
                    })
                    .collect();
                record(r, pi::judge_pods(&seen, ns, sa));
            }
            Err(e) => r.warn(
                pi::PodIdentityLink::PodVariables.name(),
                format!("cannot list pods in {ns}: {e}"),
                "run doctor with a kubeconfig allowed to list pods",
            ),
        }

        match Api::<Deployment>::namespaced(client.clone(), broker_ns)
            .get_opt(BROKER_NAME)
            .await
        {
            Ok(d) => record(
                r,
                pi::judge_broker(
                    d.map(|d| {
                        let status = d.status.unwrap_or_default();
                        (
                            status.available_replicas.unwrap_or(0),
                            d.spec.and_then(|s| s.replicas).unwrap_or(1),
                        )
                    }),
                    broker_ns,
                    BROKER_NAME,
                ),
            ),
            Err(e) => r.warn(
                pi::PodIdentityLink::BrokerRunning.name(),
                format!("cannot read Deployment {broker_ns}/{BROKER_NAME}: {e}"),
                "run doctor with a kubeconfig allowed to get deployments",
            ),
        }
        anyhow::Ok(())
    })??;

    if a.no_aws {
        record(r, pi::judge_broker_iam(None, cfg, binding));
        return Ok(());
    }
    crate::net::rt::block_on(async {
        let aws = super::aws::connect(a).await;
        let broker_name = pic.role_name(&cfg.cluster);
        let (role, broker) = (aws.role(&role_name).await, aws.role(&broker_name).await);
        let account = aws.account_id().await;
        let read = pi::BrokerIam {
            role: role
                .as_ref()
                .map(|r| r.as_ref().map(|r| &r.trust))
                .map_err(ToString::to_string),
            broker: broker
                .as_ref()
                .map(|b| b.as_ref().map(|b| &b.tags))
                .map_err(ToString::to_string),
            account: account.as_deref().map_err(ToString::to_string),
        };
        record(r, pi::judge_broker_iam(Some(read), cfg, binding));
    })?;
    Ok(())
}
