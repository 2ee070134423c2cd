//! HTTPS fetches of issuer documents (rustls), as STS would make them:
//! no redirects, a short timeout, certificate verification on.

use std::net::SocketAddr;

use anyhow::Result;

/// One HTTP response (the type the shared issuer-document walk takes).
pub use irsa_core::served::Response as Fetched;

pub use crate::net::Fetcher;

/// How to reach the issuer's host over HTTPS: `--ca-cert`, `--resolve`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Network {
    /// Trust only this CA bundle for the issuer's HTTPS (testing; AWS trusts public CAs only).
    #[arg(long, value_name = "FILE", help_heading = "Network")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Connect to ADDR:PORT for HOST (like curl --resolve), e.g. oidc.example.com=127.0.0.1:8443.
    #[arg(long, value_name = "HOST=ADDR:PORT", value_parser = parse_resolve, help_heading = "Network")]
    pub resolve: Vec<Resolve>,
}

impl Network {
    /// An HTTPS client with these settings.
    pub fn fetcher(&self) -> Result<Fetcher> {
        Fetcher::new(self.ca_cert.as_deref(), &self.resolve)
    }
}

/// A `HOST=ADDR:PORT` override of DNS resolution (like curl's `--resolve`).
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "online"), allow(dead_code))]
pub struct Resolve {
    /// Host name as in the URL.
    pub host: String,
    /// Address to connect to.
    pub addr: SocketAddr,
}

/// Parses `HOST=ADDR:PORT`.
pub fn parse_resolve(s: &str) -> Result<Resolve, String> {
    let (host, addr) = s.split_once('=').ok_or_else(|| {
        format!("{s:?} is not HOST=ADDR:PORT (e.g. oidc.example.com=127.0.0.1:8443)")
    })?;
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is not ADDR:PORT: {e}"))?;
    Ok(Resolve {
        host: host.to_string(),
        addr,
    })
}
