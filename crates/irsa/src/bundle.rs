//! An issuer bundle on disk: `irsa.yaml`, key files and the documents
//! laid out as they are served.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use irsa_core::config::KeyConfig;
use irsa_core::documents::{documents, Documents};
use irsa_core::issuer::DISCOVERY_PATH;
use irsa_core::parse::parse_keys;
use irsa_core::{Algorithm, Discovery, IrsaConfig, Jwks, PublicKey};

use crate::fsutil;

/// Config file name inside a bundle directory.
pub const CONFIG_FILE: &str = "irsa.yaml";
/// Directory under the bundle holding the documents as served.
pub const ISSUER_DIR: &str = "issuer";

/// A loaded bundle.
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The parsed config.
    pub config: IrsaConfig,
}

/// A key listed in `irsa.yaml`, with its public half read from disk.
pub struct BundleKey {
    /// The config entry.
    pub entry: KeyConfig,
    /// The public key.
    pub public: PublicKey,
}

impl Bundle {
    /// Reads the bundle whose config `-f` names: it must be a file called
    /// `irsa.yaml`, since key paths inside it are relative to its directory.
    pub fn load_file(file: &Path) -> Result<Self> {
        Self::load(&Self::dir_of(file)?)
    }

    /// The bundle directory of the config file `file`, which must be called
    /// `irsa.yaml` since key paths inside it are relative to its directory.
    pub fn dir_of(file: &Path) -> Result<PathBuf> {
        if file.file_name().and_then(|n| n.to_str()) != Some(CONFIG_FILE) {
            anyhow::bail!(
                "-f {}: irsa reads the bundle's {CONFIG_FILE} (key paths in it are relative to its directory): pass -f DIR/{CONFIG_FILE}",
                file.display()
            );
        }
        Ok(file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")))
    }

    /// The bundle whose config file `file` holds `text` (read by the caller).
    pub fn from_text(file: &Path, text: &str) -> Result<Self> {
        let dir = Self::dir_of(file)?;
        let config =
            IrsaConfig::from_yaml(text).with_context(|| format!("in {}", file.display()))?;
        Ok(Self { dir, config })
    }

    /// Reads `DIR/irsa.yaml`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}; create a bundle with `irsa init --cluster NAME --bucket B --region R --dir {}`", path.display(), dir.display())
        })?;
        let config =
            IrsaConfig::from_yaml(&text).with_context(|| format!("in {}", path.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// Path of a file named in `irsa.yaml` (relative to the bundle).
    pub fn resolve(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// What the local checks of this bundle look at, read off disk.
    fn files(&self) -> irsa_core::bundle::BundleFiles<'_> {
        use irsa_core::bundle::{BundleFiles, FileRead, KeyFiles, PrivateFile};
        let read = |path: PathBuf| FileRead {
            path: path.display().to_string(),
            bytes: fs::read(&path).map_err(|e| e.to_string()),
        };
        let keys = self
            .config
            .keys
            .iter()
            .map(|entry| KeyFiles {
                public: read(self.resolve(&entry.public_key)),
                private: entry.private_key.as_ref().map(|file| {
                    let path = self.resolve(file);
                    PrivateFile {
                        mode: crate::fsutil::mode_of(&path),
                        bytes: fs::read(&path).map_err(|e| e.to_string()),
                        path: path.display().to_string(),
                    }
                }),
            })
            .collect();
        BundleFiles {
            config: &self.config,
            dir: self.dir.display().to_string(),
            keys,
            jwks: read(self.jwks_path()),
            discovery: read(self.discovery_path()),
        }
    }

    /// The local checks of this bundle (key files, documents, drift,
    /// signing; `extra`: an API server's signing key given apart), as
    /// `irsa_core::bundle` judges what is on disk now.
    pub fn check(
        &self,
        extra: Option<&irsa_core::PrivateKey>,
    ) -> anyhow::Result<irsa_core::bundle::Checked> {
        Ok(irsa_core::bundle::check(
            &self.files(),
            extra,
            crate::cmd::now(),
        )?)
    }

    /// Where the discovery document is written.
    pub fn discovery_path(&self) -> PathBuf {
        self.dir.join(ISSUER_DIR).join(DISCOVERY_PATH)
    }

    /// Where the JWKS is written.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir
            .join(ISSUER_DIR)
            .join(self.config.issuer.jwks_path.as_str())
    }

    /// Reads every key's public half, checking it fits its algorithm.
    pub fn keys(&self) -> Result<Vec<BundleKey>> {
        let mut out = Vec::new();
        for entry in &self.config.keys {
            let path = self.resolve(&entry.public_key);
            let bytes = fs::read(&path).with_context(|| {
                format!(
                    "cannot read public key {} listed in irsa.yaml",
                    path.display()
                )
            })?;
            let mut found = parse_keys(&bytes).with_context(|| format!("in {}", path.display()))?;
            if found.len() != 1 {
                anyhow::bail!(
                    "{} holds {} keys; irsa.yaml needs one key per file",
                    path.display(),
                    found.len()
                );
            }
            let public = found.remove(0).public;
            public
                .check_algorithm(entry.algorithm)
                .with_context(|| format!("key {} in irsa.yaml", entry.public_key))?;
            out.push(BundleKey {
                entry: entry.clone(),
                public,
            });
        }
        Ok(out)
    }

    /// Renders the documents from the config and key files.
    pub fn render(&self) -> Result<Documents> {
        let (discovery, jwks) = self.documents()?;
        Ok(Documents {
            discovery: discovery.to_json(),
            jwks: jwks.to_json(),
        })
    }

    /// The documents from the config and key files, as values.
    pub fn documents(&self) -> Result<(Discovery, Jwks)> {
        let keys: Vec<(PublicKey, Algorithm)> = self
            .keys()?
            .into_iter()
            .filter(|k| k.entry.state.verifies())
            .map(|k| (k.public, k.entry.algorithm))
            .collect();
        Ok(documents(&self.config, &keys)?)
    }

    /// The desired AWS state for `account`, in the bucket's region (or
    /// us-east-1 when something else serves the issuer), without AWS calls.
    pub fn desired(&self, account: &str) -> Result<irsa_core::plan::Desired> {
        let (discovery, jwks) = self.documents()?;
        Ok(irsa_core::plan::Desired::from_config(
            &self.config,
            account,
            self.config.issuer.region(),
            &discovery,
            &jwks,
        ))
    }

    /// Writes rendered documents to `DIR/issuer/...`.
    pub fn write_documents(&self, docs: &Documents) -> Result<()> {
        fsutil::write_atomic(
            &self.discovery_path(),
            docs.discovery.as_bytes(),
            fsutil::PUBLIC,
        )?;
        fsutil::write_atomic(&self.jwks_path(), docs.jwks.as_bytes(), fsutil::PUBLIC)?;
        Ok(())
    }
}
