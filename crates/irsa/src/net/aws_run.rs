//! `irsa plan`, `irsa apply`, `irsa destroy`: AWS made to match irsa.yaml.
//! A module of its own beside the verbs because `bind` and `unbind` run the
//! same plan (or apply) after their edit.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use irsa_aws::{Aws, Connect};
use irsa_core::plan::{self, Desired, Effect, Plan};
use irsa_core::IssuerUrl;

use crate::bundle::Bundle;
use crate::cfgedit::ConfigEdit;
pub use crate::cmd::aws_args::{ApplyArgs, Common, PlanArgs};
use crate::exit::Exit;
use crate::output::status;
use crate::output::Format;
use crate::yamledit;

struct Context_ {
    bundle: Bundle,
    desired: Desired,
    aws: Aws,
    account: String,
}

async fn load(c: &Common) -> Result<Context_> {
    let bundle = Bundle::load_file(&c.file)?;
    let region = c
        .region
        .clone()
        .or_else(|| bundle.config.issuer.s3.as_ref().map(|s| s.region.clone()));
    let aws = Aws::connect(&Connect {
        profile: c.profile.clone(),
        region: region.clone(),
        parallelism: usize::from(c.parallelism),
    })
    .await;
    let account = aws
        .account_id()
        .await
        .context("cannot identify the AWS account (check credentials: env, profile, SSO)")?;
    let region = region.as_deref().unwrap_or("us-east-1");
    let mut desired = if bundle.config.issuer.url().is_err() {
        // CloudFront before its distribution exists: hosting only.
        Desired::hosting_only(&bundle.config, &account, region)
    } else {
        let (discovery, jwks) = bundle.documents()?;
        Desired::from_config(&bundle.config, &account, region, &discovery, &jwks)
    };
    // Issuers on S3 (also behind CloudFront) are trusted by AWS without a
    // thumbprint; for any other host, pin the top certificate it serves
    // when it can be reached.
    if bundle.config.issuer.s3.is_none() {
        let host = bundle.config.issuer.url()?.host().to_string();
        match crate::net::thumbprint::thumbprint(&host, c.net.ca_cert.as_deref(), &c.net.resolve).await {
            Ok(t) => desired.thumbprints = vec![t],
            Err(e) => status!(
                "warning: no provider thumbprint ({e:#}); AWS needs none when the issuer's certificate is from a public CA"
            ),
        }
    }
    Ok(Context_ {
        bundle,
        desired,
        aws,
        account,
    })
}

/// Refuses a public issuer bucket in an account whose S3 Block Public
/// Access stops public bucket policies, before anything is written. Not
/// every role may read the account's settings: then a warning.
async fn refuse_locked_account(ctx: &Context_) -> Result<()> {
    if ctx.desired.bucket_statement.is_none() {
        return Ok(());
    }
    match ctx.aws.account_public_access(&ctx.account).await {
        Ok(settings) => match plan::public_hosting_refusal(&ctx.desired, &ctx.account, &settings) {
            Some(why) => bail!("{why}"),
            None => Ok(()),
        },
        Err(e) if e.denied() => {
            status!(
                "warning: cannot read the account's S3 Block Public Access settings ({e}); if they block public bucket policies, the public issuer bucket will not work: allow s3:GetAccountPublicAccessBlock to have plan check it"
            );
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e)
            .context("cannot read the account's S3 Block Public Access settings")),
    }
}

/// Refuses a plan whose roles need a managed policy or permissions
/// boundary IAM does not have, before anything is written: IAM would
/// refuse it only when attaching, after creating the role. Reads only the
/// policies not already attached.
async fn refuse_missing_policies(ctx: &Context_, actual: &plan::Actual) -> Result<()> {
    let wanted = plan::policies_to_check(&ctx.desired, actual);
    if wanted.is_empty() {
        return Ok(());
    }
    let missing = ctx.aws.missing_policies(&wanted).await?;
    match plan::missing_policies_refusal(&ctx.desired, &missing) {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}

fn print_plan(plan: &Plan, format: Format, title: &str) {
    if format == Format::Json {
        let changes: Vec<_> = plan
            .changes
            .iter()
            .map(|c| serde_json::json!({"action": c.symbol().to_string(), "resource": c.resource, "detail": c.detail}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"changes": changes, "conflicts": plan.conflicts, "withheld": plan.withheld, "notes": plan.notes})
        );
        return;
    }
    if plan.changes.is_empty() {
        println!("{title}: no changes; AWS matches irsa.yaml.");
    } else {
        println!("{title}:");
        for c in &plan.changes {
            println!("  {c}");
        }
        let count = |e: Effect| {
            plan.changes
                .iter()
                .filter(|c| c.action.effect() == e)
                .count()
        };
        println!(
            "{} to create, {} to change, {} to delete.",
            count(Effect::Create),
            count(Effect::Change),
            count(Effect::Delete)
        );
    }
    for conflict in plan.conflicts.iter().chain(&plan.withheld) {
        println!("  ! {conflict}");
    }
    for note in &plan.notes {
        println!("  i {note}");
    }
}

