//! Where pods run, for node binding: a pod's `spec.nodeName`, read from
//! the API server and kept per pod UID (a pod never moves once it is on a
//! node; a replaced pod has another UID).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use irsa_core::podidentity::{PodIdentity, Refusal};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

/// How long a pod's node is kept.
pub const PLACEMENT_TTL: Duration = Duration::from_secs(300);
/// Most pods whose node is kept.
pub const MAX_PLACEMENTS: usize = 16_384;
/// Longest wait for the API server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads and keeps pods' nodes.
pub struct Placements {
    client: kube::Client,
    cache: Mutex<HashMap<String, (Instant, String)>>,
}

impl Placements {
    /// Placements read through `client` (the broker needs `get` on pods).
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The node `pod` runs on (`None`: not scheduled), or why it cannot be
    /// told.
    pub async fn node_of(&self, pod: &PodIdentity) -> Result<Option<String>, Refusal> {
        if let Some(node) = self.cached(&pod.pod_uid) {
            return Ok(Some(node));
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let read = tokio::time::timeout(READ_TIMEOUT, api.get_opt(&pod.pod_name)).await;
        let found = match read {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::warn!(%error, namespace = %pod.namespace, pod = %pod.pod_name, "pod read failed");
                return Err(Refusal::new(503, "the broker could not read the pod's node (it needs get on pods for node binding); retry"));
            }
            Err(_) => {
                return Err(Refusal::new(
                    503,
                    "the API server did not answer the pod read in time; retry",
                ))
            }
        };
        let Some(found) = found.filter(|p| p.metadata.uid.as_deref() == Some(&pod.pod_uid)) else {
            return Err(Refusal::new(
                401,
                format!(
                    "pod {}/{} with the token's UID no longer exists",
                    pod.namespace, pod.pod_name
                ),
            ));
        };
        let node = found
            .spec
            .and_then(|s| s.node_name)
            .filter(|n| !n.is_empty());
        if let Some(node) = &node {
            self.remember(&pod.pod_uid, node);
        }
        Ok(node)
    }

    fn cached(&self, uid: &str) -> Option<String> {
        let cache = self.cache.lock().ok()?;
        let (at, node) = cache.get(uid)?;
        (at.elapsed() < PLACEMENT_TTL).then(|| node.clone())
    }

    fn remember(&self, uid: &str, node: &str) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= MAX_PLACEMENTS {
            cache.retain(|_, (at, _)| at.elapsed() < PLACEMENT_TTL);
        }
        if cache.len() < MAX_PLACEMENTS {
            cache.insert(uid.to_string(), (Instant::now(), node.to_string()));
        }
    }
}
