//! A real Kubernetes API server for tests: kube-apiserver and etcd started on
//! 127.0.0.1 by this harness, with the service-account keys and issuer a
//! test chooses. The binaries are found the way Kubernetes projects find
//! them (the envtest convention): the directory `KUBEBUILDER_ASSETS`, then
//! `PATH`. `scripts/test` points `KUBEBUILDER_ASSETS` at a directory holding
//! both when it can provide them.
//!
//! Tests that start a bed carry `#[ignore = "needs kube-apiserver ..."]`, so
//! a plain `cargo test` lists them as ignored; `scripts/test` runs them with
//! `--include-ignored`, and then a missing binary fails the test.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

/// How long the apiserver may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// kube-apiserver and etcd, found as envtest finds them.
struct Assets {
    apiserver: PathBuf,
    etcd: PathBuf,
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find(name: &str) -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let candidate = Path::new(&dir).join(name);
        return if executable(&candidate) {
            Ok(candidate)
        } else {
            Err(format!(
                "KUBEBUILDER_ASSETS={} has no executable {name}",
                Path::new(&dir).display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
        .ok_or_else(|| format!("no {name} on PATH and KUBEBUILDER_ASSETS is not set"))
}

/// Whether kube-apiserver and etcd can be found (`KUBEBUILDER_ASSETS`,
/// then `PATH`), or why not: for a caller that skips rather than fails.
pub fn assets_available() -> Result<(), String> {
    find("kube-apiserver")?;
    find("etcd")?;
    Ok(())
}

impl Assets {
    fn locate() -> Self {
        match (find("kube-apiserver"), find("etcd")) {
            (Ok(apiserver), Ok(etcd)) => Self { apiserver, etcd },
            (a, e) => {
                let problems: Vec<String> = [a.err(), e.err()].into_iter().flatten().collect();
                panic!(
                    "this test needs a Kubernetes test bed: {}. Run it through scripts/test, \
                     which provides both, or set KUBEBUILDER_ASSETS to a directory holding \
                     kube-apiserver and etcd",
                    problems.join("; ")
                )
            }
        }
    }
}

/// A running bed; both processes are stopped on drop (also when a test panics).
pub struct Testbed {
    etcd: Child,
    apiserver: Child,
    /// Its working directory (PKI, logs, etcd data).
    pub workdir: PathBuf,
    /// Admin (system:masters) kubeconfig with the certificates embedded.
    pub kubeconfig: PathBuf,
}

/// Three distinct free ports on 127.0.0.1 (bound together, then released).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| listeners[i].local_addr().unwrap().port();
    [port(0), port(1), port(2)]
}

struct Pki {
    ca_pem: String,
    serving: (String, String),
    admin: (String, String),
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "irsa test bed CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate().unwrap();
    let mut serving = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .unwrap();
    serving
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer).unwrap();

    let admin_key = KeyPair::generate().unwrap();
    let mut admin = CertificateParams::new(Vec::<String>::new()).unwrap();
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.distinguished_name.push(DnType::CommonName, "admin");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        serving: (serving_cert.pem(), serving_key.serialize_pem()),
        admin: (admin_cert.pem(), admin_key.serialize_pem()),
    }
}

fn write(path: &Path, content: &str) -> PathBuf {
    std::fs::write(path, content).unwrap();
    path.to_path_buf()
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The value of `key` in `env`, else `default`.
fn setting<'a>(env: &'a [(&str, String)], key: &str, default: &'a str) -> &'a str {
    env.iter()
        .rev()
        .find(|(k, _)| *k == key)
        .map_or(default, |(_, v)| v.as_str())
}

fn absolute(path: &str) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("test bed key file {path}: {e}"))
        .display()
        .to_string()
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: a ^C to the test run does not reach it
        // first, and drop still stops it.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// GET `http://127.0.0.1:{port}{path}` with plain std I/O; the body, if any.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.take(64 * 1024).read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// A free TCP port on 127.0.0.1 (for a webhook a test starts).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A child process (the webhook a test starts) killed and reaped when the
