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
//! On HTTP/2 ([`Protocol::Http2`], chosen by ALPN) frames such as PING
//! keep a connection busy without asking anything, so the clocks count
//! requests (streams), not I/O: a connection with no stream open for
//! `--idle-timeout` is cut, and counts as idle for eviction. A stream is
//! only handed over once its header block is complete, and that block is
//! capped at [`HTTP_BUFFER_BYTES`], so a slow one costs at most that until
//! the idle cut or an eviction. The other HTTP/2 limits are in
//! [`http2_builder`].
//!
//! Shared by every irsa listener (the webhook's and `irsa agent`'s); each
//! counts what the limits do through its own [`ConnEvents`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    /// Requests whose handler runs (at most 1 on HTTP/1.1).
    in_flight: AtomicU32,
    /// Set once HTTP is served (after the TLS handshake).
    served: AtomicBool,
    /// HTTP/2: only requests move the clocks, not I/O.
    multiplexed: AtomicBool,
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
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            multiplexed: AtomicBool::new(false),
        }
    }

    /// HTTP is served from now on, with `protocol` (the TLS handshake, if
    /// any, is done).
    pub fn mark_served(&self, protocol: Protocol) {
        self.multiplexed
            .store(protocol == Protocol::Http2, Ordering::Relaxed);
        self.touch();
        self.served.store(true, Ordering::Relaxed);
    }

    /// Since when the connection is idle, if it is: served, no request in
    /// flight, no part of a request received. The time is its last I/O
    /// (HTTP/1.1) or the end of its last request (HTTP/2), as an instant,
    /// so that connections opened at different times compare.
    pub fn idle_since(&self) -> Option<Instant> {
        let idle = self.served.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0;
        idle.then(|| {
            let ms = self.last_io.load(Ordering::Relaxed).saturating_sub(1);
            self.opened + Duration::from_millis(ms)
        })
    }

    fn multiplexed(&self) -> bool {
        self.multiplexed.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn read(&self) {
        if self.multiplexed() {
            return;
        }
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(now, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        if !self.multiplexed() {
            self.touch();
        }
    }

    /// A request's head has arrived; its handler runs.
    pub fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        self.touch();
    }

    fn end_request(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// Why the connection must be cut now, if it must.
    fn overdue(&self, limits: &Limits) -> Option<&'static str> {
        let now = self.now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let head = self.head_started.load(Ordering::Relaxed);
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        if head != 0 && in_flight == 0 && now.saturating_sub(head) > ms(limits.header_read) {
            return Some("header_timeout");
        }
        // On HTTP/2 a request in flight is bounded by its handler's own
        // deadlines; the idle clock runs between requests.
        let counted = !self.multiplexed() || in_flight == 0;
        if counted && now.saturating_sub(self.last_io.load(Ordering::Relaxed)) > ms(limits.idle) {
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

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: one request at a time.
    Http1,
    /// HTTP/2, as agreed by ALPN: requests multiplexed as streams.
    Http2,
}

impl Protocol {
    /// The protocol a TLS handshake agreed on (`h2`), else HTTP/1.1.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Self {
        if alpn == Some(b"h2".as_slice()) {
            Self::Http2
        } else {
            Self::Http1
        }
    }
}

/// Streams served at once on one HTTP/2 connection; a client opening
/// more gets `REFUSED_STREAM` for each extra one. Their bodies share the
/// `--max-buffered-bytes` budget with every other request.
pub const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// HTTP/2 flow-control window, per stream and per connection: the
/// protocol's initial 65,535 bytes, so one connection holds at most that
/// of request data its handlers have not read yet.
pub const HTTP2_WINDOW_BYTES: u32 = 65_535;

/// Streams a client may reset before the server has taken them up (the
/// "rapid reset" pattern); past it the connection is closed with
/// `ENHANCE_YOUR_CALM`.
pub const HTTP2_MAX_PENDING_RESETS: usize = 20;

/// Streams the server may reset for a client's protocol errors before it
/// closes the connection.
pub const HTTP2_MAX_ERROR_RESETS: usize = 64;

/// Response bytes buffered per stream for a client that does not read.
pub const HTTP2_SEND_BUFFER_BYTES: usize = 64 * 1024;

/// hyper's HTTP/2 server with irsa's limits: [`HTTP2_MAX_CONCURRENT_STREAMS`],
/// header blocks (after HPACK decoding) capped at [`HTTP_BUFFER_BYTES`] as
/// on HTTP/1.1, 16 KiB frames, [`HTTP2_WINDOW_BYTES`] windows,
/// [`HTTP2_MAX_PENDING_RESETS`], [`HTTP2_MAX_ERROR_RESETS`] and
/// [`HTTP2_SEND_BUFFER_BYTES`].
pub fn http2_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(HTTP_BUFFER_BYTES).unwrap_or(u32::MAX))
        .max_frame_size(16 * 1024)
        .initial_stream_window_size(HTTP2_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_WINDOW_BYTES)
        .adaptive_window(false)
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(HTTP2_MAX_ERROR_RESETS)
        .max_send_buf_size(HTTP2_SEND_BUFFER_BYTES);
    b
}

