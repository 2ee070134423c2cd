//! What each kind of cluster needs so that its apiserver signs tokens for
//! irsa's issuer: pure rendering from the issuer URL(s) and key material to
//! ready-to-apply configuration, with a short note on where it goes.
//!
//! Facts every flavour relies on (checked against kube-apiserver v1.28.7
//! `--help` and the distributions' sources):
//! - `--service-account-issuer` is a stringArray: the first value is what
//!   new tokens carry in `iss`, every value is accepted, so a previous issuer
//!   goes after the new one.
//! - `--service-account-key-file` is a stringArray and one file may hold
//!   several PEM keys; a comma-joined list is read as one (missing) path.
//! - `--api-audiences` stays the apiserver's own audience, which defaults to
//!   the issuers. `sts.amazonaws.com` (or any binding audience) does not
//!   belong there: it would make every default pod token (requested without
//!   an audience) valid at STS and let STS tokens authenticate to the API.
//!   Projected tokens ask for their audience in the TokenRequest, which the
//!   apiserver grants whatever `--api-audiences` says.

mod apiserver;
mod error;
mod kubeadm;
mod nodes;
mod platform;

pub use error::ClusterError;
use nodes::{join, key_dir, keys_note, node_files, rotation_note, signing, to_yaml};

use zeroize::Zeroizing;

use crate::config::KeyState;
use crate::issuer::IssuerUrl;
use crate::key::PublicKey;
use crate::private::PrivateKey;

/// Name of the PEM file that bundles every verification key (kubeadm, kind).
pub const KEY_BUNDLE_FILE: &str = "service-account-keys.pem";

/// Name of the signing key's file on the nodes, whichever key of irsa.yaml
/// is active: a key rotation's switch rewrites its content, never the
/// configuration that names it.
pub const SIGNING_KEY_FILE: &str = "sa-signer.key";

/// A kind of cluster irsa renders configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Plain kube-apiserver / kube-controller-manager flags.
    Flags,
    /// A kubeadm `ClusterConfiguration`.
    Kubeadm,
    /// VMware VKS (Cluster API ClusterClass + `{cluster}-sa` Secret).
    Vks,
    /// EKS Anywhere `Cluster.spec.podIamConfig`.
    EksAnywhere,
    /// k3s `config.yaml`.
    K3s,
    /// RKE2 `config.yaml`.
    Rke2,
    /// A kind cluster config.
    Kind,
    /// A Talos machine config patch.
    Talos,
}

impl Flavour {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flags => "flags",
            Self::Kubeadm => "kubeadm",
            Self::Vks => "vks",
            Self::EksAnywhere => "eks-anywhere",
            Self::K3s => "k3s",
            Self::Rke2 => "rke2",
            Self::Kind => "kind",
            Self::Talos => "talos",
        }
    }

    /// Whether the cluster signs with irsa's private key (all but EKS
    /// Anywhere, which generates its own).
    pub fn needs_signing_key(self) -> bool {
        self != Self::EksAnywhere
    }

    /// Where key files go on a control-plane node, when the flavour places
    /// files there at all (VKS, EKS Anywhere and Talos deliver keys themselves).
    pub fn default_key_dir(self) -> Option<&'static str> {
        match self {
            Self::Flags | Self::Kubeadm | Self::Kind => Some("/etc/kubernetes/pki/irsa"),
            Self::K3s => Some("/etc/rancher/k3s/irsa"),
            Self::Rke2 => Some("/etc/rancher/rke2/irsa"),
            Self::Vks | Self::EksAnywhere | Self::Talos => None,
        }
    }

    /// Whether the rendered configuration itself carries the private key.
    pub fn embeds_private_key(self) -> bool {
        matches!(self, Self::Vks | Self::Talos)
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// kubeadm configuration API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeadmApi {
    /// `kubeadm.k8s.io/v1beta3` (kubeadm 1.22+): `extraArgs` is a map.
    #[default]
    V1beta3,
    /// `kubeadm.k8s.io/v1beta4` (kubeadm 1.31+): `extraArgs` is a list.
    V1beta4,
}

