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

use irsa_core::arn::RoleArn;

use super::DoctorArgs;

mod pods;
pub(super) mod webhook;

const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";
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
    let Some(sa) = sa else {
        r.fail(
            "serviceaccount: exists",
            format!("no ServiceAccount {ns}/{sa_name}"),
            format!("create it: `irsa bind -n {ns} -s {sa_name} ...` prints the manifest"),
        );
        return Ok(None);
    };
    let annotations = sa.metadata.annotations.clone().unwrap_or_default();
    let role_arn = match annotations.get(ROLE_ANNOTATION) {
        Some(arn) if RoleArn::parse(arn).is_ok() => {
            r.pass(
                "serviceaccount: role-arn annotation",
                format!("{ns}/{sa_name}: {arn}"),
            );
            Some(arn.clone())
        }
        Some(arn) => {
            r.fail(
                "serviceaccount: role-arn annotation",
                format!("{ROLE_ANNOTATION} is {arn:?}, not a role ARN"),
                "set it to arn:aws:iam::ACCOUNT:role/[PATH/]NAME (`irsa bind` prints the exact value)",
            );
            None
        }
        None => {
            r.fail(
                "serviceaccount: role-arn annotation",
                format!("{ns}/{sa_name} has no {ROLE_ANNOTATION} annotation, so the webhook leaves its pods alone"),
                format!("kubectl annotate serviceaccount -n {ns} {sa_name} {ROLE_ANNOTATION}=arn:aws:iam::ACCOUNT:role/... (or `irsa bind -n {ns} -s {sa_name}`)"),
            );
            None
        }
    };
    let audience = annotations
        .get(AUDIENCE_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| DEFAULT_AUDIENCE.to_string());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.clone()],
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
                format!("the apiserver did not issue a token for {ns}/{sa_name} with audience {audience}: {e}"),
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
        format!("token issued for {ns}/{sa_name}, audience {audience}"),
    );
    Ok(role_arn.map(|role_arn| FromCluster { token, role_arn }))
}
