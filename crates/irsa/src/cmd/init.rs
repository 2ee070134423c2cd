//! `irsa init` and `irsa demo`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_core::config::{
    Binding, IrsaConfig, IssuerConfig, KeyConfig, KeyState, API_VERSION, KIND,
};
use irsa_core::hosting::CloudFrontConfig;
use irsa_core::{Algorithm, IssuerUrl, JwksPath, PrivateKey, S3Location};

use crate::bundle::{Bundle, CONFIG_FILE, ISSUER_DIR};
use crate::fsutil;

/// Private key path inside a bundle.
pub const PRIVATE_KEY_FILE: &str = "keys/sa-signer.key";
/// Public key path inside a bundle.
pub const PUBLIC_KEY_FILE: &str = "keys/sa-signer.pub";

/// Arguments of `irsa init`.
#[derive(Args)]
pub struct InitArgs {
    /// Cluster name (lower-case letters, digits, '-'); prefixes role names.
    #[arg(long)]
    pub cluster: String,
    /// Issuer URL when the documents are served by something other than S3 (https, no trailing slash).
    #[arg(long, help_heading = "Issuer")]
    pub issuer: Option<String>,
    /// S3 bucket that will serve the issuer documents.
    #[arg(long, help_heading = "Issuer", requires = "region")]
    pub bucket: Option<String>,
    /// Region of the S3 bucket.
    #[arg(long, help_heading = "Issuer", requires = "bucket")]
    pub region: Option<String>,
    /// Key prefix inside the bucket (e.g. the cluster name).
    #[arg(long, help_heading = "Issuer", default_value = "", requires = "bucket")]
    pub prefix: String,
    /// How the bucket serves the documents: `s3` (a public-read bucket) or
    /// `cloudfront` (a private bucket behind a CloudFront distribution, for
    /// accounts that block public access).
    #[arg(long, help_heading = "Issuer", default_value = "s3", value_parser = ["s3", "cloudfront"], requires = "bucket")]
    pub hosting: String,
    /// CloudFront mode: a custom domain you own (DNS to the distribution);
    /// without one the issuer is the distribution's *.cloudfront.net name,
    /// recorded by the first `irsa apply`.
    #[arg(long, help_heading = "Issuer", requires = "certificate_arn")]
    pub domain: Option<String>,
    /// CloudFront mode: the ACM certificate (in us-east-1) for --domain.
    #[arg(long, help_heading = "Issuer", requires = "domain")]
    pub certificate_arn: Option<String>,
    /// Path of the JWKS under the issuer.
    #[arg(long, help_heading = "Issuer", default_value = "openid/v1/jwks", value_parser = parse_jwks_path)]
    pub jwks_path: JwksPath,
    /// Directory of the bundle.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Signing algorithm of the new key.
    #[arg(long, default_value = "RS256", value_parser = parse_init_alg)]
    pub algorithm: Algorithm,
    /// Replace an existing irsa.yaml, key pair and documents.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `irsa demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Directory to create (must not exist or be empty); default: a new ./irsa-demo[-N].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn parse_jwks_path(s: &str) -> Result<JwksPath, String> {
    match s {
        "openid/v1/jwks" => Ok(JwksPath::OpenidV1Jwks),
        "keys.json" => Ok(JwksPath::KeysJson),
        other => Err(format!(
            "{other:?} is not supported: use openid/v1/jwks or keys.json"
        )),
    }
}

fn parse_init_alg(s: &str) -> Result<Algorithm, String> {
    match crate::args::parse_alg(s)? {
        a @ (Algorithm::RS256 | Algorithm::ES256) => Ok(a),
        other => Err(format!(
            "{other} is not offered by init: use RS256 or ES256 (or `irsa keys generate`)"
        )),
    }
}

/// What `init` produced, for the summary.
pub struct Created {
    /// The bundle.
    pub bundle: Bundle,
    /// The new key's kid.
    pub kid: String,
}

