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
use irsa_core::checks::{Report, Status};
use irsa_core::diagnosis;
use irsa_core::jwt::{self, VerifyOptions};
use irsa_core::served;
use irsa_core::{IrsaConfig, IssuerUrl};

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
    iss: &str,
    token: &str,
    audience: &str,
    bodies: &mut ServedBodies,
) -> Option<()> {
    let issuer = match IssuerUrl::parse(iss) {
        Ok(u) => u,
        Err(e) => {
            r.fail(
                "discovery: reachable over HTTPS",
                format!("the token's iss {iss:?} is not an issuer URL STS accepts: {e}"),
                "set the apiserver's --service-account-issuer to the https URL irsa.yaml names (`irsa cluster config`)",
            );
            return None;
        }
    };
    let walked = served::walk(r, &issuer, ("discovery", "jwks"), &mut |url| {
        fetcher.get(url)
    });
    bodies.discovery = walked.discovery_body;
    bodies.jwks = walked.jwks_body;
    let jwks = walked.jwks?;
    let opts = VerifyOptions {
        issuer: iss.to_string(),
        audience: audience.to_string(),
        now: crate::cmd::now(),
        leeway: irsa_core::jwt::DEFAULT_LEEWAY,
    };
    match jwt::verify(token, &jwks, &opts) {
        Ok(_) => {
            r.pass(
                "jwks: token kid published and signature verifies",
                "the published key verifies the token",
            );
            Some(())
        }
        Err(e) => {
            r.fail(
                "jwks: token kid published and signature verifies",
                e.to_string(),
                diagnosis::jwt_fix(&e),
            );
            None
        }
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
    let decoded = match jwt::decode(token) {
        Ok(d) => d,
        Err(e) => {
            r.fail(
                "token: decodes",
                e.to_string(),
                "pass the token file's content (a JWT with three dot-separated parts)",
            );
            return Ok(());
        }
    };
    let iss = decoded.claim_str("iss").unwrap_or_default().to_string();
    let sub = decoded.claim_str("sub").unwrap_or_default().to_string();
    let aud = decoded.audiences();
    let exp = decoded.claim_time("exp").unwrap_or(0);
    let now = crate::cmd::now();
    r.check(
        exp > now - 60,
        "token: not expired",
        format!("{sub}, audience {aud:?}, expires in {} s", exp - now),
        format!("expired {} s ago", now - exp),
        "use a fresh token (kubelet refreshes projected tokens; the SDK must re-read the file)",
    );
    let clock = diagnosis::ClockFinding::of(
        decoded.claim_time("iat"),
        decoded.claim_time("nbf"),
        decoded.claim_time("exp"),
        now,
        60,
        just_issued,
    );
    match clock.explain() {
        None => r.pass(
            diagnosis::TOKEN_CLOCK,
            "iat and nbf are not ahead of this machine's clock",
        ),
        Some((detail, fix)) => r.fail(diagnosis::TOKEN_CLOCK, detail, fix),
    }
    match config {
        Some(cfg) => {
            let expected = cfg.issuer.url()?.as_str();
            let hint = if iss.trim_end_matches('/') == expected.trim_end_matches('/') {
                " (they differ only by a trailing slash)"
            } else {
                ""
            };
            r.check(
                iss == expected,
                "token: iss is the configured issuer",
                format!("iss {iss}"),
                format!("the token's iss is {iss:?} but irsa.yaml's issuer is {expected:?}{hint}"),
                format!("set kube-apiserver --service-account-issuer={expected} exactly (`irsa cluster config` renders it), or fix issuer.url"),
            );
        }
        None => r.pass(
            "token: iss",
            format!("iss {iss} (no irsa.yaml to compare with)"),
        ),
    }
    let role_elsewhere = match (config, role_arn) {
        (Some(cfg), Some(arn)) => binding_link(r, cfg, &sub, arn, a.token.is_some()),
        _ => false,
    };
    let rendered = bundle.and_then(|b| publish::render(r, b));
    if let Some(rendered) = &rendered {
        publish::bundle_key_link(r, token, rendered);
    }
    let audience = aud.first().cloned().unwrap_or_default();
    let fetcher = a.net.fetcher()?;
    let mut served = ServedBodies::default();
    // A trailing slash is the token link's fault (above); the documents
    // are still walked at the issuer without it.
    document_links(
        r,
        &fetcher,
        iss.trim_end_matches('/'),
        token,
        &audience,
        &mut served,
    );
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
    let host_path = iss
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let trust_fix = role_elsewhere.then(|| {
        format!(
            "the role is bound to another ServiceAccount (the line \"{}\"): name the right role rather than changing this one's trust policy",
            diagnosis::Link::RoleBound.name()
        )
    });
    let links = aws::RoleLinks {
        token,
        role_arn,
        host_path: &host_path,
        sub: &sub,
        aud: &aud,
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
    let link = finding.link().name();
    match status {
        Status::Pass => r.pass(link, detail),
        Status::Warn => r.warn(link, detail, fix),
        Status::Fail => r.fail(link, detail, fix),
    }
    finding.names_another_bindings_role()
}

#[cfg(test)]
mod tests {
    use super::aws::sts_diagnosis;
    use irsa_aws::{AwsError, StsRefusal};
    use irsa_core::arn::RoleArn;

    #[test]
    fn role_arns_and_sts_errors() {
        let arn = RoleArn::parse("arn:aws:iam::123456789012:role/irsa/prod/prod-app-web")
            .expect("a role ARN");
        assert_eq!(
            (arn.partition(), arn.account(), arn.name()),
            ("aws", "123456789012", "prod-app-web")
        );
        assert!(RoleArn::parse("arn:aws:iam::1234:role/x").is_err());
        assert!(RoleArn::parse("arn:aws:s3:::bucket").is_err());
        let refused = |refusal| AwsError::WebIdentityRefused {
            refusal,
            code: Some("InvalidIdentityToken".into()),
            message: String::new(),
        };
        for (refusal, link) in [
            (StsRefusal::NoProvider, "iam: OIDC provider"),
            (StsRefusal::Audience, "iam: provider client IDs"),
            (
                StsRefusal::TrustPolicy,
                "iam: trust policy admits the token",
            ),
            (StsRefusal::KeyUnavailable, "jwks: token kid published"),
            (StsRefusal::Expired, "token: not expired"),
            (
                StsRefusal::NotYetValid,
                "token: clocks of the apiserver and this machine agree",
            ),
            (StsRefusal::Other, "sts: AssumeRoleWithWebIdentity"),
        ] {
            assert_eq!(sts_diagnosis(&refused(refusal)).0, link, "{refusal:?}");
        }
        let other = AwsError::Unexpected("no assumed role user".into());
        assert_eq!(sts_diagnosis(&other).0, "sts: AssumeRoleWithWebIdentity");
    }
}
