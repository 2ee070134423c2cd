//! Executing a plan: phase by phase, lanes concurrently within a phase,
//! and IAM read again before each step that takes hosting down.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use irsa_core::ownership::{hosting_blockers, provider_host_path};
use irsa_core::plan::{Change, Desired, Phase};

use crate::{Aws, AwsError};

impl Aws {
    /// Executes a plan phase by phase ([`Phase`]): a phase starts only when
    /// every change of the one before succeeded. Within a phase, lanes (see
    /// [`irsa_core::plan::lanes`]) run concurrently, `parallelism` at a
    /// time, each lane in order and stopping at its first failure. Before
    /// each hosting-removal step, IAM is read again and the step is refused
    /// while a provider still trusts what it removes. `progress` is called
    /// as each change starts. Returns every failure with the change it
    /// stopped at; a phase that did not start is reported at its first change.
    pub async fn execute_plan<'a>(
        &self,
        desired: &Desired,
        changes: &'a [Change],
        progress: &(dyn Fn(&Change) + Sync),
    ) -> Vec<(&'a Change, AwsError)> {
        let mut failures: Vec<(&'a Change, AwsError)> = Vec::new();
        let mut phases: Vec<Phase> = changes.iter().map(|c| c.phase).collect();
        phases.sort();
        phases.dedup();
        for phase in phases {
            let in_phase: Vec<&'a Change> = changes.iter().filter(|c| c.phase == phase).collect();
            if !failures.is_empty() {
                if let Some(first) = in_phase.first() {
                    failures.push((
                        first,
                        AwsError::Withheld(format!(
                            "{} later change(s) not run, because {} earlier change(s) failed: each phase relies on the one before (roles that trust the pod-identity broker follow its creation; the broker, and what serves the issuer, go only once nothing that trusts them remains); fix the cause and re-run",
                            in_phase.len(),
                            failures.len()
                        )),
                    ));
                }
                break;
            }
            failures.extend(
                self.execute_phase(desired, phase, &in_phase, progress)
                    .await,
            );
        }
        failures
    }

    async fn execute_phase<'a>(
        &self,
        desired: &Desired,
        phase: Phase,
        changes: &[&'a Change],
        progress: &(dyn Fn(&Change) + Sync),
    ) -> Vec<(&'a Change, AwsError)> {
        let mut lanes: Vec<Vec<&'a Change>> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for c in changes {
            let i = *index.entry(c.lane()).or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            });
            lanes[i].push(c);
        }
        let results: Vec<Option<(&Change, AwsError)>> =
            futures_util::stream::iter(lanes.into_iter().map(|lane| async move {
                for change in lane {
                    if phase == Phase::HostingRemoval {
                        if let Err(e) = self.check_no_trust_remains(desired, change).await {
                            return Some((change, e));
                        }
                    }
                    progress(change);
                    if let Err(e) = self.execute(desired, change).await {
                        return Some((change, e));
                    }
                }
                None
            }))
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        results.into_iter().flatten().collect()
    }

    /// Reads IAM's providers afresh and refuses `change` (a hosting-removal
    /// step) while any of them still trusts what it removes.
    async fn check_no_trust_remains(
        &self,
        desired: &Desired,
        change: &Change,
    ) -> Result<(), AwsError> {
        let host_paths: Vec<String> = self
            .provider_arns()
            .await?
            .iter()
            .filter_map(|a| provider_host_path(a).map(String::from))
            .collect();
        let blockers = hosting_blockers(desired, &change.action, &host_paths);
        if blockers.is_empty() {
            return Ok(());
        }
        Err(AwsError::Withheld(format!(
            "not run: IAM still has OIDC provider(s) {blockers:?} trusting what this step removes; a deleted bucket's name can be registered by anyone, who could then sign tokens those providers accept. Delete them if nothing uses them (aws iam delete-open-id-connect-provider), then re-run"
        )))
    }
}
