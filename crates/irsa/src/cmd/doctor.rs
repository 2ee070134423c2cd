//! `irsa doctor`: walks the chain from a pod to STS and says, link by
//! link, what holds and what is broken, with the fix.
//!
//! Links, in order: the pod was mutated by the webhook → the
//! ServiceAccount carries a valid role ARN → a pod identity webhook is
//! installed → the TokenRequest API issues a token for the audience → the
//! token's `iss` is the configured issuer → the discovery document is
//! public JSON naming the same issuer → the JWKS is public JSON holding
//! the token's `kid` and the signature verifies → the IAM OIDC provider
//! exists with the audience as a client ID → the role's trust policy
//! admits the token (evaluated by irsa) → optionally STS itself.
//!
//! For a `mode: pod-identity` binding of irsa.yaml the walk is another
//! (`doctor/pod_identity.rs`): the association, the webhook's injection,
//! the pods' variables, the broker, and the role's trust for the broker.
//!
//! With irsa.yaml, two more links need no fetch of the issuer: the token's
//! kid and signature against the bundle's own keys, and, when the issuer
//! URL fails or serves other documents, the copies stored in the bucket,
//! read through the AWS API (`doctor/publish.rs`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use irsa_core::checks::Report;
use irsa_core::diagnosis::{self, token};
use irsa_core::served;
use irsa_core::IrsaConfig;

use crate::bundle::{Bundle, CONFIG_FILE};
use crate::exit::Exit;
use crate::fetch::{Fetcher, Network};
use crate::output::{print_report, Format};

mod aws;
mod cluster;
mod pod_identity;
mod publish;
mod signing;

use aws::aws_links;
use cluster::cluster_links;
use publish::ServedBodies;

/// Arguments of `irsa doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// irsa.yaml for the expected issuer (used when it exists).
    #[arg(short = 'f', long = "file", default_value = CONFIG_FILE)]
    pub file: PathBuf,
    /// Namespace of the pod or service account.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Service account to check.
    #[arg(short = 's', long = "service-account", conflicts_with_all = ["pod", "token"])]
    pub service_account: Option<String>,
    /// Pod to check (its service account is checked too).
    #[arg(long, conflicts_with = "token")]
    pub pod: Option<String>,
    /// With -s, judge only the ServiceAccount's pods matching this label selector.
    #[arg(short = 'l', long, conflicts_with_all = ["pod", "token"])]
    pub selector: Option<String>,
    /// With -s, judge at most this many pods (one list call).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_pods: u32,
    /// Check this token file instead of asking the cluster (no cluster access needed).
    #[arg(long, requires = "role_arn")]
    pub token: Option<PathBuf>,
    /// Role to check the token against (with --token; else from the ServiceAccount).
    #[arg(long)]
    pub role_arn: Option<String>,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Also call STS AssumeRoleWithWebIdentity with the token.
    #[arg(long)]
    pub assume: bool,
    /// Skip the AWS links (no credentials needed).
    #[arg(long)]
    pub no_aws: bool,
    /// AWS profile.
    #[arg(long, env = "AWS_PROFILE", help_heading = "AWS")]
    pub profile: Option<String>,
    /// AWS region.
    #[arg(long, help_heading = "AWS")]
    pub region: Option<String>,
    #[command(flatten)]
    pub net: Network,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

/// The issuer's documents, walked and judged as `irsa validate --issuer`
/// does (`irsa_core::served::walk`), then the token checked against the
/// JWKS served.
fn document_links(
    r: &mut Report,
    fetcher: &Fetcher,
    token: &str,
    claims: &token::Claims,
    bodies: &mut ServedBodies,
) {
    let Some(issuer) = token::issuer_to_walk(r, &claims.iss) else {
        return;
    };
    let walked = served::walk(r, &issuer, ("discovery", "jwks"), &mut |url| {
        fetcher.get(url)
    });
    bodies.discovery = walked.discovery_body;
    bodies.jwks = walked.jwks_body;
    if let Some(jwks) = walked.jwks {
        token::served_jwks_verifies(r, token, claims, &jwks, crate::cmd::now());
    }
}

/// Runs `irsa doctor`.
pub fn run(a: DoctorArgs) -> Result<()> {
    let bundle: Option<Bundle> = if a.file.exists() {
        Some(Bundle::load_file(&a.file)?)
    } else {
        None
    };
    let mut r = Report::default();
    // A pod-identity binding has links of its own (no web identity token).
    let pod_identity = bundle.as_ref().and_then(|b| {
        let sa = a.service_account.as_deref()?;
        b.config
            .bindings
            .iter()
            .find(|x| x.is_pod_identity() && x.namespace == a.namespace && x.service_account == sa)
            .map(|binding| (&b.config, binding))
    });
    match pod_identity {
        Some((config, binding)) => pod_identity::links(&mut r, &a, config, binding)?,
        None => web_identity_links(&mut r, &a, bundle.as_ref())?,
    }
    print_report(&r, a.output);
    if r.failed() {
        return Err(Exit::CHECKS_FAILED.into());
    }
    Ok(())
}

