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

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_aws::{AwsError, StsRefusal};
use irsa_core::checks::Report;
use irsa_core::diagnosis;
use irsa_core::issuer::DISCOVERY_PATH;
use irsa_core::jwt::{self, VerifyOptions};
use irsa_core::mutate::VOLUME_NAME as TOKEN_VOLUME;
use irsa_core::served::{self, Document, Rule};
use irsa_core::trust::{self, Request};
use irsa_core::{IrsaConfig, Jwks};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};

use crate::bundle::{Bundle, CONFIG_FILE};
use crate::fetch::{Fetched, Fetcher, Network};
use crate::output::{print_report, Format};
use crate::Exit;

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

const TOKEN_ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
const TOKEN_ENV_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";
const DEFAULT_AUDIENCE: &str = irsa_core::config::DEFAULT_AUDIENCE;

/// What the cluster links found.
struct FromCluster {
    token: String,
    role_arn: String,
}

/// Whether `arn` looks like an IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
pub fn parse_role_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(":iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    let ok = matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && !name.is_empty();
    ok.then_some((partition, account, name))
}

async fn cluster_links(a: &DoctorArgs, r: &mut Report) -> Result<Option<FromCluster>> {
    let client = crate::k8s::client(a.kubeconfig.as_deref()).await.context(
        "doctor needs cluster access for these links; without it use --token FILE --role-arn ARN",
    )?;
    let ns = &a.namespace;
    let mut sa_name = a.service_account.clone();
    if let Some(pod_name) = &a.pod {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        match pods.get_opt(pod_name).await {
            Ok(Some(pod)) => {
                let spec = pod.spec.unwrap_or_default();
                sa_name = Some(
                    spec.service_account_name
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                );
                let has_volume = spec
                    .volumes
                    .as_ref()
                    .is_some_and(|v| v.iter().any(|v| v.name == TOKEN_VOLUME));
                let unmutated: Vec<String> = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .filter(|c| {
                        let env = c.env.as_deref().unwrap_or_default();
                        !env.iter().any(|e| e.name == TOKEN_ENV_ROLE_ARN)
                            || !env.iter().any(|e| e.name == TOKEN_ENV_FILE)
                    })
                    .map(|c| c.name.clone())
                    .collect();
                r.check(
                    has_volume && unmutated.is_empty(),
                    "pod: mutated by the webhook",
                    format!("{ns}/{pod_name}: {TOKEN_ENV_ROLE_ARN}, {TOKEN_ENV_FILE} and volume {TOKEN_VOLUME} present"),
                    format!("{ns}/{pod_name}: volume {TOKEN_VOLUME} {}, containers without the env vars: {unmutated:?}", if has_volume { "present" } else { "missing" }),
                    "pods are mutated only when created: make sure the webhook is installed and the ServiceAccount annotated (below), then delete the pod so its controller recreates it (kubectl rollout restart)",
                );
            }
            Ok(None) => {
                r.fail(
                    "pod: exists",
                    format!("no pod {ns}/{pod_name}"),
                    "check the name and namespace (-n)",
                );
                return Ok(None);
            }
            Err(e) => bail!("cannot read pod {ns}/{pod_name}: {e}"),
        }
    }
    let sa_name = sa_name.context("pass --service-account, --pod, or --token with --role-arn")?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa = match sas.get_opt(&sa_name).await {
        Ok(Some(sa)) => sa,
        Ok(None) => {
            r.fail(
                "serviceaccount: exists",
                format!("no ServiceAccount {ns}/{sa_name}"),
                format!("create it: `irsa bind -n {ns} -s {sa_name} ...` prints the manifest"),
            );
            return Ok(None);
        }
        Err(e) => bail!("cannot read ServiceAccount {ns}/{sa_name}: {e}"),
    };
    let annotations = sa.metadata.annotations.clone().unwrap_or_default();
    let role_arn = match annotations.get(ROLE_ANNOTATION) {
        Some(arn) if parse_role_arn(arn).is_some() => {
            r.pass(
                "serviceaccount: role-arn annotation",
                format!("{ns}/{sa_name}: {arn}"),
            );
            Some(arn.clone())
        }
        Some(arn) => {
            r.fail(
                "serviceaccount: role-arn annotation",
                format!("{ROLE_ANNOTATION} is {arn:?}, not a role ARN"),
                "set it to arn:aws:iam::ACCOUNT:role/[PATH/]NAME (`irsa bind` prints the exact value)",
            );
            None
        }
        None => {
            r.fail(
                "serviceaccount: role-arn annotation",
                format!("{ns}/{sa_name} has no {ROLE_ANNOTATION} annotation, so the webhook leaves its pods alone"),
                format!("kubectl annotate serviceaccount -n {ns} {sa_name} {ROLE_ANNOTATION}=arn:aws:iam::ACCOUNT:role/... (or `irsa bind -n {ns} -s {sa_name}`)"),
            );
            None
        }
    };
    let audience = annotations
        .get(AUDIENCE_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| DEFAULT_AUDIENCE.to_string());
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    match hooks.list(&ListParams::default()).await {
        Ok(list) => {
            let found: Vec<String> =
                list.items
                    .iter()
                    .filter(|c| {
                        c.webhooks.iter().flatten().any(|w| {
                            w.rules.iter().flatten().any(|rule| {
                                rule.resources
                                    .as_ref()
                                    .is_some_and(|res| res.iter().any(|x| x == "pods" || x == "*"))
                                    && rule.operations.as_ref().is_some_and(|ops| {
                                        ops.iter().any(|o| o == "CREATE" || o == "*")
                                    })
                            }) && (w.name.contains("pod-identity")
                                || w.name.contains("irsa")
                                || c.metadata.name.as_deref().is_some_and(|n| {
                                    n.contains("pod-identity") || n.contains("irsa")
                                }))
                        })
                    })
                    .filter_map(|c| c.metadata.name.clone())
                    .collect();
            r.check(
                !found.is_empty(),
                "webhook: installed",
                format!("MutatingWebhookConfiguration {found:?} mutates pods on create"),
                "no pod identity webhook is registered: pods get no token volume or AWS_* env vars",
                "install it: `irsa webhook certs ...` then `irsa webhook manifests ... | kubectl apply -f -` (see README, \"irsa webhook\")",
            );
        }
        Err(e) => r.warn(
            "webhook: installed",
            format!("cannot list MutatingWebhookConfigurations: {e}"),
            "run doctor with a kubeconfig allowed to list admissionregistration.k8s.io objects",
        ),
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.clone()],
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = match sas
        .create_token_request(&sa_name, &PostParams::default(), &request)
        .await
    {
        Ok(t) => t.status.map(|s| s.token),
        Err(e) => {
            r.fail(
                "token: TokenRequest",
                format!("the apiserver did not issue a token for {ns}/{sa_name} with audience {audience}: {e}"),
                "the apiserver needs --service-account-signing-key-file and --service-account-issuer (`irsa cluster config`)",
            );
            None
        }
    };
    let Some(token) = token else {
        return Ok(None);
    };
    r.pass(
        "token: TokenRequest",
        format!("token issued for {ns}/{sa_name}, audience {audience}"),
    );
    Ok(role_arn.map(|role_arn| FromCluster { token, role_arn }))
}

