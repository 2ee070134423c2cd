//! The network half of irsa as the offline toolkit (no `online` feature)
//! has it: the same names as `enabled.rs`, each saying in one line which
//! build has what it needs (exit 2), or, where a verb can go on without
//! it, what it could not observe. The `online` feature chooses between
//! the two: the one place the builds differ.

use std::path::Path;

use anyhow::Result;
use irsa_core::rotation::Observation;

use crate::cmd::aws_args::Common;
use crate::fetch::{Fetched, Resolve};

/// The error for `what`, which needs the network code this build leaves out.
pub fn needs_online(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs the network code that this offline build of irsa leaves out; \
         use the full build: cargo install --path crates/irsa (or cargo run -p irsa -- ...)"
    )
}

// The arguments of a command this build lacks, taken whole so that the
// command explains itself instead of failing on its flags. (No doc comment:
// clap would show it as the command's description.)
#[derive(clap::Args)]
pub struct Unavailable {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

impl Unavailable {
    /// The error for `irsa <command>` in this build.
    pub fn run(self, command: &str) -> anyhow::Result<()> {
        let _ = self.args;
        Err(needs_online(&format!("`irsa {command}`")))
    }
}

/// `irsa plan`'s arguments in this build: none it could use.
pub type PlanArgs = Unavailable;
/// `irsa apply`'s and `irsa destroy`'s.
pub type ApplyArgs = Unavailable;
/// `irsa doctor`'s.
pub type DoctorArgs = Unavailable;
/// `irsa verify`'s.
pub type VerifyArgs = Unavailable;
/// `irsa agent`'s.
pub type AgentArgs = Unavailable;
/// `irsa webhook serve`'s.
pub type WebhookServe = Unavailable;

/// A command's one-line help, marked as missing from this build.
pub fn only(about: &'static str) -> String {
    format!("{about} [full build only]")
}

/// `irsa plan`: not in this build.
pub fn plan(a: PlanArgs) -> Result<()> {
    a.run("plan")
}

/// `irsa apply`: not in this build.
pub fn apply(a: ApplyArgs) -> Result<()> {
    a.run("apply")
}

/// `irsa destroy`: not in this build.
pub fn destroy(a: ApplyArgs) -> Result<()> {
    a.run("destroy")
}

/// `irsa doctor`: not in this build.
pub fn doctor(a: DoctorArgs) -> Result<()> {
    a.run("doctor")
}

/// `irsa verify`: not in this build.
pub fn verify(a: VerifyArgs) -> Result<()> {
    a.run("verify")
}

/// `irsa agent`: not in this build.
pub fn agent(a: AgentArgs) -> Result<()> {
    a.run("agent")
}

/// `irsa webhook serve`: not in this build.
pub fn webhook_serve(a: WebhookServe) -> Result<()> {
    a.run("webhook serve")
}

/// No klog flags are read in this build.
pub fn webhook_log_level(_: &WebhookServe) -> Option<&'static str> {
    None
}

/// No AWS call is made in this build.
pub fn is_aws_error(_: &anyhow::Error) -> bool {
    false
}

/// After `bind` or `unbind`: the plan needs the full build.
pub fn plan_after_edit(_apply: bool, _auto_approve: bool, _common: Common) -> Result<()> {
    Err(needs_online(
        "irsa.yaml is updated; the plan that follows (pass --no-plan to skip it)",
    ))
}

/// The account ID as given: this build cannot ask AWS.
pub fn account_for(
    _profile: Option<&str>,
    _region: Option<&str>,
    given: Option<&str>,
) -> Option<String> {
    given.map(str::to_string)
}

/// This build cannot ask a cluster which key it signs with.
pub fn signing_key(_kubeconfig: Option<&Path>) -> Observation {
    Observation::Unobserved(
        "this offline build of irsa has no Kubernetes client (the full build observes it)".into(),
    )
}

/// This build has no HTTPS client, so no `Fetcher` can be made:
/// [`Fetcher::new`] says which build has one.
pub struct Fetcher(std::convert::Infallible);

impl Fetcher {
    /// Always fails: this build links no HTTPS client.
    pub fn new(_ca: Option<&Path>, _resolves: &[Resolve]) -> Result<Self> {
        Err(needs_online("reading what the issuer serves over HTTPS"))
    }

    /// Never called: no `Fetcher` exists in this build.
    pub fn get(&self, _url: &str) -> Result<Fetched, String> {
        match self.0 {}
    }
}
