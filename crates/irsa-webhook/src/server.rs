//! The HTTPS admission server and the plain-HTTP metrics server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use irsa_core::mutate::MutationConfig;

use crate::admission::Handler;
use crate::cache::SaStore;
use crate::conn::{accept_loop, serve, serve_unlimited, Activity, Body, Protocol};
use crate::limits::{drain, read_body, BodyError, Budget, Limits};
use crate::metrics::{Metrics, RequestLabels};
use crate::registry::Connections;
use crate::settings::Settings;
use crate::tls::{server_config, ReloadingCert};

pub use crate::kubeclient::{client, client_from, kube_config};

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
    /// Never sent: the metrics listener serves until [`Running::wait`] ends.
    _metrics_stop: watch::Sender<bool>,
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

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

struct State {
    handler: Handler,
    max_body: usize,
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// `None` only in [`Hardening::Off`].
    body_limits: Option<(Duration, Arc<Budget>)>,
}

/// Whether the connection limits, deadlines and byte budget apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub enum Hardening {
    /// The server as deployed.
    On,
    /// No limits at all: only to measure what they cost (the `admission`
    /// benchmark). Never use it to serve a cluster.
    Off,
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
    let Some((deadline, budget)) = &state.body_limits else {
        return mutate_unlimited(req, state).await;
    };
    let mut incoming = req.into_body();
    let read = read_body(&mut incoming, state.max_body, budget);
    let (body, held) = match tokio::time::timeout(*deadline, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(BodyError::TooLarge(_))) => {
            drain(&mut incoming).await;
            return closing(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "AdmissionReview larger than --max-request-bytes\n",
            ));
        }
        Ok(Err(BodyError::Read(_))) => {
            return closing(text(
                StatusCode::BAD_REQUEST,
                "cannot read the request body\n",
            ))
        }
        Err(_) => {
            state.handler.metrics.connection_cut("body_timeout");
            return closing(text(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within --body-timeout-seconds\n",
            ));
        }
    };
    let bytes = state.handler.review(&body).await;
    drop((body, held));
    json(bytes)
}

/// Asks hyper to close the connection after this answer. The rest of an
/// unread body is not waited for, except after a 413, where [`drain`] drops
/// a bounded amount of it first.
fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// [`Hardening::Off`]: the whole body, no deadline, no budget.
async fn mutate_unlimited(req: Request<Incoming>, state: &State) -> Response<Body> {
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
    json(state.handler.review(&body).await)
}

fn json(bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// TLS handshake (bounded), then HTTP/2 or HTTP/1.1 as ALPN agreed until the client closes, a
/// limit cuts the connection, or the server stops: on `stop`, the request
/// in flight is answered and the connection closed.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    limits: Option<&Limits>,
    (stop, activity): (oneshot::Receiver<()>, Arc<Activity>),
) {
    let handshake = limits.map_or(Duration::from_secs(10), |l| l.tls_handshake);
    let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            state.handler.metrics.connection_cut("handshake_timeout");
            return;
        }
    };
    let metrics = state.handler.metrics.clone();
    let handler = move |req| {
        let state = state.clone();
        async move { route(req, state).await }
    };
    let protocol = Protocol::from_alpn(tls.get_ref().1.alpn_protocol());
    metrics.connection_opened(protocol);
    match limits {
        Some(limits) => serve(tls, protocol, handler, activity, limits, &*metrics, stop).await,
        None => serve_unlimited(tls, protocol, handler, stop).await,
    }
}

/// `/metrics`, with `--enable-debugging-handlers` also
/// [`crate::debug::CACHE_PATH`], and 404 for anything else; the body, if
/// any, is never read.
async fn metrics_route(
    req: Request<Incoming>,
    m: Arc<Metrics>,
    s: SaStore,
    debug: Option<Arc<MutationConfig>>,
) -> Response<Body> {
    match (req.uri().path(), debug) {
        ("/metrics", _) => {}
        (crate::debug::CACHE_PATH, Some(config)) => {
            let mut r = Response::new(Full::new(Bytes::from(crate::debug::cache_json(
                &s, &config,
            ))));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            return r;
        }
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    }
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
}

/// Starts the webhook. With `client`, the ServiceAccount cache is kept in
/// sync by a watch; `store` may be pre-filled (benchmarks, tests).
pub async fn run(
    settings: Settings,
    client: Option<Client>,
    store: Option<SaStore>,
) -> Result<Running> {
    start(settings, client, store, Hardening::On).await
}