/// The issuers the apiserver accepts: the first signs new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuers {
    current: IssuerUrl,
    previous: Vec<String>,
}

impl Issuers {
    /// The new issuer first, then issuers the cluster used before (still
    /// accepted so tokens they issued keep working until refreshed).
    pub fn new(current: IssuerUrl, previous: &[String]) -> Result<Self, ClusterError> {
        let mut kept: Vec<String> = Vec::new();
        for p in previous {
            let bad = |problem: &str| ClusterError::PreviousIssuer {
                value: p.clone(),
                problem: problem.into(),
            };
            if p.is_empty() || p.chars().any(char::is_whitespace) {
                return Err(bad("is empty or has white space: give the exact value of the cluster's current --service-account-issuer"));
            }
            if p == current.as_str() {
                return Err(bad("is the new issuer itself: drop it"));
            }
            if p.contains(',') {
                return Err(bad(
                    "holds a comma: pass each issuer with its own --previous-issuer",
                ));
            }
            if p.contains(':') && !p.starts_with("https://") && !p.starts_with("http://") {
                return Err(bad("has a ':' but is not a URL; kube-apiserver requires a URL then (e.g. https://kubernetes.default.svc.cluster.local)"));
            }
            if !kept.contains(p) {
                kept.push(p.clone());
            }
        }
        Ok(Self {
            current,
            previous: kept,
        })
    }

    /// The issuer new tokens carry.
    pub fn current(&self) -> &IssuerUrl {
        &self.current
    }

    /// Issuers still accepted, in order.
    pub fn previous(&self) -> &[String] {
        &self.previous
    }

    /// All issuers, signing one first: one `--service-account-issuer` each.
    pub fn all(&self) -> Vec<String> {
        std::iter::once(self.current.as_str().to_string())
            .chain(self.previous.iter().cloned())
            .collect()
    }

    /// `--api-audiences`: the apiserver's own audience, i.e. what it defaults
    /// to (the issuers), written out so that a change of issuer does not
    /// silently change it and nobody "fixes" it to `sts.amazonaws.com`.
    pub fn api_audiences(&self) -> Vec<String> {
        self.all()
    }
}

/// A public key the apiserver verifies tokens with.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    /// Its file in irsa.yaml (bundle-relative), e.g. `keys/sa-signer.pub`.
    pub source: String,
    /// The key.
    pub key: PublicKey,
    /// `Active` or `Next`.
    pub state: KeyState,
    /// The algorithm it is published with.
    pub algorithm: crate::key::Algorithm,
}

/// The active key's private half.
pub struct SigningKey {
    /// Its file in irsa.yaml (bundle-relative), e.g. `keys/sa-signer.key`.
    pub source: String,
    /// The key.
    pub key: PrivateKey,
}

/// Everything a flavour is rendered from.
pub struct Inputs {
    /// The flavour.
    pub flavour: Flavour,
    /// Cluster name (VKS, EKS Anywhere, kind name objects after it).
    pub cluster: String,
    /// Namespace of the Cluster object (VKS).
    pub namespace: Option<String>,
    /// Issuers, signing one first.
    pub issuers: Issuers,
    /// Non-retired public keys, active first.
    pub verify: Vec<VerifyKey>,
    /// The active private key, when the flavour needs it.
    pub signing: Option<SigningKey>,
    /// How many retired keys were left out.
    pub retired: usize,
    /// Directory on the control-plane nodes (defaults per flavour).
    pub key_dir: Option<String>,
    /// kubeadm API version (kubeadm only).
    pub kubeadm_api: KubeadmApi,
    /// kind: the directory on this machine mounted into the node.
    pub host_key_dir: Option<String>,
}

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// Plain text (one flag per line).
    Text,
}