/// Judges a fetched document with the rules `irsa validate` applies too,
/// under doctor's link names.
fn served_links(r: &mut Report, document: Document, fetched: &Fetched) -> bool {
    let link = match document {
        Document::Discovery => "discovery",
        Document::Jwks => "jwks",
    };
    served::record(r, document, &fetched.served(), |rule| match rule {
        Rule::Status => format!("{link}: reachable over HTTPS"),
        Rule::ContentType => format!("{link}: Content-Type application/json"),
        Rule::CacheControl => format!("{link}: caching headers"),
        Rule::Body => format!("{link}: served body"),
    })
}

fn document_links(
    r: &mut Report,
    fetcher: &Fetcher,
    iss: &str,
    token: &str,
    audience: &str,
) -> Option<()> {
    let discovery_url = format!("{iss}/{DISCOVERY_PATH}");
    let fetched = match fetcher.get(&discovery_url) {
        Ok(f) => f,
        Err(e) => {
            r.fail(
                "discovery: reachable over HTTPS",
                format!("GET {discovery_url}: {e}"),
                "STS fetches this URL from the internet: serve it over HTTPS with a publicly trusted certificate (`irsa apply` publishes to S3)",
            );
            return None;
        }
    };
    if !served_links(r, Document::Discovery, &fetched) {
        return None;
    }
    let doc: serde_json::Value = match serde_json::from_str(&fetched.body) {
        Ok(v) => v,
        Err(e) => {
            r.fail(
                "discovery: issuer matches the token",
                format!("not JSON: {e}"),
                "re-publish with `irsa render` and `irsa apply`",
            );
            return None;
        }
    };
    let doc_issuer = doc["issuer"].as_str().unwrap_or_default();
    r.check(
        doc_issuer == iss,
        "discovery: issuer matches the token",
        format!("issuer {doc_issuer}"),
        format!("the document says issuer {doc_issuer:?}, the token says {iss:?}"),
        "they must be byte-equal (a trailing slash counts): regenerate the documents from the apiserver's --service-account-issuer",
    );
    let jwks_uri = doc["jwks_uri"].as_str().unwrap_or_default().to_string();
    let fetched = match fetcher.get(&jwks_uri) {
        Ok(f) => f,
        Err(e) => {
            r.fail(
                "jwks: reachable over HTTPS",
                format!("GET {jwks_uri}: {e}"),
                "serve the JWKS over HTTPS at jwks_uri",
            );
            return None;
        }
    };
    if !served_links(r, Document::Jwks, &fetched) {
        return None;
    }
    let jwks = match Jwks::from_json(&fetched.body) {
        Ok(j) => j,
        Err(e) => {
            r.fail(
                "jwks: token kid published",
                format!("the JWKS does not parse: {e}"),
                "re-publish it: `irsa render` then `irsa apply`",
            );
            return None;
        }
    };
    let opts = VerifyOptions {
        issuer: iss.to_string(),
        audience: audience.to_string(),
        now: crate::cmd::now(),
        leeway: 60,
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

/// Maps an STS refusal to the link it points at and its fix.
pub fn sts_diagnosis(error: &AwsError) -> (&'static str, &'static str) {
    match error {
        AwsError::WebIdentityRefused { refusal, .. } => refusal.diagnosis(),
        _ => StsRefusal::Other.diagnosis(),
    }
}

fn aws_links(
    r: &mut Report,
    a: &DoctorArgs,
    token: &str,
    role_arn: &str,
    host_path: &str,
    sub: &str,
    aud: &[String],
) -> Result<()> {
    let Some((partition, account, role_name)) = parse_role_arn(role_arn) else {
        r.fail(
            "iam: role ARN",
            format!("{role_arn:?} is not a role ARN"),
            "use arn:aws:iam::ACCOUNT:role/[PATH/]NAME",
        );
        return Ok(());
    };
    let provider_arn = format!("arn:{partition}:iam::{account}:oidc-provider/{host_path}");
    crate::rt::block_on(async {
        let aws = irsa_aws::Aws::connect(&irsa_aws::Connect {
            profile: a.profile.clone(),
            region: a.region.clone(),
            parallelism: 1,
        })
        .await;
        match aws.find_provider(host_path).await {
            Ok(Some(p)) => {
                r.pass("iam: OIDC provider", format!("{} exists", p.arn));
                let missing: Vec<&String> = aud.iter().filter(|x| !p.client_ids.contains(*x)).collect();
                r.check(
                    missing.is_empty(),
                    "iam: provider client IDs",
                    format!("client IDs {:?} include the token's audience", p.client_ids),
                    format!("the token's audience {missing:?} is not among the client IDs {:?} (STS: \"Incorrect token audience\")", p.client_ids),
                    "add it: set the binding's `audience:` in irsa.yaml and `irsa apply`, or request the token with audience sts.amazonaws.com",
                );
                if p.arn != provider_arn {
                    r.warn("iam: OIDC provider", format!("the provider is {} but the role is in account {account}", p.arn), "the provider must be in the role's account");
                }
            }
            Ok(None) => r.fail(
                "iam: OIDC provider",
                format!("no IAM OIDC provider for {host_path} (STS: \"No OpenIDConnect provider found\")"),
                format!("create it: `irsa apply` (provider URL https://{host_path}, no trailing slash)"),
            ),
            Err(e) => r.warn("iam: OIDC provider", format!("cannot read IAM: {e}"), "run doctor with credentials allowed iam:ListOpenIDConnectProviders and iam:GetOpenIDConnectProvider, or pass --no-aws"),
        }
        match aws.role(role_name).await {
            Ok(Some(role)) => {
                let req = Request {
                    provider_arn: &provider_arn,
                    host_path,
                    sub,
                    aud,
                };
                match trust::evaluate(&role.trust, &req) {
                    Ok(()) => r.pass("iam: trust policy admits the token", format!("role {role_name} trusts {sub}")),
                    Err(reasons) => r.fail(
                        "iam: trust policy admits the token",
                        reasons.join("; "),
                        "fix the trust policy: `irsa plan` shows the repair for roles irsa manages (condition keys are host/path:sub without https://)",
                    ),
                }
            }
            Ok(None) => r.fail(
                "iam: role exists",
                format!("no role {role_name}"),
                "create it: add the binding (`irsa bind`) and `irsa apply`",
            ),
            Err(e) => r.warn(
                "iam: trust policy admits the token",
                format!("cannot read the role: {e}"),
                "run doctor with iam:GetRole permission, or pass --no-aws",
            ),
        }
        if a.assume {
            match aws.assume_role_with_web_identity(role_arn, token).await {
                Ok(arn) => r.pass("sts: AssumeRoleWithWebIdentity", format!("assumed {arn}")),
                Err(e) => {
                    let (link, fix) = sts_diagnosis(&e);
                    r.fail(
                        "sts: AssumeRoleWithWebIdentity",
                        format!("{e} (broken link: {link})"),
                        fix,
                    );
                }
            }
        }
        Ok(())
    })?
}

/// Runs `irsa doctor`.
pub fn run(a: DoctorArgs) -> Result<()> {
    let config: Option<IrsaConfig> = if a.file.exists() {
        Some(Bundle::load_file(&a.file)?.config)
    } else {
        None
    };
    let mut r = Report::default();
    let (token, role_arn) = match &a.token {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --token {}", path.display()))?;
            (Some(token.trim().to_string()), a.role_arn.clone())
        }
        None => {
            let found = crate::rt::block_on(cluster_links(&a, &mut r))??;
            match found {
                Some(f) => (Some(f.token), a.role_arn.clone().or(Some(f.role_arn))),
                None => (None, None),
            }
        }
    };
    if let Some(token) = token {
        token_links(&mut r, &a, config.as_ref(), &token, role_arn.as_deref())?;
    }
    print_report(&r, a.output);
    if r.failed() {
        return Err(Exit::CHECKS_FAILED.into());
    }
    Ok(())
}

fn token_links(
    r: &mut Report,
    a: &DoctorArgs,
    config: Option<&IrsaConfig>,
    token: &str,
    role_arn: Option<&str>,
) -> Result<()> {
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
    match config {
        Some(cfg) => {
            let expected = cfg.issuer.url.as_str();
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
    let audience = aud.first().cloned().unwrap_or_default();
    let fetcher = a.net.fetcher()?;
    if !iss.starts_with("https://") {
        r.fail(
            "discovery: reachable over HTTPS",
            format!("iss {iss:?} is not an https:// URL"),
            "STS accepts https issuers only",
        );
    } else {
        document_links(r, &fetcher, iss.trim_end_matches('/'), token, &audience);
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
    aws_links(r, a, token, role_arn, &host_path, &sub, &aud)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_and_sts_errors() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/irsa/prod/prod-app-web"),
            Some(("aws", "123456789012", "prod-app-web"))
        );
        assert!(parse_role_arn("arn:aws:iam::1234:role/x").is_none());
        assert!(parse_role_arn("arn:aws:s3:::bucket").is_none());
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
            (StsRefusal::Other, "sts: AssumeRoleWithWebIdentity"),
        ] {
            assert_eq!(sts_diagnosis(&refused(refusal)).0, link, "{refusal:?}");
        }
        let other = AwsError::Unexpected("no assumed role user".into());
        assert_eq!(sts_diagnosis(&other).0, "sts: AssumeRoleWithWebIdentity");
    }
}