/// test ends, pass or fail.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Testbed {
    /// Makes a bundle with `irsa init` in `DIR/b` for `cluster` and `issuer`,
    /// starts a bed that signs with its key, and writes webhook serving
    /// certificates for 127.0.0.1 into `DIR/certs`: the start of every test
    /// that runs the webhook against the bed.
    pub fn for_webhook(dir: &Path, cluster: &str, issuer: &str) -> Self {
        let init = super::run_in(
            dir,
            &[
                "init",
                "--cluster",
                cluster,
                "--issuer",
                issuer,
                "--dir",
                "b",
            ],
        );
        assert!(init.status.success(), "{}", super::stderr(&init));
        let bed = Self::start(
            dir,
            &dir.join("b/keys/sa-signer.key"),
            &dir.join("b/keys/sa-signer.pub"),
            issuer,
        );
        let certs = super::run_in(
            dir,
            &[
                "webhook",
                "certs",
                "--ip",
                "127.0.0.1",
                "--out-dir",
                "certs",
            ],
        );
        assert!(certs.status.success(), "{}", super::stderr(&certs));
        bed
    }

    /// Starts a bed trusting `public_key` and signing with `private_key` for
    /// `issuer`. Panics (fails the test) when kube-apiserver or etcd is missing.
    pub fn start(workdir: &Path, private_key: &Path, public_key: &Path, issuer: &str) -> Self {
        Self::start_with(
            workdir,
            &[
                ("SA_SIGNING_KEY", private_key.display().to_string()),
                ("SA_KEY_FILES", public_key.display().to_string()),
                ("SA_ISSUER", issuer.to_string()),
            ],
        )
    }

    /// Starts a bed configured by `env`: `SA_SIGNING_KEY`, `SA_KEY_FILES`
    /// (comma separated), `SA_ISSUER`, `API_AUDIENCES` (default
    /// sts.amazonaws.com), `SA_ADMISSION` (`0` stores pods as sent) and
    /// `EXTRA_APISERVER_ARGS` (split on spaces, passed last).
    pub fn start_with(workdir: &Path, env: &[(&str, String)]) -> Self {
        let assets = Assets::locate();
        let dir = workdir.join("bed");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let pki = pki();
        let ca = write(&dir.join("ca.crt"), &pki.ca_pem);
        let serving_crt = write(&dir.join("apiserver.crt"), &pki.serving.0);
        let serving_key = write(&dir.join("apiserver.key"), &pki.serving.1);
        let [etcd_port, peer_port, api_port] = free_ports();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_log = dir.join("logs/etcd.log");
        let etcd_args: Vec<String> = vec![
            "--name=testbed".into(),
            format!("--data-dir={}", dir.join("etcd-data").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testbed={peer_url}"),
            "--initial-cluster-state=new".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        let mut etcd = spawn(&assets.etcd, &etcd_args, &etcd_log);
        let started = Instant::now();
        loop {
            if http_get(etcd_port, "/health").is_some_and(|a| a.contains("\"health\":\"true\"")) {
                break;
            }
            if etcd.try_wait().unwrap().is_some() || started.elapsed() > READY_TIMEOUT {
                let _ = etcd.kill();
                let _ = etcd.wait();
                panic!("etcd did not become healthy:\n{}", log_tail(&etcd_log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        let signing = absolute(setting(env, "SA_SIGNING_KEY", ""));
        let key_files = setting(env, "SA_KEY_FILES", &signing).to_string();
        let mut args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", serving_crt.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca.display()),
            format!("--cert-dir={}", dir.join("generated").display()),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!(
                "--service-account-issuer={}",
                setting(env, "SA_ISSUER", "https://kubernetes.default.svc")
            ),
            format!("--service-account-signing-key-file={signing}"),
        ];
        args.extend(
            key_files
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|f| format!("--service-account-key-file={}", absolute(f))),
        );
        args.push(format!(
            "--api-audiences={}",
            setting(env, "API_AUDIENCES", "sts.amazonaws.com")
        ));
        args.push(
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook".into(),
        );
        if setting(env, "SA_ADMISSION", "1") == "0" {
            args.push("--disable-admission-plugins=ServiceAccount".into());
        }
        args.extend([
            "--endpoint-reconciler-type=none".to_string(),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ]);
        args.extend(
            setting(env, "EXTRA_APISERVER_ARGS", "")
                .split_whitespace()
                .map(str::to_string),
        );
        let api_log = dir.join("logs/kube-apiserver.log");
        let apiserver = spawn(&assets.apiserver, &args, &api_log);

        let kubeconfig = dir.join("kubeconfig");
        write(
            &kubeconfig,
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: admin\ncurrent-context: testbed\n",
                b64(&pki.ca_pem),
                b64(&pki.admin.0),
                b64(&pki.admin.1),
            ),
        );
        let mut bed = Self {
            etcd,
            apiserver,
            workdir: dir,
            kubeconfig,
        };
        bed.wait_ready(&api_log);
        bed
    }

    /// Waits for `/readyz`, then creates ServiceAccount default/default (no
    /// controller-manager runs here to make it). Runs on a thread of its own,
    /// so that async tests may start a bed too.
    fn wait_ready(&mut self, log: &Path) {
        let kubeconfig = self.kubeconfig.clone();
        let started = Instant::now();
        let waiter = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = client_for(&kubeconfig).await;
                while started.elapsed() < READY_TIMEOUT {
                    let request = hyper::Request::get("/readyz").body(Vec::new()).unwrap();
                    let answer =
                        tokio::time::timeout(Duration::from_secs(5), client.request_text(request))
                            .await;
                    if answer.is_ok_and(|r| r.is_ok_and(|body| body.trim() == "ok")) {
                        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
                            "metadata": {"name": "default", "namespace": "default"}
                        }))
                        .unwrap();
                        Api::<ServiceAccount>::namespaced(client, "default")
                            .create(&PostParams::default(), &sa)
                            .await
                            .unwrap();
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                false
            })
        });
        while !waiter.is_finished() {
            if self.apiserver.try_wait().unwrap().is_some() {
                panic!("kube-apiserver exited:\n{}", log_tail(log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !waiter.join().unwrap() {
            panic!("kube-apiserver did not become ready:\n{}", log_tail(log));
        }
    }

    /// The process id of kube-apiserver (its command line shows the flags it runs with).
    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver.id()
    }

    /// `kubectl --kubeconfig BED ARGS` in the workspace (where `deploy/`
    /// is), with admin rights; its output, whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(super::kustomize::workspace())
            .output()
            .expect("kubectl is installed (scripts/test installs it)")
    }

    /// A kube client with admin rights.
    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig).await
    }
}

