//! Accepting and serving connections under the [`Limits`]: a slot per
//! connection (`--max-connections`), an accept loop that backs off when
//! accepting fails (out of file descriptors must not pin a core), and a
//! watchdog per connection.
//!
//! Deadlines on a connection:
//! - hyper, given a timer, bounds each wait for a request head by
//!   `--idle-timeout` (it starts that clock as soon as it waits, so it
//!   covers an idle keep-alive connection and the head together);
//! - the watchdog bounds a head by `--header-read-timeout` from its first
//!   byte, and cuts a connection with no I/O at all for `--idle-timeout`
//!   (a client that stops reading its answers);
//! - the request handler bounds the body by `--body-timeout`.
//!
//! Shared by every irsa listener (the webhook's and `irsa agent`'s); each
//! counts what the limits do through its own [`ConnEvents`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::limits::{Limits, HTTP_BUFFER_BYTES};

/// Where a listener counts what its limits did.
pub trait ConnEvents: Send + Sync {
    /// A connection was closed by a limit (`header_timeout`,
    /// `idle_timeout`, `handshake_timeout`, `evicted_idle`, ...).
    fn connection_cut(&self, reason: &'static str);
    /// Accepting a connection failed on `listener`.
    fn accept_error(&self, listener: &'static str);
}

/// What a connection did last, read by its watchdog. Times are
/// milliseconds since the connection opened, plus one (0 means never).
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    last_io: AtomicU64,
    head_started: AtomicU64,
    in_request: AtomicBool,
    /// Set once HTTP is served (after the TLS handshake).
    served: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A connection opened now, nothing read or written yet.
    pub fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_io: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
            in_request: AtomicBool::new(false),
            served: AtomicBool::new(false),
        }
    }

    /// HTTP is served from now on (the TLS handshake, if any, is done).
    pub fn mark_served(&self) {
        self.served.store(true, Ordering::Relaxed);
    }

    /// When the connection last did I/O, if it is idle: served, no
    /// request in flight, no part of a request received.
    pub fn idle_since(&self) -> Option<u64> {
        let idle = self.served.load(Ordering::Relaxed)
            && !self.in_request.load(Ordering::Relaxed)
            && self.head_started.load(Ordering::Relaxed) == 0;
        idle.then(|| self.last_io.load(Ordering::Relaxed))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if !self.in_request.load(Ordering::Relaxed)
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(now, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    /// A request's head has arrived; its handler runs.
    pub fn begin_request(&self) {
        self.in_request.store(true, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn end_request(&self) {
        self.in_request.store(false, Ordering::Relaxed);
        self.wrote();
    }

    /// Why the connection must be cut now, if it must.
    fn overdue(&self, limits: &Limits) -> Option<&'static str> {
        let now = self.now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let head = self.head_started.load(Ordering::Relaxed);
        if head != 0
            && !self.in_request.load(Ordering::Relaxed)
            && now.saturating_sub(head) > ms(limits.header_read)
        {
            return Some("header_timeout");
        }
        if now.saturating_sub(self.last_io.load(Ordering::Relaxed)) > ms(limits.idle) {
            return Some("idle_timeout");
        }
        None
    }
}

/// An I/O stream that tells its [`Activity`] about every transfer.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The response body type of both servers.
pub type Body = http_body_util::Full<hyper::body::Bytes>;

/// Serves HTTP/1.1 on `io` with `handler` until the client leaves, a
/// deadline passes, or `stop` fires (then the request in flight is
/// answered and the connection closed).
pub async fn serve<I, F, Fut>(
    io: I,
    handler: F,
    activity: Arc<Activity>,
    limits: &Limits,
    metrics: &dyn ConnEvents,
    mut stop: oneshot::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    activity.mark_served();
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let a = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let (handler, a) = (handler.clone(), a.clone());
        async move {
            a.begin_request();
            let response = handler(req).await;
            a.end_request();
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle)
        .max_buf_size(HTTP_BUFFER_BYTES)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let tick = (limits.header_read / 4).max(Duration::from_millis(25));
    let watchdog = tokio::time::sleep(tick);
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            biased;
            done = conn.as_mut() => {
                if done.is_err_and(|e| e.is_timeout()) {
                    metrics.connection_cut("idle_timeout");
                }
                return;
            }
            _ = &mut stop => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
                return;
            }
            _ = &mut watchdog => {
                if let Some(reason) = activity.overdue(limits) {
                    tracing::debug!(reason, "connection cut");
                    metrics.connection_cut(reason);
                    return;
                }
                watchdog.as_mut().reset(tokio::time::Instant::now() + tick);
            }
        }
    }
}

/// The same without any limit: hyper without a timer, no watchdog. Only
/// for measuring what the limits cost (the `admission` benchmark).
pub(crate) async fn serve_unlimited<I, F, Fut>(io: I, handler: F, mut stop: oneshot::Receiver<()>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    let svc = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
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

/// Delay before retrying a failed accept: doubles from 5 ms to 1 s, back
/// to 5 ms after a success.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }
}

/// Accepts connections until `stop` changes. Each accepted connection
/// takes a slot of `slots` (if any) before it is served; when all are
/// taken, `evict` may close an idle connection to free one, else the
/// connection waits (and the next ones wait in the kernel's queue).
/// `spawn` gets each connection with its slot.
pub async fn accept_loop<E, S>(
    listener: TcpListener,
    slots: Option<Arc<Semaphore>>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<dyn ConnEvents>,
    listener_name: &'static str,
    mut evict: E,
    mut spawn: S,
) where
    E: FnMut() -> bool,
    S: FnMut(TcpStream, std::net::SocketAddr, Option<OwnedSemaphorePermit>),
{
    let mut backoff = Backoff::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                metrics.accept_error(listener_name);
                let delay = backoff.next_delay();
                tracing::warn!(%error, listener = listener_name, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "accepting a connection failed; backing off");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        backoff.reset();
        let slot = match &slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    if evict() {
                        metrics.connection_cut("evicted_idle");
                    }
                    tokio::select! {
                        _ = stop.changed() => return,
                        slot = slots.clone().acquire_owned() => slot.ok(),
                    }
                }
            },
        };
        spawn(tcp, peer, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(5));
    }

    fn limits() -> Limits {
        Limits::new(&crate::limits::LimitFlags::default(), 4096).expect("valid defaults")
    }

    #[test]
    fn a_started_head_is_overdue_after_the_header_timeout() {
        let mut l = limits();
        l.header_read = Duration::from_millis(20);
        let a = Activity::new();
        assert_eq!(a.overdue(&l), None, "idle is not a slow head");
        a.read();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(a.overdue(&l), Some("header_timeout"));
        // Once the head is complete the body has its own deadline.
        a.begin_request();
        assert_eq!(a.overdue(&l), None);
        a.end_request();
        assert_eq!(a.overdue(&l), None, "between requests nothing was read");
    }

    #[test]
    fn no_io_for_the_idle_timeout_is_overdue() {
        let mut l = limits();
        l.idle = Duration::from_millis(20);
        let a = Activity::new();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(a.overdue(&l), Some("idle_timeout"));
        a.wrote();
        assert_eq!(a.overdue(&l), None);
    }
}
