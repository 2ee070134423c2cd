//! irsa's container image in tests: built once per test binary by
//! `scripts/image` (the script users and CI run) with the cheap `image-test`
//! profile, and run with podman the way a hardened pod runs it: read-only
//! root with no tmpfs, every capability dropped, no privilege escalation,
//! uid 65532, the host network (servers a test starts listen on 127.0.0.1).
//!
//! podman's global flags are `--storage-driver vfs --runtime runc
//! --cgroup-manager cgroupfs` unless `IRSA_PODMAN_FLAGS` gives others
//! (split on spaces); the storage driver follows `IRSA_IMAGE_STORAGE_DRIVER`
//! as in scripts/image.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// The workspace root (where scripts/ and Containerfile are).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `podman` with the global flags these machines need.
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    match std::env::var("IRSA_PODMAN_FLAGS") {
        Ok(flags) => {
            cmd.args(flags.split_whitespace());
        }
        Err(_) => {
            let driver =
                std::env::var("IRSA_IMAGE_STORAGE_DRIVER").unwrap_or_else(|_| "vfs".into());
            if !driver.is_empty() {
                cmd.args(["--storage-driver", &driver]);
            }
            cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
        }
    }
    cmd
}

/// Runs podman with `args`; the output, whatever the exit status.
pub fn podman_output(args: &[&str]) -> Output {
    podman().args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run podman ({e}): the image tests need podman and runc \
             (Debian: apt-get install podman runc); scripts/test installs them \
             when IRSA_REQUIRE_IMAGE=1"
        )
    })
}

/// Runs podman with `args`, failing the test with its stderr unless it succeeds.
pub fn podman_ok(args: &[&str]) -> String {
    let out = podman_output(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A built image.
pub struct Image {
    /// Its reference in local storage.
    pub reference: String,
    /// How long scripts/image took.
    pub build_seconds: f64,
}

/// The tag this worktree's test image gets: one per checkout, so test runs
/// in two checkouts on one machine do not replace each other's image.
fn test_reference() -> String {
    let path: String = workspace()
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let tag = path.trim_matches('-');
    let tag = &tag[tag.len().saturating_sub(100)..];
    format!("localhost/irsa-image-test:{}", tag.trim_start_matches('-'))
}

/// The image, built by `scripts/image` with the `image-test` profile on
/// first use in this test binary. The previous image of the same tag is
/// removed first, so runs do not pile up images in storage.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let reference = test_reference();
        let _ = podman_output(&["rmi", "--force", &reference]);
        let started = Instant::now();
        let out = Command::new(workspace().join("scripts/image"))
            .current_dir(workspace())
            .env("IRSA_IMAGE", &reference)
            .env("IRSA_IMAGE_PROFILE", "image-test")
            .stdin(Stdio::null())
            .output()
            .expect("scripts/image runs");
        let build_seconds = started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scripts/image failed:\n{}",
            tail(&stderr, 40)
        );
        assert_eq!(
            stdout.lines().last(),
            Some(reference.as_str()),
            "scripts/image prints the image reference as its last line: {stdout}"
        );
        println!("scripts/image (profile image-test) took {build_seconds:.0} s");
        Image {
            reference,
            build_seconds,
        }
    })
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The open-file and process limits to give a container: podman's defaults
/// are refused here, so the test passes its own, within its own hard limits.
fn ulimits() -> [String; 4] {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = |name: &str, fallback: u64| -> u64 {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(fallback)
    };
    let nofile = hard("Max open files", 4096).min(65_536);
    // A hard process limit above the current one is refused when the
    // container's user is not root.
    let nproc = hard("Max processes", 4096).min(4096);
    [
        "--ulimit".into(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".into(),
        format!("nproc={nproc}:{nproc}"),
    ]
}

/// How a test runs the image: files mounted read-only and extra podman
/// `run` flags, on top of the hardened defaults.
#[derive(Default)]
pub struct RunOptions {
    /// (file or directory on the host, path in the container), mounted read-only.
    pub mounts: Vec<(PathBuf, String)>,
    /// More `podman run` flags (e.g. `--entrypoint`, `--env`); one named
    /// like a default (`--network=none`, `--user=0:0`) replaces it.
    pub flags: Vec<String>,
}

impl RunOptions {
    /// Mounts `host` read-only at `container`.
    pub fn mount(mut self, host: &Path, container: &str) -> Self {
        self.mounts
            .push((host.to_path_buf(), container.to_string()));
        self
    }

    /// Adds `podman run` flags.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// The `podman run` arguments up to the image: hardened defaults, then
    /// the mounts and flags.
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--network=host",
            "--read-only",
            "--read-only-tmpfs=false",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--user=65532:65532",
        ]
        .map(String::from)
        .into();
        // A flag of the test's own replaces the default of the same name
        // (podman refuses two networks).
        args.retain(|d| {
            let name = d.split('=').next().unwrap_or(d);
            !self.flags.iter().any(|f| f.split('=').next() == Some(name))
        });
        args.extend(ulimits());
        for (host, container) in &self.mounts {
            args.push(format!("--volume={}:{container}:ro", host.display()));
        }
        args.extend(self.flags.iter().cloned());
        args
    }
}

impl Image {
    /// Runs the image to the end with `args` after the entrypoint.
    pub fn run(&self, options: &RunOptions, args: &[&str]) -> Output {
        podman()
            .args(["run", "--rm"])
            .args(options.args())
            .arg(&self.reference)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Starts the image in the background with `args`; the container is
    /// removed when the returned value is dropped (also when a test fails).
    pub fn start(&self, name: &str, options: &RunOptions, args: &[&str]) -> Container {
        let name = format!("{name}-{}", std::process::id());
        let _ = podman_output(&["rm", "--force", &name]);
        let out = podman()
            .args(["run", "--detach", "--name", &name])
            .args(options.args())
            .arg(&self.reference)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman run {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container { name }
    }

    /// `podman image inspect --format FORMAT`, trimmed.
    pub fn inspect(&self, format: &str) -> String {
        podman_ok(&["image", "inspect", "--format", format, &self.reference])
            .trim()
            .to_string()
    }
}

/// A container started by [`Image::start`]; removed on drop.
pub struct Container {
    /// Its name.
    pub name: String,
}

impl Container {
    /// What it wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let out = podman_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The host pid of its main process (0 when it is not running).
    pub fn pid(&self) -> u32 {
        podman_ok(&["inspect", "--format", "{{.State.Pid}}", &self.name])
            .trim()
            .parse()
            .unwrap()
    }

    /// A field of the main process's `/proc/PID/status` (e.g. `Uid`, `CapEff`).
    pub fn proc_status(&self, field: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in {status}"))
            .trim()
            .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "2", &self.name])
            .output();
    }
}
