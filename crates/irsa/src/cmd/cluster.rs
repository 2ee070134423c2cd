//! `irsa cluster config`: the apiserver settings and key files each kind of
//! cluster needs to sign tokens for the issuer in irsa.yaml. The rendering
//! itself is pure (`irsa_core::cluster`); this module reads the bundle and
//! prints or writes the result.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use irsa_core::cluster::{
    self, DocFormat, Flavour, Inputs, Issuers, KubeadmApi, Rendered, SigningKey, VerifyKey,
};
use irsa_core::config::KeyState;
use irsa_core::parse::parse_private_key;

use crate::bundle::{Bundle, CONFIG_FILE};
use crate::fsutil;
use crate::output::status;
use crate::output::Format;

/// Cluster commands.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Render what a cluster needs (apiserver settings, key files) for the issuer in irsa.yaml.
    Config(ConfigArgs),
}

/// Kinds of cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlavourArg {
    /// kube-apiserver and kube-controller-manager flags.
    Flags,
    /// kubeadm ClusterConfiguration (extraArgs, extraVolumes).
    Kubeadm,
    /// VMware VKS: ClusterClass patch, Cluster variable, {cluster}-sa Secret.
    Vks,
    /// EKS Anywhere Cluster spec.podIamConfig.
    EksAnywhere,
    /// k3s config.yaml entries.
    K3s,
    /// RKE2 config.yaml entries.
    Rke2,
    /// kind cluster config (kubeadm patch, key mount).
    Kind,
    /// Talos machine config patch.
    Talos,
}

impl From<FlavourArg> for Flavour {
    fn from(f: FlavourArg) -> Self {
        match f {
            FlavourArg::Flags => Flavour::Flags,
            FlavourArg::Kubeadm => Flavour::Kubeadm,
            FlavourArg::Vks => Flavour::Vks,
            FlavourArg::EksAnywhere => Flavour::EksAnywhere,
            FlavourArg::K3s => Flavour::K3s,
            FlavourArg::Rke2 => Flavour::Rke2,
            FlavourArg::Kind => Flavour::Kind,
            FlavourArg::Talos => Flavour::Talos,
        }
    }
}

/// kubeadm configuration API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KubeadmApiArg {
    /// kubeadm.k8s.io/v1beta3 (kubeadm 1.22+).
    #[default]
    V1beta3,
    /// kubeadm.k8s.io/v1beta4 (kubeadm 1.31+).
    V1beta4,
}

/// Arguments of `irsa cluster config`.
#[derive(Args)]
pub struct ConfigArgs {
    /// Kind of cluster to render for.
    #[arg(long, value_enum)]
    pub flavour: FlavourArg,
    /// The config file.
    #[arg(short = 'f', long = "file", default_value = CONFIG_FILE)]
    pub file: PathBuf,
    /// Write the files (configuration, pki/ key files, NOTES.txt) into DIR instead of printing.
    #[arg(
        short = 'o',
        long = "out-dir",
        value_name = "DIR",
        help_heading = "Output"
    )]
    pub out_dir: Option<PathBuf>,
    /// Replace files that already exist in DIR.
    #[arg(long, requires = "out_dir", help_heading = "Output")]
    pub force: bool,
    /// Print private key material (vks Secret, talos patch) to stdout.
    #[arg(long, conflicts_with = "out_dir", help_heading = "Output")]
    pub include_private_key: bool,
    /// Directory of the key files on the control-plane nodes [default: per flavour, e.g. /etc/kubernetes/pki/irsa].
    #[arg(long, value_name = "DIR", help_heading = "Cluster")]
    pub key_dir: Option<String>,
    /// Cluster name for vks, eks-anywhere and kind [default: `cluster` in irsa.yaml].
    #[arg(long, value_name = "NAME", help_heading = "Cluster")]
    pub cluster_name: Option<String>,
    /// Namespace of the Cluster and its {cluster}-sa Secret (vks: the vSphere Namespace).
    #[arg(long, value_name = "NS", help_heading = "Cluster")]
    pub namespace: Option<String>,
    /// The cluster's current issuer, kept (after the new one) while tokens it issued are still in use; repeatable.
    #[arg(long = "previous-issuer", value_name = "URL", help_heading = "Cluster")]
    pub previous_issuers: Vec<String>,
    /// kubeadm configuration API version.
    #[arg(long, value_enum, default_value_t, help_heading = "Cluster")]
    pub kubeadm_api: KubeadmApiArg,
    /// kind: directory on this machine holding the key files, mounted into the node [default with -o: DIR/pki].
    #[arg(long, value_name = "DIR", help_heading = "Cluster")]
    pub host_key_dir: Option<PathBuf>,
    /// Output format on stdout (json: documents, key file names and notes in one object).
    #[arg(
        long,
        value_enum,
        default_value_t,
        conflicts_with = "out_dir",
        help_heading = "Output"
    )]
    pub output: Format,
}

/// Runs a cluster subcommand.
pub fn run(cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Config(a) => config(a),
    }
}

