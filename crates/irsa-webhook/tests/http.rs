//! The admission server over real TLS with real AdmissionReview JSON: the
//! response shape, bad requests, readiness and certificate hot reload.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use irsa_webhook::{run, Running};
use serde_json::{json, Value};
use support::{client, connector, settings, store_with_role, tls, write_certs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn review(with_types: bool) -> Value {
    let mut r = json!({
        "request": {
            "uid": "918ef1dc-928f-4525-99ef-988389f263c3",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"serviceAccountName": "s3", "containers": [{"name": "app", "image": "amazonlinux"}]}},
            "dryRun": false
        }
    });
    if with_types {
        r["apiVersion"] = json!("admission.k8s.io/v1");
        r["kind"] = json!("AdmissionReview");
    }
    r
}

async fn post(
    c: &reqwest::Client,
    running: &Running,
    body: Vec<u8>,
    content_type: &str,
) -> (u16, String) {
    let r = c
        .post(format!("https://{}/mutate", running.addr))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_review_responses() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "webhook");
    let running = run(settings(t.path()), None, Some(store_with_role()))
        .await
        .unwrap();
    let c = client(t.path());

    for with_types in [true, false] {
        let (status, body) = post(
            &c,
            &running,
            serde_json::to_vec(&review(with_types)).unwrap(),
            "application/json",
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["apiVersion"], "admission.k8s.io/v1",
            "TypeMeta always present: {v}"
        );
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], "918ef1dc-928f-4525-99ef-988389f263c3");
        assert_eq!(v["response"]["allowed"], true);
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(v["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        let paths: Vec<&str> = patch
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/spec/volumes",
                "/spec/containers/0/env",
                "/spec/containers/0/volumeMounts"
            ]
        );
    }

    // Unknown ServiceAccount and no API client: admitted, no patch.
    let mut other = review(true);
    other["request"]["object"]["spec"]["serviceAccountName"] = json!("nobody");
    let (_, body) = post(
        &c,
        &running,
        serde_json::to_vec(&other).unwrap(),
        "application/json",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none(), "{v}");

    // Not a pod create: admitted untouched.
    let mut update = review(true);
    update["request"]["operation"] = json!("UPDATE");
    let (_, body) = post(
        &c,
        &running,
        serde_json::to_vec(&update).unwrap(),
        "application/json",
    )
    .await;
    assert!(serde_json::from_str::<Value>(&body).unwrap()["response"]
        .get("patch")
        .is_none());

    // Malformed requests: a clear error, a well-formed review, never a crash.
    for bad in [
        &b"{"[..],
        b"",
        b"[]",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        br#"{"request":{"object":"a string"}}"#,
    ] {
        let (status, body) = post(&c, &running, bad.to_vec(), "application/json").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(bad));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["response"]["allowed"], false, "{v}");
        assert!(!v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .is_empty());
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    }
    let mut not_pod = review(true);
    not_pod["request"]["object"]["spec"]["containers"] = json!("nope");
    let (_, body) = post(
        &c,
        &running,
        serde_json::to_vec(&not_pod).unwrap(),
        "application/json",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false);
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not a Pod"),
        "{v}"
    );

    assert_eq!(
        post(&c, &running, b"{}".to_vec(), "application/xml")
            .await
            .0,
        415
    );
    assert_eq!(
        post(&c, &running, vec![b' '; 100 * 1024], "application/json")
            .await
            .0,
        413
    );
    let get = c
        .get(format!("https://{}/mutate", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let health = c
        .get(format!("https://{}/healthz", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (health.status().as_u16(), health.text().await.unwrap()),
        (200, "ok".to_string())
    );
    assert_eq!(
        c.get(format!("https://{}/nope", running.addr))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Ready only once the cache has synced.
    let ready = |c: reqwest::Client, addr| async move {
        c.get(format!("https://{addr}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready(c.clone(), running.addr).await, 503);
    running.store.replace(HashMap::new());
    assert_eq!(ready(c.clone(), running.addr).await, 200);

    let metrics = reqwest::get(format!("http://{}/metrics", running.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("irsa_webhook_admissions_total{kind=\"invalid\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_request_count_total{verb=\"POST\",path=\"/mutate\",code=\"415\"} 1"),
        "{metrics}"
    );
    running.shutdown();
    running.wait().await;
}

fn peer_cert_cn_marker(pem: &str) -> Vec<u8> {
    let der = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_without_failed_requests() {
    let t = tempfile::tempdir().unwrap();
    let live = t.path().join("live");
    std::fs::create_dir(&live).unwrap();
    // Kubelet-style layout: tls.crt -> ..data/tls.crt, ..data -> a timestamped dir.
    let gen1 = t.path().join("gen1");
    std::fs::create_dir(&gen1).unwrap();
    write_certs(&gen1, "first");
    std::os::unix::fs::symlink(&gen1, live.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(Path::new("..data").join(f), live.join(f)).unwrap();
    }
    let running = run(settings(&live), None, Some(store_with_role()))
        .await
        .unwrap();
    let addr = running.addr;

    // Clients trusting either CA, so requests succeed across the swap.
    let gen2 = t.path().join("gen2");
    std::fs::create_dir(&gen2).unwrap();
    write_certs(&gen2, "second");
    let both = [gen1.join("ca.crt"), gen2.join("ca.crt")]
        .iter()
        .map(|p| reqwest::Certificate::from_pem(&std::fs::read(p).unwrap()).unwrap())
        .collect::<Vec<_>>();
    let body = serde_json::to_vec(&review(true)).unwrap();
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline && ok + (failed.len() as u32) < 5000 {
            // A new connection each time, so each request does a fresh handshake.
            let c = reqwest::Client::builder()
                .tls_certs_only(both.clone())
                .build()
                .unwrap();
            match c
                .post(format!("https://{addr}/mutate"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(format!("HTTP {}", r.status())),
                Err(e) => failed.push(format!("{e:?}")),
            }
        }
        (ok, failed)
    });

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Atomic swap of the ..data symlink, as kubelet does for Secret volumes.
    std::os::unix::fs::symlink(&gen2, t.path().join("tmp-link")).unwrap();
    std::fs::rename(t.path().join("tmp-link"), live.join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let served = fetch_leaf(addr, &gen2).await;
    assert_eq!(
        served,
        peer_cert_cn_marker(&std::fs::read_to_string(gen2.join("tls.crt")).unwrap()),
        "new certificate served"
    );

    // A broken key keeps the current pair.
    let gen3 = t.path().join("gen3");
    std::fs::create_dir(&gen3).unwrap();
    std::fs::copy(gen2.join("tls.crt"), gen3.join("tls.crt")).unwrap();
    std::fs::write(
        gen3.join("tls.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&gen3, t.path().join("tmp-link")).unwrap();
    std::fs::rename(t.path().join("tmp-link"), live.join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during reloads: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 10, "load loop ran ({ok} requests)");
    assert_eq!(
        fetch_leaf(addr, &gen2).await.len(),
        served.len(),
        "still serving after a bad key"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", running.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("irsa_webhook_tls_reloads_total{kind=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("irsa_webhook_tls_reloads_total{kind=\"error\"}"),
        "{metrics}"
    );
    running.shutdown();
    running.wait().await;
}

/// The DER of the leaf certificate a fresh TLS connection receives.
async fn fetch_leaf(addr: std::net::SocketAddr, dir: &Path) -> Vec<u8> {
    let tls = tls(addr, &connector(dir)).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// `openssl s_client` to `connect` with `args`: whether a handshake
/// completed with a cipher.
fn openssl_handshake(connect: &str, args: &[&str]) -> bool {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", connect])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    out.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)")
}

/// The client offers TLS 1.0 and 1.1 only below OpenSSL 3's default
/// security level (at it, the client itself refuses them).
const OLD_TLS: &str = "DEFAULT@SECLEVEL=0";

/// TLS 1.2 and 1.3 are accepted; TLS 1.1 and 1.0 are refused (checked
/// with the openssl CLI, an independent TLS implementation). The client
/// does offer the old versions: an `openssl s_server` that allows them
/// completes both handshakes with the same client flags, so the refusal is
/// the webhook's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls12_and_newer_are_accepted() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "tls-versions");
    let running = run(settings(t.path()), None, Some(store_with_role()))
        .await
        .unwrap();
    let connect = format!("127.0.0.1:{}", running.addr.port());
    let handshake = |args: &'static [&'static str]| {
        let connect = connect.clone();
        async move {
            tokio::task::spawn_blocking(move || openssl_handshake(&connect, args))
                .await
                .unwrap()
        }
    };
    assert!(handshake(&["-tls1_2"]).await, "TLS 1.2 accepted");
    assert!(handshake(&["-tls1_3"]).await, "TLS 1.3 accepted");
    assert!(
        !handshake(&["-tls1_1", "-cipher", OLD_TLS]).await,
        "TLS 1.1 refused"
    );
    assert!(
        !handshake(&["-tls1", "-cipher", OLD_TLS]).await,
        "TLS 1.0 refused"
    );

    // Positive control: a server that allows TLS 1.0 and 1.1.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("openssl")
        .arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(t.path().join("tls.crt"))
        .arg("-key")
        .arg(t.path().join("tls.key"))
        .args(["-cipher", OLD_TLS, "-quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl runs");
    let control = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&control).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "openssl s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let old: Vec<bool> = [
        ["-tls1_1", "-cipher", OLD_TLS],
        ["-tls1", "-cipher", OLD_TLS],
    ]
    .iter()
    .map(|args| openssl_handshake(&control, args))
    .collect();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        old,
        [true, true],
        "the client offers TLS 1.1 and 1.0 to a server that allows them"
    );
}

/// A body over `--max-request-bytes` is answered with 413, which the client
/// reads: the server drops the rest of the body (bounded) before it closes,
/// instead of closing on a client that is still writing (a reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_answered_with_413_not_a_reset() {
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "webhook");
    let running = run(settings(t.path()), None, Some(store_with_role()))
        .await
        .unwrap();
    let c = client(t.path());
    let mut answers = HashMap::new();
    for size in [100 * 1024, 1024 * 1024, 3 * 1024 * 1024] {
        for _ in 0..20 {
            let sent = c
                .post(format!("https://{}/mutate", running.addr))
                .header("content-type", "application/json")
                .body(vec![b' '; size])
                .send()
                .await;
            let answer = match sent {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => format!("error: {e:?}"),
            };
            *answers.entry((size, answer)).or_insert(0) += 1;
        }
    }
    assert_eq!(
        answers,
        HashMap::from([
            ((100 * 1024, "413".into()), 20),
            ((1024 * 1024, "413".into()), 20),
            ((3 * 1024 * 1024, "413".into()), 20),
        ]),
    );
    running.shutdown();
}

/// What a client pushing an oversized body sees: the first bytes of the
/// answer (empty if none came) and how many body bytes it could write
/// before the server stopped reading (at most `limit`), sending `chunk`
/// bytes every `pause`.
async fn push_oversized(
    addr: std::net::SocketAddr,
    dir: &Path,
    head: &str,
    limit: usize,
    chunk: usize,
    pause: Duration,
) -> (String, usize, Duration) {
    let mut stream = tls(addr, &connector(dir)).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let read = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Until the server closes (bounded by the test's own deadline).
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(20), reader.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        (answer, started.elapsed())
    });
    let block = vec![b' '; chunk];
    let mut written = 0;
    while written < limit && started.elapsed() < Duration::from_secs(20) {
        if read.is_finished() {
            break;
        }
        let step = chunk.min(limit - written);
        match tokio::time::timeout(Duration::from_secs(5), writer.write_all(&block[..step])).await {
            Ok(Ok(())) => written += step,
            _ => break,
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let (answer, closed_after) = read.await.unwrap();
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    (head, written, closed_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_an_oversized_body_is_drained_at_most_4_mib_and_2_s() {
    use irsa_webhook::limits::{DRAIN_BYTES, DRAIN_TIME};
    let t = tempfile::tempdir().unwrap();
    write_certs(t.path(), "webhook");
    let running = run(settings(t.path()), None, Some(store_with_role()))
        .await
        .unwrap();
    let chunked = "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    // Chunked, fast: the server drains 4 MiB past the 64 KiB limit, then
    // closes; the client could not go on to 64 MiB.
    let mut body_chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    body_chunk.extend(vec![b' '; 64 * 1024]);
    body_chunk.extend(b"\r\n");
    let (answer, written, _) = {
        let mut stream = tls(running.addr, &connector(t.path())).await;
        stream.write_all(chunked.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut written = 0usize;
        while written < 64 * 1024 * 1024 && started.elapsed() < Duration::from_secs(20) {
            match tokio::time::timeout(Duration::from_secs(3), stream.write_all(&body_chunk)).await
            {
                Ok(Ok(())) => written += body_chunk.len(),
                _ => break,
            }
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        (
            String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned(),
            written,
            (),
        )
    };
    println!("chunked, as fast as it goes: {written} bytes written before the server stopped reading; answer {answer:?}");
    // 4 MiB drained, plus what the two sockets' buffers hold.
    assert!(
        written < DRAIN_BYTES + 20 * 1024 * 1024,
        "the server stopped reading: {written} bytes"
    );
    assert!(
        written >= DRAIN_BYTES,
        "it read on past the limit first (so the client sees the 413): {written}"
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

    // Chunked, slow: 1 KiB every 50 ms after the first 70 KiB; the drain
    // gives up after 2 s and the connection closes.
    let mut head = chunked.to_string();
    head.push_str(&format!("{:x}\r\n{}\r\n", 70 * 1024, " ".repeat(70 * 1024)));
    let (answer, _, closed_after) = {
        let mut stream = tls(running.addr, &connector(t.path())).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let slow = format!("{:x}\r\n{}\r\n", 1024, " ".repeat(1024));
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "never closed: {answer:?}"
            );
            let _ = stream.write_all(slow.as_bytes()).await;
            match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        };
        (
            String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned(),
            0,
            closed,
        )
    };
    println!("chunked, 1 KiB every 50 ms: closed after {closed_after:?}; answer {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(
        closed_after >= DRAIN_TIME && closed_after < DRAIN_TIME + Duration::from_secs(2),
        "{closed_after:?}"
    );

    // Declared larger than the drain: not read at all, answered and closed.
    let (answer, written, closed_after) = push_oversized(
        running.addr,
        t.path(),
        "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 67108864\r\n\r\n",
        64 * 1024 * 1024,
        64 * 1024,
        Duration::ZERO,
    )
    .await;
    println!("declared 64 MiB: {written} bytes written, closed after {closed_after:?}; answer {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(written < 64 * 1024 * 1024, "{written}");
    assert!(closed_after < Duration::from_secs(2), "{closed_after:?}");
    running.shutdown();
}
