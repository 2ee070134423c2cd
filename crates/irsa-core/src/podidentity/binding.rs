//! Node binding: a pod's token is honoured only when it arrives through
//! the node agent of the node the pod runs on. A token is a bearer secret;
//! without this, a token copied off one node could be spent through any
//! other node's agent (or sent to the broker directly).
//!
//! The node agent proves its node with its own pod-bound token (from its
//! DaemonSet pod, audience [`NODE_AUDIENCE`]) in the [`NODE_TOKEN_HEADER`]
//! header; the broker reviews it like a pod's token, reads both pods'
//! `spec.nodeName`, and [`judge_node_binding`] compares them.

use super::request::{token_from_authorization, Refusal};
use super::review::PodIdentity;

/// The header in which the node agent presents its own token.
pub const NODE_TOKEN_HEADER: &str = "x-irsa-node-token";
/// The default audience of the node agent's own token: not the pods'
/// audience, so that a node agent's token never buys credentials itself.
pub const NODE_AUDIENCE: &str = "irsa-agent-node";

/// The node agent's token from its header, when the broker requires one.
pub fn node_token(value: Option<&[u8]>, required: bool) -> Result<Option<&str>, Refusal> {
    match value {
        None if required => Err(Refusal::new(
            403,
            "this broker requires node binding: ask through the node agent of the pod's node (irsa agent node --node-token-file)",
        )),
        None => Ok(None),
        Some(v) => token_from_authorization(Some(v))
            .map(Some)
            .map_err(|r| Refusal::new(400, format!("the node agent's token: {}", r.reason))),
    }
}

/// Whether `pod` (on `pod_node`) may be served through the node agent
/// `agent` (on `agent_node`): both on one node. `None` is a pod with no
/// `spec.nodeName` (not scheduled), which no node agent can speak for.
pub fn judge_node_binding(
    pod: &PodIdentity,
    pod_node: Option<&str>,
    agent: &PodIdentity,
    agent_node: Option<&str>,
) -> Result<(), Refusal> {
    let Some(agent_node) = agent_node.filter(|n| !n.is_empty()) else {
        return Err(Refusal::new(
            403,
            format!(
                "the node agent's pod {}/{} is not on a node (no spec.nodeName): run the node agent as a DaemonSet pod",
                agent.namespace, agent.pod_name
            ),
        ));
    };
    let Some(pod_node) = pod_node.filter(|n| !n.is_empty()) else {
        return Err(Refusal::new(
            403,
            format!(
                "pod {}/{} is not scheduled on a node (no spec.nodeName); retry once it runs",
                pod.namespace, pod.pod_name
            ),
        ));
    };
    if pod_node != agent_node {
        return Err(Refusal::new(
            403,
            format!(
                "pod {}/{} runs on node {pod_node:?} but the request came through the node agent of node {agent_node:?}: a pod's token is honoured only from its own node",
                pod.namespace, pod.pod_name
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> PodIdentity {
        PodIdentity {
            namespace: "app".into(),
            service_account: "s3".into(),
            pod_name: name.into(),
            pod_uid: "u".into(),
        }
    }

    #[test]
    fn same_node_passes_and_any_other_placement_is_refused_with_the_nodes() {
        let (p, a) = (pod("web-0"), pod("agent-x"));
        assert_eq!(judge_node_binding(&p, Some("n1"), &a, Some("n1")), Ok(()));
        let r = judge_node_binding(&p, Some("n1"), &a, Some("n2")).expect_err("relayed");
        assert_eq!(r.status, 403);
        assert!(
            r.reason.contains("\"n1\"") && r.reason.contains("\"n2\""),
            "{r}"
        );
        for (pn, an) in [
            (None, Some("n1")),
            (Some("n1"), None),
            (Some(""), Some("")),
            (Some("n1"), Some("")),
        ] {
            assert_eq!(
                judge_node_binding(&p, pn, &a, an).map_err(|r| r.status),
                Err(403),
                "{pn:?} {an:?}"
            );
        }
    }

    #[test]
    fn a_missing_node_token_is_refused_only_when_required() {
        assert_eq!(node_token(None, false), Ok(None));
        assert_eq!(node_token(None, true).map_err(|r| r.status), Err(403));
        assert_eq!(
            node_token(Some(b"x"), false).map_err(|r| r.status),
            Err(400)
        );
        assert_eq!(node_token(Some(b"a.b.c"), true), Ok(Some("a.b.c")));
    }
}
