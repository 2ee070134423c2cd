//! A fault-injecting HTTP proxy in front of moto on 127.0.0.1: it forwards
//! every request the aws-sdk clients send and can (a) answer IAM/S3
//! `Throttling` for some requests, as AWS does under load, or (b) cut the
//! run short right after the N-th write call reached moto, the way a
//! killed process or a lost network leaves an apply half done, or (c) make
//! one IAM action fail (`AccessDenied`, as an SCP would) or (d) answer it
//! with success without forwarding it, the way an eventually consistent
//! read or a misbehaving endpoint can make a done step look done when it
//! is not.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};

/// What the proxy does.
#[derive(Debug, Clone, Copy, Default)]
pub enum Fault {
    /// Forward everything.
    #[default]
    None,
    /// Answer every `n`-th request with a throttling error instead of forwarding it.
    ThrottleEvery(usize),
    /// Forward the first `n` write calls; fail every request after that.
    CutAfterWrites(usize),
    /// Answer every IAM request for this action with `AccessDenied`.
    DenyAction(&'static str),
    /// Answer every request whose path starts with this (a REST API such
    /// as S3 Control) with `AccessDenied`, as a role without the
    /// permission gets.
    DenyPath(&'static str),
    /// Answer every IAM request for this action with an empty success,
    /// without forwarding it.
    FakeSuccess(&'static str),
}

/// Counters the test reads.
#[derive(Default)]
pub struct Counts {
    /// Requests seen.
    pub requests: AtomicUsize,
    /// Write calls forwarded to moto.
    pub writes: AtomicUsize,
    /// Requests answered with a throttling error.
    pub throttled: AtomicUsize,
}

/// A running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Counters.
    pub counts: Arc<Counts>,
}

/// Whether a request changes state: S3 `PUT`/`POST`/`DELETE`, or an
/// IAM/STS query-protocol action that is not a read.
fn is_write(method: &hyper::Method, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    if let Some(action) = text.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return !["Get", "List", "Head", "Describe", "Simulate", "Generate"]
            .iter()
            .any(|p| action.starts_with(p))
            && action != "AssumeRoleWithWebIdentity";
    }
    matches!(
        *method,
        hyper::Method::PUT | hyper::Method::POST | hyper::Method::DELETE
    )
}

/// The `Action=` of an IAM/STS query-protocol request body.
fn iam_action(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
}

fn error(status: u16, code: &str, s3: bool) -> Response<Full<Bytes>> {
    let body = if s3 {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>")
    } else {
        format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected by the test proxy</Message></Error><RequestId>x</RequestId></ErrorResponse>")
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Starts a proxy to `upstream` (moto's endpoint) with `fault`.
pub fn start(upstream: &str, fault: Fault) -> Proxy {
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    let upstream = upstream.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = reqwest::Client::new();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (client, upstream, counts) = (client.clone(), upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (client, upstream, counts) =
                                (client.clone(), upstream.clone(), counts.clone());
                            async move {
                                Ok::<_, Infallible>(
                                    handle(req, &client, &upstream, &counts, fault).await,
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
    });
    let addr: std::net::SocketAddr = rx.recv().unwrap();
    Proxy {
        endpoint: format!("http://{addr}"),
        counts,
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    client: &reqwest::Client,
    upstream: &str,
    counts: &Counts,
    fault: Fault,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let n = counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let s3 = !body.starts_with(b"Action=") && !String::from_utf8_lossy(&body).contains("&Action=");
    let write = is_write(&parts.method, &body);
    match fault {
        Fault::ThrottleEvery(every) if every > 0 && n.is_multiple_of(every) => {
            counts.throttled.fetch_add(1, Ordering::SeqCst);
            return if s3 {
                error(503, "SlowDown", true)
            } else {
                error(400, "Throttling", false)
            };
        }
        Fault::DenyAction(action) if iam_action(&body) == Some(action) => {
            return error(403, "AccessDenied", false);
        }
        // S3 Control wraps its errors as IAM does (`<ErrorResponse>`).
        Fault::DenyPath(prefix) if parts.uri.path().starts_with(prefix) => {
            return error(403, "AccessDenied", false);
        }
        Fault::FakeSuccess(action) if iam_action(&body) == Some(action) => {
            let text = format!("<{action}Response xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></{action}Response>");
            return Response::builder()
                .status(200)
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from(text)))
                .unwrap();
        }
        Fault::CutAfterWrites(limit) => {
            let done = counts.writes.load(Ordering::SeqCst);
            if done >= limit {
                return error(503, "ServiceUnavailable", s3);
            }
        }
        _ => {}
    }
    if write {
        counts.writes.fetch_add(1, Ordering::SeqCst);
    }
    let url = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut out = client
        .request(parts.method.clone(), url)
        .body(body.to_vec());
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    match out.send().await {
        Ok(r) => {
            let mut resp = Response::builder().status(r.status().as_u16());
            for (name, value) in r.headers() {
                if name != hyper::header::CONTENT_LENGTH && name != hyper::header::TRANSFER_ENCODING
                {
                    resp = resp.header(name, value);
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            resp.body(Full::new(bytes)).unwrap()
        }
        Err(e) => error(502, &format!("ProxyError {e}"), s3),
    }
}