/// `--adopt` names, plus a bucket whose creation an interrupted apply
/// journaled (created but maybe not yet tagged: it is ours).
fn adopt(c: &Common, ctx: &Context_) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = c.adopt.iter().cloned().collect();
    if let (Some(s3), Some(journaled)) = (&ctx.desired.s3, journal::read(&ctx.bundle.dir)) {
        if journaled == s3.bucket {
            names.insert(journaled);
        }
    }
    names
}

/// A one-line journal of the bucket irsa is creating: S3 cannot create and
/// tag a bucket in one call, so an apply interrupted between the two would
/// leave an untagged bucket that a re-run would refuse to touch. The
/// journal, written before `CreateBucket` and removed once the bucket is
/// tagged, lets the re-run finish the job.
mod journal {
    use std::path::{Path, PathBuf};

    fn path(dir: &Path) -> PathBuf {
        dir.join(".irsa").join("creating-bucket")
    }

    pub fn read(dir: &Path) -> Option<String> {
        std::fs::read_to_string(path(dir))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn write(dir: &Path, bucket: &str) -> anyhow::Result<()> {
        crate::fsutil::write_atomic(
            &path(dir),
            format!("{bucket}\n").as_bytes(),
            crate::fsutil::PUBLIC,
        )
    }

    pub fn clear(dir: &Path) {
        let _ = std::fs::remove_file(path(dir));
        let _ = std::fs::remove_dir(dir.join(".irsa"));
    }
}

/// Runs `irsa plan`.
pub fn plan(a: PlanArgs) -> Result<()> {
    let detailed = a.detailed_exitcode;
    let result = plan_inner(a);
    match result {
        // With --detailed-exitcode, errors exit 1 (2 means "changes").
        Err(e) if detailed && !e.is::<Exit>() => {
            status!("irsa: {e:#}");
            Err(Exit(1).into())
        }
        other => other,
    }
}

fn plan_inner(a: PlanArgs) -> Result<()> {
    crate::net::rt::block_on(async {
        let ctx = load(&a.common).await?;
        refuse_locked_account(&ctx).await?;
        let actual = ctx.aws.read_actual(&ctx.desired).await?;
        refuse_missing_policies(&ctx, &actual).await?;
        let plan = plan::diff(&ctx.desired, &actual, &adopt(&a.common, &ctx));
        print_plan(
            &plan,
            a.output,
            &format!("Plan for cluster {}", ctx.bundle.config.cluster),
        );
        let (reads, writes) = ctx.aws.counts();
        status!("({reads} AWS reads, {writes} writes)");
        if a.detailed_exitcode && !plan.is_empty() {
            return Err(Exit(2).into());
        }
        Ok(())
    })?
}

fn confirm(what: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{what} needs confirmation but stdin is not a terminal: pass --auto-approve");
    }
    print!("{what}? Type 'yes' to continue: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

async fn execute(ctx: &Context_, plan: &Plan, format: Format, verb: &str) -> Result<()> {
    let total = plan.changes.len();
    let started = std::sync::atomic::AtomicUsize::new(0);
    let journal_error = std::sync::Mutex::new(None);
    let progress = |change: &plan::Change| {
        let i = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        status!("[{i}/{total}] {change}");
        if let (plan::Action::CreateBucket, Some(s3)) = (&change.action, &ctx.desired.s3) {
            if let Err(e) = journal::write(&ctx.bundle.dir, &s3.bucket) {
                if let Ok(mut slot) = journal_error.lock() {
                    *slot = Some(e);
                }
            }
        }
    };
    let failures = ctx
        .aws
        .execute_plan(&ctx.desired, &plan.changes, &progress)
        .await;
    if let Ok(Some(e)) = journal_error.into_inner() {
        tracing::warn!("cannot journal the bucket creation: {e:#}");
    }
    // The journal can go unless the bucket may exist untagged: creation
    // failed after reaching S3, or without a definite answer from it.
    let bucket_uncertain = failures
        .iter()
        .any(|(c, e)| e.may_leave_an_untagged_bucket(&c.action));
    if !bucket_uncertain {
        journal::clear(&ctx.bundle.dir);
    }
    if !failures.is_empty() {
        for (change, e) in &failures {
            status!("irsa: failed: {change}\n       {e}");
        }
        let count = failures.len();
        // The first AWS error in the chain: the process exits 3.
        if let Some((_, first)) = failures.into_iter().next() {
            return Err(anyhow::Error::new(first).context(format!(
                "{verb} stopped: {count} of {total} change(s) failed (see above); fix the cause and re-run: completed steps are not repeated"
            )));
        }
    }
    let (reads, writes) = ctx.aws.counts();
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"changes": total, "reads": reads, "writes": writes, "conflicts": plan.conflicts, "withheld": plan.withheld})
        );
    } else {
        println!(
            "{verb} complete: {total} change(s), {writes} AWS write call(s), {reads} read call(s)."
        );
    }
    Ok(())
}

