//! `irsa verify`: the verification workload for a binding, as the seeds
//! run it by hand: the annotated ServiceAccount and a Job that runs
//! `aws sts get-caller-identity` with it. Printed, or applied and waited
//! for, reporting the assumed-role ARN or the failure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};

use crate::bundle::Bundle;
use crate::cmd::aws_args::Common;
use crate::manifest::{object_yaml, service_account};
use crate::net::account_for;
use crate::output::status;

/// Arguments of `irsa verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Namespace of the binding.
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// Service account of the binding (as in irsa.yaml).
    #[arg(short = 's', long = "service-account")]
    pub service_account: String,
    /// Create the objects in the cluster, wait for the Job and report.
    #[arg(long)]
    pub apply: bool,
    /// Image with the AWS CLI.
    #[arg(long, default_value = "public.ecr.aws/aws-cli/aws-cli:latest")]
    pub image: String,
    /// With --apply: how long to wait for the Job, in seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// AWS account ID for the role ARN (default: from the credentials).
    #[arg(long)]
    pub account: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// The Job that prints the caller identity the pod's credentials give.
pub fn job(namespace: &str, service_account: &str, image: &str) -> Job {
    let mut name = format!("irsa-verify-{}", service_account.replace('.', "-"));
    name.truncate(63);
    let name = name.trim_end_matches('-').to_string();
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "irsa".to_string(),
        ),
        ("irsa.dev/verify".to_string(), service_account.to_string()),
    ]);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(300),
            ttl_seconds_after_finished: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(service_account.to_string()),
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "aws-cli".into(),
                        image: Some(image.to_string()),
                        args: Some(
                            ["sts", "get-caller-identity", "--output", "json"]
                                .map(String::from)
                                .to_vec(),
                        ),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// Runs `irsa verify`.
pub fn run(a: VerifyArgs) -> Result<()> {
    let bundle = Bundle::load_file(&a.common.file)?;
    let binding = bundle
        .config
        .bindings
        .iter()
        .find(|b| b.namespace == a.namespace && b.service_account == a.service_account)
        .cloned()
        .with_context(|| {
            format!(
                "irsa.yaml has no binding for {}/{}: add it with `irsa bind -n {} -s {}`",
                a.namespace, a.service_account, a.namespace, a.service_account
            )
        })?;
    if binding.service_account.contains('*') {
        bail!(
            "{} is a pattern; pass one service account it matches",
            binding.service_account
        );
    }
    let account = account_for(
        a.common.profile.as_deref(),
        a.common.region.as_deref(),
        a.account.as_deref(),
    )
    .context(
        "cannot find the AWS account ID for the role ARN: pass --account or set AWS credentials",
    )?;
    let sa = service_account(&bundle.config, &binding, Some(&account))?;
    let job = job(&a.namespace, &a.service_account, &a.image);
    if !a.apply {
        print!("{}---\n{}", object_yaml(&sa), object_yaml(&job));
        status!("apply with `kubectl apply -f -`, or run `irsa verify ... --apply` to apply, wait and report");
        return Ok(());
    }
    crate::net::rt::block_on(apply_and_wait(&a, sa, job))?
}

async fn apply_and_wait(a: &VerifyArgs, sa: ServiceAccount, job: Job) -> Result<()> {
    let client = irsa_webhook::server::client_from(a.kubeconfig.as_deref()).await?;
    let ns = &a.namespace;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply("irsa").force();
    sas.patch(&a.service_account, &params, &Patch::Apply(&sa))
        .await
        .with_context(|| format!("cannot apply ServiceAccount {ns}/{}", a.service_account))?;
    println!("serviceaccount/{} annotated", a.service_account);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let name = job.metadata.name.clone().unwrap_or_default();
    // A previous run's Job is replaced.
    if jobs.get_opt(&name).await?.is_some() {
        jobs.delete(&name, &DeleteParams::background()).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while jobs.get_opt(&name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("the previous job/{name} is still being deleted; retry in a moment");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    jobs.create(&PostParams::default(), &job)
        .await
        .with_context(|| format!("cannot create job/{name}"))?;
    println!("job/{name} created; waiting up to {} s", a.timeout);
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let (succeeded, failed) = loop {
        let status = jobs.get(&name).await?.status.unwrap_or_default();
        let (s, f) = (status.succeeded.unwrap_or(0), status.failed.unwrap_or(0));
        if s > 0 || f > 0 {
            break (s > 0, f > 0);
        }
        if Instant::now() > deadline {
            let seen = Api::<Pod>::namespaced(client.clone(), ns)
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await
                .map(|l| irsa_core::diagnosis::judge_job_pods(&l.items));
            match seen {
                Ok(seen) => status!("irsa: {}", seen.explain(ns, &name, a.timeout, &a.image)),
                Err(e) => status!(
                    "irsa: job/{name} did not finish in {} s, and its pods cannot be listed ({e}): `kubectl -n {ns} describe job {name}`",
                    a.timeout
                ),
            }
            return Err(crate::exit::Exit::CHECKS_FAILED.into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    let mut logs = String::new();
    if let Some(pod) = list.items.first().and_then(|p| p.metadata.name.clone()) {
        logs = pods
            .logs(&pod, &LogParams::default())
            .await
            .unwrap_or_default();
    }
    let arn = serde_json::from_str::<serde_json::Value>(&logs)
        .ok()
        .and_then(|v| v["Arn"].as_str().map(String::from));
    match (succeeded, arn) {
        (true, Some(arn)) => {
            println!("✓ the pod assumed {arn}");
            Ok(())
        }
        _ => {
            let _ = failed;
            status!("✗ job/{name} failed:\n{logs}");
            status!(
                "run `irsa doctor -n {ns} -s {}` to find the broken link",
                a.service_account
            );
            Err(crate::exit::Exit::CHECKS_FAILED.into())
        }
    }
}