/// A rendered document.
pub struct Document {
    /// File name under the output directory.
    pub file_name: String,
    /// One line saying what it is and where it goes.
    pub title: String,
    /// Format.
    pub format: DocFormat,
    /// The text.
    pub content: Zeroizing<String>,
    /// Whether it contains private key material.
    pub private: bool,
}

/// A key file to place in the key directory of every control-plane node.
pub struct NodeFile {
    /// File name in the key directory.
    pub name: String,
    /// PEM text.
    pub content: Zeroizing<String>,
    /// Whether it is a private key (mode 0600).
    pub private: bool,
    /// The bundle files it is made of.
    pub sources: Vec<String>,
}

/// What a flavour renders.
pub struct Rendered {
    /// Configuration documents.
    pub documents: Vec<Document>,
    /// Key files for the nodes' key directory.
    pub node_files: Vec<NodeFile>,
    /// The key directory on the nodes, when node files are used.
    pub key_dir: Option<String>,
    /// Where it goes and what to do next, one paragraph each.
    pub notes: Vec<String>,
}

/// Names only: documents and node files may hold private keys.
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field(
                "documents",
                &self
                    .documents
                    .iter()
                    .map(|d| &d.file_name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "node_files",
                &self.node_files.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .field("key_dir", &self.key_dir)
            .finish_non_exhaustive()
    }
}

/// Renders `inputs.flavour`.
pub fn render(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    check_common(inputs)?;
    match inputs.flavour {
        Flavour::Flags => apiserver::flags(inputs),
        Flavour::K3s | Flavour::Rke2 => apiserver::rancher(inputs),
        Flavour::Kubeadm => kubeadm::kubeadm(inputs),
        Flavour::Kind => kubeadm::kind(inputs),
        Flavour::Vks => platform::vks(inputs),
        Flavour::EksAnywhere => platform::eks_anywhere(inputs),
        Flavour::Talos => platform::talos(inputs),
    }
}

fn check_common(inputs: &Inputs) -> Result<(), ClusterError> {
    let flavour = inputs.flavour;
    let active = inputs.verify.iter().find(|k| k.state == KeyState::Active);
    if flavour.needs_signing_key() {
        let Some(signing) = &inputs.signing else {
            return Err(ClusterError::NoSigningKey {
                flavour,
                public_key: active.map_or_else(|| "(none)".to_string(), |k| k.source.clone()),
            });
        };
        if let Some(active) = active {
            if signing.key.public_key() != &active.key {
                return Err(ClusterError::KeyMismatch {
                    private_key: signing.source.clone(),
                    public_key: active.source.clone(),
                });
            }
            if !active.algorithm.kube_apiserver_signs() {
                return Err(ClusterError::SigningAlgorithm {
                    alg: active.algorithm,
                });
            }
        }
    }
    if inputs.key_dir.is_some() && flavour.default_key_dir().is_none() {
        return Err(ClusterError::NotApplicable {
            option: "--key-dir",
            flavour,
            why: "the platform delivers the signing key to the nodes itself",
        });
    }
    if inputs.host_key_dir.is_some() && flavour != Flavour::Kind {
        return Err(ClusterError::NotApplicable {
            option: "--host-key-dir",
            flavour,
            why: "only kind mounts a directory of this machine into its node",
        });
    }
    if inputs.namespace.is_some() && flavour != Flavour::Vks {
        return Err(ClusterError::NotApplicable {
            option: "--namespace",
            flavour,
            why: "only the VKS Secret is namespaced",
        });
    }
    Ok(())
}

/// Checks a DNS-1123 label (what cluster names and namespaces must be).
pub fn check_dns_label(what: &'static str, value: &str) -> Result<(), ClusterError> {
    if crate::names::is_dns_label(value) {
        Ok(())
    } else {
        Err(ClusterError::Name {
            what,
            value: value.to_string(),
            rule: "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit (a DNS label); pick a name that fits".into(),
        })
    }
}

#[cfg(test)]
mod tests;
