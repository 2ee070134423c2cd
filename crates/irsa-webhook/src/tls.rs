//! Serving certificate that reloads from disk: a complete, matching
//! certificate + key pair replaces the old one atomically; anything else
//! (half-written files, a key of another certificate) keeps the old pair.
//! Files are re-read by path, so kubelet's `..data` symlink swap of a
//! mounted Secret is seen as well as in-place writes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// No certificate in the file.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// No usable key in the file.
    #[error("{path} holds no PEM private key: {detail}")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// The key is not the certificate's.
    #[error("certificate and key do not belong together: {0}")]
    Mismatch(String),
}

/// A certificate resolver that can be reloaded.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    last_bytes: Mutex<(Vec<u8>, Vec<u8>)>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn parse(
    cert: &[u8],
    key: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NoKey {
        path: key_path.to_path_buf(),
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Mismatch(e.to_string()))
}

impl ReloadingCert {
    /// Loads the pair; fails if it is not usable.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let (cert, key) = (read(cert_path)?, read(key_path)?);
        let certified = parse(&cert, &key, cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(certified)),
            last_bytes: Mutex::new((cert, key)),
        })
    }

    /// Re-reads the files; swaps in the new pair only if both changed
    /// consistently. Returns whether a new pair is now in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert, key) = (read(&self.cert_path)?, read(&self.key_path)?);
        let mut last = self
            .last_bytes
            .lock()
            .map_err(|_| TlsError::Mismatch("poisoned lock".into()))?;
        if last.0 == cert && last.1 == key {
            return Ok(false);
        }
        let certified = parse(&cert, &key, &self.cert_path, &self.key_path, &self.provider)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(certified);
        }
        *last = (cert, key);
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, HTTP/1.1) using `certs`.
pub fn server_config(
    certs: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
