//! What the pods of `irsa verify --apply`'s Job showed when the wait ran
//! out: no pod at all, a pod not scheduled, an image that does not pull,
//! a pod still pending, or one running but not finished.

use k8s_openapi::api::core::v1::Pod;

/// What the Job's pods showed when the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobWait {
    /// The Job has no pod: nothing created one.
    NoPod,
    /// A pod the scheduler has not placed.
    Unscheduled {
        /// The pod.
        pod: String,
        /// The scheduler's message, if any.
        message: String,
    },
    /// A container waiting on its image.
    ImagePull {
        /// The pod.
        pod: String,
        /// The kubelet's reason (`ErrImagePull`, `ImagePullBackOff`, ...).
        reason: String,
        /// Its message.
        message: String,
    },
    /// A container waiting for another reason.
    Waiting {
        /// The pod.
        pod: String,
        /// The reason.
        reason: String,
        /// Its message.
        message: String,
    },
    /// Pending without a reason given yet.
    Pending {
        /// The pod.
        pod: String,
    },
    /// Running, not finished.
    Running {
        /// The pod.
        pod: String,
    },
}

/// Judges the Job's pods (the first one tells).
pub fn judge_job_pods(pods: &[Pod]) -> JobWait {
    let Some(pod) = pods.first() else {
        return JobWait::NoPod;
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.clone())
        .find(|w| w.reason.is_some());
    if let Some(w) = waiting {
        let reason = w.reason.unwrap_or_default();
        let message = w.message.unwrap_or_default();
        return if reason.contains("Image") {
            JobWait::ImagePull {
                pod: name,
                reason,
                message,
            }
        } else {
            JobWait::Waiting {
                pod: name,
                reason,
                message,
            }
        };
    }
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        return JobWait::Unscheduled {
            pod: name,
            message: c.message.clone().unwrap_or_default(),
        };
    }
    match status.phase.as_deref() {
        Some("Running") => JobWait::Running { pod: name },
        _ => JobWait::Pending { pod: name },
    }
}

impl JobWait {
    /// What was seen of Job `ns/job` after `timeout` seconds, and what to do.
    pub fn explain(&self, ns: &str, job: &str, timeout: u64, image: &str) -> String {
        let head = format!("job/{job} did not finish in {timeout} s");
        match self {
            Self::NoPod => format!("{head}: no pod was created for it; kube-controller-manager creates the Job's pods: check it runs, and `kubectl -n {ns} describe job {job}` for events (quota, admission)"),
            Self::Unscheduled { pod, message } => format!("{head}: pod {pod} is pending, not scheduled ({message}); check node capacity, taints and selectors (`kubectl -n {ns} describe pod {pod}`)"),
            Self::ImagePull { pod, reason, message } => format!("{head}: pod {pod} is pending: image {image} does not pull ({reason}: {message}); make it pullable from the nodes or pass --image"),
            Self::Waiting { pod, reason, message } => format!("{head}: pod {pod} is pending: {reason} {message}; `kubectl -n {ns} describe pod {pod}` says more"),
            Self::Pending { pod } => format!("{head}: pod {pod} is pending (not running yet); `kubectl -n {ns} describe pod {pod}` shows why, or wait longer with --timeout"),
            Self::Running { pod } => format!("{head}: pod {pod} is running but has not finished; `kubectl -n {ns} logs {pod}` shows how far it got, or wait longer with --timeout"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status}))
            .unwrap()
    }

    #[test]
    fn the_wait_says_what_it_saw() {
        assert_eq!(judge_job_pods(&[]), JobWait::NoPod);
        assert!(JobWait::NoPod
            .explain("app", "j", 5, "img")
            .contains("no pod was created"));
        let pull = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "c", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "back-off pulling"}}}]}),
        );
        let seen = judge_job_pods(&[pull]);
        assert!(matches!(seen, JobWait::ImagePull { .. }), "{seen:?}");
        assert!(seen
            .explain("app", "j", 5, "img")
            .contains("image img does not pull (ImagePullBackOff"));
        let unscheduled = pod(
            serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/1 nodes"}]}),
        );
        assert!(judge_job_pods(&[unscheduled])
            .explain("app", "j", 5, "img")
            .contains("not scheduled (0/1 nodes)"));
        let pending = judge_job_pods(&[pod(serde_json::json!({"phase": "Pending"}))]);
        let text = pending.explain("app", "j", 5, "img");
        assert!(
            text.contains("is pending") && !text.contains("is running"),
            "{text}"
        );
        assert_eq!(
            judge_job_pods(&[pod(serde_json::json!({"phase": "Running"}))]),
            JobWait::Running { pod: "p".into() }
        );
    }
}