/// The walk for a token: from the cluster (or `--token`) to STS.
fn web_identity_links(r: &mut Report, a: &DoctorArgs, bundle: Option<&Bundle>) -> Result<()> {
    // A token from the TokenRequest API was issued a moment ago: if it
    // looks expired, the clocks disagree.
    let (token, role_arn, just_issued) = match &a.token {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --token {}", path.display()))?;
            (Some(token.trim().to_string()), a.role_arn.clone(), false)
        }
        None => {
            let found = crate::net::rt::block_on(cluster_links(a, r))??;
            match found {
                Some(f) => (Some(f.token), a.role_arn.clone().or(Some(f.role_arn)), true),
                None => (None, None, false),
            }
        }
    };
    signing::signing_link(r, a, bundle, token.as_deref().filter(|_| just_issued));
    if let Some(token) = token {
        let links = TokenLinks {
            bundle,
            token: &token,
            role_arn: role_arn.as_deref(),
            just_issued,
        };
        token_links(r, a, &links)?;
    }
    Ok(())
}

/// The token doctor examines and what it knows about it.
struct TokenLinks<'a> {
    bundle: Option<&'a Bundle>,
    token: &'a str,
    role_arn: Option<&'a str>,
    /// Issued by the TokenRequest API during this run.
    just_issued: bool,
}

fn token_links(r: &mut Report, a: &DoctorArgs, links: &TokenLinks<'_>) -> Result<()> {
    let TokenLinks {
        bundle,
        token,
        role_arn,
        just_issued,
    } = *links;
    let config: Option<&IrsaConfig> = bundle.map(|b| &b.config);
    let expected = match config {
        Some(cfg) => Some(cfg.issuer.url()?.as_str()),
        None => None,
    };
    let cx = token::Context {
        now: crate::cmd::now(),
        issuer: expected,
        just_issued,
    };
    let Some(claims) = token::claims(r, token, cx) else {
        return Ok(());
    };
    let (iss, sub) = (claims.iss.as_str(), claims.sub.as_str());
    let role_elsewhere = match (config, role_arn) {
        (Some(cfg), Some(arn)) => binding_link(r, cfg, sub, arn, a.token.is_some()),
        _ => false,
    };
    let rendered = bundle.and_then(|b| publish::render(r, b));
    if let Some(rendered) = &rendered {
        publish::bundle_key_link(r, token, rendered);
    }
    let fetcher = a.net.fetcher()?;
    let mut served = ServedBodies::default();
    document_links(r, &fetcher, token, &claims, &mut served);
    // The documents at the token's issuer are irsa.yaml's only when the
    // token names irsa.yaml's issuer (else that link has failed already).
    if let (Some(bundle), Some(rendered)) = (bundle, &rendered) {
        if bundle.config.issuer.url().is_ok_and(|u| iss == u.as_str()) {
            publish::publication_link(r, a, bundle, rendered, &served)?;
        }
    }
    if a.no_aws {
        return Ok(());
    }
    let Some(role_arn) = role_arn else {
        return Ok(());
    };
    let trust_fix = role_elsewhere.then(|| {
        format!(
            "the role is bound to another ServiceAccount (the line \"{}\"): name the right role rather than changing this one's trust policy",
            diagnosis::Link::RoleBound.name()
        )
    });
    let links = aws::RoleLinks {
        token,
        role_arn,
        host_path: claims.host_path(),
        sub,
        aud: &claims.aud,
        trust_fix,
    };
    aws_links(r, a, &links)
}

/// Whether the role named for the token's ServiceAccount is the one
/// irsa.yaml binds to it (`from_flag`: the role came from `--role-arn`,
/// else from the annotation). Returns whether it is another binding's role.
fn binding_link(
    r: &mut Report,
    cfg: &IrsaConfig,
    sub: &str,
    role_arn: &str,
    from_flag: bool,
) -> bool {
    let (Some((ns, sa)), Ok(named)) = (
        diagnosis::subject_of(sub),
        irsa_core::arn::RoleArn::parse(role_arn),
    ) else {
        return false;
    };
    let finding = diagnosis::judge_binding(&cfg.cluster, &cfg.bindings, ns, sa, &named);
    let source = if from_flag {
        diagnosis::RoleSource::RoleArnFlag
    } else {
        diagnosis::RoleSource::Annotation
    };
    let (status, detail, fix) = finding.explain(source);
    r.record(finding.link().name(), status, detail, fix);
    finding.names_another_bindings_role()
}

#[cfg(test)]
mod tests {
    use super::aws::sts_refusal;
    use irsa_aws::{AwsError, StsRefusal};

    #[test]
    fn sts_errors_name_their_refusal() {
        for refusal in [
            StsRefusal::NoProvider,
            StsRefusal::Audience,
            StsRefusal::Other,
        ] {
            let refused = AwsError::WebIdentityRefused {
                refusal,
                code: Some("InvalidIdentityToken".into()),
                message: String::new(),
            };
            assert_eq!(sts_refusal(&refused), refusal);
        }
        let other = AwsError::Unexpected("no assumed role user".into());
        assert_eq!(sts_refusal(&other), StsRefusal::Other);
    }
}
