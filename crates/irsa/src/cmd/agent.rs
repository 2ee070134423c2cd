//! `irsa agent`: EKS Pod Identity's credentials endpoint for self-hosted
//! clusters (see docs/pod-identity.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::output::status;

/// The agent's parts.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// The broker: reviews pod tokens, assumes their roles, caches sessions (HTTPS; the only part with AWS credentials).
    Broker(BrokerArgs),
    /// The node agent: the SDKs' plain-HTTP endpoint on a node, forwarding to the broker over TLS.
    Node(NodeArgs),
    /// Broker and endpoint in one process on plain HTTP (single-node and development clusters: weaker isolation).
    Serve(ServeArgs),
    /// Renders the Kubernetes objects that run Pod Identity from irsa.yaml, as a kustomize base (broker, node agents, associations).
    Manifests(ManifestsArgs),
    /// Adds the node agent's link-local address to this network namespace's loopback device (the node DaemonSet's init container; needs NET_ADMIN).
    Link(LinkArgs),
}

/// `irsa agent manifests`.
#[derive(Args, Debug)]
pub struct ManifestsArgs {
    /// The config file.
    #[arg(short = 'f', long = "file", default_value = crate::bundle::CONFIG_FILE)]
    pub file: PathBuf,
    /// Directory to write the kustomize base into (created if missing).
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: PathBuf,
    /// AWS account ID of the roles (default: from the AWS credentials; without either, a placeholder to replace).
    #[arg(long)]
    pub account: Option<String>,
    /// Container image, e.g. one pushed to a private registry.
    #[arg(long, default_value = crate::args::IMAGE, value_parser = crate::args::image_reference)]
    pub image: String,
    /// Directory written by `irsa webhook certs --service irsa-agent-broker` (checked, and named in the command that creates the broker's Secret).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Replace files in DIR that irsa did not render.
    #[arg(long)]
    pub force: bool,
    /// AWS profile (to look the account up).
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
}

/// `irsa agent link`.
#[derive(Args, Debug)]
pub struct LinkArgs {
    /// Address to add (repeatable).
    #[arg(long = "address", default_value = irsa_core::podidentity::NODE_ADDRESS)]
    pub addresses: Vec<std::net::IpAddr>,
}

/// What a broker needs to decide.
#[derive(Args, Debug)]
pub struct BrokerFlags {
    /// The associations file: the webhook's identities file with a roleArn per entry, re-read when it changes.
    #[arg(long, env = "IRSA_AGENT_ASSOCIATIONS")]
    pub associations: PathBuf,
    /// The cluster's name, sent as the eks-cluster-name session tag.
    #[arg(long, env = "IRSA_AGENT_CLUSTER_NAME")]
    pub cluster_name: String,
    /// Audience the pods' tokens must have (the webhook's --container-credentials-audience).
    #[arg(
        long,
        default_value = "pods.eks.amazonaws.com",
        env = "IRSA_AGENT_AUDIENCE"
    )]
    pub audience: String,
    /// Kubeconfig for TokenReview; default $KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long, env = "IRSA_AGENT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// `irsa agent broker`.
#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Address to serve HTTPS on (repeatable).
    #[arg(
        long,
        default_value = "0.0.0.0:8443",
        env = "IRSA_AGENT_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,
    /// Serving certificate (PEM, chain allowed), reloaded when it changes.
    #[arg(long, env = "IRSA_AGENT_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "IRSA_AGENT_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    #[command(flatten)]
    pub broker: BrokerFlags,
    /// Refuse a request that does not come through the node agent of the pod's node (node agents with --node-token-file; the broker needs get on pods).
    #[arg(long, env = "IRSA_AGENT_REQUIRE_NODE_BINDING")]
    pub require_node_binding: bool,
    /// Audience of the node agents' own tokens (their --node-token-file).
    #[arg(long, default_value = irsa_core::podidentity::NODE_AUDIENCE, env = "IRSA_AGENT_NODE_AUDIENCE")]
    pub node_audience: String,
}

