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
                r.fail(
                    "pod: exists",
                    format!("no pod {ns}/{pod_name}"),
                    "check the name and namespace (-n)",
                );
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
        r.fail(
            "serviceaccount: exists",
            format!("no ServiceAccount {ns}/{sa_name}"),
            format!("create it: `irsa bind -n {ns} -s {sa_name} ...` prints the manifest"),
        );
        return Ok(None);
    }
    let role_arn =
        service_account::role_annotation(r, ns, &sa_name, identity.as_ref(), DEFAULT_PREFIX);
    let audience = SaIdentity::token_audience(identity.as_ref(), DEFAULT_AUDIENCE);
    let audience_text =
        audience.unwrap_or("the API server's own (the audience annotation is empty)");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(str::to_string).into_iter().collect(),
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = match sas
        .create_token_request(&sa_name, &PostParams::default(), &request)
        .await
    {
        Ok(t) => t.status.map(|s| s.token),
        Err(e) => {
            r.fail(
                "token: TokenRequest",
                format!("the apiserver did not issue a token for {ns}/{sa_name} with audience {audience_text}: {e}"),
                "the apiserver needs --service-account-signing-key-file and --service-account-issuer (`irsa cluster config`)",
            );
            None
        }
    };
    let Some(token) = token else {
        return Ok(None);
    };
    r.pass(
        "token: TokenRequest",
        format!("token issued for {ns}/{sa_name}, audience {audience_text}"),
    );
    Ok(role_arn.map(|role_arn| FromCluster { token, role_arn }))
}
