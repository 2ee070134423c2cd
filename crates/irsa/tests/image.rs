//! The container image, as `scripts/image` builds it, run with podman: what
//! is in it, the user and capabilities it runs with, its read-only root,
//! the webhook served from it to a real kube-apiserver (the test bed), and
//! the Pod Identity agent: its node-address init step and its credentials
//! endpoint.
//!
//! The tests are ignored unless asked for: they need podman, runc and the
//! musl target. `scripts/test` runs them when those are at hand (and
//! installs them when `IRSA_REQUIRE_IMAGE=1`, as `.ci/run` sets). Their
//! names start with `container_image` so that scripts/test can leave them
//! out by name. Run one alone with
//! `cargo test -p irsa --test image -- --include-ignored --nocapture`.
// The image holds the full build; these tests run its webhook.
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::image::{image, podman_ok, podman_output, Image, RunOptions};
use common::pods::{create_pod, env_of, has_token_volume, namespace, service_account, simple_pod};
use common::testbed::{free_port, register_webhook, Testbed, WebhookRegistration};
use common::*;

const ROLE: &str = "arn:aws:iam::111122223333:role/image-reader";
const ISSUER: &str = "https://oidc.irsa.test/image";

/// What `irsa --version` of the binary under test prints (same commit).
fn host_version() -> String {
    let out = irsa().arg("--version").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Every file in the image's root file system, relative, with its mode and owner.
fn image_files(image: &Image) -> Vec<(String, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let root = podman_ok(&["image", "mount", &image.reference]);
    let root = Path::new(root.trim()).to_path_buf();
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, u32, u32)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(&path, root, out);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.push((name, meta.mode(), meta.uid()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let _ = podman_output(&["image", "unmount", &image.reference]);
    files.sort();
    files
}

#[test]
#[ignore = "needs podman, runc and the musl target: scripts/test runs it (IRSA_REQUIRE_IMAGE=1 requires it)"]
fn container_image_holds_only_the_binary_certificates_and_users() {
    let image = image();
    let size: f64 = image.inspect("{{.Size}}").parse().unwrap();
    println!(
        "image {} (profile image-test): {:.1} MiB uncompressed, built in {:.0} s",
        image.reference,
        size / 1_048_576.0,
        image.build_seconds
    );

    // Runs as nonroot by default, irsa is the entrypoint, no command.
    assert_eq!(image.inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(
        image.inspect("{{json .Config.Entrypoint}}"),
        r#"["/usr/local/bin/irsa"]"#
    );
    let cmd = image.inspect("{{json .Config.Cmd}}");
    assert!(cmd == "null" || cmd == "[]", "no default command: {cmd}");

    // Only the binary, the CA bundle and the user database; all root's, and
    // none writable by anyone else.
    let files = image_files(image);
    let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc/group",
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt",
            "usr/local/bin/irsa"
        ],
        "the image holds exactly these files (no shell, no libraries)"
    );
    for (name, mode, uid) in &files {
        assert_eq!(*uid, 0, "{name} belongs to root");
        assert_eq!(mode & 0o222, 0, "{name} is read-only: {mode:o}");
    }

    // The labels and --version tell the same version and commit as the
    // binary built from this checkout.
    let version = host_version();
    let run = image.run(&RunOptions::default(), &["--version"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run), version);
    assert!(
        version.starts_with(&format!("irsa {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert_eq!(
        image.inspect(r#"{{index .Labels "org.opencontainers.image.version"}}"#),
        env!("CARGO_PKG_VERSION")
    );
    let revision = image.inspect(r#"{{index .Labels "org.opencontainers.image.revision"}}"#);
    assert!(
        version.contains(&format!("(commit {revision})")),
        "{revision} vs {version}"
    );

    // No shell to fall back on.
    let sh = image.run(
        &RunOptions::default().flags(&["--entrypoint", "/bin/sh"]),
        &["-c", "true"],
    );
    assert!(!sh.status.success(), "a shell ran: {}", stdout(&sh));
    assert!(
        stderr(&sh).contains("/bin/sh") && stderr(&sh).to_lowercase().contains("no such file"),
        "{}",
        stderr(&sh)
    );

    // The root file system is read-only, /tmp included (no tmpfs): a command
    // that writes files fails there with the system's reason.
    for dir in ["/tmp/certs", "/certs"] {
        let out = image.run(
            &RunOptions::default(),
            &["webhook", "certs", "--out-dir", dir],
        );
        assert_eq!(out.status.code(), Some(2), "{dir}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{dir}: {}",
            stderr(&out)
        );
    }
}

/// Copies what the webhook container mounts into `DIR/mount`: the serving
/// certificate and key and the kubeconfig, readable by uid 65532 only where
/// the test may give them away (as root), else by everyone.
fn webhook_files(d: &Path, kubeconfig: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mount = d.join("mount");
    std::fs::create_dir(&mount).unwrap();
    std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (from, to) in [
        (d.join("certs/tls.crt"), "tls.crt"),
        (d.join("certs/tls.key"), "tls.key"),
        (kubeconfig.to_path_buf(), "kubeconfig"),
    ] {
        let file = mount.join(to);
        std::fs::copy(from, &file).unwrap();
        let mode = if std::os::unix::fs::chown(&file, Some(65532), Some(65532)).is_ok() {
            0o400
        } else {
            0o444
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    mount
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs podman, runc, the musl target, kube-apiserver and etcd: scripts/test runs it (IRSA_REQUIRE_IMAGE=1 requires it)"]
async fn container_image_serves_the_webhook_to_the_api_server() {
    let image = tokio::task::spawn_blocking(image).await.unwrap();
    let t = tempdir();
    let d = t.path();
    let bed = Testbed::for_webhook(d, "image", ISSUER);
    let client = bed.client().await;
    let mount = webhook_files(d, &bed.kubeconfig);
    let (port, metrics_port) = (free_port(), free_port());
    let (port_arg, metrics_arg) = (port.to_string(), metrics_port.to_string());
    let webhook = image.start(
        "irsa-image-test-webhook",
        &RunOptions::default().mount(&mount, "/etc/webhook"),
        &[
            "webhook",
            "serve",
            "--bind-address",
            "127.0.0.1",
            "--port",
            &port_arg,
            "--metrics-port",
            &metrics_arg,
            "--tls-cert",
            "/etc/webhook/tls.crt",
            "--tls-key",
            "/etc/webhook/tls.key",
            "--kubeconfig",
            "/etc/webhook/kubeconfig",
            "--aws-default-region",
            "us-west-2",
            "--shutdown-delay-seconds",
            "1",
            "--log",
            "info",
        ],
    );
    common::pods::wait_ready(&d.join("certs/ca.crt"), port, || webhook.logs()).await;

    // The process runs as 65532 with no capability and cannot gain any.
    for field in ["Uid", "Gid"] {
        let ids: Vec<String> = webhook
            .proc_status(field)
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(ids, ["65532"; 4], "{field}");
    }
    for field in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(webhook.proc_status(field), "0000000000000000", "{field}");
    }
    assert_eq!(webhook.proc_status("NoNewPrivs"), "1");

    // The API server calls it and stores the pod mutated.
    register_webhook(
        &client,
        WebhookRegistration {
            name: "irsa-image",
            port,
            ca_pem: std::fs::read(d.join("certs/ca.crt")).unwrap(),
            timeout_seconds: 10,
            reinvocation: Some("IfNeeded"),
        },
    )
    .await;
    // The apiserver picks up webhook configurations asynchronously.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    namespace(&client, "image").await;
    service_account(&client, "image", "reader", Some(ROLE)).await;
    let pod = create_pod(&client, "image", simple_pod("from-image", "reader")).await;
    assert!(has_token_volume(&pod), "not mutated: {pod}");
    assert!(
        env_of(&pod, 0).contains(&("AWS_ROLE_ARN".into(), ROLE.into())),
        "{pod}"
    );
    assert!(
        env_of(&pod, 0).contains(&("AWS_REGION".into(), "us-west-2".into())),
        "{pod}"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mutated: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("irsa_webhook_admissions_total{kind=\"mutated\"}")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of mutated pods: {metrics}"));
    assert!(mutated >= 1.0, "{metrics}");

    // As PID 1 it still stops on SIGTERM, cleanly.
    let stop = podman_output(&["stop", "--time", "15", &webhook.name]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let code = podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &webhook.name]);
    assert_eq!(code.trim(), "0", "{}", webhook.logs());
    let logs = webhook.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    drop(bed);
}

/// The node DaemonSet's init container, from the image: `irsa agent link`
/// adds the node agent's address with NET_ADMIN alone (as root, in a
/// network namespace of the container's own, so the host is untouched),
/// and without NET_ADMIN it fails naming the capability.
#[test]
#[ignore = "needs podman, runc and the musl target: scripts/test runs it (IRSA_REQUIRE_IMAGE=1 requires it)"]
fn container_image_adds_the_node_agent_address_with_net_admin_only() {
    let image = image();
    let private = ["--network=none", "--user=0:0"];
    let out = image.run(
        &RunOptions::default()
            .flags(&private)
            .flags(&["--cap-add=NET_ADMIN"]),
        &["agent", "link", "--address", "169.254.170.23"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("added 169.254.170.23 to lo"), "{err}");
    let out = image.run(
        &RunOptions::default().flags(&private),
        &["agent", "link", "--address", "169.254.170.23"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("NET_ADMIN"), "{err}");
}

/// `irsa agent serve` from the image as uid 65532 with no capability, on a
/// read-only root: the test bed reviews a pod's token, moto plays STS, and
/// boto3 with only the container-credentials variables gets the role.
#[test]
#[ignore = "needs podman, runc, the musl target, kube-apiserver, etcd and moto_server: scripts/test runs it (IRSA_REQUIRE_IMAGE=1 requires it)"]
fn container_image_serves_pod_identity_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let image = image();
    let env = common::agent::Env::start();
    let mount = env.path("agent-mount");
    std::fs::create_dir(&mount).unwrap();
    std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (from, to) in [
        (env.path("associations.json"), "associations.json"),
        (env.bed.kubeconfig.clone(), "kubeconfig"),
    ] {
        let file = mount.join(to);
        std::fs::copy(from, &file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let flags: Vec<String> = env
        .aws_env()
        .into_iter()
        .map(|(k, v)| format!("--env={k}={v}"))
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = image.start(
        "irsa-image-test-agent",
        &RunOptions::default()
            .mount(&mount, "/etc/agent")
            .flags(&flags),
        &[
            "agent",
            "serve",
            "--listen",
            &listen,
            "--associations",
            "/etc/agent/associations.json",
            "--cluster-name",
            "prod",
            "--kubeconfig",
            "/etc/agent/kubeconfig",
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while common::agent::get(port, &listen, "/healthz", None).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "agent: {}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for field in ["CapPrm", "CapEff"] {
        assert_eq!(agent.proc_status(field), "0000000000000000", "{field}");
    }
    let uid = env.pod("img-0", "s3", "node-a");
    let token = env.token("s3", "img-0", &uid, common::agent::AUD);
    let token_file = env.token_file("img-0.token", &token);
    let who = common::agent::boto3_caller(
        &format!("http://{listen}/v1/credentials"),
        &token_file,
        &env.moto.endpoint,
        env.dir.path(),
    );
    assert_eq!(who["method"], "container-role", "{who}");
    assert_eq!(
        who["arn"], "arn:aws:sts::123456789012:assumed-role/app-s3/app.img-0",
        "{who}"
    );
}
