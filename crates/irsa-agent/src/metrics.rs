//! The agent's Prometheus metrics (OpenMetrics text on `/metrics`):
//! requests by status, STS and TokenReview calls by result with their
//! latency, cache hits and sizes, and what the listener limits did.

use std::sync::Mutex;

use irsa_webhook::conn::ConnEvents;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's HTTP status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    /// The status.
    pub code: u16,
}

/// A single `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// The value.
    pub kind: &'static str,
}

/// A cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Lookup {
    /// `credentials` or `tokenreview`.
    pub cache: &'static str,
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// All agent metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Credential requests answered, by status.
    pub requests: Family<Code, Counter>,
    /// STS AssumeRole calls by result (`ok`, `error`).
    pub sts_calls: Family<Kind, Counter>,
    /// AssumeRole latency in seconds (retries included).
    pub sts_latency: Histogram,
    /// TokenReviews by result (`authenticated`, `refused`, `error`).
    pub reviews: Family<Kind, Counter>,
    /// TokenReview latency in seconds.
    pub review_latency: Histogram,
    /// Cache lookups.
    pub cache: Family<Lookup, Counter>,
    /// Cached sessions.
    pub cached_credentials: Gauge,
    /// Cached TokenReview results.
    pub cached_reviews: Gauge,
    /// Connections closed by a limit.
    pub connections_cut: Family<Kind, Counter>,
    /// Failed accepts, by listener.
    pub accept_errors: Family<Kind, Counter>,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            sts_calls: Family::default(),
            sts_latency: latency(),
            reviews: Family::default(),
            review_latency: latency(),
            cache: Family::default(),
            cached_credentials: Gauge::default(),
            cached_reviews: Gauge::default(),
            connections_cut: Family::default(),
            accept_errors: Family::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "irsa_agent_requests",
                "Credential requests answered, by HTTP status",
                m.requests.clone(),
            );
            r.register(
                "irsa_agent_sts_assume_role",
                "STS AssumeRole calls by result",
                m.sts_calls.clone(),
            );
            r.register(
                "irsa_agent_sts_assume_role_seconds",
                "STS AssumeRole latency, retries included",
                m.sts_latency.clone(),
            );
            r.register(
                "irsa_agent_token_reviews",
                "TokenReviews by result",
                m.reviews.clone(),
            );
            r.register(
                "irsa_agent_token_review_seconds",
                "TokenReview latency",
                m.review_latency.clone(),
            );
            r.register(
                "irsa_agent_cache_lookups",
                "Cache lookups by cache and result",
                m.cache.clone(),
            );
            r.register(
                "irsa_agent_cached_credentials",
                "Sessions cached",
                m.cached_credentials.clone(),
            );
            r.register(
                "irsa_agent_cached_token_reviews",
                "TokenReview results cached",
                m.cached_reviews.clone(),
            );
            r.register(
                "irsa_agent_connections_cut",
                "Connections closed by a limit, by reason",
                m.connections_cut.clone(),
            );
            r.register(
                "irsa_agent_accept_errors",
                "Failed accepts, by listener",
                m.accept_errors.clone(),
            );
        }
        m
    }
}

impl Metrics {
    /// A cache lookup.
    pub fn lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&Lookup { cache, result }).inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

impl ConnEvents for Metrics {
    fn connection_cut(&self, reason: &'static str) {
        self.connections_cut
            .get_or_create(&Kind { kind: reason })
            .inc();
    }

    fn accept_error(&self, listener: &'static str) {
        self.accept_errors
            .get_or_create(&Kind { kind: listener })
            .inc();
    }
}
