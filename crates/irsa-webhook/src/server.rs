//! The HTTPS admission server and the plain-HTTP metrics server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::admission::Handler;
use crate::cache::SaStore;
use crate::metrics::{Metrics, RequestLabels};
use crate::settings::Settings;
use crate::tls::{server_config, ReloadingCert};

/// A running webhook.
pub struct Running {
    /// Where /mutate is served.
    pub addr: SocketAddr,
    /// Where /metrics is served.
    pub metrics_addr: SocketAddr,
    /// The ServiceAccount cache.
    pub store: SaStore,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
}

impl Running {
    /// Starts a graceful stop: /readyz fails from now on so the Service
    /// stops routing here, while /mutate keeps answering.
    pub fn begin_drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops accepting connections and drains in-flight requests.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for the server to finish after [`Running::shutdown`].
    pub async fn wait(self) {
        let _ = self.server.await;
        for t in self.tasks {
            t.abort();
        }
    }
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

struct State {
    handler: Handler,
    max_body: usize,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

async fn route(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let start = Instant::now();
    let verb = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        _ => "other",
    };
    let path = match req.uri().path() {
        "/mutate" => "/mutate",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        _ => "other",
    };
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => {
            if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            } else if state.handler.store.is_ready() {
                text(StatusCode::OK, "ok")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service account cache not synced yet",
                )
            }
        }
        (&Method::POST, "/mutate") => mutate(req, &state).await,
        (_, "/mutate") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST with an AdmissionReview",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    state.handler.metrics.request(
        RequestLabels {
            verb,
            path,
            code: response.status().as_u16(),
        },
        start.elapsed().as_secs_f64(),
    );
    response
}

async fn mutate(req: Request<Incoming>, state: &State) -> Response<Body> {
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json\n",
        );
    }
    let body = match Limited::new(req.into_body(), state.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "AdmissionReview larger than --max-request-bytes\n",
            )
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "cannot read the request body\n"),
    };
    let bytes = state.handler.review(&body).await;
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Open connections, each with its own stop signal. A connection polls
/// only its own oneshot receiver: a signal shared by every connection
/// (a watch channel, hyper-util's `GracefulShutdown`) takes a lock shared
/// by all of them on every poll; under load on two cores that lock cost
/// about as much CPU as the whole admission (the `admission` bench: 1.55x
/// the bare server's CPU per request with it, 1.40x without).
#[derive(Default)]
struct Connections {
    next: u64,
    open: HashMap<u64, oneshot::Sender<()>>,
}

impl Connections {
    fn open(this: &Mutex<Self>) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let Ok(mut c) = this.lock() else {
            // A poisoned registry cannot signal this connection; it still
            // ends when its client goes or the server task is dropped.
            return (u64::MAX, rx);
        };
        let id = c.next;
        c.next += 1;
        c.open.insert(id, tx);
        (id, rx)
    }

    fn close(this: &Mutex<Self>, id: u64) {
        if let Ok(mut c) = this.lock() {
            c.open.remove(&id);
        }
    }

    /// Asks every open connection to finish its request in flight and close.
    fn stop_all(this: &Mutex<Self>) {
        let senders: Vec<_> = match this.lock() {
            Ok(mut c) => c.open.drain().map(|(_, tx)| tx).collect(),
            Err(_) => Vec::new(),
        };
        for tx in senders {
            let _ = tx.send(());
        }
    }
}

/// TLS handshake (bounded), then HTTP/1.1 until the client closes or the
/// server stops: on `stop`, the request in flight is answered and the
/// connection closed.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    mut stop: oneshot::Receiver<()>,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(req, state).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        _ = conn.as_mut() => {}
        _ = &mut stop => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Builds the kube client from `--kubeconfig` or the in-cluster environment.
pub async fn client(settings: &Settings) -> Result<Client> {
    client_from(settings.kubeconfig.as_deref()).await
}

