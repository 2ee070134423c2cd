//! HTTPS fetches of issuer documents (rustls), as STS would make them:
//! no redirects, a short timeout, certificate verification on.

use std::net::SocketAddr;
use std::path::Path;
#[cfg(feature = "online")]
use std::time::Duration;

use anyhow::Result;
#[cfg(feature = "online")]
use anyhow::{bail, Context};

/// Largest document irsa reads.
#[cfg(feature = "online")]
const MAX_BODY: usize = 1 << 20;

/// One HTTP response.
pub struct Fetched {
    /// Final URL.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Cache-Control` header.
    pub cache_control: Option<String>,
    /// `Location` header (for redirects).
    pub location: Option<String>,
    /// Body as text (lossy UTF-8), at most 1 MiB.
    pub body: String,
}

/// An HTTPS client configured for issuer checks.
#[cfg(feature = "online")]
pub struct Fetcher {
    client: reqwest::Client,
}

/// The offline build has no HTTPS client, so no `Fetcher` can be made:
/// [`Fetcher::new`] says which build has one.
#[cfg(not(feature = "online"))]
pub struct Fetcher(std::convert::Infallible);

#[cfg(not(feature = "online"))]
impl Fetcher {
    /// Always fails: this build links no HTTPS client.
    pub fn new(_ca: Option<&Path>, _resolves: &[Resolve]) -> Result<Self> {
        Err(crate::offline::needs_online(
            "reading what the issuer serves over HTTPS",
        ))
    }

    /// Never called: no `Fetcher` exists in this build.
    pub fn get(&self, _url: &str) -> Result<Fetched, String> {
        match self.0 {}
    }
}

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

impl Fetched {
    /// The response as the served-document checks take it.
    pub fn served(&self) -> irsa_core::served::Served<'_> {
        irsa_core::served::Served {
            url: &self.url,
            status: self.status,
            location: self.location.as_deref(),
            content_type: self.content_type.as_deref(),
            cache_control: self.cache_control.as_deref(),
            body: self.body.as_bytes(),
        }
    }
}

#[cfg(feature = "online")]
impl Fetcher {
    /// Builds a client; `ca` replaces the trusted roots with one PEM bundle.
    pub fn new(ca: Option<&Path>, resolves: &[Resolve]) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("irsa/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read --ca-cert {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("--ca-cert {} is not a PEM certificate bundle", ca.display())
            })?;
            if certs.is_empty() {
                bail!("--ca-cert {} holds no certificate", ca.display());
            }
            builder = builder.tls_certs_only(certs);
        }
        for r in resolves {
            builder = builder.resolve(&r.host, r.addr);
        }
        let client = builder.build().context("cannot build the HTTPS client")?;
        Ok(Self { client })
    }

    /// GETs `url`; the error text carries the whole cause chain (TLS details included).
    pub fn get(&self, url: &str) -> Result<Fetched, String> {
        crate::rt::block_on(async {
            let resp = self.client.get(url).send().await.map_err(|e| chain(&e))?;
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            let content_type = header("content-type");
            let cache_control = header("cache-control");
            let location = header("location");
            let status = resp.status().as_u16();
            let final_url = resp.url().to_string();
            let mut body = Vec::new();
            let mut resp = resp;
            while let Some(chunk) = resp.chunk().await.map_err(|e| chain(&e))? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(format!(
                        "response is larger than {MAX_BODY} bytes; STS only reads small documents"
                    ));
                }
            }
            Ok(Fetched {
                url: final_url,
                status,
                content_type,
                cache_control,
                location,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        })
        .unwrap_or_else(|e| Err(format!("{e:#}")))
    }
}

#[cfg(feature = "online")]
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
