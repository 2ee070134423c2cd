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

/// Runs an agent command until SIGTERM or Ctrl-C.
pub fn run(cmd: AgentCommand) -> Result<()> {
    crate::rt::block_on(async move {
        let (what, running) = match cmd {
            AgentCommand::Broker(a) => {
                let r = irsa_agent::listen::broker(
                    &a.listen,
                    &a.tls_cert_file,
                    &a.tls_key_file,
                    &broker_args(a.broker, a.require_node_binding, a.node_audience),
                )
                .await?;
                ("broker", r)
            }
            AgentCommand::Node(a) => (
                "node agent",
                irsa_agent::listen::node(
                    &a.listen,
                    &a.broker,
                    &a.broker_ca_file,
                    a.node_token_file.as_deref(),
                )
                .await?,
            ),
            AgentCommand::Serve(a) => (
                "all-in-one agent",
                irsa_agent::listen::serve_all_in_one(
                    &a.listen,
                    &broker_args(
                        a.broker,
                        false,
                        irsa_core::podidentity::NODE_AUDIENCE.to_string(),
                    ),
                )
                .await?,
            ),
        };
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
