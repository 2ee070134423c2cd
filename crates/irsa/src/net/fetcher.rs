//! The HTTPS client that reads what an issuer serves (reqwest on rustls),
//! as STS would: no redirects, a short timeout, certificate verification
//! on.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::fetch::{Fetched, Resolve};

/// Largest document irsa reads.
const MAX_BODY: usize = 1 << 20;

/// An HTTPS client configured for issuer checks.
pub struct Fetcher {
    client: reqwest::Client,
}

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
            let certs = irsa_webhook::tls::read_ca_bundle(ca, "--ca-cert")?
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()
                .context("cannot use --ca-cert")?;
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
        super::rt::block_on(async {
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
