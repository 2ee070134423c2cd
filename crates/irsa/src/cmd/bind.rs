//! `irsa bind` and `irsa unbind`: edit the bindings in irsa.yaml the way
//! `eksctl create iamserviceaccount` users expect, print the annotated
//! ServiceAccount, then the plan (or apply it).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_core::config::{Binding, BindingMode, DEFAULT_AUDIENCE};
use irsa_core::IrsaConfig;

use crate::cfgedit::ConfigEdit;
use crate::cmd::aws_args::Common;
use crate::manifest::{role_arn, service_account_yaml, ACCOUNT_PLACEHOLDER};
use crate::net::account_for;
use crate::yamledit;

/// Which binding.
#[derive(Args, Clone)]
pub struct Target {
    /// Namespace of the service account.
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// Service account name, or a pattern with `*` (e.g. `job-*`).
    #[arg(short = 's', long = "service-account")]
    pub service_account: String,
}

/// What to do after editing irsa.yaml.
#[derive(Args, Clone)]
pub struct After {
    /// Apply the change to AWS right away (shows the plan first).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: do not ask for confirmation.
    #[arg(long, requires = "apply")]
    pub auto_approve: bool,
    /// Only edit irsa.yaml; do not contact AWS for a plan.
    #[arg(long, conflicts_with = "apply")]
    pub no_plan: bool,
}

/// Arguments of `irsa bind`.
#[derive(Args)]
pub struct BindArgs {
    #[command(flatten)]
    pub target: Target,
    /// Managed policy to attach (repeatable).
    #[arg(long = "policy-arn", value_name = "ARN")]
    pub policy_arns: Vec<String>,
    /// Inline policy document (JSON or YAML), named after the file (repeatable).
    #[arg(long = "policy-file", value_name = "FILE")]
    pub policy_files: Vec<PathBuf>,
    /// Token audience (default sts.amazonaws.com).
    #[arg(long)]
    pub audience: Option<String>,
    /// IAM role name (default {cluster}-{namespace}-{serviceAccount}).
    #[arg(long)]
    pub role_name: Option<String>,
    /// Maximum session duration in seconds (3600-43200).
    #[arg(long)]
    pub max_session_duration: Option<u32>,
    /// Permissions boundary policy ARN.
    #[arg(long)]
    pub permissions_boundary: Option<String>,
    /// Serve the role through the Pod Identity broker (`irsa agent`): the
    /// broker assumes it for the ServiceAccount's pods with session tags;
    /// the role trusts the broker's role, not the OIDC provider.
    #[arg(long)]
    pub pod_identity: bool,
    /// Serve the role through IRSA (the pod assumes it with its projected
    /// token): turns a pod-identity binding back into the default mode.
    #[arg(long, conflicts_with = "pod_identity")]
    pub irsa: bool,
    /// Replace the binding's policies instead of adding to them.
    #[arg(long)]
    pub replace: bool,
    /// AWS account ID for the printed role ARN (default: from the credentials).
    #[arg(long, value_parser = account_id)]
    pub account: Option<String>,
    #[command(flatten)]
    pub after: After,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `irsa unbind`.
#[derive(Args)]
pub struct UnbindArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub after: After,
    #[command(flatten)]
    pub common: Common,
}

fn read_policy(path: &Path) -> Result<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    let doc: serde_json::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a JSON or YAML policy document", path.display()))?;
    if !irsa_core::names::is_policy_document(&doc) {
        bail!(
            "{} has no \"Statement\": it must be an IAM policy document ({{\"Version\": \"2012-10-17\", \"Statement\": [...]}})",
            path.display()
        );
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| irsa_core::names::is_policy_name(s))
        .with_context(|| {
            format!(
                "{}: the file name (without extension) names the inline policy and must be letters, digits or +=,.@_-",
                path.display()
            )
        })?;
    Ok((name, doc))
}

/// Reads `--account`: 12 digits.
fn account_id(s: &str) -> Result<String, String> {
    irsa_core::arn::check_account(s)
        .map(|()| s.to_string())
        .map_err(|problem| problem.to_string())
}

fn config_path(common: &Common) -> PathBuf {
    common.file.clone()
}

fn follow_up(after: &After, common: Common) -> Result<()> {
    if after.no_plan {
        println!("\nNext: `irsa plan` to see the AWS changes, `irsa apply` to make them.");
        return Ok(());
    }
    crate::net::plan_after_edit(after.apply, after.auto_approve, common)
}

