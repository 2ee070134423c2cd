//! Doctor's pod links: each pod of the ServiceAccount (or the one pod of
//! `--pod`) judged against the ServiceAccount's annotations now, by
//! `irsa_core::stale`; a stale pod is named with the fix for its owner.

use std::collections::HashMap;

use irsa_core::checks::Report;
use irsa_core::mutate::SaIdentity;
use irsa_core::stale::{
    self, Owner, Verdict, CONTAINER_CREDENTIALS_ENV, POD_MUTATED, ROLE_ARN_ENV, TOKEN_FILE_ENV,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;

use irsa_core::mutate::{DEFAULT_PREFIX, VOLUME_NAME};

/// Report line of the listing of the ServiceAccount's pods.
const PODS: &str = "pods: of the ServiceAccount carry its current role";

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

/// Records the verdict on one pod; `true` when it is stale.
async fn record(r: &mut Report, scope: &Scope<'_>, owners: &mut Owners, pod: &Pod) -> bool {
    let verdict = stale::judge(pod, scope.sa, DEFAULT_PREFIX);
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let Some((line, detail)) = stale::explain(&verdict, scope.ns, name) else {
        return false;
    };
    let chain = owners.chain(scope, pod).await;
    r.fail(line, detail, scope.fix(stale::fix(scope.ns, name, &chain)));
    true
}

/// `--pod`: judges that pod alone.
pub(super) async fn judge_pod(r: &mut Report, scope: &Scope<'_>, pod: &Pod) {
    let ns = scope.ns;
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match stale::judge(pod, scope.sa, DEFAULT_PREFIX) {
        Verdict::Current => r.pass(
            POD_MUTATED,
            format!("{ns}/{name}: {ROLE_ARN_ENV}, {TOKEN_FILE_ENV} and volume {VOLUME_NAME} present, with the ServiceAccount's role"),
        ),
        Verdict::PodIdentity => r.pass(
            POD_MUTATED,
            format!("{ns}/{name}: EKS Pod Identity ({CONTAINER_CREDENTIALS_ENV}) injected, which takes precedence over the role-arn annotation"),
        ),
        Verdict::OutOfScope => r.fail(
            POD_MUTATED,
            format!("{ns}/{name}: not mutated (no volume {VOLUME_NAME} with {ROLE_ARN_ENV}) and its ServiceAccount names no role"),
            scope.fix("pods are mutated only when created: make sure the webhook is installed and the ServiceAccount annotated (below), then delete the pod so its controller recreates it (kubectl rollout restart)".into()),
        ),
        _ => {
            record(r, scope, &mut Owners::default(), pod).await;
        }
    }
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
                PODS,
                format!("cannot list the pods of {ns}/{sa_name}: {e}"),
                "run doctor with a kubeconfig allowed to list pods in the namespace, and check --selector",
            );
            return;
        }
    };
    let mut owners = Owners::default();
    let mut stale_pods = 0;
    for pod in &list.items {
        if record(r, scope, &mut owners, pod).await {
            stale_pods += 1;
        }
    }
    let judged = list.items.len();
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    let running = list
        .items
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Running"))
        .count();
    let pending = list
        .items
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Pending"))
        .count();
    let other = match judged - running - pending {
        0 => String::new(),
        n => format!(", {n} in another phase"),
    };
    let narrowed = selector.map_or(String::new(), |s| format!(" matching {s}"));
    if list
        .metadata
        .continue_
        .as_deref()
        .is_some_and(|c| !c.is_empty())
    {
        r.warn(
            PODS,
            format!("more than {judged} unfinished pods of {ns}/{sa_name}{narrowed}: only the first {judged} were judged"),
            "narrow the listing with --selector LABELS, or raise --max-pods",
        );
    } else if stale_pods == 0 {
        r.pass(
            PODS,
            format!("{judged} unfinished pod(s) of {ns}/{sa_name}{narrowed} ({running} running, {pending} pending{other}), none stale"),
        );
    }
}
