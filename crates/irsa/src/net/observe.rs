//! Which key the cluster signs with, observed rather than assumed: irsa
//! creates a throwaway ServiceAccount in namespace `default`, asks the
//! TokenRequest API for a short-lived token of it (an audience nothing
//! accepts), reads the `kid` from the token's header and deletes the
//! ServiceAccount again, also when the TokenRequest fails. The token is
//! never printed or logged. The judgement is `irsa_core::rotation::judge`.

use std::path::Path;

use irsa_core::rotation::Observation;

/// Name prefix of the throwaway ServiceAccounts (`generateName`).
pub const PROBE_PREFIX: &str = "irsa-signing-probe-";

/// Asks the cluster named by `kubeconfig` (else the usual discovery) which
/// key it signs with.
pub fn signing_key(kubeconfig: Option<&Path>) -> Observation {
    let observed = super::rt::block_on(async {
        match irsa_webhook::server::client_from(kubeconfig).await {
            Ok(client) => online::observe(&client).await,
            Err(e) => Observation::Unobserved(format!("no cluster access: {e}")),
        }
    });
    observed.unwrap_or_else(|e| Observation::Unobserved(format!("{e:#}")))
}

mod online {
    use std::future::Future;
    use std::time::Duration;

    use irsa_core::rotation::Observation;
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
    use kube::Client;

    use super::PROBE_PREFIX;
    use crate::output::status;

    /// Where the throwaway ServiceAccount lives.
    const NAMESPACE: &str = "default";
    /// The probe token's audience: nothing accepts it.
    const AUDIENCE: &str = "irsa-signing-probe";
    /// The shortest lifetime the TokenRequest API grants.
    const LIFETIME: i64 = 600;
    /// Longest wait for one API call.
    const CALL_TIMEOUT: Duration = Duration::from_secs(20);

    async fn call<T>(
        what: &str,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(e))) => Err(format!(
                "{what}: the apiserver answered {} {}: {}",
                e.code, e.reason, e.message
            )),
            Ok(Err(e)) => Err(format!("{what}: the cluster is not reachable: {e}")),
            Err(_) => Err(format!(
                "{what}: no answer within {} s",
                CALL_TIMEOUT.as_secs()
            )),
        }
    }

    /// Observes with `client`: create, TokenRequest, delete.
    pub(super) async fn observe(client: &Client) -> Observation {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
        let probe = ServiceAccount {
            metadata: ObjectMeta {
                generate_name: Some(PROBE_PREFIX.into()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "irsa".to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        let created = call(
            &format!("cannot create a throwaway ServiceAccount in namespace {NAMESPACE}"),
            sas.create(&PostParams::default(), &probe),
        )
        .await;
        let name = match created.map(|sa| sa.metadata.name) {
            Ok(Some(name)) => name,
            Ok(None) => {
                return Observation::Unobserved(
                    "the apiserver created the throwaway ServiceAccount without a name".into(),
                )
            }
            Err(why) => return Observation::Unobserved(why),
        };
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![AUDIENCE.into()],
                expiration_seconds: Some(LIFETIME),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = call(
            &format!(
                "the TokenRequest API did not issue a token for ServiceAccount {NAMESPACE}/{name}"
            ),
            sas.create_token_request(&name, &PostParams::default(), &request),
        )
        .await;
        // Deleted whatever the TokenRequest did; deleting it also
        // invalidates the token.
        if let Err(why) = call(
            "cannot delete it",
            sas.delete(&name, &DeleteParams::default()),
        )
        .await
        {
            tracing::warn!(namespace = NAMESPACE, name, %why, "throwaway ServiceAccount left behind");
            status!("warning: the throwaway ServiceAccount {NAMESPACE}/{name} is left behind ({why}): kubectl delete serviceaccount -n {NAMESPACE} {name}");
        }
        match issued {
            Ok(answer) => match answer.status {
                Some(s) => Observation::from_token(&s.token),
                None => Observation::Unobserved("the TokenRequest answer has no token".into()),
            },
            Err(why) => Observation::Unobserved(why),
        }
    }
}
