//! The IAM OIDC provider thumbprint: SHA-1 of the last certificate in the
//! chain the issuer's host serves (the top intermediate or root), read
//! over a verified TLS connection so a forged certificate is never pinned.
//! AWS trusts issuers with publicly trusted certificates (and S3) without
//! it; it matters for issuers whose certificate comes from a private CA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::fetch::Resolve;

/// SHA-1 of `der`, lower-case hex, as IAM lists thumbprints.
pub fn sha1_hex(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Connects to `host:443` (or the `--resolve` address), verifies the chain
/// against `ca` or the system roots, and returns the thumbprint.
pub async fn thumbprint(host: &str, ca: Option<&Path>, resolves: &[Resolve]) -> Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: CertificateDer<'static> =
                    cert.with_context(|| format!("{} is not PEM", path.display()))?;
                roots.add(cert)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = match resolves.iter().find(|r| r.host == host) {
        Some(r) => r.addr.to_string(),
        None => format!("{host}:443"),
    };
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{host} is not a valid TLS server name"))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(&addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    let tls = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .with_context(|| format!("{addr}: no TLS answer in 5 s"))?
        .with_context(|| format!("TLS to {addr}"))?;
    let (_, conn) = tls.get_ref();
    let Some(last) = conn.peer_certificates().and_then(|c| c.last()) else {
        bail!("{host} sent no certificate");
    };
    Ok(sha1_hex(last.as_ref()))
}
