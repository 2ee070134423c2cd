//! The CLI's Kubernetes client (for `doctor` and `verify`): from
//! `--kubeconfig`, else the usual chain ($KUBECONFIG, ~/.kube/config,
//! in-cluster), the way kubectl finds its cluster.

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Builds a client from `kubeconfig` (its current context), else from the
/// environment.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        }
        None => Config::infer().await.context(
            "no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster configuration; pass --kubeconfig",
        )?,
    };
    Client::try_from(config).context("cannot build the Kubernetes client")
}
