//! Doctor's pod links: each pod of the ServiceAccount (or the one pod of
//! `--pod`) judged against the ServiceAccount's annotations now, by
//! `irsa_core::stale`; a stale pod is named with the fix for its owner.

use std::collections::HashMap;

use irsa_core::checks::Report;
use irsa_core::checks::Status;
use irsa_core::diagnosis::Link;
use irsa_core::mutate::SaIdentity;
use irsa_core::stale::{self, Listing, Owner};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;

use irsa_core::mutate::DEFAULT_PREFIX;

/// Where the pods of one ServiceAccount are judged.
pub(super) struct Scope<'a> {
    pub(super) client: &'a Client,
    pub(super) ns: &'a str,
    pub(super) sa: Option<&'a SaIdentity>,
    /// Whether the webhook mutates new pods of the ServiceAccount (`None`:
    /// not checked). Until it does, recreating a pod gives another
    /// unmutated one, so no fix says to.
    pub(super) webhook_mutates: Option<bool>,
}

impl Scope<'_> {
    /// `fix`, or, while the webhook does not mutate new pods, what must
    /// come first.
    fn fix(&self, fix: String) -> String {
        if self.webhook_mutates == Some(false) {
            format!("first make the webhook mutate new pods (the line \"{}\"): recreating the pod now gives another unmutated one; then {fix}", irsa_core::diagnosis::Link::WebhookMutates.name())
        } else {
            fix
        }
    }
}

/// Resolves controller chains, each owner read once.
#[derive(Default)]
struct Owners {
    parents: HashMap<(String, String), Option<Owner>>,
}

impl Owners {
    /// The pod's controller chain, nearest first: a ReplicaSet's
    /// Deployment and a Job's CronJob are looked up. A failed lookup leaves
    /// the nearest owner, whose fix (delete the pod) still holds.
    async fn chain(&mut self, scope: &Scope<'_>, pod: &Pod) -> Vec<Owner> {
        let Some(nearest) = Owner::of(&pod.metadata) else {
            return Vec::new();
        };
        let mut chain = vec![nearest.clone()];
        if !nearest.has_known_parent() {
            return chain;
        }
        let key = (nearest.kind.clone(), nearest.name.clone());
        if !self.parents.contains_key(&key) {
            let meta = match nearest.kind.as_str() {
                "ReplicaSet" => Api::<ReplicaSet>::namespaced(scope.client.clone(), scope.ns)
                    .get_opt(&nearest.name)
                    .await
                    .ok()
                    .flatten()
                    .map(|o| o.metadata),
                _ => Api::<Job>::namespaced(scope.client.clone(), scope.ns)
                    .get_opt(&nearest.name)
                    .await
                    .ok()
                    .flatten()
                    .map(|o| o.metadata),
            };
            self.parents
                .insert(key.clone(), meta.as_ref().and_then(Owner::of));
        }
        if let Some(Some(parent)) = self.parents.get(&key) {
            chain.push(parent.clone());
        }
        chain
    }
}

/// Records the verdict on one pod: every verdict with `all` (`--pod`),
/// else only a stale pod's. `true` when it is stale.
async fn record(
    r: &mut Report,
    scope: &Scope<'_>,
    owners: &mut Owners,
    pod: &Pod,
    all: bool,
) -> bool {
    let verdict = stale::judge(pod, scope.sa, DEFAULT_PREFIX);
    let is_stale = verdict.is_stale();
    if !is_stale && !all {
        return false;
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let chain = if is_stale {
        owners.chain(scope, pod).await
    } else {
        Vec::new()
    };
    let (link, status, detail, fix) = stale::pod_line(&verdict, scope.ns, name, &chain);
    let fix = if status == Status::Pass {
        fix
    } else {
        scope.fix(fix)
    };
    r.record(link.name(), status, detail, fix);
    is_stale
}

/// `--pod`: judges that pod alone.
pub(super) async fn judge_pod(r: &mut Report, scope: &Scope<'_>, pod: &Pod) {
    record(r, scope, &mut Owners::default(), pod, true).await;
}

/// `-s`: lists the ServiceAccount's pods that have not finished (at most
/// `max` of them, narrowed by the label `selector`) and judges each.
pub(super) async fn judge_pods(
    r: &mut Report,
    scope: &Scope<'_>,
    sa_name: &str,
    selector: Option<&str>,
    max: u32,
) {
    let ns = scope.ns;
    let mut params = ListParams::default()
        .fields(&format!(
            "spec.serviceAccountName={sa_name},status.phase!=Succeeded,status.phase!=Failed"
        ))
        .limit(max);
    if let Some(selector) = selector {
        params = params.labels(selector);
    }
    let list = match Api::<Pod>::namespaced(scope.client.clone(), ns)
        .list(&params)
        .await
    {
        Ok(list) => list,
        Err(e) => {
            r.warn(
                Link::Pods.name(),
                format!("cannot list the pods of {ns}/{sa_name}: {e}"),
                "run doctor with a kubeconfig allowed to list pods in the namespace, and check --selector",
            );
            return;
        }
    };
    let mut owners = Owners::default();
    let mut stale_pods = 0;
    for pod in &list.items {
        if record(r, scope, &mut owners, pod, false).await {
            stale_pods += 1;
        }
    }
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    let in_phase = |want: &str| {
        list.items
            .iter()
            .filter(|p| phase(p).as_deref() == Some(want))
            .count()
    };
    let listing = Listing {
        selector,
        judged: list.items.len(),
        running: in_phase("Running"),
        pending: in_phase("Pending"),
        stale: stale_pods,
        truncated: list
            .metadata
            .continue_
            .as_deref()
            .is_some_and(|c| !c.is_empty()),
    };
    if let Some((status, detail, fix)) = stale::listing_line(ns, sa_name, &listing) {
        r.record(Link::Pods.name(), status, detail, fix);
    }
}