async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a test registers its webhook with the bed's apiserver.
pub struct WebhookRegistration<'a> {
    /// Name of the MutatingWebhookConfiguration.
    pub name: &'a str,
    /// Port of `https://127.0.0.1:PORT/mutate`.
    pub port: u16,
    /// The caBundle (PEM) the apiserver trusts for it.
    pub ca_pem: Vec<u8>,
    /// The apiserver's timeout for one call.
    pub timeout_seconds: i32,
    /// `reinvocationPolicy`, if any.
    pub reinvocation: Option<&'a str>,
}

/// Creates a MutatingWebhookConfiguration (failurePolicy Ignore) that sends
/// every pod CREATE to the webhook.
pub async fn register_webhook(client: &kube::Client, r: WebhookRegistration<'_>) {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
    };
    let config = MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(r.name.into()),
            ..Default::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "pod-identity-webhook.irsa.dev".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some("Ignore".into()),
            reinvocation_policy: r.reinvocation.map(str::to_string),
            timeout_seconds: Some(r.timeout_seconds),
            client_config: WebhookClientConfig {
                url: Some(format!("https://127.0.0.1:{}/mutate", r.port)),
                ca_bundle: Some(k8s_openapi::ByteString(r.ca_pem)),
                service: None,
            },
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["pods".into()]),
                scope: None,
            }]),
            ..Default::default()
        }]),
    };
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
}
