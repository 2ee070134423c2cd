//! `irsa webhook serve | certs | manifests`.

use std::path::PathBuf;

use crate::args::IMAGE;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use irsa_core::b64;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::fsutil;
use crate::output::status;

/// Webhook commands.
#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Run the mutating admission webhook (drop-in for amazon-eks-pod-identity-webhook).
    ///
    /// A flag given twice takes its last value, as in the Go webhook.
    #[command(args_override_self = true, disable_version_flag = true)]
    Serve(crate::net::WebhookServe),
    /// Generate a CA and a serving certificate for the webhook Service.
    Certs(CertsArgs),
    /// Print the install manifests (kustomize base) with the caBundle filled in.
    Manifests(ManifestsArgs),
}

/// Arguments of `irsa webhook certs`.
#[derive(Args)]
pub struct CertsArgs {
    /// Service name.
    #[arg(long, default_value = "irsa-webhook")]
    pub service: String,
    /// Namespace of the Service.
    #[arg(long, default_value = "irsa-system")]
    pub namespace: String,
    /// Extra IP address SANs (e.g. 127.0.0.1 for a webhook reached by URL).
    #[arg(long)]
    pub ip: Vec<std::net::IpAddr>,
    /// Extra DNS SANs.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Directory for ca.crt, ca.key, tls.crt, tls.key (keys mode 0600).
    #[arg(long, default_value = "webhook-certs")]
    pub out_dir: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `irsa webhook manifests`.
#[derive(Args)]
pub struct ManifestsArgs {
    /// Directory written by `irsa webhook certs` (fills caBundle; the TLS Secret needs --include-private-key).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// With --cert-dir: print the TLS Secret with the serving key (tls.key) in it.
    #[arg(long, requires = "cert_dir")]
    pub include_private_key: bool,
    /// Namespace to install into.
    #[arg(long, default_value = "irsa-system")]
    pub namespace: String,
    /// Container image, e.g. one pushed to a private registry (the default is
    /// this release's image, as named in deploy/).
    #[arg(long, default_value = IMAGE, value_parser = crate::args::image_reference)]
    pub image: String,
    /// Region to inject as AWS_DEFAULT_REGION/AWS_REGION.
    #[arg(long)]
    pub aws_default_region: Option<String>,
}

/// The kustomize base, embedded so `manifests` needs no checkout.
const BASE: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../../../deploy/base/namespace.yaml"),
    ),
    (
        "serviceaccount.yaml",
        include_str!("../../../../deploy/base/serviceaccount.yaml"),
    ),
    (
        "rbac.yaml",
        include_str!("../../../../deploy/base/rbac.yaml"),
    ),
    (
        "deployment.yaml",
        include_str!("../../../../deploy/base/deployment.yaml"),
    ),
    ("pdb.yaml", include_str!("../../../../deploy/base/pdb.yaml")),
    (
        "service.yaml",
        include_str!("../../../../deploy/base/service.yaml"),
    ),
    (
        "mutatingwebhookconfiguration.yaml",
        include_str!("../../../../deploy/base/mutatingwebhookconfiguration.yaml"),
    ),
];

impl WebhookCommand {
    /// The log level the command line asks for besides `--log`: klog's
    /// `-v N` on `serve`.
    pub fn log_level(&self) -> Option<&'static str> {
        match self {
            WebhookCommand::Serve(settings) => crate::net::webhook_log_level(settings),
            _ => None,
        }
    }
}

/// Runs a webhook subcommand.
pub fn run(cmd: WebhookCommand) -> Result<()> {
    match cmd {
        WebhookCommand::Serve(settings) => crate::net::webhook_serve(settings),
        WebhookCommand::Certs(a) => certs(a),
        WebhookCommand::Manifests(a) => manifests(a),
    }
}