/// Creates a bundle; checks everything before writing anything.
pub fn create(a: &InitArgs, bindings: Vec<Binding>) -> Result<Created> {
    let s3 = match (&a.bucket, &a.region) {
        (Some(b), Some(r)) => Some(S3Location::new(b, r, &a.prefix)?),
        _ => None,
    };
    let cloudfront = (a.hosting == "cloudfront").then(|| CloudFrontConfig {
        aliases: a.domain.iter().cloned().collect(),
        certificate_arn: a.certificate_arn.clone(),
    });
    if cloudfront.is_none() && (a.domain.is_some() || a.certificate_arn.is_some()) {
        bail!(
            "--domain and --certificate-arn are for the CloudFront mode: add --hosting cloudfront"
        );
    }
    let url = match (&a.issuer, &s3, &cloudfront) {
        (Some(_), _, Some(_)) => bail!("--issuer cannot be combined with --hosting cloudfront: the issuer is https://DOMAIN with --domain, else the distribution's name that irsa apply records"),
        (Some(u), _, None) => Some(IssuerUrl::parse(u)?),
        (None, Some(_), Some(cf)) => match &a.domain {
            Some(d) => Some(IssuerUrl::parse(&format!("https://{d}"))?),
            None => cf.alias_url(),
        },
        (None, Some(s3), None) => Some(IssuerUrl::for_s3(s3)),
        (None, None, _) => bail!("no issuer: pass --bucket B --region R [--prefix P] to serve from S3, or --issuer https://HOST/PATH"),
    };
    let now = irsa_core::Timestamp::saturating_from_unix(crate::cmd::now());
    let config = IrsaConfig {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        cluster: a.cluster.clone(),
        issuer: IssuerConfig {
            url,
            s3,
            cloudfront,
            jwks_path: a.jwks_path,
            previous_urls: Vec::new(),
        },
        keys: vec![KeyConfig {
            public_key: PUBLIC_KEY_FILE.into(),
            private_key: Some(PRIVATE_KEY_FILE.into()),
            algorithm: a.algorithm,
            state: KeyState::Active,
            created: Some(now),
            activated: Some(now),
            deactivated: None,
            first_observed: None,
        }],
        bindings,
        pod_identity: None,
    };
    config.validate()?;
    let bundle = Bundle {
        dir: a.dir.clone(),
        config,
    };
    let private_path = bundle.resolve(PRIVATE_KEY_FILE);
    let public_path = bundle.resolve(PUBLIC_KEY_FILE);
    let config_path = a.dir.join(CONFIG_FILE);
    let (disc, jwks) = (bundle.discovery_path(), bundle.jwks_path());
    fsutil::ensure_writable(
        &[&config_path, &private_path, &public_path, &disc, &jwks],
        a.force,
    )?;

    let key = PrivateKey::generate(a.algorithm, 2048)?;
    // No documents while the issuer URL is pending: none may carry a wrong issuer.
    let docs =
        irsa_core::documents::render(&bundle.config, &[(key.public_key().clone(), a.algorithm)])
            .ok();
    fsutil::write_atomic(&private_path, key.to_pem().as_bytes(), fsutil::PRIVATE)?;
    fsutil::write_atomic(
        &public_path,
        key.public_key().to_pem().as_bytes(),
        fsutil::PUBLIC,
    )?;
    fsutil::write_atomic(
        &a.dir.join("keys/.gitignore"),
        b"# never commit signing keys\n*.key\n",
        fsutil::PUBLIC,
    )?;
    if let Some(docs) = &docs {
        bundle.write_documents(docs)?;
    }
    fsutil::write_atomic(
        &config_path,
        bundle.config.to_yaml().as_bytes(),
        fsutil::PUBLIC,
    )?;
    Ok(Created {
        kid: key.public_key().kid().0,
        bundle,
    })
}

/// Runs `irsa init`.
pub fn init(a: InitArgs) -> Result<()> {
    let created = create(&a, Vec::new())?;
    print_summary(&created, false);
    Ok(())
}

