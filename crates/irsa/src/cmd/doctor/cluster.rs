//! Doctor's cluster links: a pod identity webhook mutates new pods of the
//! ServiceAccount (a dry-run create shows it), the pod (or each pod of the
//! ServiceAccount) was mutated with the role its ServiceAccount names now,
//! the ServiceAccount carries a role ARN, and the TokenRequest API issues a
//! token for the audience.

use anyhow::{bail, Context, Result};
use irsa_core::checks::Report;
use irsa_core::mutate::{SaIdentity, DEFAULT_PREFIX};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};

use irsa_core::diagnosis::service_account;

use super::DoctorArgs;

mod pods;
pub(super) mod webhook;

const DEFAULT_AUDIENCE: &str = irsa_core::config::DEFAULT_AUDIENCE;

/// What the cluster links found.
pub(super) struct FromCluster {
    pub(super) token: String,
    pub(super) role_arn: String,
}

/// Walks the cluster links; the token and role ARN when they hold.
pub(super) async fn cluster_links(a: &DoctorArgs, r: &mut Report) -> Result<Option<FromCluster>> {
    let client = irsa_webhook::server::client_from(a.kubeconfig.as_deref())
        .await
        .context(
        "doctor needs cluster access for these links; without it use --token FILE --role-arn ARN",
    )?;
    let ns = &a.namespace;
    let mut sa_name = a.service_account.clone();
    let mut pod = None;
    if let Some(pod_name) = &a.pod {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        match pods.get_opt(pod_name).await {
            Ok(Some(found)) => {
                sa_name = Some(
                    found
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_else(|| "default".into()),
                );
                pod = Some(found);
            }
            Ok(None) => {
                service_account::pod_missing(r, ns, pod_name);
                return Ok(None);
            }
            Err(e) => bail!("cannot read pod {ns}/{pod_name}: {e}"),
        }
    }
    let sa_name = sa_name.context("pass --service-account, --pod, or --token with --role-arn")?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa = match sas.get_opt(&sa_name).await {
        Ok(sa) => sa,
        Err(e) => bail!("cannot read ServiceAccount {ns}/{sa_name}: {e}"),
    };
    let identity = sa.as_ref().and_then(|sa| {
        SaIdentity::from_annotations(sa.metadata.annotations.as_ref()?, DEFAULT_PREFIX)
    });
    let webhook_mutates = match &sa {
        Some(_) => {
            let labels = pod
                .as_ref()
                .and_then(|p| p.metadata.labels.clone())
                .unwrap_or_default();
            webhook::webhook_link(r, &client, ns, &sa_name, identity.as_ref(), &labels).await
        }
        None => None,
    };
    let scope = pods::Scope {
        client: &client,
        ns,
        sa: identity.as_ref(),
        webhook_mutates,
    };
    match &pod {
        Some(pod) => pods::judge_pod(r, &scope, pod).await,
        None if sa.is_some() => {
            pods::judge_pods(r, &scope, &sa_name, a.selector.as_deref(), a.max_pods).await;
        }
        None => {}
    }
    if sa.is_none() {
        service_account::service_account_missing(r, ns, &sa_name);
        return Ok(None);
    }
    let role_arn =
        service_account::role_annotation(r, ns, &sa_name, identity.as_ref(), DEFAULT_PREFIX);
    let audience = SaIdentity::token_audience(identity.as_ref(), DEFAULT_AUDIENCE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(str::to_string).into_iter().collect(),
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let issued = sas
        .create_token_request(&sa_name, &PostParams::default(), &request)
        .await;
    let token = match issued {
        Ok(t) => t.status.map(|s| s.token).filter(|t| !t.is_empty()),
        Err(e) => {
            service_account::token_request(r, ns, &sa_name, audience, Err(e.to_string()));
            return Ok(None);
        }
    };
    let Some(token) = token else {
        service_account::token_request(
            r,
            ns,
            &sa_name,
            audience,
            Err("the response carries no token".into()),
        );
        return Ok(None);
    };
    service_account::token_request(r, ns, &sa_name, audience, Ok(()));
    Ok(role_arn.map(|role_arn| FromCluster { token, role_arn }))
}
