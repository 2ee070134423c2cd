//! The broker: token in, credentials out.

use std::path::Path;
use std::sync::Arc;

use irsa_core::podidentity::{
    check_cluster_name, token_from_authorization, ContainerCredentials, Refusal,
};
use irsa_webhook::containercreds::PodIdentities;

use crate::cache::{Sessions, Source};
use crate::metrics::Metrics;
use crate::review::Reviewer;
use crate::sts::Sts;

/// What the broker is given.
pub struct BrokerConfig<'a> {
    /// The associations file.
    pub associations: &'a Path,
    /// `eks-cluster-name` tag value.
    pub cluster_name: &'a str,
    /// Audience the tokens must have.
    pub audience: &'a str,
    /// Kubernetes client for TokenReview.
    pub kube: kube::Client,
}

/// Answers credential requests.
pub struct Broker {
    reviewer: Reviewer,
    associations: PodIdentities,
    sts: Sts,
    sessions: Sessions,
    /// The metrics.
    pub metrics: Arc<Metrics>,
}

impl Broker {
    /// Starts a broker: checks the cluster name, reads the associations
    /// file and adds the task that re-reads it to `tasks`, connects to STS.
    pub async fn start(
        c: BrokerConfig<'_>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<Self> {
        check_cluster_name(c.cluster_name).map_err(|e| anyhow::anyhow!("--cluster-name: {e}"))?;
        let metrics = Arc::new(Metrics::default());
        let associations = irsa_webhook::containercreds::watch(c.associations, tasks);
        Ok(Self {
            reviewer: Reviewer::new(c.kube, c.audience, metrics.clone()),
            associations,
            sts: Sts::connect(c.cluster_name, metrics.clone()).await,
            sessions: Sessions::default(),
            metrics,
        })
    }

    /// The credentials for the pod whose token is in `authorization` (the
    /// header's value), or why not.
    pub async fn credentials(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<ContainerCredentials>, Refusal> {
        let token = token_from_authorization(authorization)?;
        let pod = self.reviewer.review(token).await?;
        let Some(role) = self
            .associations
            .get()
            .role(&pod.namespace, &pod.service_account)
            .map(|r| r.to_string())
        else {
            return Err(Refusal::new(
                403,
                format!(
                    "ServiceAccount {}/{} has no role in the associations file: add {{\"namespace\":{:?},\"serviceAccount\":{:?},\"roleArn\":\"arn:aws:iam::ACCOUNT:role/NAME\"}}",
                    pod.namespace, pod.service_account, pod.namespace, pod.service_account
                ),
            ));
        };
        let got = self
            .sessions
            .get(&role, &pod.pod_uid, || self.sts.assume(&role, &pod))
            .await;
        self.metrics
            .cached_credentials
            .set(i64::try_from(self.sessions.len()).unwrap_or(i64::MAX));
        let (creds, source) = got?;
        self.metrics
            .lookup("credentials", source != Source::Fetched);
        match source {
            Source::Fetched => {
                tracing::info!(namespace = %pod.namespace, service_account = %pod.service_account, pod = %pod.pod_name, %role, "session assumed")
            }
            Source::Stale => {
                tracing::warn!(namespace = %pod.namespace, pod = %pod.pod_name, %role, "STS failed; serving the cached session")
            }
            Source::Cached => {}
        }
        Ok(creds)
    }
}
