//! HTTP/2 on the webhook's HTTPS port: offered in ALPN, answered over one
//! multiplexed connection, and held to the same kind of limits as HTTP/1.1
//! against clients that misbehave on purpose (rapid resets, too many
//! streams, oversized or endless header blocks, a connection kept busy by
//! PINGs alone). The attacks speak raw frames, so what the server does is
//! read off the wire. The real server on 127.0.0.1 over real TLS.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use irsa_webhook::{run, Running, Settings};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn with_limits(dir: &std::path::Path, f: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = settings(dir);
    s.http2 = true;
    s.limits.header_read_timeout_seconds = 1;
    s.limits.body_timeout_seconds = 1;
    s.limits.idle_timeout_seconds = 30;
    f(&mut s);
    s
}

/// The webhook with HTTP/2 on, certificates for `cn` in a new directory,
/// a ServiceAccount with a role, and the test's limits changed by `f`.
async fn start(cn: &str, f: impl FnOnce(&mut Settings)) -> (tempfile::TempDir, Running) {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), cn);
    let running = run(with_limits(t.path(), f), None, Some(store_with_role()))
        .await
        .unwrap();
    (t, running)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn int(first: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | u8::try_from(v).unwrap());
        return;
    }
    out.push(first | u8::try_from(max).unwrap());
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).unwrap() | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).unwrap());
}

/// A literal string (no Huffman).
fn string(s: &[u8], out: &mut Vec<u8>) {
    int(0, 7, s.len(), out);
    out.extend(s);
}

