//! TokenReview through the API server, with a short cache per token.
//!
//! Only accepted tokens are cached, for at most [`REVIEW_TTL`], keyed by
//! the token's SHA-256 (the token itself is never kept). So a token whose
//! pod was deleted is refused at most [`REVIEW_TTL`] after the API server
//! itself refuses it (its own token cache adds about 10 s on v1.28).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use irsa_core::podidentity::{judge, PodIdentity, Refusal};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

use crate::metrics::Metrics;

/// How long an accepted token's review is reused.
pub const REVIEW_TTL: Duration = Duration::from_secs(10);
/// Most reviews cached (each at most about 1 KiB: a 32-byte key and the
/// pod's names, which the API server bounds).
pub const MAX_REVIEWS: usize = 16_384;
/// Longest wait for the API server.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

type Key = [u8; 32];

/// Reviews tokens for one audience.
pub struct Reviewer {
    api: Api<TokenReview>,
    audience: String,
    cache: Mutex<HashMap<Key, (Instant, PodIdentity)>>,
    metrics: Arc<Metrics>,
}

fn key(token: &str) -> Key {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

impl Reviewer {
    /// A reviewer asking `client`'s API server about `audience`.
    pub fn new(client: kube::Client, audience: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            api: Api::all(client),
            audience: audience.to_string(),
            cache: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Who `token` speaks for, or why it is refused.
    pub async fn review(&self, token: &str) -> Result<PodIdentity, Refusal> {
        let k = key(token);
        if let Some(pod) = self.cached(&k) {
            self.metrics.lookup("tokenreview", true);
            return Ok(pod);
        }
        self.metrics.lookup("tokenreview", false);
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let start = Instant::now();
        let answer = tokio::time::timeout(
            REVIEW_TIMEOUT,
            self.api.create(&PostParams::default(), &request),
        )
        .await;
        self.metrics
            .review_latency
            .observe(start.elapsed().as_secs_f64());
        let reviewed = match answer {
            Ok(Ok(reviewed)) => reviewed,
            Ok(Err(error)) => {
                self.metrics
                    .reviews
                    .get_or_create(&crate::metrics::Kind { kind: "error" })
                    .inc();
                tracing::warn!(%error, "TokenReview failed");
                return Err(Refusal::new(503, "the API server did not review the token (TokenReview failed; the broker needs create on tokenreviews); retry"));
            }
            Err(_) => {
                self.metrics
                    .reviews
                    .get_or_create(&crate::metrics::Kind { kind: "error" })
                    .inc();
                return Err(Refusal::new(
                    503,
                    "the API server did not answer the TokenReview in time; retry",
                ));
            }
        };
        let judged = judge(reviewed.status.as_ref(), &self.audience);
        let kind = if judged.is_ok() {
            "authenticated"
        } else {
            "refused"
        };
        self.metrics
            .reviews
            .get_or_create(&crate::metrics::Kind { kind })
            .inc();
        if let Ok(pod) = &judged {
            self.remember(k, pod.clone());
        }
        judged
    }

    fn cached(&self, k: &Key) -> Option<PodIdentity> {
        let cache = self.cache.lock().ok()?;
        let (at, pod) = cache.get(k)?;
        (at.elapsed() < REVIEW_TTL).then(|| pod.clone())
    }

    fn remember(&self, k: Key, pod: PodIdentity) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= MAX_REVIEWS {
            cache.retain(|_, (at, _)| at.elapsed() < REVIEW_TTL);
        }
        if cache.len() < MAX_REVIEWS {
            cache.insert(k, (Instant::now(), pod));
        }
        self.metrics
            .cached_reviews
            .set(i64::try_from(cache.len()).unwrap_or(i64::MAX));
    }
}
