//! The agent's listeners: HTTPS for the broker, plain HTTP for the node
//! agent and `serve`, all under the webhook's limits
//! ([`irsa_webhook::conn`]: header and idle deadlines, connection cap
//! with eviction of idle connections). A credential request is a GET whose
//! body is never read.
//!
//! Routes: `GET /v1/credentials`, `GET /healthz`, `GET /metrics`. A plain
//! listener first checks `Host` against its own addresses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use irsa_core::podidentity::host_allowed;
use irsa_webhook::conn::{accept_loop, serve, Body, Protocol};
use irsa_webhook::limits::Limits;
use irsa_webhook::registry::Connections;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::metrics::{Code, Metrics};
use crate::node::{Answer, Forwarder};

/// What answers `/v1/credentials`.
#[derive(Clone)]
pub enum Backend {
    /// The broker itself.
    Broker(Arc<Broker>),
    /// A forwarder to the broker.
    Node(Arc<Forwarder>),
}

/// The limits every agent listener has: the webhook's default deadlines
/// and 1024 connections (a credential request has no body).
pub fn limits() -> Limits {
    let d = irsa_webhook::limits::LimitFlags::default();
    Limits {
        header_read: Duration::from_secs(d.header_read_timeout_seconds),
        body: Duration::from_secs(d.body_timeout_seconds),
        idle: Duration::from_secs(d.idle_timeout_seconds),
        tls_handshake: Duration::from_secs(d.tls_handshake_timeout_seconds),
        max_connections: 1024,
        metrics_max_connections: 32,
        max_request_bytes: 1024,
        max_buffered_bytes: 1024,
    }
}

/// A running agent.
pub struct Running {
    /// Where it listens.
    pub addrs: Vec<SocketAddr>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and lets requests in flight finish (up to 10 s).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        for t in self.tasks {
            t.abort();
        }
    }
}

fn text(status: u16, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn credentials(
    backend: &Backend,
    authorization: Option<&[u8]>,
    node_token: Option<&[u8]>,
) -> Answer {
    match backend {
        Backend::Node(forwarder) => forwarder.forward(authorization).await,
        Backend::Broker(broker) => match broker.credentials(authorization, node_token).await {
            Ok(creds) => Answer {
                status: 200,
                body: Bytes::from(creds.to_json()),
                json: true,
            },
            Err(refusal) => {
                tracing::info!(status = refusal.status, reason = %refusal.reason, "credentials refused");
                Answer {
                    status: refusal.status,
                    body: Bytes::from(format!("{}\n", refusal.reason)),
                    json: false,
                }
            }
        },
    }
}

async fn route(
    req: Request<Incoming>,
    backend: Backend,
    hosts: Option<Arc<Vec<SocketAddr>>>,
    metrics: Arc<Metrics>,
) -> Response<Body> {
    if let Some(hosts) = &hosts {
        let host = req.headers().get(hyper::header::HOST).map(|h| h.as_bytes());
        if !host_allowed(host, hosts) {
            metrics.requests.get_or_create(&Code { code: 400 }).inc();
            return text(400, "the Host header must be the address this endpoint listens on (by IP); names are refused against DNS rebinding\n".into());
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/credentials") => {
            let auth = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            let node_token = req
                .headers()
                .get(irsa_core::podidentity::NODE_TOKEN_HEADER)
                .map(|v| v.as_bytes());
            let answer = credentials(&backend, auth, node_token).await;
            metrics
                .requests
                .get_or_create(&Code {
                    code: answer.status,
                })
                .inc();
            let mut r = text(answer.status, String::new());
            *r.body_mut() = Full::new(answer.body);
            if answer.json {
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
            }
            r
        }
        (_, "/v1/credentials") => text(405, "use GET\n".into()),
        (&Method::GET, "/healthz") => text(200, "ok\n".into()),
        (&Method::GET, "/metrics") => {
            let mut r = text(200, metrics.encode());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(
            404,
            "not found; credentials are at /v1/credentials\n".into(),
        ),
    }
}

/// Serves `backend` on `listener` until `stop` changes: TLS when
/// `acceptor` is given, else plain HTTP checking `Host` against `hosts`.
fn spawn_listener(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    hosts: Option<Arc<Vec<SocketAddr>>>,
    backend: Backend,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let limits = Arc::new(limits());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let open: Arc<Mutex<Connections>> = Arc::default();
        let mut connections = tokio::task::JoinSet::new();
        let name = if acceptor.is_some() { "https" } else { "http" };
        accept_loop(
            listener,
            Some(slots),
            stop,
            metrics.clone(),
            name,
            || Connections::evict_idle(&open),
            |tcp, _peer, slot| {
                while connections.try_join_next().is_some() {}
                let _ = tcp.set_nodelay(true);
                let (id, stop_conn, activity) = Connections::open(&open);
                let (acceptor, hosts, backend, metrics, limits, open) = (
                    acceptor.clone(),
                    hosts.clone(),
                    backend.clone(),
                    metrics.clone(),
                    limits.clone(),
                    open.clone(),
                );
                connections.spawn(async move {
                    let m = metrics.clone();
                    let handler = move |req| route(req, backend.clone(), hosts.clone(), m.clone());
                    match acceptor {
                        Some(acceptor) => {
                            match tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(tls)) => {
                                    serve(
                                        tls,
                                        Protocol::Http1,
                                        handler,
                                        activity,
                                        &limits,
                                        &*metrics,
                                        stop_conn,
                                    )
                                    .await
                                }
                                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                                Err(_) => irsa_webhook::conn::ConnEvents::connection_cut(
                                    &*metrics,
                                    "handshake_timeout",
                                ),
                            }
                        }
                        None => {
                            serve(
                                tcp,
                                Protocol::Http1,
                                handler,
                                activity,
                                &limits,
                                &*metrics,
                                stop_conn,
                            )
                            .await
                        }
                    }
                    Connections::close(&open, id);
                    drop(slot);
                });
            },
        )
        .await;
        Connections::stop_all(&open);
        let drained = async { while connections.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(10), drained).await;
    })
}