/// [`run`] with the limits switched on or off. Off exists only so the
/// `admission` benchmark can measure what the limits cost in one run.
#[doc(hidden)]
pub async fn start(
    settings: Settings,
    client: Option<Client>,
    store: Option<SaStore>,
    hardening: Hardening,
) -> Result<Running> {
    let limits = Limits::new(&settings.limits, settings.max_request_bytes)?;
    let versions = crate::tls::protocol_versions(settings.tls_min_version.as_deref())?;
    let container_credentials = settings.pod_identity.settings()?;
    let provider = Arc::new(crate::ciphers::restrict(
        rustls::crypto::aws_lc_rs::default_provider(),
        settings.tls_cipher_suites.as_deref().unwrap_or(""),
    )?);
    let certs = Arc::new(
        ReloadingCert::load(&settings.tls_cert, &settings.tls_key, provider.clone()).context(
            "cannot load the serving certificate (create one with `irsa webhook certs`)",
        )?,
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(
        certs.clone(),
        provider,
        versions,
        if settings.http2 {
            crate::tls::Offer::Http2AndHttp1
        } else {
            crate::tls::Offer::Http1
        },
    )?));
    let metrics = Arc::new(Metrics::default());
    metrics.certificate_expiry.set(certs.not_after());
    let mut mutation = settings.mutation();
    mutation.container_credentials = container_credentials;
    let store = store.unwrap_or_else(|| SaStore::new(&mutation.annotation_prefix));
    store.set_lookup_concurrency(settings.sa_lookup_concurrency);
    if settings.compose_role_arn {
        let context = crate::imds::context(
            &settings.imds_endpoint,
            settings.aws_account_id.as_deref(),
            settings.aws_partition.as_deref(),
            (!settings.aws_default_region.is_empty())
                .then_some(settings.aws_default_region.as_str()),
        )
        .await?;
        tracing::info!(partition = %context.partition, account = %context.account, "role names in role-arn annotations are composed into ARNs");
        store.set_compose_role_arn(context);
    }
    let mut tasks = Vec::new();
    let pod_identities = settings
        .pod_identity
        .watch_container_credentials_config
        .as_deref()
        .map(|path| crate::containercreds::watch(path, &mut tasks));
    if let Some(client) = client.clone() {
        tasks.push(tokio::spawn(store.clone().watch(client.clone())));
        if settings.watch_config_map {
            store.expect_config_map();
            let namespace = settings.go_compat.config_map_namespace().to_string();
            tracing::info!(%namespace, "watching ConfigMap pod-identity-webhook");
            tasks.push(tokio::spawn(crate::configmap::watch(
                store.clone(),
                client,
                namespace,
            )));
        }
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
                    reload_metrics.certificate_expiry.set(certs.not_after());
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
    let metrics_ip = settings
        .metrics_bind_address
        .unwrap_or(settings.bind_address);
    let metrics_listener = TcpListener::bind((metrics_ip, settings.metrics_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {metrics_ip}:{} for metrics",
                settings.metrics_port
            )
        })?;
    let addr = listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;
    tracing::info!(%addr, %metrics_addr, "webhook listening");

    let handler = Handler {
        store: store.clone(),
        client,
        config: Arc::new(mutation),
        pod_identities,
        lookup_timeout: settings.lookup_timeout(),
        metrics: metrics.clone(),
    };
    let hardened = hardening == Hardening::On;
    let budget = Arc::new(Budget::new(limits.max_buffered_bytes));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let metrics_slots = Arc::new(Semaphore::new(limits.metrics_max_connections));
    metrics.set_capacity(
        budget.clone(),
        (slots.clone(), limits.max_connections),
        (metrics_slots.clone(), limits.metrics_max_connections),
    );
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = Arc::new(State {
        handler,
        draining: draining.clone(),
        max_body: limits.max_request_bytes,
        body_limits: hardened.then(|| (limits.body, budget.clone())),
    });
    let (shutdown, stop) = watch::channel(false);
    let (metrics_stop, metrics_stop_rx) = watch::channel(false);
    let drain = Duration::from_secs(settings.shutdown_seconds);
    let limits = Arc::new(limits);

    let debug = settings
        .enable_debugging_handlers
        .then(|| state.handler.config.clone());
    let (m, s, l) = (metrics.clone(), store.clone(), limits.clone());
    tasks.push(tokio::spawn(accept_loop(
        metrics_listener,
        hardened.then_some(metrics_slots),
        metrics_stop_rx,
        metrics.clone(),
        "metrics",
        || false,
        move |tcp, _peer, slot| {
            let (m, s, l, debug) = (m.clone(), s.clone(), l.clone(), debug.clone());
            tokio::spawn(async move {
                let handler = {
                    let m = m.clone();
                    move |req| metrics_route(req, m.clone(), s.clone(), debug.clone())
                };
                // The metrics server never drains: it has nothing to finish.
                let (_never, stop) = oneshot::channel();
                if hardened {
                    let activity = Arc::new(Activity::new());
                    serve(tcp, Protocol::Http1, handler, activity, &l, &*m, stop).await;
                } else {
                    serve_unlimited(tcp, Protocol::Http1, handler, stop).await;
                }
                drop(slot);
            });
        },
    )));

    let m = metrics.clone();
    let server = tokio::spawn(async move {
        let open: Arc<Mutex<Connections>> = Arc::default();
        let mut connections = tokio::task::JoinSet::new();
        accept_loop(
            listener,
            hardened.then_some(slots),
            stop,
            m,
            "https",
            || Connections::evict_idle(&open),
            |tcp, peer, slot| {
                // Reap finished connections so the set stays small.
                while connections.try_join_next().is_some() {}
                let _ = tcp.set_nodelay(true);
                let (id, stop_conn, activity) = Connections::open(&open);
                let (acceptor, state, open, limits) = (
                    acceptor.clone(),
                    state.clone(),
                    open.clone(),
                    limits.clone(),
                );
                connections.spawn(async move {
                    let limits = hardened.then_some(&*limits);
                    let conn = (stop_conn, activity);
                    serve_connection(tcp, peer, &acceptor, state, limits, conn).await;
                    Connections::close(&open, id);
                    drop(slot);
                });
            },
        )
        .await;
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
        _metrics_stop: metrics_stop,
        draining,
        tasks,
        server,
    })
}
