//! A real HTTPS (rustls + hyper) static server on 127.0.0.1 with a
//! certificate from a test CA made by rcgen, for `validate --issuer` tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How the server answers.
#[derive(Clone)]
pub struct Behaviour {
    /// Content-Type of every 200 response.
    pub content_type: String,
    /// Paths (with leading '/') answered with a 302 to '/elsewhere'.
    pub redirect: Vec<String>,
    /// Paths (with leading '/') answered 403, like a private S3 object.
    pub forbidden: Vec<String>,
    /// Cache-Control of every 200 response (none when `None`).
    pub cache_control: Option<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            content_type: "application/json".into(),
            redirect: Vec::new(),
            forbidden: Vec::new(),
            cache_control: None,
        }
    }
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// PEM of the CA that issued its certificate.
    pub ca_pem: String,
    /// Change answers while it runs.
    pub behaviour: Arc<Mutex<Behaviour>>,
}

/// Serves files under `root` over HTTPS with a certificate for `names`.
pub fn serve(root: PathBuf, names: &[&str]) -> Server {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let behaviour = Arc::new(Mutex::new(Behaviour::default()));
    let shared = behaviour.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let root = root.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    // Handshake failures (a client rejecting the certificate) are expected in tests.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let root = root.clone();
                            let b = shared.lock().unwrap().clone();
                            async move { Ok::<_, Infallible>(answer(&root, &b, req.uri().path())) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    let addr = rx.recv().unwrap();
    Server {
        addr,
        ca_pem: ca.pem(),
        behaviour,
    }
}

fn answer(root: &std::path::Path, b: &Behaviour, path: &str) -> Response<Full<Bytes>> {
    if b.redirect.iter().any(|r| r == path) {
        return Response::builder()
            .status(302)
            .header("location", "/elsewhere")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    if b.forbidden.iter().any(|r| r == path) {
        return Response::builder()
            .status(403)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from_static(
                b"<Error><Code>AccessDenied</Code></Error>",
            )))
            .unwrap();
    }
    let rel = path.trim_start_matches('/');
    if rel.contains("..") {
        return Response::builder()
            .status(400)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    match std::fs::read(root.join(rel)) {
        Ok(body) => {
            let mut r = Response::builder()
                .status(200)
                .header("content-type", b.content_type.as_str());
            if let Some(cc) = &b.cache_control {
                r = r.header("cache-control", cc.as_str());
            }
            r.body(Full::new(Bytes::from(body))).unwrap()
        }
        Err(_) => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap(),
    }
}