fn absolute(path: &Path, what: &str) -> Result<String> {
    let abs = std::path::absolute(path)
        .with_context(|| format!("cannot make {what} {} absolute", path.display()))?;
    abs.to_str()
        .map(str::to_string)
        .with_context(|| format!("{what} {} is not UTF-8; choose a plain path", abs.display()))
}

/// Reads the bundle into rendering inputs.
fn inputs(a: &ConfigArgs, bundle: &Bundle) -> Result<Inputs> {
    let flavour: Flavour = a.flavour.into();
    let keys = bundle.keys()?;
    let mut verify: Vec<VerifyKey> = Vec::new();
    let mut signing = None;
    let mut retired = 0;
    for state in [KeyState::Active, KeyState::Next, KeyState::Previous] {
        for k in keys.iter().filter(|k| k.entry.state == state) {
            verify.push(VerifyKey {
                source: k.entry.public_key.clone(),
                key: k.public.clone(),
                state,
                algorithm: k.entry.algorithm,
            });
        }
    }
    for k in &keys {
        match (k.entry.state, &k.entry.private_key) {
            (KeyState::Retired, _) => retired += 1,
            (KeyState::Active, Some(file)) if flavour.needs_signing_key() => {
                let path = bundle.resolve(file);
                let bytes = std::fs::read(&path).with_context(|| {
                    format!(
                        "cannot read {}, the private key of the active key in irsa.yaml; restore it or fix privateKey",
                        path.display()
                    )
                })?;
                let key =
                    parse_private_key(&bytes).with_context(|| format!("in {}", path.display()))?;
                signing = Some(SigningKey {
                    source: file.clone(),
                    key,
                });
            }
            _ => {}
        }
    }
    let host_key_dir = match (flavour, &a.out_dir, &a.host_key_dir) {
        (Flavour::Kind, _, Some(dir)) => Some(absolute(dir, "--host-key-dir")?),
        (Flavour::Kind, Some(out), None) => Some(absolute(&out.join("pki"), "-o DIR")?),
        (_, _, Some(dir)) => Some(dir.display().to_string()),
        _ => None,
    };
    Ok(Inputs {
        flavour,
        cluster: a
            .cluster_name
            .clone()
            .unwrap_or_else(|| bundle.config.cluster.clone()),
        namespace: a.namespace.clone(),
        issuers: Issuers::new(bundle.config.issuer.url()?.clone(), &{
            // issuer.previousUrls from irsa.yaml, then any given on the command line.
            let mut previous: Vec<String> = bundle
                .config
                .issuer
                .previous_urls
                .iter()
                .map(|u| u.as_str().to_string())
                .collect();
            previous.extend(a.previous_issuers.iter().cloned());
            previous
        })?,
        verify,
        signing,
        retired,
        key_dir: a.key_dir.clone(),
        kubeadm_api: match a.kubeadm_api {
            KubeadmApiArg::V1beta3 => KubeadmApi::V1beta3,
            KubeadmApiArg::V1beta4 => KubeadmApi::V1beta4,
        },
        host_key_dir,
    })
}

fn config(a: ConfigArgs) -> Result<()> {
    let bundle = Bundle::load_file(&a.file)?;
    let inputs = inputs(&a, &bundle)?;
    let rendered = cluster::render(&inputs)?;
    match &a.out_dir {
        Some(dir) => write_out(&a, &bundle, &inputs, &rendered, dir),
        None => print(&a, &bundle, &rendered),
    }
}

fn print(a: &ConfigArgs, bundle: &Bundle, r: &Rendered) -> Result<()> {
    if let Some(d) = r.documents.iter().find(|d| d.private) {
        if !a.include_private_key {
            bail!(
                "{} holds the private signing key, which irsa does not print by default: pass -o DIR to write it to a mode-0600 file, or --include-private-key to print it anyway",
                d.file_name
            );
        }
    }
    if a.output == Format::Json {
        println!("{}", to_json(bundle, r));
        return Ok(());
    }
    let all_text = r.documents.iter().all(|d| d.format == DocFormat::Text);
    let mut out = String::new();
    for (i, d) in r.documents.iter().enumerate() {
        if i > 0 {
            out.push_str(if all_text { "\n" } else { "---\n" });
        }
        let _ = writeln!(out, "# ==> {}: {}", d.file_name, d.title);
        out.push_str(&d.content);
        if !d.content.ends_with('\n') {
            out.push('\n');
        }
    }
    print!("{out}");
    if let Some(dir) = &r.key_dir {
        status!("Key files for {dir}/ on each control-plane node (not printed; -o DIR writes them to DIR/pki/):");
        for f in &r.node_files {
            let sources: Vec<String> = f
                .sources
                .iter()
                .map(|s| bundle.resolve(s).display().to_string())
                .collect();
            let how = if f.sources.len() == 1 {
                format!("copy of {}", sources.join(""))
            } else {
                format!("cat {}", sources.join(" "))
            };
            let mode = if f.private { "0600" } else { "0644" };
            status!("  {}/{}  ({how}, mode {mode})", dir, f.name);
        }
    }
    status!("Next steps:");
    for note in &r.notes {
        status!("  - {note}");
    }
    Ok(())
}

