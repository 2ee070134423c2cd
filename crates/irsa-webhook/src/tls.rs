//! Serving certificate that reloads from disk: a complete, matching
//! certificate + key pair replaces the old one atomically; anything else
//! (half-written files, a key of another certificate) keeps the old pair.
//! Files are re-read by path, so kubelet's `..data` symlink swap of a
//! mounted Secret is seen as well as in-place writes. A pair whose leaf
//! certificate is expired or not yet valid is refused too: the API server
//! would reject it, and every admission meanwhile would fail.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_cert::der::Decode;

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
    /// The leaf certificate cannot be parsed as X.509.
    #[error("{path} does not start with an X.509 certificate: {detail}")]
    NotX509 {
        /// The file.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// The leaf certificate's validity does not include now.
    #[error("the certificate in {path} is {state} (valid from {not_before} to {not_after}, seconds since 1970; now {now}); issue a current one")]
    OutsideValidity {
        /// The file.
        path: PathBuf,
        /// `expired` or `not valid yet`.
        state: &'static str,
        /// notBefore.
        not_before: i64,
        /// notAfter.
        not_after: i64,
        /// The clock.
        now: i64,
    },
}

/// A certificate resolver that can be reloaded.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// notAfter of the current leaf, seconds since 1970.
    not_after: AtomicI64,
    last_bytes: Mutex<(Vec<u8>, Vec<u8>)>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn unix_seconds(t: &x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// The leaf's notAfter, if `now` (seconds since 1970) is within its validity.
fn check_validity(leaf: &CertificateDer<'_>, path: &Path, now: i64) -> Result<i64, TlsError> {
    let cert = x509_cert::Certificate::from_der(leaf).map_err(|e| TlsError::NotX509 {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let validity = &cert.tbs_certificate.validity;
    let (not_before, not_after) = (
        unix_seconds(&validity.not_before),
        unix_seconds(&validity.not_after),
    );
    let state = if now < not_before {
        "not valid yet"
    } else if now > not_after {
        "expired"
    } else {
        return Ok(not_after);
    };
    Err(TlsError::OutsideValidity {
        path: path.to_path_buf(),
        state,
        not_before,
        not_after,
        now,
    })
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn parse(
    cert: &[u8],
    key: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, i64), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    };
    let not_after = check_validity(leaf, cert_path, now_unix())?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NoKey {
        path: key_path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok((certified, not_after))
}

impl ReloadingCert {
    /// Loads the pair; fails if it is not usable.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let (cert, key) = (read(cert_path)?, read(key_path)?);
        let (certified, not_after) = parse(&cert, &key, cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(certified)),
            not_after: AtomicI64::new(not_after),
            last_bytes: Mutex::new((cert, key)),
        })
    }

    /// notAfter of the certificate in use, in seconds since 1970.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    /// Re-reads the files; swaps in the new pair only if it is complete,
    /// consistent and currently valid. Returns whether a new pair is now in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert, key) = (read(&self.cert_path)?, read(&self.key_path)?);
        let mut last = self
            .last_bytes
            .lock()
            .map_err(|_| TlsError::Mismatch("poisoned lock".into()))?;
        if last.0 == cert && last.1 == key {
            return Ok(false);
        }
        let (certified, not_after) =
            parse(&cert, &key, &self.cert_path, &self.key_path, &self.provider)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(certified);
        }
        self.not_after.store(not_after, Ordering::Relaxed);
        *last = (cert, key);
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let offered: Vec<String> = hello
                .alpn()
                .into_iter()
                .flatten()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            tracing::debug!(?offered, "TLS client hello: ALPN protocols offered");
        }
        self.current.read().ok().map(|c| c.clone())
    }
}

/// TLS 1.3 and 1.2, the versions irsa serves by default.
const TLS12_UP: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
/// TLS 1.3 only.
const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A `--tls-min-version` irsa does not know.
#[derive(Debug, thiserror::Error)]
#[error("--tls-min-version={0:?} is not a TLS version; use VersionTLS12 (or 1.2) for TLS 1.2 and 1.3, or VersionTLS13 (or 1.3) for TLS 1.3 only")]
pub struct MinVersionError(pub String);

/// The versions served for `--tls-min-version`, spelled as Go's webhook
/// takes it (`VersionTLS13` or `1.3`). Go's lower minimums (1.0, 1.1)
/// serve TLS 1.2 and 1.3, the oldest rustls speaks.
pub fn protocol_versions(
    min: Option<&str>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], MinVersionError> {
    match min.map(str::trim) {
        None | Some("") => Ok(TLS12_UP),
        Some("1.0" | "VersionTLS10" | "1.1" | "VersionTLS11") => {
            tracing::warn!("--tls-min-version below TLS 1.2: irsa serves TLS 1.2 and 1.3, the oldest it speaks");
            Ok(TLS12_UP)
        }
        Some("1.2" | "VersionTLS12") => Ok(TLS12_UP),
        Some("1.3" | "VersionTLS13") => Ok(TLS13_ONLY),
        Some(other) => Err(MinVersionError(other.to_string())),
    }
}

/// The HTTP versions a TLS listener offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// `http/1.1` only.
    Http1,
    /// `h2`, then `http/1.1`: the client picks (the API server's webhook
    /// client takes `h2` when offered).
    Http2AndHttp1,
}

/// A rustls server configuration using `certs`, serving `versions` (see
/// [`protocol_versions`]) and offering `offer` in ALPN.
pub fn server_config(
    certs: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    offer: Offer,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = match offer {
        Offer::Http1 => vec![b"http/1.1".to_vec()],
        Offer::Http2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// A PEM CA bundle named by `flag` (`--ca-cert`, `--broker-ca-file`): the
/// one reader of such files, so every flag refuses an unreadable, malformed
/// or empty bundle with the same words.
pub fn read_ca_bundle(
    path: &std::path::Path,
    flag: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use anyhow::Context;
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("{flag} {} is not a PEM certificate bundle", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{flag} {} holds no certificate", path.display());
    }
    Ok(certs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_bundle_is_read_whole_or_refused_naming_the_flag_and_file() {
        let t = tempfile::tempdir().unwrap();
        let err = |path: &Path| format!("{:#}", read_ca_bundle(path, "--ca-cert").unwrap_err());
        let missing = t.path().join("missing.pem");
        assert!(
            err(&missing).starts_with("cannot read --ca-cert "),
            "{}",
            err(&missing)
        );
        let empty = t.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(
            err(&empty).ends_with("holds no certificate"),
            "{}",
            err(&empty)
        );
        let broken = t.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(
            err(&broken).contains("is not a PEM certificate bundle"),
            "{}",
            err(&broken)
        );
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let two = t.path().join("two.pem");
        std::fs::write(&two, format!("{}{}", ca.cert.pem(), ca.cert.pem())).unwrap();
        assert_eq!(read_ca_bundle(&two, "--ca-cert").unwrap().len(), 2);
    }
}