/// `irsa agent node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to serve plain HTTP on, by IP (repeatable); requests must name it in Host.
    #[arg(long, default_values = ["169.254.170.23:80", "[fd00:ec2::23]:80"], env = "IRSA_AGENT_LISTEN", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
    /// The broker's URL (https://HOST:PORT).
    #[arg(long, env = "IRSA_AGENT_BROKER")]
    pub broker: String,
    /// CA certificates (PEM) that sign the broker's serving certificate; nothing else is trusted.
    #[arg(long, env = "IRSA_AGENT_BROKER_CA_FILE")]
    pub broker_ca_file: PathBuf,
    /// The node agent's own projected token (its pod's, for the broker's --node-audience), sent with each request so the broker can check the pod runs on this node.
    #[arg(long, env = "IRSA_AGENT_NODE_TOKEN_FILE")]
    pub node_token_file: Option<PathBuf>,
}

/// `irsa agent serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to serve plain HTTP on, by IP (repeatable); requests must name it in Host.
    #[arg(long, default_values = ["169.254.170.23:80", "[fd00:ec2::23]:80"], env = "IRSA_AGENT_LISTEN", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
    #[command(flatten)]
    pub broker: BrokerFlags,
}

fn broker_args(
    f: BrokerFlags,
    require_node_binding: bool,
    node_audience: String,
) -> irsa_agent::listen::BrokerArgs {
    let BrokerFlags {
        associations,
        cluster_name,
        audience,
        kubeconfig,
    } = f;
    irsa_agent::listen::BrokerArgs {
        associations,
        cluster_name,
        audience,
        kubeconfig,
        require_node_binding,
        node_audience,
    }
}

/// The first line of every file `irsa agent manifests` writes: a file
/// that starts with it may be replaced by the next rendering.
const RENDERED: &str =
    "# Rendered by `irsa agent manifests` from irsa.yaml: regenerate rather than edit.\n";