/// A hyper connection of either version, as [`serve`] drives it.
trait Served: Future<Output = hyper::Result<()>> {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S> Served for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Served for hyper::server::conn::http2::Connection<I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Serves `protocol` on `io` with `handler` until the client leaves, a
/// deadline passes, or `stop` fires (then the requests in flight are
/// answered and the connection closed).
pub async fn serve<I, F, Fut>(
    io: I,
    protocol: Protocol,
    handler: F,
    activity: Arc<Activity>,
    limits: &Limits,
    metrics: &dyn ConnEvents,
    stop: oneshot::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    activity.mark_served(protocol);
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
    match protocol {
        Protocol::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.idle)
                .max_buf_size(HTTP_BUFFER_BYTES)
                .serve_connection(io, svc);
            drive(conn, activity, limits, metrics, stop).await;
        }
        Protocol::Http2 => {
            let conn = http2_builder().serve_connection(io, svc);
            drive(conn, activity, limits, metrics, stop).await;
        }
    }
}

/// Polls `conn` to its end under the watchdog.
async fn drive(
    conn: impl Served,
    activity: Arc<Activity>,
    limits: &Limits,
    metrics: &dyn ConnEvents,
    mut stop: oneshot::Receiver<()>,
) {
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
                conn.as_mut().shut_down();
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
pub(crate) async fn serve_unlimited<I, F, Fut>(
    io: I,
    protocol: Protocol,
    handler: F,
    mut stop: oneshot::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let io = TokioIo::new(io);
    match protocol {
        Protocol::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
            until_stopped(conn, &mut stop).await;
        }
        Protocol::Http2 => {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc);
            until_stopped(conn, &mut stop).await;
        }
    }
}

async fn until_stopped(conn: impl Served, stop: &mut oneshot::Receiver<()>) {
    tokio::pin!(conn);
    tokio::select! {
        biased;
        _ = conn.as_mut() => {}
        _ = stop => {
            conn.as_mut().shut_down();
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

    #[test]
    fn on_http2_frames_alone_neither_start_a_head_nor_keep_the_connection() {
        let mut l = limits();
        l.header_read = Duration::from_millis(20);
        l.idle = Duration::from_millis(60);
        let a = Activity::new();
        a.mark_served(Protocol::Http2);
        // PINGs and their answers: no request, so no head and not busy.
        a.read();
        a.wrote();
        std::thread::sleep(Duration::from_millis(40));
        a.read();
        assert_eq!(a.overdue(&l), None, "a PING is not a slow head");
        assert!(a.idle_since().is_some(), "no stream open: evictable");
        std::thread::sleep(Duration::from_millis(40));
        a.read();
        assert_eq!(
            a.overdue(&l),
            Some("idle_timeout"),
            "frames do not reset the idle clock"
        );
        // Two streams at once; the connection is busy until both end.
        a.begin_request();
        a.begin_request();
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            a.overdue(&l),
            None,
            "streams in flight are bounded by their handlers"
        );
        assert_eq!(a.idle_since(), None);
        a.end_request();
        assert_eq!(a.idle_since(), None, "one stream still open");
        a.end_request();
        assert!(a.idle_since().is_some());
        assert_eq!(
            a.overdue(&l),
            None,
            "the idle clock restarts at the last stream's end"
        );
    }
}
