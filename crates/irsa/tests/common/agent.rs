//! `irsa agent` on the test bed with moto as STS: shared by the agent
//! tests and the agent benchmark.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

use super::moto::Moto;
use super::testbed::{Killed, Testbed};

pub const ISSUER: &str = "https://oidc.irsa.test/agent";
pub const AUD: &str = "pods.eks.amazonaws.com";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/irsa/app-s3";

/// The bed, moto with its recording, and the pods' tokens.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub bed: Testbed,
    pub moto: Moto,
    pub recording: PathBuf,
    pub rt: tokio::runtime::Runtime,
}

impl Env {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bed = Testbed::for_webhook(dir.path(), "prod", ISSUER);
        let recording = dir.path().join("moto-recording.jsonl");
        let moto = Moto::start_recording(&recording);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let env = Self {
            dir,
            bed,
            moto,
            recording,
            rt,
        };
        env.rt.block_on(async {
            let client = env.bed.client().await;
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap();
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &ns)
                .await
                .unwrap();
            for sa in ["s3", "other"] {
                let sa: ServiceAccount =
                    serde_json::from_value(json!({"metadata": {"name": sa, "namespace": "app"}}))
                        .unwrap();
                Api::<ServiceAccount>::namespaced(client.clone(), "app")
                    .create(&PostParams::default(), &sa)
                    .await
                    .unwrap();
            }
        });
        std::fs::write(
            env.dir.path().join("associations.json"),
            json!({"identities": [
                {"namespace": "app", "serviceAccount": "s3", "roleArn": ROLE},
                {"namespace": "app", "serviceAccount": "other"}
            ]})
            .to_string(),
        )
        .unwrap();
        env
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stores pod `name` of ServiceAccount `sa` on `node`; its UID.
    pub fn pod(&self, name: &str, sa: &str, node: &str) -> String {
        self.rt.block_on(async {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "app"},
                "spec": {"serviceAccountName": sa, "nodeName": node, "containers": [{"name": "c", "image": "app"}]}
            }))
            .unwrap();
            let pods = Api::<Pod>::namespaced(self.bed.client().await, "app");
            pods.create(&PostParams::default(), &pod).await.unwrap().metadata.uid.unwrap()
        })
    }

    pub fn delete_pod(&self, name: &str) {
        self.rt.block_on(async {
            let pods = Api::<Pod>::namespaced(self.bed.client().await, "app");
            pods.delete(
                name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        });
    }

    /// A token of `sa` bound to pod `pod` (TokenRequest), for `audience`.
    pub fn token(&self, sa: &str, pod: &str, uid: &str, audience: &str) -> String {
        self.rt.block_on(async {
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![audience.into()],
                    expiration_seconds: Some(3600),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: Some(pod.into()),
                        uid: Some(uid.into()),
                    }),
                },
                ..Default::default()
            };
            let sas = Api::<ServiceAccount>::namespaced(self.bed.client().await, "app");
            sas.create_token_request(sa, &PostParams::default(), &request)
                .await
                .unwrap()
                .status
                .unwrap()
                .token
        })
    }

    /// Writes `token` to a file (what the SDKs read) and returns its path.
    pub fn token_file(&self, name: &str, token: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, token).unwrap();
        path
    }

    /// Environment for an agent that holds AWS credentials (moto's),
    /// reaching STS through AWS_ENDPOINT_URL_STS.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_STS", self.moto.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "eu-west-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }

    /// Starts `irsa agent ARGS` with `env`; waits until `port` answers /healthz.
    pub fn agent(&self, args: &[&str], env: &[(&str, String)], port: u16, tls: bool) -> Killed {
        let log = std::fs::File::create(self.path(&format!("agent-{port}.log"))).unwrap();
        let mut cmd = super::irsa();
        cmd.arg("agent").args(args);
        for var in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log);
        let child = Killed(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = if tls {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                get(port, &format!("127.0.0.1:{port}"), "/healthz", None).0 == 200
            };
            if up {
                return child;
            }
            assert!(
                Instant::now() < deadline,
                "agent on {port} did not start: {}",
                self.log(port)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self, port: u16) -> String {
        std::fs::read_to_string(self.path(&format!("agent-{port}.log"))).unwrap_or_default()
    }

    /// The AssumeRole requests moto recorded: each form body as a map, with
    /// the request's Authorization header under "_authorization".
    pub fn assume_roles(&self) -> Vec<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(&self.recording).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines() {
            let entry: Value = serde_json::from_str(line).unwrap();
            let body = entry["body"].as_str().unwrap_or("");
            let body = if entry["body_encoded"] == json!(true) {
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap(),
                )
                .unwrap()
            } else {
                body.to_string()
            };
            let mut form: BTreeMap<String, String> = body
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect();
            if form.get("Action").map(String::as_str) == Some("AssumeRole") {
                let auth = entry["headers"]["Authorization"]
                    .as_str()
                    .or(entry["headers"]["authorization"].as_str())
                    .unwrap_or("");
                form.insert("_authorization".into(), auth.into());
                out.push(form);
            }
        }
        out
    }
}

pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// GET `path` from 127.0.0.1:`port` with `Host: host` and the token as the
/// whole Authorization header, as the SDKs send it; (status, body).
pub fn get(port: u16, host: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.take(1 << 20).read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A running part of the agent: its process (stopped when dropped), its
/// port and `127.0.0.1:PORT`.
pub struct Part {
    /// The process.
    pub process: Killed,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `127.0.0.1:PORT`.
    pub listen: String,
}

impl Env {
    /// `irsa agent serve` on a free port, with the bed's kubeconfig, this
    /// environment's associations and `aws` as its environment.
    pub fn serve(&self, aws: &[(&str, String)]) -> Part {
        let port = super::testbed::free_port();
        let listen = format!("127.0.0.1:{port}");
        let kubeconfig = self.bed.kubeconfig.display().to_string();
        let assoc = self.path("associations.json").display().to_string();
        let process = self.agent(
            &[
                "serve",
                "--listen",
                &listen,
                "--associations",
                &assoc,
                "--cluster-name",
                "prod",
                "--kubeconfig",
                &kubeconfig,
            ],
            aws,
            port,
            false,
        );
        Part {
            process,
            port,
            listen,
        }
    }

    /// `irsa agent broker` on a free port (TLS with the bed's certificates,
    /// moto's AWS credentials) with `extra` flags.
    pub fn broker(&self, extra: &[&str]) -> Part {
        let port = super::testbed::free_port();
        let listen = format!("127.0.0.1:{port}");
        let kubeconfig = self.bed.kubeconfig.display().to_string();
        let assoc = self.path("associations.json").display().to_string();
        let (cert, key) = (self.path("certs/tls.crt"), self.path("certs/tls.key"));
        let mut args = vec![
            "broker",
            "--listen",
            &listen,
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--associations",
            &assoc,
            "--cluster-name",
            "prod",
            "--kubeconfig",
            &kubeconfig,
        ];
        args.extend_from_slice(extra);
        let process = self.agent(&args, &self.aws_env(), port, true);
        Part {
            process,
            port,
            listen,
        }
    }

    /// `irsa agent node` on a free port forwarding to `broker` (trusting
    /// the bed's CA), with `extra` flags.
    pub fn node(&self, broker: &Part, extra: &[&str]) -> Part {
        let port = super::testbed::free_port();
        let listen = format!("127.0.0.1:{port}");
        let url = format!("https://{}", broker.listen);
        let ca = self.path("certs/ca.crt");
        let mut args = vec![
            "node",
            "--listen",
            &listen,
            "--broker",
            &url,
            "--broker-ca-file",
            ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let process = self.agent(&args, &[], port, false);
        Part {
            process,
            port,
            listen,
        }
    }
}

/// boto3 with only the container-credentials variables (plus STS's
/// endpoint and a region): how it got credentials and who STS says it is.
pub fn boto3_caller(
    full_uri: &str,
    token_file: &std::path::Path,
    sts: &str,
    home: &std::path::Path,
) -> Value {
    let script = "import boto3, json\ns = boto3.session.Session()\nc = s.get_credentials()\nprint(json.dumps({'method': c.method, 'arn': s.client('sts').get_caller_identity()['Arn']}))";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file)
        .env("AWS_ENDPOINT_URL_STS", sts)
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
