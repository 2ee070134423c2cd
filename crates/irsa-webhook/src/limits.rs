//! What one client, or all of them together, may cost the webhook: how
//! long it may take to send a request, how many connections are served at
//! once, and how many request-body bytes are held in memory at once.
//!
//! Memory is bounded by two caps: `--max-connections` bounds what each
//! connection costs by itself (TLS state, hyper's read buffer, capped at
//! [`HTTP_BUFFER_BYTES`]), and `--max-buffered-bytes` bounds all request
//! bodies together. A body is read into a buffer that grows only after the
//! bytes for it are taken from the shared [`Budget`]; when the budget is
//! spent, readers wait (until their body deadline) instead of allocating.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest AdmissionReview read by default: the API server refuses request
/// bodies over 3 MiB and etcd stores objects up to 1.5 MiB, so the review
/// of any pod the cluster could store fits.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// hyper's per-connection read buffer cap (request line and headers must
/// fit; the API server sends well under 4 KiB of headers).
pub const HTTP_BUFFER_BYTES: usize = 16 * 1024;

/// Bodies declared (Content-Length) at most this large may also use the
/// reserved part of the budget, so stalled large or chunked uploads cannot
/// starve ordinary admissions (a pod review is a few KiB, and the API
/// server always sends its length).
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// Server limits (`irsa webhook serve` flags).
#[derive(Args, Debug, Clone)]
pub struct LimitFlags {
    /// Seconds a client has to send a request's line and headers, counted
    /// from their first byte.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), env = "IRSA_HEADER_READ_TIMEOUT_SECONDS", help_heading = "Limits")]
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a whole request body, counted from the
    /// end of its headers (the API server sends it at once).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), env = "IRSA_BODY_TIMEOUT_SECONDS", help_heading = "Limits")]
    pub body_timeout_seconds: u64,
    /// Seconds a keep-alive connection may stay idle; longer than the API
    /// server's own 90 s, so it closes idle connections first (a POST sent
    /// on a connection the server is closing is not retried).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..), env = "IRSA_IDLE_TIMEOUT_SECONDS", help_heading = "Limits")]
    pub idle_timeout_seconds: u64,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), env = "IRSA_TLS_HANDSHAKE_TIMEOUT_SECONDS", help_heading = "Limits")]
    pub tls_handshake_timeout_seconds: u64,
    /// Connections served at once on the HTTPS port; at the cap a new one
    /// closes the longest-idle connection, or waits in the kernel's accept
    /// queue while none is idle.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..), env = "IRSA_MAX_CONNECTIONS", help_heading = "Limits")]
    pub max_connections: u64,
    /// Connections served at once on the metrics port.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..), env = "IRSA_METRICS_MAX_CONNECTIONS", help_heading = "Limits")]
    pub metrics_max_connections: u64,
    /// Request-body bytes held in memory at once, over all connections
    /// (at least --max-request-bytes); a quarter is kept for bodies
    /// declared at most 64 KiB, so large uploads cannot starve admissions.
    #[arg(long, default_value_t = DEFAULT_MAX_BUFFERED_BYTES, env = "IRSA_MAX_BUFFERED_BYTES", help_heading = "Limits")]
    pub max_buffered_bytes: usize,
}

/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 512;
/// Default `--max-buffered-bytes`.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 24 * 1024 * 1024;

impl Default for LimitFlags {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            body_timeout_seconds: 10,
            idle_timeout_seconds: 120,
            tls_handshake_timeout_seconds: 10,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            metrics_max_connections: 32,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
        }
    }
}

/// The limits as the server uses them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From the first byte of a request to the end of its headers.
    pub header_read: Duration,
    /// From the end of the headers to the end of the body.
    pub body: Duration,
    /// Longest time without any I/O on a connection.
    pub idle: Duration,
    /// TLS handshake.
    pub tls_handshake: Duration,
    /// Connections served at once, HTTPS port.
    pub max_connections: usize,
    /// Connections served at once, metrics port.
    pub metrics_max_connections: usize,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Body bytes held at once over all connections.
    pub max_buffered_bytes: usize,
}

/// Flag values that cannot work together.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The budget cannot hold one largest request.
    #[error("--max-buffered-bytes ({buffered}) is smaller than --max-request-bytes ({request}): the largest review could never be read; raise --max-buffered-bytes or lower --max-request-bytes")]
    BudgetTooSmall {
        /// `--max-buffered-bytes`.
        buffered: usize,
        /// `--max-request-bytes`.
        request: usize,
    },
    /// A request must hold at least a few bytes.
    #[error("--max-request-bytes ({0}) must be at least 1024")]
    RequestTooSmall(usize),
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Limits {
    /// Resolves the flags; fails when they contradict each other.
    pub fn new(flags: &LimitFlags, max_request_bytes: usize) -> Result<Self, LimitError> {
        let LimitFlags {
            header_read_timeout_seconds,
            body_timeout_seconds,
            idle_timeout_seconds,
            tls_handshake_timeout_seconds,
            max_connections,
            metrics_max_connections,
            max_buffered_bytes,
        } = *flags;
        if max_request_bytes < 1024 {
            return Err(LimitError::RequestTooSmall(max_request_bytes));
        }
        if max_buffered_bytes < max_request_bytes {
            return Err(LimitError::BudgetTooSmall {
                buffered: max_buffered_bytes,
                request: max_request_bytes,
            });
        }
        let max_permits = Semaphore::MAX_PERMITS;
        Ok(Self {
            header_read: Duration::from_secs(header_read_timeout_seconds),
            body: Duration::from_secs(body_timeout_seconds),
            idle: Duration::from_secs(idle_timeout_seconds),
            tls_handshake: Duration::from_secs(tls_handshake_timeout_seconds),
            max_connections: count(max_connections).min(max_permits),
            metrics_max_connections: count(metrics_max_connections).min(max_permits),
            max_request_bytes,
            max_buffered_bytes: max_buffered_bytes.min(max_permits),
        })
    }
}

