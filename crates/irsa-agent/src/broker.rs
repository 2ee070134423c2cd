//! The broker: token in, credentials out.

use std::path::Path;
use std::sync::Arc;

use irsa_core::podidentity::{
    check_cluster_name, judge_node_binding, node_token, token_from_authorization,
    ContainerCredentials, Refusal,
};
use irsa_webhook::containercreds::PodIdentities;

use crate::cache::{Sessions, Source};
use crate::metrics::Metrics;
use crate::placement::Placements;
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
    /// Kubernetes client for TokenReview (and pod reads for node binding).
    pub kube: kube::Client,
    /// Node binding: refuse a request that does not come through the node
    /// agent of the pod's node.
    pub require_node_binding: bool,
    /// Audience of the node agents' own tokens.
    pub node_audience: &'a str,
}

/// Answers credential requests.
pub struct Broker {
    reviewer: Reviewer,
    node_reviewer: Reviewer,
    placements: Placements,
    require_node_binding: bool,
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
            reviewer: Reviewer::new(c.kube.clone(), c.audience, metrics.clone()),
            node_reviewer: Reviewer::new(c.kube.clone(), c.node_audience, metrics.clone()),
            placements: Placements::new(c.kube),
            require_node_binding: c.require_node_binding,
            associations,
            sts: Sts::connect(c.cluster_name, metrics.clone()).await,
            sessions: Sessions::default(),
            metrics,
        })
    }

    /// The credentials for the pod whose token is in `authorization` (the
    /// header's value), asked through the node agent whose own token is in
    /// `node` (the [`irsa_core::podidentity::NODE_TOKEN_HEADER`] header),
    /// or why not.
    pub async fn credentials(
        &self,
        authorization: Option<&[u8]>,
        node: Option<&[u8]>,
    ) -> Result<Arc<ContainerCredentials>, Refusal> {
        let token = token_from_authorization(authorization)?;
        let node = node_token(node, self.require_node_binding)?;
        let pod = self.reviewer.review(token).await?;
        if let Some(node) = node {
            let agent = self.node_reviewer.review(node).await.map_err(|r| {
                Refusal::new(r.status, format!("the node agent's token: {}", r.reason))
            })?;
            let pod_node = self.placements.node_of(&pod).await?;
            let agent_node = self.placements.node_of(&agent).await?;
            judge_node_binding(&pod, pod_node.as_deref(), &agent, agent_node.as_deref())?;
        }
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