/// A POST /mutate header block (HPACK, nothing indexed or compressed),
/// with an extra `x-pad` header of `pad` bytes.
fn post_block(content_length: usize, pad: usize) -> Vec<u8> {
    let mut b = vec![0x83, 0x87]; // :method POST, :scheme https (static table)
    int(0, 4, 4, &mut b); // :path, literal value
    string(b"/mutate", &mut b);
    int(0, 4, 1, &mut b); // :authority
    string(b"127.0.0.1", &mut b);
    int(0, 4, 31, &mut b); // content-type
    string(b"application/json", &mut b);
    int(0, 4, 28, &mut b); // content-length
    string(content_length.to_string().as_bytes(), &mut b);
    if pad > 0 {
        b.push(0);
        string(b"x-pad", &mut b);
        string(&vec![b'a'; pad], &mut b);
    }
    b
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// A raw HTTP/2 connection with the preface and SETTINGS exchanged.
struct Raw {
    tls: Tls,
    buf: Vec<u8>,
}

impl Raw {
    async fn open(addr: std::net::SocketAddr, dir: &std::path::Path) -> Self {
        let tls = tls(
            addr,
            &connector_offering(
                dir,
                Offer {
                    alpn: &[b"h2"],
                    ..Offer::default()
                },
            ),
        )
        .await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
        let mut raw = Self {
            tls,
            buf: Vec::new(),
        };
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        raw.send(&hello).await;
        let settings = raw
            .until(Duration::from_secs(5), |f| {
                f.kind == SETTINGS && f.flags & ACK == 0
            })
            .await;
        assert!(settings.1.is_some(), "the server sends its SETTINGS");
        raw.send(&frame(SETTINGS, ACK, 0, &[])).await;
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// Frames read until `stop` matches one (returned too), the server
    /// closes, or `limit` passes.
    async fn until(
        &mut self,
        limit: Duration,
        mut stop: impl FnMut(&Frame) -> bool,
    ) -> (Vec<Frame>, Option<Frame>, bool) {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            while self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() < 9 + len {
                    break;
                }
                let f = Frame {
                    kind: self.buf[3],
                    flags: self.buf[4],
                    stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
                    payload: self.buf[9..9 + len].to_vec(),
                };
                self.buf.drain(..9 + len);
                if stop(&f) {
                    return (seen, Some(f), false);
                }
                seen.push(f);
            }
            let Some(left) = limit.checked_sub(start.elapsed()) else {
                return (seen, None, false);
            };
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(left, self.tls.read(&mut chunk)).await {
                Err(_) => return (seen, None, false),
                Ok(Ok(0)) | Ok(Err(_)) => return (seen, None, true),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// One admission over HTTP/2 on a fresh connection, raw: its status
/// header block starts with `:status 200` (static index 8) when it is OK.
async fn admitted_over_raw_h2(addr: std::net::SocketAddr, dir: &std::path::Path) -> bool {
    let mut raw = Raw::open(addr, dir).await;
    let body = serde_json::to_vec(&review_for("s3")).unwrap();
    let mut out = frame(HEADERS, END_HEADERS, 1, &post_block(body.len(), 0));
    out.extend(frame(DATA, END_STREAM, 1, &body));
    raw.send(&out).await;
    let (_, headers, _) = raw
        .until(Duration::from_secs(5), |f| {
            f.kind == HEADERS && f.stream == 1
        })
        .await;
    headers.is_some_and(|h| h.payload.first() == Some(&0x88))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_over_one_http2_connection_are_answered_and_counted() {
    let (t, running) = start("h2", |_| {}).await;

    let tls = tls(
        running.addr,
        &connector_offering(
            t.path(),
            Offer {
                alpn: &[b"h2", b"http/1.1"],
                ..Offer::default()
            },
        ),
    )
    .await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(b"h2".as_slice()),
        "h2 is offered and taken"
    );
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = Bytes::from(serde_json::to_vec(&review_for("s3")).unwrap());
    // More requests at once than streams allowed at once: the client
    // queues them under the server's SETTINGS_MAX_CONCURRENT_STREAMS.
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let (mut sender, body) = (sender.clone(), body.clone());
        requests.spawn(async move {
            let req = hyper::Request::post("https://127.0.0.1/mutate")
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap();
            let res = sender.send_request(req).await.unwrap();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let review: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            (status, review["response"]["patch"].is_string())
        });
    }
    let mut answered = 0;
    while let Some(r) = requests.join_next().await {
        let (status, patched) = r.unwrap();
        assert_eq!(status, 200);
        assert!(patched, "the pod is mutated");
        answered += 1;
    }
    assert_eq!(answered, 300);

    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        series(
            &metrics,
            "irsa_webhook_connections_served_total{kind=\"h2\"}"
        ),
        Some(1.0),
        "all 300 on one connection: {metrics}"
    );
    // A client that offers nothing gets HTTP/1.1.
    let mut h1 = support::tls(running.addr, &connector(t.path())).await;
    let (status, _) = exchange(&mut h1, &serde_json::to_vec(&review_for("s3")).unwrap()).await;
    assert_eq!(status, 200);
    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        series(
            &metrics,
            "irsa_webhook_connections_served_total{kind=\"http/1.1\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_http2_off_as_by_default_only_http1_is_offered() {
    let (t, running) = start("h1-only", |s| s.http2 = false).await;
    let tls = tls(
        running.addr,
        &connector_offering(
            t.path(),
            Offer {
                alpn: &[b"h2", b"http/1.1"],
                ..Offer::default()
            },
        ),
    )
    .await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(b"http/1.1".as_slice())
    );
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let h2_only = connector_offering(
        t.path(),
        Offer {
            alpn: &[b"h2"],
            ..Offer::default()
        },
    )
    .connect(name, tcp)
    .await;
    assert!(
        h2_only.is_err(),
        "a client that speaks only h2 is refused in the handshake"
    );
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_resets_close_the_connection_with_enhance_your_calm() {
    let (t, running) = start("rapid-reset", |_| {}).await;
    let mut raw = Raw::open(running.addr, t.path()).await;
    // 1,000 streams opened and cancelled at once (CVE-2023-44487).
    let block = post_block(10, 0);
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let id = 1 + 2 * i;
        out.extend(frame(HEADERS, END_HEADERS, id, &block));
        out.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let _ = raw.tls.write_all(&out).await;
    let _ = raw.tls.flush().await;
    let (seen, goaway, _) = raw
        .until(Duration::from_secs(5), |f| f.kind == GOAWAY)
        .await;
    let goaway = goaway.expect("the server sends GOAWAY");
    println!(
        "rapid reset: GOAWAY code {:#x} after {} frames",
        goaway.code(),
        seen.len()
    );
    assert_eq!(goaway.code(), ENHANCE_YOUR_CALM);
    let (_, _, closed) = raw.until(Duration::from_secs(5), |_| false).await;
    assert!(closed, "and closes the connection");
    // The server goes on serving others.
    assert!(admitted_over_raw_h2(running.addr, t.path()).await);
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_cap_are_refused_and_the_rest_answered() {
    let (t, running) = start("streams", |_| {}).await;
    let mut raw = Raw::open(running.addr, t.path()).await;
    let cap = irsa_webhook::conn::HTTP2_MAX_CONCURRENT_STREAMS;
    // cap + 50 streams whose declared 10-byte bodies never come.
    let block = post_block(10, 0);
    let mut out = Vec::new();
    for i in 0..cap + 50 {
        out.extend(frame(HEADERS, END_HEADERS, 1 + 2 * i, &block));
    }
    raw.send(&out).await;
    let (seen, _, closed) = raw.until(Duration::from_secs(6), |_| false).await;
    let refused = seen
        .iter()
        .filter(|f| f.kind == RST_STREAM && f.code() == REFUSED_STREAM)
        .count();
    let answered = seen
        .iter()
        .filter(|f| f.kind == HEADERS && f.flags & END_HEADERS != 0)
        .count();
    println!(
        "{} streams: {refused} refused, {answered} answered",
        cap + 50
    );
    assert_eq!(refused, 50, "each stream over the cap is refused");
    assert_eq!(
        answered,
        usize::try_from(cap).unwrap(),
        "the others are answered once their body deadline passes"
    );
    assert!(!closed, "the connection itself stays up");
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_blocks_get_431_and_endless_ones_are_cut() {
    let (t, running) = start("headers", |_| {}).await;

    // 20 KiB of headers, over the 16 KiB cap, in HEADERS + CONTINUATION.
    let mut raw = Raw::open(running.addr, t.path()).await;
    let block = post_block(10, 20 * 1024);
    let (first, rest) = block.split_at(16 * 1024);
    let mut out = frame(HEADERS, 0, 1, first);
    out.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    raw.send(&out).await;
    let (_, answer, _) = raw
        .until(Duration::from_secs(5), |f| {
            f.kind == HEADERS && f.stream == 1
        })
        .await;
    let answer = answer.expect("the stream is answered");
    // `:status` (static index 8) with the value "431", literal or
    // Huffman-coded (6+6+5 bits, then the all-ones padding: 69 90 ff).
    let status_431 = answer.payload.windows(3).any(|w| w == b"431")
        || answer
            .payload
            .windows(4)
            .any(|w| w == [0x83, 0x69, 0x90, 0xff]);
    assert!(
        answer.flags & END_STREAM != 0 && status_431,
        "431 Request Header Fields Too Large: {:?}",
        answer.payload
    );
    // The connection goes on: a proper admission on the next stream.
    let body = serde_json::to_vec(&review_for("s3")).unwrap();
    let mut out = frame(HEADERS, END_HEADERS, 3, &post_block(body.len(), 0));
    out.extend(frame(DATA, END_STREAM, 3, &body));
    raw.send(&out).await;
    let (_, answer, _) = raw
        .until(Duration::from_secs(5), |f| {
            f.kind == HEADERS && f.stream == 3
        })
        .await;
    assert_eq!(answer.unwrap().payload.first(), Some(&0x88), ":status 200");

    // A header block that never ends (CONTINUATION flood): up to 4 MiB
    // offered in 1 KiB frames, never END_HEADERS.
    let mut raw = Raw::open(running.addr, t.path()).await;
    raw.send(&frame(HEADERS, 0, 1, &post_block(10, 0)[..20]))
        .await;
    let junk = frame(CONTINUATION, 0, 1, &[b'a'; 1024]);
    let mut sent = 0usize;
    let started = Instant::now();
    while sent < 4096 && started.elapsed() < Duration::from_secs(10) {
        if raw.tls.write_all(&junk).await.is_err() || raw.tls.flush().await.is_err() {
            break;
        }
        sent += 1;
    }
    let (_, goaway, _) = raw
        .until(Duration::from_secs(5), |f| f.kind == GOAWAY)
        .await;
    let code = goaway.map(|g| g.code());
    println!("CONTINUATION flood: {sent} frames written, GOAWAY {code:?}");
    assert!(
        matches!(code, Some(c) if c == ENHANCE_YOUR_CALM || c == 0x9),
        "GOAWAY with ENHANCE_YOUR_CALM or COMPRESSION_ERROR: {code:?}"
    );
    let (_, _, closed) = raw.until(Duration::from_secs(5), |_| false).await;
    assert!(closed, "and the connection is closed");
    running.shutdown();
    running.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_alone_do_not_keep_an_http2_connection_open() {
    let (t, running) = start("pings", |s| s.limits.idle_timeout_seconds = 3).await;
    let mut raw = Raw::open(running.addr, t.path()).await;
    let body = serde_json::to_vec(&review_for("s3")).unwrap();
    let mut out = frame(HEADERS, END_HEADERS, 1, &post_block(body.len(), 0));
    out.extend(frame(DATA, END_STREAM, 1, &body));
    raw.send(&out).await;
    let (_, answer, _) = raw
        .until(Duration::from_secs(5), |f| {
            f.kind == HEADERS && f.stream == 1
        })
        .await;
    assert_eq!(answer.unwrap().payload.first(), Some(&0x88));
    let idle_from = Instant::now();
    // A PING every 300 ms, each answered, and no request.
    let mut pongs = 0;
    let closed_after = loop {
        if idle_from.elapsed() > Duration::from_secs(8) {
            break None;
        }
        if raw
            .tls
            .write_all(&frame(PING, 0, 0, &[7; 8]))
            .await
            .is_err()
        {
            break Some(idle_from.elapsed());
        }
        let _ = raw.tls.flush().await;
        let (_, pong, closed) = raw
            .until(Duration::from_millis(300), |f| {
                f.kind == PING && f.flags & ACK != 0
            })
            .await;
        if closed {
            break Some(idle_from.elapsed());
        }
        pongs += usize::from(pong.is_some());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!("PINGs only, idle timeout 3 s: {pongs} PINGs answered, closed after {closed_after:?}");
    let closed_after = closed_after.expect("closed at the idle timeout");
    assert!(pongs >= 3, "the PINGs were answered: {pongs}");
    assert!(
        closed_after >= Duration::from_millis(2900) && closed_after < Duration::from_secs(5),
        "{closed_after:?}"
    );
    let metrics = scrape(running.metrics_addr).await;
    assert_eq!(
        series(
            &metrics,
            "irsa_webhook_connections_cut_total{kind=\"idle_timeout\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    running.shutdown();
    running.wait().await;
}
