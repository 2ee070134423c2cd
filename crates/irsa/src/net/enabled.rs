//! The network half of irsa: AWS (plan, apply, destroy, the account of
//! the credentials), Kubernetes (doctor, verify, the agent, the webhook
//! server, the signing-key probe) and the HTTPS client that reads what an
//! issuer serves. The `online` feature chooses this module, or
//! `disabled.rs` with the same names that say which build has them: the
//! one place the two builds differ.

#[path = "aws_run.rs"]
mod aws_run;
#[path = "fetcher.rs"]
mod fetcher;
#[path = "observe.rs"]
mod observe;
#[path = "rt.rs"]
pub mod rt;
#[path = "thumbprint.rs"]
pub mod thumbprint;

use anyhow::{Context, Result};

pub use crate::cmd::agent::AgentCommand;
use crate::cmd::aws_args::Common;
pub use crate::cmd::aws_args::{ApplyArgs, PlanArgs};
pub use crate::cmd::doctor::DoctorArgs;
pub use crate::cmd::verify::VerifyArgs;
use crate::output::{status, Format};
pub use fetcher::Fetcher;
pub use observe::signing_key;

/// The arguments of `irsa webhook serve`.
pub type WebhookServe = Box<irsa_webhook::Settings>;

/// The arguments of `irsa agent`.
#[derive(clap::Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
}

/// A command's one-line help, as this build offers it.
pub fn only(about: &'static str) -> &'static str {
    about
}

/// `irsa plan`.
pub fn plan(a: PlanArgs) -> Result<()> {
    aws_run::plan(a)
}

/// `irsa apply`.
pub fn apply(a: ApplyArgs) -> Result<()> {
    aws_run::apply(a)
}

/// `irsa destroy`.
pub fn destroy(a: ApplyArgs) -> Result<()> {
    aws_run::destroy(a)
}

/// `irsa doctor`.
pub fn doctor(a: DoctorArgs) -> Result<()> {
    crate::cmd::doctor::run(a)
}

/// `irsa verify`.
pub fn verify(a: VerifyArgs) -> Result<()> {
    crate::cmd::verify::run(a)
}

/// `irsa agent ...`.
pub fn agent(a: AgentArgs) -> Result<()> {
    crate::cmd::agent::run(a.command)
}

/// The log level `irsa webhook serve`'s command line asks for besides
/// `--log`: klog's `-v N`.
pub fn webhook_log_level(settings: &WebhookServe) -> Option<&'static str> {
    settings.go_compat.klog.log_level()
}

/// Whether `e` is (or was caused by) a failed AWS call.
pub fn is_aws_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<irsa_aws::AwsError>())
}

/// After `bind` or `unbind` changed irsa.yaml: the plan, or with `apply`
/// the apply.
pub fn plan_after_edit(apply: bool, auto_approve: bool, common: Common) -> Result<()> {
    println!();
    if apply {
        return aws_run::apply(ApplyArgs {
            common,
            auto_approve,
            output: Format::Text,
        });
    }
    aws_run::plan(PlanArgs {
        common,
        detailed_exitcode: false,
        output: Format::Text,
    })
    .context("irsa.yaml is updated, but the plan could not be computed (run `irsa plan` once AWS credentials work)")
}

/// The account ID: given, or from the credentials (None when unreachable).
pub fn account_for(
    profile: Option<&str>,
    region: Option<&str>,
    given: Option<&str>,
) -> Option<String> {
    if let Some(a) = given {
        return Some(a.to_string());
    }
    rt::block_on(async {
        let aws = irsa_aws::Aws::connect(&irsa_aws::Connect {
            profile: profile.map(str::to_string),
            region: region.map(str::to_string),
            parallelism: 1,
        })
        .await;
        tokio::time::timeout(std::time::Duration::from_secs(10), aws.account_id())
            .await
            .ok()?
            .ok()
    })
    .ok()?
}

pub fn webhook_serve(settings: WebhookServe) -> Result<()> {
    let settings = *settings;
    serve(settings)
}

fn serve(settings: irsa_webhook::Settings) -> Result<()> {
    if settings.go_compat.version() {
        println!("irsa {}", crate::VERSION);
        return Ok(());
    }
    for warning in settings.go_compat.ignored(settings.watch_config_map) {
        status!("irsa webhook: warning: {warning}");
    }
    rt::block_on(async move {
        let client = irsa_webhook::server::client(&settings).await?;
        let delay = std::time::Duration::from_secs(settings.shutdown_delay_seconds);
        let running = irsa_webhook::run(settings, Some(client), None).await?;
        status!(
            "irsa webhook: serving https://{}/mutate, metrics http://{}/metrics",
            running.addr,
            running.metrics_addr
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        // Unready first, still serving, so endpoints stop sending here;
        // a second signal cuts the wait short.
        running.begin_drain();
        tracing::info!(delay = ?delay, "SIGTERM: /readyz fails now; serving on until the delay ends");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown();
        running.wait().await;
        Ok(())
    })?
}