fn manifests(a: ManifestsArgs) -> Result<()> {
    let bundle = crate::bundle::Bundle::load_file(&a.file)?;
    let cfg = &bundle.config;
    let pi = cfg.pod_identity();
    let (ns, _) = pi.service_account();
    if !cfg.has_pod_identity_bindings() {
        status!("note: {} has no `mode: pod-identity` binding: the associations list nobody (irsa bind ... --pod-identity adds one)", a.file.display());
    }
    if let Some(account) = &a.account {
        irsa_core::arn::check_account(account).map_err(|p| anyhow::anyhow!("--account: {p}"))?;
    }
    let account = crate::net::account_for(a.profile.as_deref(), None, a.account.as_deref());
    if let Some(dir) = &a.cert_dir {
        for f in ["ca.crt", "tls.crt", "tls.key"] {
            let p = dir.join(f);
            if !p.is_file() {
                anyhow::bail!("--cert-dir: {} is missing; run `irsa webhook certs --service {} --namespace {} --dir {}` first", p.display(), irsa_core::podidentity::BROKER_NAME, ns, dir.display());
            }
        }
    }
    let files = irsa_core::podidentity::agent_manifests(
        cfg,
        &irsa_core::podidentity::AgentManifestOptions {
            account: account.as_deref(),
            placeholder: crate::manifest::ACCOUNT_PLACEHOLDER,
            image: &a.image,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Files irsa rendered before are replaced; anything else only with --force.
    let foreign: Vec<String> = files
        .iter()
        .map(|f| a.output_dir.join(&f.path))
        .filter(|p| {
            p.exists() && !std::fs::read_to_string(p).is_ok_and(|t| t.starts_with(RENDERED))
        })
        .map(|p| p.display().to_string())
        .collect();
    if !foreign.is_empty() && !a.force {
        anyhow::bail!(
            "refusing to overwrite {} (not rendered by irsa agent manifests); nothing was written. Pass --force to replace, or choose another --output-dir",
            foreign.join(", ")
        );
    }
    for f in &files {
        let path = a.output_dir.join(&f.path);
        crate::fsutil::write_atomic(
            &path,
            format!("{RENDERED}{}", f.text).as_bytes(),
            crate::fsutil::PUBLIC,
        )?;
    }
    status!(
        "wrote {} files to {}: kubectl apply -k {}",
        files.len(),
        a.output_dir.display(),
        a.output_dir.display()
    );
    if account.is_none() {
        status!("note: the AWS account is unknown (no --account, no AWS credentials): replace {} in {}/base/associations.yaml and broker.yaml", crate::manifest::ACCOUNT_PLACEHOLDER, a.output_dir.display());
    }
    let secret = irsa_core::podidentity::BROKER_TLS_SECRET;
    match &a.cert_dir {
        Some(dir) => status!(
            "the broker's serving certificate: kubectl -n {ns} create secret generic {secret} --from-file={c} --from-file={k} --from-file={ca}",
            c = dir.join("tls.crt").display(),
            k = dir.join("tls.key").display(),
            ca = dir.join("ca.crt").display()
        ),
        None => status!(
            "the broker's serving certificate: the Secret {ns}/{secret} (tls.crt, tls.key, ca.crt) from `irsa webhook certs --service {} --namespace {ns}` (pass its --dir as --cert-dir), or apply {}/cert-manager instead (cert-manager issues it)",
            irsa_core::podidentity::BROKER_NAME,
            a.output_dir.display()
        ),
    }
    Ok(())
}

fn link(a: LinkArgs) -> Result<()> {
    for ip in &a.addresses {
        match irsa_agent::link::add_loopback_address(*ip) {
            Ok(irsa_agent::link::Added::New) => status!("irsa agent link: added {ip} to lo"),
            Ok(irsa_agent::link::Added::Present) => status!("irsa agent link: {ip} is already on lo"),
            Err(e) if e.raw_os_error() == Some(1) => anyhow::bail!(
                "cannot add {ip} to lo: {e}; the container needs the NET_ADMIN capability (and the host's network: hostNetwork: true)"
            ),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot add {ip} to lo"))),
        }
    }
    Ok(())
}

/// Runs an agent command: the servers until SIGTERM or Ctrl-C.
pub fn run(cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::Manifests(a) => manifests(a),
        AgentCommand::Link(a) => link(a),
        AgentCommand::Broker(a) => until_stopped("broker", async move {
            irsa_agent::listen::broker(
                &a.listen,
                &a.tls_cert_file,
                &a.tls_key_file,
                &broker_args(a.broker, a.require_node_binding, a.node_audience),
            )
            .await
        }),
        AgentCommand::Node(a) => until_stopped("node agent", async move {
            irsa_agent::listen::node(
                &a.listen,
                &a.broker,
                &a.broker_ca_file,
                a.node_token_file.as_deref(),
            )
            .await
        }),
        AgentCommand::Serve(a) => until_stopped("all-in-one agent", async move {
            irsa_agent::listen::serve_all_in_one(
                &a.listen,
                &broker_args(
                    a.broker,
                    false,
                    irsa_core::podidentity::NODE_AUDIENCE.to_string(),
                ),
            )
            .await
        }),
    }
}

/// Starts a server (`what`, for the status line) and runs it until
/// SIGTERM or Ctrl-C.
fn until_stopped(
    what: &str,
    start: impl std::future::Future<Output = anyhow::Result<irsa_agent::listen::Running>>,
) -> Result<()> {
    crate::net::rt::block_on(async move {
        let running = start.await?;
        let addrs: Vec<String> = running.addrs.iter().map(ToString::to_string).collect();
        status!(
            "irsa agent: {what} serving /v1/credentials on {}",
            addrs.join(", ")
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        running.shutdown().await;
        Ok(())
    })?
}