/// Runs `irsa apply`.
pub fn apply(a: ApplyArgs) -> Result<()> {
    crate::net::rt::block_on(async {
        let mut ctx = load(&a.common).await?;
        refuse_locked_account(&ctx).await?;
        let mut approved = a.auto_approve;
        if ctx.desired.url_pending {
            // CloudFront without a custom domain: the distribution first;
            // its name becomes the issuer URL, recorded before anything
            // that carries the issuer is published.
            apply_pass(&ctx, &a, &mut approved).await?;
            let actual = ctx.aws.read_actual(&ctx.desired).await?;
            let d = actual.distribution.context(
                "the CloudFront distribution is not found after creating it; run irsa apply again",
            )?;
            let url =
                IssuerUrl::parse(&format!("https://{}", d.domain_name)).with_context(|| {
                    format!("distribution {} has the name {:?}", d.id, d.domain_name)
                })?;
            let edit = ConfigEdit::open(&a.common.file)?;
            edit.commit(&yamledit::set_issuer_url(edit.text(), &url)?)?;
            status!(
                "recorded issuer.url: {url} (distribution {}) in {}; the documents, the OIDC provider, the roles and `irsa cluster config` use it",
                d.id,
                a.common.file.display()
            );
            ctx = load(&a.common).await?;
            // The local copies `init` could not render without the URL.
            ctx.bundle.write_documents(&ctx.bundle.render()?)?;
        }
        // A new distribution's ARN is what the bucket policy names: one
        // more pass once it exists.
        for _ in 0..2 {
            let plan = apply_pass(&ctx, &a, &mut approved).await?;
            if !plan
                .changes
                .iter()
                .any(|c| matches!(c.action, plan::Action::CreateDistribution))
            {
                break;
            }
        }
        Ok(())
    })?
}

/// Reads, plans, asks (once per apply) and executes; fails on conflicts.
async fn apply_pass(ctx: &Context_, a: &ApplyArgs, approved: &mut bool) -> Result<Plan> {
    let actual = ctx.aws.read_actual(&ctx.desired).await?;
    refuse_missing_policies(ctx, &actual).await?;
    let plan = plan::diff(&ctx.desired, &actual, &adopt(&a.common, ctx));
    if a.output == Format::Text {
        print_plan(
            &plan,
            a.output,
            &format!("Plan for cluster {}", ctx.bundle.config.cluster),
        );
    }
    if !plan.is_empty() && !*approved {
        if !confirm("Apply these changes")? {
            bail!("apply cancelled; nothing was changed");
        }
        *approved = true;
    }
    execute(ctx, &plan, a.output, "apply").await?;
    conflicts_fail(&plan)?;
    Ok(plan)
}

fn conflicts_fail(plan: &Plan) -> Result<()> {
    if plan.conflicts.is_empty() {
        Ok(())
    } else {
        status!(
            "irsa: {} resource(s) were left alone (see ! above)",
            plan.conflicts.len()
        );
        Err(Exit::CHECKS_FAILED.into())
    }
}

/// Runs `irsa destroy`.
pub fn destroy(a: ApplyArgs) -> Result<()> {
    crate::net::rt::block_on(async {
        let ctx = load(&a.common).await?;
        let actual = ctx.aws.read_actual(&ctx.desired).await?;
        let ours: BTreeSet<String> = ctx.desired.objects.keys().cloned().collect();
        let empty_after = match &ctx.desired.s3 {
            Some(s3) => !ctx.aws.bucket_has_other_objects(&s3.bucket, &ours).await?,
            None => false,
        };
        let plan = plan::destroy(&ctx.desired, &actual, empty_after);
        if a.output == Format::Text {
            print_plan(
                &plan,
                a.output,
                &format!("Destroy for cluster {}", ctx.bundle.config.cluster),
            );
        }
        if !plan.is_empty() && !a.auto_approve && !confirm("Destroy these resources")? {
            bail!("destroy cancelled; nothing was changed");
        }
        execute(&ctx, &plan, a.output, "destroy").await?;
        if !plan.withheld.is_empty() {
            status!(
                "irsa: destroy is not complete: {} step(s) held back so that no trust is left pointing at hosting anyone could re-create (see ! above)",
                plan.withheld.len()
            );
            return Err(Exit::CHECKS_FAILED.into());
        }
        Ok(())
    })?
}