/// Everything rendered as one JSON object (private content only reaches
/// here with --include-private-key).
fn to_json(bundle: &Bundle, r: &Rendered) -> String {
    let documents: Vec<serde_json::Value> = r
        .documents
        .iter()
        .map(|d| {
            let format = match d.format {
                DocFormat::Yaml => "yaml",
                DocFormat::Json => "json",
                DocFormat::Text => "text",
            };
            serde_json::json!({
                "file": d.file_name, "title": d.title, "format": format,
                "private": d.private, "content": d.content.as_str(),
            })
        })
        .collect();
    let node_files: Vec<serde_json::Value> = r
        .node_files
        .iter()
        .map(|f| {
            let sources: Vec<String> = f
                .sources
                .iter()
                .map(|s| bundle.resolve(s).display().to_string())
                .collect();
            serde_json::json!({"name": f.name, "private": f.private, "sources": sources})
        })
        .collect();
    let value = serde_json::json!({
        "documents": documents, "keyDir": r.key_dir, "keyFiles": node_files, "notes": r.notes,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Files in `DIR/pki` this rendering does not write: key files an earlier
/// rendering left there (a retired key's file, a signing key file named
/// after the key by an older irsa). They are named, not deleted.
fn stale_key_files(dir: &Path, r: &Rendered) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("pki")) else {
        return Vec::new();
    };
    let mut stale: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| !r.node_files.iter().any(|f| &f.name == name))
        .collect();
    stale.sort();
    stale
}

fn notes_text(
    a: &ConfigArgs,
    bundle: &Bundle,
    inputs: &Inputs,
    r: &Rendered,
    stale: &[String],
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "irsa cluster config --flavour {} for cluster {} (issuer {})",
        inputs.flavour,
        inputs.cluster,
        inputs.issuers.current()
    );
    let _ = writeln!(
        t,
        "Rendered from {}; render again after changing keys or issuer.\n",
        a.file.display()
    );
    let _ = writeln!(t, "Files:");
    for d in &r.documents {
        let private = if d.private {
            " [private key inside, mode 0600]"
        } else {
            ""
        };
        let _ = writeln!(t, "  {}  {}{private}", d.file_name, d.title);
    }
    if let Some(dir) = &r.key_dir {
        for f in &r.node_files {
            let what = if f.private {
                "private, mode 0600"
            } else {
                "public"
            };
            let _ = writeln!(
                t,
                "  pki/{}  copy to {dir}/{} on every control-plane node ({what}; from {})",
                f.name,
                f.name,
                f.sources
                    .iter()
                    .map(|s| bundle.resolve(s).display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + ")
            );
        }
    }
    if !stale.is_empty() {
        let on_nodes = r.key_dir.as_deref().unwrap_or("the key directory");
        let _ = writeln!(
            t,
            "\nNot part of this rendering (left by an earlier one; irsa does not delete them):"
        );
        for name in stale {
            let _ = writeln!(t, "  pki/{name}");
        }
        let _ = writeln!(t, "Do not copy them to the nodes. Once every control-plane node runs with this rendering, delete them here and from {on_nodes}/ on the nodes: a stale private key can sign again if a flag still names it.");
    }
    let _ = writeln!(t, "\nNext steps:");
    for note in &r.notes {
        let _ = writeln!(t, "- {note}");
    }
    t
}

fn write_out(
    a: &ConfigArgs,
    bundle: &Bundle,
    inputs: &Inputs,
    r: &Rendered,
    dir: &Path,
) -> Result<()> {
    let mut files: Vec<(PathBuf, &[u8], u32)> = Vec::new();
    for d in &r.documents {
        let mode = if d.private {
            fsutil::PRIVATE
        } else {
            fsutil::PUBLIC
        };
        files.push((dir.join(&d.file_name), d.content.as_bytes(), mode));
    }
    for f in &r.node_files {
        let mode = if f.private {
            fsutil::PRIVATE
        } else {
            fsutil::PUBLIC
        };
        files.push((dir.join("pki").join(&f.name), f.content.as_bytes(), mode));
    }
    let stale = stale_key_files(dir, r);
    let notes = notes_text(a, bundle, inputs, r, &stale);
    files.push((dir.join("NOTES.txt"), notes.as_bytes(), fsutil::PUBLIC));
    let paths: Vec<&Path> = files.iter().map(|(p, _, _)| p.as_path()).collect();
    fsutil::ensure_writable(&paths, a.force)?;
    for (path, bytes, mode) in &files {
        fsutil::write_atomic(path, bytes, *mode)?;
        let private = if *mode == fsutil::PRIVATE {
            " (private, 0600)"
        } else {
            ""
        };
        status!("wrote {}{private}", path.display());
    }
    for name in &stale {
        status!(
            "warning: {} is not part of this rendering (an earlier rendering's key file): do not copy it to the nodes; delete it here and on the nodes once they run with this rendering",
            dir.join("pki").join(name).display()
        );
    }
    status!(
        "next steps: {} (where each file goes)",
        dir.join("NOTES.txt").display()
    );
    Ok(())
}