async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        );
    }
    Ok(out)
}

/// What a broker or `serve` needs besides its listener.
pub struct BrokerArgs {
    /// The associations file.
    pub associations: PathBuf,
    /// The cluster's name (the `eks-cluster-name` tag).
    pub cluster_name: String,
    /// The tokens' audience.
    pub audience: String,
    /// Kubeconfig; else the usual chain.
    pub kubeconfig: Option<PathBuf>,
    /// Refuse requests that do not come through the node agent of the
    /// pod's node (broker only).
    pub require_node_binding: bool,
    /// Audience of the node agents' own tokens.
    pub node_audience: String,
}

async fn start_broker(args: &BrokerArgs, tasks: &mut Vec<JoinHandle<()>>) -> Result<Arc<Broker>> {
    let kube = irsa_webhook::server::client_from(args.kubeconfig.as_deref()).await?;
    let broker = Broker::start(
        crate::broker::BrokerConfig {
            associations: &args.associations,
            cluster_name: &args.cluster_name,
            audience: &args.audience,
            kube,
            require_node_binding: args.require_node_binding,
            node_audience: &args.node_audience,
        },
        tasks,
    )
    .await?;
    Ok(Arc::new(broker))
}

fn run(
    listeners: Vec<TcpListener>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    check_host: bool,
    backend: Backend,
    metrics: Arc<Metrics>,
    tasks: Vec<JoinHandle<()>>,
) -> Result<Running> {
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<_>>()?;
    let hosts = check_host.then(|| Arc::new(addrs.clone()));
    let (stop, stop_rx) = watch::channel(false);
    let servers = listeners
        .into_iter()
        .map(|l| {
            spawn_listener(
                l,
                acceptor.clone(),
                hosts.clone(),
                backend.clone(),
                metrics.clone(),
                stop_rx.clone(),
            )
        })
        .collect();
    tracing::info!(?addrs, "irsa agent listening");
    Ok(Running {
        addrs,
        metrics,
        stop,
        servers,
        tasks,
    })
}

/// `irsa agent broker`: HTTPS on `listen` with the certificate pair
/// (reloaded when the files change).
pub async fn broker(
    listen: &[SocketAddr],
    cert: &std::path::Path,
    key: &std::path::Path,
    args: &BrokerArgs,
) -> Result<Running> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = Arc::new(
        irsa_webhook::tls::ReloadingCert::load(cert, key, provider.clone()).context(
            "cannot load the broker's serving certificate (--tls-cert-file, --tls-key-file)",
        )?,
    );
    let versions = irsa_webhook::tls::protocol_versions(None)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(irsa_webhook::tls::server_config(
        certs.clone(),
        provider,
        versions,
        irsa_webhook::tls::Offer::Http1,
    )?));
    let mut tasks = Vec::new();
    let b = start_broker(args, &mut tasks).await?;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match certs.reload() {
                Ok(true) => tracing::info!("serving certificate reloaded"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "serving certificate not reloaded; keeping the current one"),
            }
        }
    }));
    let listeners = bind(listen).await?;
    let metrics = b.metrics.clone();
    run(
        listeners,
        Some(acceptor),
        false,
        Backend::Broker(b),
        metrics,
        tasks,
    )
}

/// `irsa agent serve`: the broker behind plain HTTP on `listen`.
pub async fn serve_all_in_one(listen: &[SocketAddr], args: &BrokerArgs) -> Result<Running> {
    let mut tasks = Vec::new();
    let b = start_broker(args, &mut tasks).await?;
    let listeners = bind(listen).await?;
    let metrics = b.metrics.clone();
    run(listeners, None, true, Backend::Broker(b), metrics, tasks)
}

/// `irsa agent node`: plain HTTP on `listen`, forwarding to `broker`.
pub async fn node(
    listen: &[SocketAddr],
    broker: &str,
    ca_file: &std::path::Path,
    node_token_file: Option<&std::path::Path>,
) -> Result<Running> {
    let forwarder = Arc::new(Forwarder::new(broker, ca_file, node_token_file)?);
    let listeners = bind(listen).await?;
    run(
        listeners,
        None,
        true,
        Backend::Node(forwarder),
        Arc::new(Metrics::default()),
        Vec::new(),
    )
}