/// Runs `irsa bind`.
pub fn bind(a: BindArgs) -> Result<()> {
    let path = config_path(&a.common);
    // Locked until the edit is written, so no other irsa edit interleaves.
    let edit = ConfigEdit::open(&path)?;
    let text = edit.text();
    let config = IrsaConfig::from_yaml(text).with_context(|| format!("in {}", path.display()))?;
    let existing = config
        .bindings
        .iter()
        .find(|b| {
            b.namespace == a.target.namespace && b.service_account == a.target.service_account
        })
        .cloned();
    let mut binding = match (&existing, a.replace) {
        (Some(b), false) => b.clone(),
        _ => Binding {
            namespace: a.target.namespace.clone(),
            service_account: a.target.service_account.clone(),
            ..Binding::default()
        },
    };
    for arn in &a.policy_arns {
        if !binding.policy_arns.contains(arn) {
            binding.policy_arns.push(arn.clone());
        }
    }
    for file in &a.policy_files {
        let (name, doc) = read_policy(file)?;
        binding.inline_policies.insert(name, doc);
    }
    if let Some(v) = &a.audience {
        binding.audience = (v != DEFAULT_AUDIENCE).then(|| v.clone());
    }
    if a.role_name.is_some() {
        binding.role_name = a.role_name.clone();
    }
    if a.max_session_duration.is_some() {
        binding.max_session_duration = a.max_session_duration;
    }
    if a.permissions_boundary.is_some() {
        binding.permissions_boundary = a.permissions_boundary.clone();
    }
    if a.pod_identity {
        binding.mode = BindingMode::PodIdentity;
    } else if a.irsa {
        binding.mode = BindingMode::Irsa;
        binding.extra_brokers.clear();
    }
    if existing.as_ref() == Some(&binding) {
        println!(
            "{}/{} is already bound as asked; irsa.yaml unchanged.",
            binding.namespace, binding.service_account
        );
    } else {
        let (new_text, replaced) = yamledit::upsert_binding(text, &binding)
            .with_context(|| format!("cannot update {}", path.display()))?;
        edit.commit(&new_text)?;
        println!(
            "{} {}: {}/{} -> IAM role {}",
            if replaced { "Updated" } else { "Added" },
            path.display(),
            binding.namespace,
            binding.service_account,
            binding.role_name(&config.cluster)
        );
    }
    drop(edit);
    // The account from the credentials; with --no-plan only as given.
    let lookup = || {
        account_for(
            a.common.profile.as_deref(),
            a.common.region.as_deref(),
            a.account.as_deref(),
        )
    };
    let account_unless_offline = || {
        if a.after.no_plan && a.account.is_none() {
            None
        } else {
            lookup()
        }
    };
    if binding.is_pod_identity() {
        let account = account_unless_offline();
        let arn = role_arn(&config, &binding, account.as_deref())?;
        let pi = config.pod_identity();
        let (ns, sa) = pi.service_account();
        println!(
            "\nPod Identity: the broker ({ns}/{sa}, role {}) assumes {arn} for pods of {}/{}; their ServiceAccount needs no annotation.\n`irsa agent manifests -f {} -o DIR` renders the associations file the broker and the webhook read.",
            pi.role_name(&config.cluster),
            binding.namespace,
            binding.service_account,
            path.display()
        );
        if account.is_none() {
            println!("# {ACCOUNT_PLACEHOLDER} stands for the account (pass --account)");
        }
    } else if binding.service_account.contains('*') {
        println!(
            "\nAnnotate each matching ServiceAccount with eks.amazonaws.com/role-arn: {}",
            role_arn(&config, &binding, lookup().as_deref())?
        );
    } else {
        let account = account_unless_offline();
        let yaml = service_account_yaml(&config, &binding, account.as_deref())?;
        println!("\nServiceAccount (kubectl apply -f -):\n---");
        print!("{yaml}");
        if account.is_none() {
            println!("# replace {ACCOUNT_PLACEHOLDER} (or pass --account)");
        }
    }
    follow_up(&a.after, a.common)
}

/// Runs `irsa unbind`.
pub fn unbind(a: UnbindArgs) -> Result<()> {
    let path = config_path(&a.common);
    let edit = ConfigEdit::open(&path)?;
    let new_text =
        yamledit::remove_binding(edit.text(), &a.target.namespace, &a.target.service_account)
            .with_context(|| format!("cannot update {}", path.display()))?;
    edit.commit(&new_text)?;
    drop(edit);
    println!(
        "Removed {}/{} from {}; `irsa apply` deletes its role (irsa-owned roles only).",
        a.target.namespace,
        a.target.service_account,
        path.display()
    );
    follow_up(&a.after, a.common)
}
