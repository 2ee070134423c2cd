//! irsa's one Kubernetes client constructor, for the webhook, the agent
//! and the CLI (`doctor`, `verify`, the signing-key probe): `--kubeconfig`,
//! else the usual chain ($KUBECONFIG, ~/.kube/config, in-cluster), with
//! the webhook's `--kube-api` replacing the server.

use anyhow::{Context, Result};
use kube::Client;

use crate::settings::Settings;

/// Builds the kube client from `--kubeconfig` or the in-cluster
/// environment, talking to `--kube-api` when given.
pub async fn client(settings: &Settings) -> Result<Client> {
    let config = kube_config(settings.kubeconfig.as_deref(), settings.kube_api.as_deref()).await?;
    Client::try_from(config).context("cannot build the Kubernetes client")
}

/// Builds a kube client from `kubeconfig`, else the usual chain
/// ($KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn client_from(kubeconfig: Option<&std::path::Path>) -> Result<Client> {
    let config = kube_config(kubeconfig, None).await?;
    Client::try_from(config).context("cannot build the Kubernetes client")
}

/// The client configuration from `kubeconfig`, else the usual chain, with
/// its server replaced by `kube_api` (the Go webhook's `--kube-api`).
pub async fn kube_config(
    kubeconfig: Option<&std::path::Path>,
    kube_api: Option<&str>,
) -> Result<kube::Config> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster configuration; pass --kubeconfig")?,
    };
    if let Some(url) = kube_api.filter(|u| !u.is_empty()) {
        let uri: hyper::Uri = url
            .parse()
            .ok()
            .filter(|u: &hyper::Uri| {
                matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some()
            })
            .with_context(|| {
                format!(
                    "--kube-api {url:?} is not an API server URL; write e.g. https://10.0.0.1:6443"
                )
            })?;
        config.cluster_url = uri;
    }
    Ok(config)
}