/// The shared byte budget for request bodies.
#[derive(Debug)]
pub struct Budget {
    shared: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    total: usize,
    peak: AtomicUsize,
}

/// Bytes taken from the budget; given back on drop.
#[derive(Debug, Default)]
pub struct Held {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Budget {
    /// A budget of `total` bytes, a quarter reserved for small bodies.
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        let reserve = total / 4;
        Self {
            shared: Arc::new(Semaphore::new(total - reserve)),
            reserve: Arc::new(Semaphore::new(reserve)),
            total,
            peak: AtomicUsize::new(0),
        }
    }

    /// Bytes taken right now.
    pub fn in_use(&self) -> usize {
        self.total
            .saturating_sub(self.shared.available_permits())
            .saturating_sub(self.reserve.available_permits())
    }

    /// The most bytes ever taken at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes, waiting while the budget is spent; a body that stays
    /// small (`small`) may also take them from the reserve.
    async fn take(&self, n: usize, small: bool, held: &mut Held) {
        let Ok(n32) = u32::try_from(n) else {
            // Larger than any budget a semaphore can count: never granted.
            return std::future::pending().await;
        };
        let permit = match self.shared.clone().try_acquire_many_owned(n32) {
            Ok(p) => Ok(p),
            Err(_) if small => match self.reserve.clone().try_acquire_many_owned(n32) {
                Ok(p) => Ok(p),
                Err(_) => tokio::select! {
                    p = self.shared.clone().acquire_many_owned(n32) => p,
                    p = self.reserve.clone().acquire_many_owned(n32) => p,
                },
            },
            Err(_) => self.shared.clone().acquire_many_owned(n32).await,
        };
        match permit {
            Ok(p) => {
                held.permits.push(p);
                self.peak.fetch_max(self.in_use(), Ordering::Relaxed);
            }
            // The semaphores are never closed.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than `--max-request-bytes`.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed while reading.
    #[error("cannot read the request body: {0}")]
    Read(#[source] hyper::Error),
}

/// Smallest buffer allocated for a body of unknown length.
const FIRST_ALLOCATION: usize = 16 * 1024;

/// At most this much of an oversized body is read and dropped before the
/// 413 goes out, so that a client still writing its body reads the answer
/// instead of a reset connection.
pub const DRAIN_BYTES: usize = 4 * 1024 * 1024;

/// And for at most this long.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and drops what is left of `body`, up to [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`]; nothing is kept, so memory does not grow. A body
/// declared larger than that is not read at all (the connection closes).
pub async fn drain(body: &mut Incoming) {
    let declared = hyper::body::Body::size_hint(body).exact();
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return;
    }
    let discard = async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            let Some(rest) = left.checked_sub(chunk.len()) else {
                return;
            };
            left = rest;
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// Reads a body of at most `max` bytes into one buffer whose every
/// allocation is first taken from `budget`. The returned [`Held`] keeps
/// the bytes counted until dropped. No deadline here: the caller bounds
/// the whole read.
pub async fn read_body(
    body: &mut Incoming,
    max: usize,
    budget: &Budget,
) -> Result<(Vec<u8>, Held), BodyError> {
    // hyper knows the Content-Length, if the client sent one.
    let declared = match hyper::body::Body::size_hint(&body).exact() {
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= max => Some(n),
            _ => return Err(BodyError::TooLarge(max)),
        },
        None => None,
    };
    let target = declared.unwrap_or(max);
    // Only a body declared small may use the reserve: a large or chunked
    // one must not take it on its way up.
    let small = declared.is_some_and(|n| n <= SMALL_BODY_BYTES);
    let mut buf: Vec<u8> = Vec::new();
    let mut held = Held::default();
    let mut accounted = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let needed = buf.len() + chunk.len();
        if needed > max {
            return Err(BodyError::TooLarge(max));
        }
        if needed > accounted {
            let grown = accounted.saturating_mul(2).max(FIRST_ALLOCATION);
            let new_capacity = grown.min(target).max(needed);
            budget
                .take(new_capacity - accounted, small, &mut held)
                .await;
            buf.reserve_exact(new_capacity - buf.len());
            accounted = new_capacity;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_use_the_reserve_when_large_ones_spent_the_rest() {
        let budget = Budget::new(400);
        let mut large = Held::default();
        budget.take(300, false, &mut large).await;
        assert_eq!(budget.in_use(), 300);
        // A large body cannot take more: it waits.
        let mut more = Held::default();
        let waited =
            tokio::time::timeout(Duration::from_millis(50), budget.take(10, false, &mut more))
                .await;
        assert!(
            waited.is_err(),
            "large bodies wait once the shared part is spent"
        );
        // A small one gets the reserve.
        let mut small = Held::default();
        tokio::time::timeout(Duration::from_millis(50), budget.take(60, true, &mut small))
            .await
            .expect("small bodies are served from the reserve");
        assert_eq!(budget.in_use(), 360);
        drop((large, small));
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.peak(), 360);
    }

    #[test]
    fn flags_that_cannot_work_are_refused() {
        let flags = LimitFlags {
            max_buffered_bytes: 1000,
            ..LimitFlags::default()
        };
        let error = Limits::new(&flags, 4096).expect_err("budget below one request");
        assert!(
            error.to_string().contains("--max-buffered-bytes"),
            "{error}"
        );
        assert!(Limits::new(&LimitFlags::default(), DEFAULT_MAX_REQUEST_BYTES).is_ok());
    }
}