fn certs(a: CertsArgs) -> Result<()> {
    if a.days < 1 {
        bail!("--days must be at least 1");
    }
    let files = ["ca.crt", "ca.key", "tls.crt", "tls.key"].map(|f| a.out_dir.join(f));
    fsutil::ensure_writable(
        &files.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        a.force,
    )?;
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("irsa webhook CA ({}/{})", a.namespace, a.service),
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(a.days);
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = zeroize::Zeroizing::new(ca_key.serialize_pem());
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let svc = format!("{}.{}.svc", a.service, a.namespace);
    let mut names = vec![
        a.service.clone(),
        format!("{}.{}", a.service, a.namespace),
        svc.clone(),
        format!("{svc}.cluster.local"),
    ];
    names.extend(a.dns.iter().cloned());
    let mut params = CertificateParams::new(names)?;
    params
        .subject_alt_names
        .extend(a.ip.iter().map(|ip| SanType::IpAddress(*ip)));
    params
        .distinguished_name
        .push(DnType::CommonName, svc.clone());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(a.days);
    let key = KeyPair::generate()?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    let cert = params.signed_by(&key, &ca)?;

    fsutil::write_atomic(&files[1], ca_key_pem.as_bytes(), fsutil::PRIVATE)?;
    fsutil::write_atomic(&files[3], key_pem.as_bytes(), fsutil::PRIVATE)?;
    fsutil::write_atomic(&files[0], ca.pem().as_bytes(), fsutil::PUBLIC)?;
    fsutil::write_atomic(&files[2], cert.pem().as_bytes(), fsutil::PUBLIC)?;
    println!(
        "wrote {}/{{ca.crt,ca.key,tls.crt,tls.key}} for {svc} (valid {} days)",
        a.out_dir.display(),
        a.days
    );
    println!(
        "next: irsa webhook manifests --cert-dir {dir} --namespace {ns} | kubectl apply -f -\n      kubectl -n {ns} create secret tls irsa-webhook-tls --cert={dir}/tls.crt --key={dir}/tls.key",
        dir = a.out_dir.display(),
        ns = a.namespace
    );
    Ok(())
}

fn manifests(a: ManifestsArgs) -> Result<()> {
    let mut docs: Vec<String> = Vec::new();
    let ca_bundle = match &a.cert_dir {
        Some(dir) => {
            let ca = std::fs::read(dir.join("ca.crt")).with_context(|| {
                format!(
                    "cannot read {}/ca.crt; run `irsa webhook certs` first",
                    dir.display()
                )
            })?;
            Some(b64::encode_std(&ca))
        }
        None => None,
    };
    for (name, text) in BASE {
        let mut text = text.replace("irsa-system", &a.namespace).replace(
            &format!("image: {IMAGE}\n"),
            &format!("image: {}\n", a.image),
        );
        if *name == "mutatingwebhookconfiguration.yaml" {
            if let Some(ca) = &ca_bundle {
                text = text.replace("caBundle: \"\"", &format!("caBundle: {ca}"));
            }
        }
        if *name == "deployment.yaml" {
            if let Some(region) = &a.aws_default_region {
                text = text.replace("            - --token-audience=sts.amazonaws.com\n", &format!("            - --token-audience=sts.amazonaws.com\n            - --aws-default-region={region}\n"));
            }
        }
        for doc in text.split("\n---\n") {
            docs.push(doc.trim().to_string());
        }
    }
    if let Some(dir) = &a.cert_dir {
        let crt = std::fs::read(dir.join("tls.crt"))
            .with_context(|| format!("cannot read {}/tls.crt", dir.display()))?;
        if a.include_private_key {
            let key = zeroize::Zeroizing::new(
                std::fs::read(dir.join("tls.key"))
                    .with_context(|| format!("cannot read {}/tls.key", dir.display()))?,
            );
            let key_b64 = zeroize::Zeroizing::new(b64::encode_std(&key));
            docs.push(format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: irsa-webhook-tls\n  namespace: {}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}",
                a.namespace,
                b64::encode_std(&crt),
                key_b64.as_str()
            ));
        } else {
            // A kubernetes.io/tls Secret without tls.key is rejected by the
            // apiserver, and one applied here would make `kubectl create
            // secret` fail later: leave it out and say how to make it.
            status!(
                "note: the Secret irsa-webhook-tls holds the serving key, which irsa does not print by default; create it from the files:\n  kubectl -n {ns} create secret tls irsa-webhook-tls --cert={crt} --key={key}\nor pass --include-private-key to print it with the manifests",
                ns = a.namespace,
                crt = dir.join("tls.crt").display(),
                key = dir.join("tls.key").display()
            );
        }
    } else {
        status!("note: no --cert-dir: caBundle is empty and the Secret irsa-webhook-tls must come from elsewhere (e.g. deploy/cert-manager)");
    }
    println!("{}", docs.join("\n---\n"));
    Ok(())
}

#[cfg(all(test, feature = "online"))]
#[path = "webhook_flags_tests.rs"]
mod flags_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deploy_names_the_image_of_this_version() {
        let (_, deployment) = BASE
            .iter()
            .find(|(name, _)| *name == "deployment.yaml")
            .expect("the base has a Deployment");
        let named: Vec<&str> = deployment
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        assert_eq!(
            named,
            [IMAGE],
            "deploy/base/deployment.yaml must name {IMAGE} (the crate version is the tag)"
        );
    }
}
