//! Prometheus metrics (OpenMetrics text on the metrics port). Names follow
//! the Go webhook where dashboards use them (`http_request_count`,
//! `pod_identity_webhook_pod_count`, `pod_identity_webhook_missing_sa_count`);
//! latency is in seconds.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use crate::limits::Budget;

/// Labels of a served request (static strings: no allocation per request).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method (`GET`, `POST`, or `other`).
    pub verb: &'static str,
    /// URL path (known routes; others are `other`).
    pub path: &'static str,
    /// HTTP status.
    pub code: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// HTTP method.
    pub verb: &'static str,
    /// URL path.
    pub path: &'static str,
}

/// A single `kind` label (outcome, method or result).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// The value.
    pub kind: &'static str,
}

/// A `listener` label (`https` or `metrics`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Listener {
    /// The listener.
    pub listener: &'static str,
}

/// What the limits hold, read when metrics are encoded.
struct Capacity {
    budget: Arc<Budget>,
    https: (Arc<Semaphore>, usize),
    metrics: (Arc<Semaphore>, usize),
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Handles to the series every admission touches, resolved once: a
/// labelled lookup hashes its labels under a lock, and these run for
/// every pod created in the cluster.
struct Hot {
    mutate_ok: Counter,
    mutate_latency: Histogram,
    mutated: Counter,
    already_mutated: Counter,
    no_role: Counter,
    ignored: Counter,
    pods: Counter,
    pods_container_credentials: Counter,
}

/// All webhook metrics.
pub struct Metrics {
    hot: Hot,
    registry: Registry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds.
    pub latency: Family<PathLabels, Histogram, fn() -> Histogram>,
    /// Admissions by outcome (`mutated`, `already_mutated`, `no_role`, `not_pod`, `invalid`, ...).
    pub mutations: Family<Kind, Counter>,
    /// Pods for which a patch was built (`method="sts_web_identity"`).
    pub pod_count: Family<Kind, Counter>,
    /// ServiceAccounts found neither in the cache nor by the API fallback.
    pub missing_sa: Counter,
    /// API fallback lookups by result (`found`, `not_found`, `failed`).
    pub sa_api_lookups: Family<Kind, Counter>,
    /// Cached ServiceAccounts.
    pub cache_size: Gauge,
    /// 1 once the ServiceAccount cache has synced.
    pub cache_ready: Gauge,
    /// Certificate reloads by result (`ok`, `error`).
    pub tls_reloads: Family<Kind, Counter>,
    /// notAfter of the serving certificate, in seconds since 1970.
    pub certificate_expiry: Gauge,
    /// Connections closed by a limit (`header_timeout`, `body_timeout`,
    /// `idle_timeout`, `handshake_timeout`, `evicted_idle`).
    pub connections_cut: Family<Kind, Counter>,
    /// HTTPS connections served, by the protocol ALPN agreed (`h2`,
    /// `http/1.1`).
    pub connections_served: Family<Kind, Counter>,
    /// Failed accepts, by listener.
    pub accept_errors: Family<Listener, Counter>,
    /// Open connections, by listener.
    pub connections_open: Family<Listener, Gauge>,
    /// Request-body bytes held now.
    pub body_bytes: Gauge,
    /// Most request-body bytes held at once since start.
    pub body_bytes_peak: Gauge,
    capacity: OnceLock<Capacity>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests: Family<RequestLabels, Counter> = Family::default();
        let latency: Family<PathLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let mutations: Family<Kind, Counter> = Family::default();
        let pod_count: Family<Kind, Counter> = Family::default();
        // Each lookup's read guard ends with its closure call: two guards of
        // one family alive in a single statement deadlock the second insert.
        let kind = |kind| mutations.get_or_create(&Kind { kind }).clone();
        let pods = |kind| pod_count.get_or_create(&Kind { kind }).clone();
        let hot = Hot {
            mutate_ok: requests
                .get_or_create(&RequestLabels {
                    verb: "POST",
                    path: "/mutate",
                    code: 200,
                })
                .clone(),
            mutate_latency: latency
                .get_or_create(&PathLabels {
                    verb: "POST",
                    path: "/mutate",
                })
                .clone(),
            mutated: kind("mutated"),
            already_mutated: kind("already_mutated"),
            no_role: kind("no_role"),
            ignored: kind("ignored"),
            pods: pods("sts_web_identity"),
            pods_container_credentials: pods("container_credentials"),
        };
        let m = Self {
            hot,
            requests,
            latency,
            mutations,
            pod_count,
            missing_sa: Counter::default(),
            sa_api_lookups: Family::default(),
            cache_size: Gauge::default(),
            cache_ready: Gauge::default(),
            tls_reloads: Family::default(),
            certificate_expiry: Gauge::default(),
            connections_cut: Family::default(),
            connections_served: Family::default(),
            accept_errors: Family::default(),
            connections_open: Family::default(),
            body_bytes: Gauge::default(),
            body_bytes_peak: Gauge::default(),
            capacity: OnceLock::new(),
            registry: Registry::default(),
        };
        registry.register(
            "http_request_count",
            "Requests served, by verb, path and code",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Request latency in seconds",
            m.latency.clone(),
        );
        registry.register(
            "irsa_webhook_admissions",
            "Admission reviews by outcome (label kind)",
            m.mutations.clone(),
        );
        registry.register(
            "pod_identity_webhook_pod_count",
            "Pods mutated, by method (label kind)",
            m.pod_count.clone(),
        );
        registry.register(
            "pod_identity_webhook_missing_sa_count",
            "ServiceAccounts not found for a pod",
            m.missing_sa.clone(),
        );
        registry.register(
            "irsa_webhook_sa_api_lookups",
            "Direct API lookups on a cache miss, by result (label kind)",
            m.sa_api_lookups.clone(),
        );
        registry.register(
            "irsa_webhook_sa_cache_size",
            "ServiceAccounts in the cache",
            m.cache_size.clone(),
        );
        registry.register(
            "irsa_webhook_sa_cache_ready",
            "1 once the ServiceAccount cache has synced",
            m.cache_ready.clone(),
        );
        registry.register(
            "irsa_webhook_tls_reloads",
            "Serving certificate reloads by result (label kind)",
            m.tls_reloads.clone(),
        );
        registry.register(
            "irsa_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, in seconds since 1970",
            m.certificate_expiry.clone(),
        );
        registry.register(
            "irsa_webhook_connections_cut",
            "Connections closed by a limit (label kind)",
            m.connections_cut.clone(),
        );
        registry.register(
            "irsa_webhook_connections_served",
            "HTTPS connections served, by the HTTP version agreed in the TLS handshake (label kind: h2 or http/1.1)",
            m.connections_served.clone(),
        );
        registry.register(
            "irsa_webhook_accept_errors",
            "Failed accepts (label listener); the accept loop backs off",
            m.accept_errors.clone(),
        );
        registry.register(
            "irsa_webhook_connections_open",
            "Open connections (label listener)",
            m.connections_open.clone(),
        );
        registry.register(
            "irsa_webhook_request_body_bytes",
            "Request-body bytes held in memory now (at most --max-buffered-bytes)",
            m.body_bytes.clone(),
        );
        registry.register(
            "irsa_webhook_request_body_bytes_peak",
            "Most request-body bytes held in memory at once since start",
            m.body_bytes_peak.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts an admission outcome.
    pub fn admission(&self, kind: &'static str) {
        let hot = match kind {
            "mutated" => &self.hot.mutated,
            "already_mutated" => &self.hot.already_mutated,
            "no_role" => &self.hot.no_role,
            "ignored" => &self.hot.ignored,
            _ => {
                self.mutations.get_or_create(&Kind { kind }).inc();
                return;
            }
        };
        hot.inc();
    }

    /// Counts a mutated pod by method: `container_credentials` (EKS Pod
    /// Identity) or `sts_web_identity` (a role to assume).
    pub fn pod_mutated(&self, pod_identity: bool) {
        if pod_identity {
            self.hot.pods_container_credentials.inc();
        } else {
            self.hot.pods.inc();
        }
    }

    /// Counts a served request and its latency in seconds.
    pub fn request(&self, labels: RequestLabels, seconds: f64) {
        if labels.code == 200 && labels.path == "/mutate" && labels.verb == "POST" {
            self.hot.mutate_ok.inc();
            self.hot.mutate_latency.observe(seconds);
            return;
        }
        let path = PathLabels {
            verb: labels.verb,
            path: labels.path,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&path).observe(seconds);
    }

    /// Counts an API fallback lookup.
    pub fn api_lookup(&self, kind: &'static str) {
        self.sa_api_lookups.get_or_create(&Kind { kind }).inc();
    }

    /// Counts a certificate reload.
    pub fn tls_reload(&self, kind: &'static str) {
        self.tls_reloads.get_or_create(&Kind { kind }).inc();
    }

    /// Counts a connection closed by a limit.
    pub fn connection_cut(&self, kind: &'static str) {
        self.connections_cut.get_or_create(&Kind { kind }).inc();
    }

    /// Counts an HTTPS connection served with `protocol`.
    pub fn connection_opened(&self, protocol: crate::conn::Protocol) {
        let kind = match protocol {
            crate::conn::Protocol::Http1 => "http/1.1",
            crate::conn::Protocol::Http2 => "h2",
        };
        self.connections_served.get_or_create(&Kind { kind }).inc();
    }

    /// Counts a failed accept.
    pub fn accept_error(&self, listener: &'static str) {
        self.accept_errors
            .get_or_create(&Listener { listener })
            .inc();
    }

    /// Lets the gauges of open connections and held body bytes be read
    /// from the limits themselves; `(slots, size)` per listener.
    pub fn set_capacity(
        &self,
        budget: Arc<Budget>,
        https: (Arc<Semaphore>, usize),
        metrics: (Arc<Semaphore>, usize),
    ) {
        let _ = self.capacity.set(Capacity {
            budget,
            https,
            metrics,
        });
    }

    fn read_capacity(&self) {
        let Some(c) = self.capacity.get() else {
            return;
        };
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.body_bytes.set(gauge(c.budget.in_use()));
        self.body_bytes_peak.set(gauge(c.budget.peak()));
        for (listener, (slots, size)) in [("https", &c.https), ("metrics", &c.metrics)] {
            let open = size.saturating_sub(slots.available_permits());
            self.connections_open
                .get_or_create(&Listener { listener })
                .set(gauge(open));
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        self.read_capacity();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl crate::conn::ConnEvents for Metrics {
    fn connection_cut(&self, reason: &'static str) {
        Metrics::connection_cut(self, reason);
    }

    fn accept_error(&self, listener: &'static str) {
        Metrics::accept_error(self, listener);
    }
}