fn free_demo_dir() -> PathBuf {
    let mut n = 1;
    loop {
        let dir = if n == 1 {
            PathBuf::from("irsa-demo")
        } else {
            PathBuf::from(format!("irsa-demo-{n}"))
        };
        if !dir.exists() {
            return dir;
        }
        n += 1;
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Runs `irsa demo`.
pub fn demo(a: DemoArgs) -> Result<()> {
    let dir = match a.dir {
        Some(d) if d.exists() && !is_empty_dir(&d) => {
            bail!("{} exists and is not empty; the demo only writes into a new directory: pass another --dir", d.display())
        }
        Some(d) => d,
        None => free_demo_dir(),
    };
    let args = InitArgs {
        cluster: "demo".into(),
        issuer: None,
        bucket: Some("irsa-demo-oidc".into()),
        region: Some("us-east-1".into()),
        prefix: "demo".into(),
        hosting: "s3".into(),
        domain: None,
        certificate_arn: None,
        jwks_path: JwksPath::OpenidV1Jwks,
        dir,
        algorithm: Algorithm::RS256,
        force: false,
    };
    let binding = Binding {
        namespace: "default".into(),
        service_account: "s3-echoer".into(),
        role_name: None,
        policy_arns: vec![irsa_core::arn::managed_policy(
            irsa_core::Partition::Aws,
            "AmazonS3ReadOnlyAccess",
        )],
        inline_policies: Default::default(),
        ..Binding::default()
    };
    let created = create(&args, vec![binding])?;
    let report = created
        .bundle
        .check(None)
        .context("validating the demo bundle")?
        .report;
    if report.failed() {
        crate::output::print_report(&report, crate::output::Format::Text);
        bail!("the demo bundle failed its own validation; this is a bug in irsa");
    }
    print_summary(&created, true);
    println!(
        "validated: {} checks passed (`irsa validate {}` to see them)",
        report.checks.len(),
        created.bundle.dir.display()
    );
    print_offline_plan(&created.bundle)?;
    Ok(())
}

/// The plan `irsa apply` would carry out in an empty account (no AWS call).
fn print_offline_plan(bundle: &Bundle) -> Result<()> {
    let desired = bundle.desired("123456789012")?;
    let plan = irsa_core::plan::diff(
        &desired,
        &irsa_core::plan::Actual::default(),
        &Default::default(),
    );
    println!();
    println!("Plan `irsa apply -f {}/irsa.yaml` would carry out in an empty AWS account (no credentials used):", bundle.dir.display());
    for change in &plan.changes {
        println!("  {change}");
    }
    Ok(())
}

fn print_summary(c: &Created, demo: bool) {
    let b = &c.bundle;
    let d = b.dir.display();
    let key = &b.config.keys[0];
    println!(
        "Created issuer bundle for cluster {:?} in {d}/",
        b.config.cluster
    );
    println!("  {d}/{CONFIG_FILE:<40} declarative config (issuer, keys, bindings)");
    println!(
        "  {d}/{PRIVATE_KEY_FILE:<40} signing key, {} (mode 0600, never commit)",
        key.algorithm
    );
    println!("  {d}/{PUBLIC_KEY_FILE:<40} public key, kid {}", c.kid);
    let rel = |p: &Path| {
        p.strip_prefix(&b.dir)
            .map(|r| r.display().to_string())
            .unwrap_or_default()
    };
    let Ok(url) = b.config.issuer.url() else {
        println!();
        println!("Issuer: not known yet: it is the name of the CloudFront distribution `irsa apply` creates; apply records it as issuer.url and then renders and publishes the documents.");
        println!();
        println!("Next steps:");
        println!("  1. irsa apply -f {d}/{CONFIG_FILE}   (creates the private bucket, the origin access control and the distribution, records the URL)");
        println!("  2. irsa cluster config -f {d}/{CONFIG_FILE} --flavour kubeadm -o {d}/cluster   (after step 1: it needs the URL)");
        return;
    };
    println!("  {d}/{:<40} discovery document", rel(&b.discovery_path()));
    println!("  {d}/{:<40} JWKS", rel(&b.jwks_path()));
    println!();
    println!("Issuer: {url}");
    for binding in &b.config.bindings {
        println!(
            "Binding: {}/{} -> role {} ({})",
            binding.namespace,
            binding.service_account,
            binding.role_name(&b.config.cluster),
            binding.policy_arns.join(", ")
        );
    }
    println!();
    println!("Next steps:");
    match (&b.config.issuer.s3, &b.config.issuer.cloudfront) {
        (Some(_), Some(_)) => println!(
            "  1. irsa apply -f {d}/{CONFIG_FILE} (private bucket, CloudFront distribution for {url}, documents); point your DNS name at the distribution"
        ),
        (Some(s3), None) => println!(
            "  1. publish {d}/{ISSUER_DIR}/ to s3://{}/{} with Content-Type application/json (irsa apply does this)",
            s3.bucket, s3.prefix
        ),
        (None, _) => println!("  1. serve {d}/{ISSUER_DIR}/ at {} over HTTPS as application/json", url),
    }
    println!("  2. give kube-apiserver the issuer and keys, rendered for your distribution (flags, kubeadm, kind, k3s, rke2, talos, vks, eks-anywhere):");
    println!("       irsa cluster config -f {d}/{CONFIG_FILE} --flavour kubeadm -o {d}/cluster");
    println!(
        "     (it sets --service-account-issuer={} and the key files)",
        url
    );
    println!(
        "  3. check what you serve: irsa validate {d} --issuer {}",
        url
    );
    println!("  4. bind service accounts (`irsa bind -n NS -s SA --policy-arn ARN`), `irsa apply`, then `irsa verify` and `irsa doctor`");
    if demo {
        println!("  (demo: bucket irsa-demo-oidc is a placeholder; run `irsa init --cluster NAME --bucket YOUR-BUCKET --region R` for a real cluster)");
    }
}
