//! The node agent's forwarding: each credential request goes to the
//! broker over TLS (a pooled connection, the broker's CA only), with the
//! pod's `Authorization` header unchanged; the broker's status and body
//! come back as they are (the body capped at [`MAX_ANSWER_BYTES`]).
//!
//! Nothing is cached on the node: the broker's cache already makes a
//! repeated fetch cheap (no TokenReview within its TTL, no STS call while
//! the session is fresh), and a node cache would keep every local pod's
//! credentials on a machine that runs untrusted workloads, next to the
//! link-local endpoint, where a broken node agent could hand them out
//! without asking the broker (which is where revocation, deleted pods
//! and associations are checked).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyper::body::Bytes;

/// Largest broker answer relayed (credentials are about 2 KiB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest wait for the broker's whole answer (its own STS retries take
/// at most 12 s).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(15);

/// Forwards credential requests to the broker.
pub struct Forwarder {
    client: reqwest::Client,
    url: String,
    node_token_file: Option<PathBuf>,
}

/// The broker's answer.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
    /// Whether it is JSON.
    pub json: bool,
}

impl Forwarder {
    /// A forwarder to `broker` (`https://HOST[:PORT]`, with or without the
    /// path), trusting only the certificates in `ca_file`, presenting the
    /// node agent's own token from `node_token_file` (re-read for every
    /// request: the kubelet rotates it) for node binding.
    pub fn new(broker: &str, ca_file: &Path, node_token_file: Option<&Path>) -> Result<Self> {
        let base = broker.trim_end_matches('/');
        let base = base.strip_suffix("/v1/credentials").unwrap_or(base);
        if !base.starts_with("https://") {
            bail!("--broker {broker:?} is not an https:// URL; write e.g. https://irsa-agent-broker.irsa-system.svc:8443");
        }
        let certs = irsa_webhook::tls::read_ca_bundle(ca_file, "--broker-ca-file")?
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .context("cannot use --broker-ca-file")?;
        let client = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_only(certs)
            .timeout(BROKER_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("irsa-agent-node/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTPS client for the broker")?;
        if let Some(f) = node_token_file {
            read_node_token(f)?;
        }
        Ok(Self {
            client,
            url: format!("{base}/v1/credentials"),
            node_token_file: node_token_file.map(Path::to_path_buf),
        })
    }

    /// Asks the broker with `authorization` (the pod's header, unchanged).
    pub async fn forward(&self, authorization: Option<&[u8]>) -> Answer {
        let mut request = self.client.get(&self.url);
        if let Some(value) =
            authorization.and_then(|v| reqwest::header::HeaderValue::from_bytes(v).ok())
        {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let failed = |reason: &str| Answer {
            status: 502,
            body: Bytes::from(format!("{reason}; retry\n")),
            json: false,
        };
        if let Some(file) = &self.node_token_file {
            match read_node_token(file) {
                Ok(token) => match reqwest::header::HeaderValue::from_str(&token) {
                    Ok(v) => request = request.header(irsa_core::podidentity::NODE_TOKEN_HEADER, v),
                    Err(_) => return failed("the node agent's own token is not a header value"),
                },
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "node token not read");
                    return failed("the node agent could not read its own token");
                }
            }
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "the broker did not answer");
                return failed("the node agent could not reach the broker");
            }
        };
        let status = response.status().as_u16();
        let json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return failed("the broker's answer is too large");
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return failed("the broker's answer was cut"),
            }
        }
        Answer {
            status,
            body: Bytes::from(body),
            json,
        }
    }
}

/// The node agent's own token (`--node-token-file`), trimmed and bounded.
fn read_node_token(file: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| {
            f.take(irsa_core::podidentity::MAX_TOKEN_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .with_context(|| format!("cannot read --node-token-file {}", file.display()))?;
    let token = text.trim();
    if token.is_empty() || token.len() > irsa_core::podidentity::MAX_TOKEN_BYTES {
        bail!(
            "--node-token-file {} does not hold one ServiceAccount token (empty, or more than {} bytes): project the node agent's token there",
            file.display(),
            irsa_core::podidentity::MAX_TOKEN_BYTES
        );
    }
    Ok(token.to_string())
}