/// Builds a kube client from `kubeconfig`, else the usual chain
/// ($KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn client_from(kubeconfig: Option<&std::path::Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster configuration; pass --kubeconfig")?,
    };
    Client::try_from(config).context("cannot build the Kubernetes client")
}

/// Starts the webhook. With `client`, the ServiceAccount cache is kept in
/// sync by a watch; `store` may be pre-filled (benchmarks, tests).
pub async fn run(
    settings: Settings,
    client: Option<Client>,
    store: Option<SaStore>,
) -> Result<Running> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = Arc::new(
        ReloadingCert::load(&settings.tls_cert, &settings.tls_key, provider.clone()).context(
            "cannot load the serving certificate (create one with `irsa webhook certs`)",
        )?,
    );
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(server_config(certs.clone(), provider)?));
    let metrics = Arc::new(Metrics::default());
    let mutation = settings.mutation();
    let store = store.unwrap_or_else(|| SaStore::new(&mutation.annotation_prefix));
    let mut tasks = Vec::new();
    if let Some(client) = client.clone() {
        tasks.push(tokio::spawn(store.clone().watch(client)));
    }
    let reload_every = Duration::from_secs(settings.tls_reload_seconds.max(1));
    let reload_metrics = metrics.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(reload_every);
        loop {
            tick.tick().await;
            match certs.reload() {
                Ok(true) => {
                    tracing::info!("serving certificate reloaded");
                    reload_metrics.tls_reload("ok");
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "serving certificate not reloaded; keeping the current one");
                    reload_metrics.tls_reload("error");
                }
            }
        }
    }));

    let listener = TcpListener::bind((settings.bind_address, settings.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{}",
                settings.bind_address, settings.port
            )
        })?;
    let metrics_listener = TcpListener::bind((settings.bind_address, settings.metrics_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} for metrics",
                settings.bind_address, settings.metrics_port
            )
        })?;
    let addr = listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;
    tracing::info!(%addr, %metrics_addr, "webhook listening");

    let handler = Handler {
        store: store.clone(),
        client,
        config: Arc::new(mutation),
        lookup_timeout: settings.lookup_timeout(),
        metrics: metrics.clone(),
    };
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = Arc::new(State {
        handler,
        draining: draining.clone(),
        max_body: settings.max_request_bytes,
    });
    let (shutdown, mut stop) = watch::channel(false);
    let drain = Duration::from_secs(settings.shutdown_seconds);

    let m = metrics.clone();
    let s = store.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = metrics_listener.accept().await else {
                continue;
            };
            let (m, s) = (m.clone(), s.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (m, s) = (m.clone(), s.clone());
                    async move {
                        let r = if req.uri().path() == "/metrics" {
                            m.cache_size.set(i64::try_from(s.len()).unwrap_or(i64::MAX));
                            m.cache_ready.set(i64::from(s.is_ready()));
                            let mut r = Response::new(Full::new(Bytes::from(m.encode())));
                            r.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static(
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                ),
                            );
                            r
                        } else {
                            text(StatusCode::NOT_FOUND, "not found")
                        };
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    }));

    let server = tokio::spawn(async move {
        let open: Arc<Mutex<Connections>> = Arc::default();
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                accepted = listener.accept() => {
                    // Reap finished connections so the set stays small.
                    while connections.try_join_next().is_some() {}
                    let Ok((tcp, peer)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    let (id, stop_conn) = Connections::open(&open);
                    let (acceptor, state, open) = (acceptor.clone(), state.clone(), open.clone());
                    connections.spawn(async move {
                        serve_connection(tcp, peer, &acceptor, state, stop_conn).await;
                        Connections::close(&open, id);
                    });
                }
            }
        }
        drop(listener);
        Connections::stop_all(&open);
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(drain, drained).await.is_err() {
            tracing::warn!("in-flight requests did not finish within the drain period");
        }
    });
    Ok(Running {
        addr,
        metrics_addr,
        store,
        metrics,
        shutdown,
        draining,
        tasks,
        server,
    })
}
