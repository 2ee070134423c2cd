//! EKS Pod Identity (container credentials) mode: the
//! `--container-credentials-*` flags and the identities file of
//! `--watch-container-credentials-config`, watched.
//!
//! The file is read at start-up and then checked every [`POLL_INTERVAL`]
//! (its content compared, so an in-place write and kubelet's `..data`
//! symlink swap of a mounted ConfigMap are both seen). A file that does
//! not parse is reported once and the last good list stays in force; a
//! missing or empty file lists nobody, as in the Go webhook. Files over
//! [`MAX_FILE_BYTES`] are refused the same way.

use std::hash::BuildHasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Args;
use irsa_core::mutate::{ContainerCredentials, Identities, Injection};

/// How often the identities file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The largest identities file read (the parser's own cap).
pub const MAX_FILE_BYTES: u64 = Identities::MAX_BYTES as u64;

/// The Go webhook's container-credentials flags, with its defaults.
#[derive(Args, Debug, Clone)]
pub struct PodIdentityFlags {
    /// JSON file listing the ServiceAccounts whose pods get EKS Pod
    /// Identity credentials ({"identities":[{"namespace":…,"serviceAccount":…}]}),
    /// re-read when it changes. Listed accounts get container credentials
    /// instead of their role-arn annotation.
    #[arg(
        long,
        env = "IRSA_WATCH_CONTAINER_CREDENTIALS_CONFIG",
        help_heading = "Pod Identity"
    )]
    pub watch_container_credentials_config: Option<PathBuf>,
    /// Audience of the Pod Identity token.
    #[arg(
        long,
        default_value = "pods.eks.amazonaws.com",
        env = "IRSA_CONTAINER_CREDENTIALS_AUDIENCE",
        help_heading = "Pod Identity"
    )]
    pub container_credentials_audience: String,
    /// Where the Pod Identity token volume is mounted.
    #[arg(
        long,
        default_value = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
        env = "IRSA_CONTAINER_CREDENTIALS_TOKEN_MOUNT_PATH",
        help_heading = "Pod Identity"
    )]
    pub container_credentials_token_mount_path: String,
    /// Name of the Pod Identity token volume.
    #[arg(
        long,
        default_value = "eks-pod-identity-token",
        env = "IRSA_CONTAINER_CREDENTIALS_TOKEN_VOLUME_NAME",
        help_heading = "Pod Identity"
    )]
    pub container_credentials_token_volume_name: String,
    /// File name of the Pod Identity token inside its volume.
    #[arg(
        long,
        default_value = "eks-pod-identity-token",
        env = "IRSA_CONTAINER_CREDENTIALS_TOKEN_PATH",
        help_heading = "Pod Identity"
    )]
    pub container_credentials_token_path: String,
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI given to the containers: the
    /// credentials endpoint (the EKS Pod Identity Agent's address; irsa
    /// does not serve it).
    #[arg(
        long,
        default_value = "http://169.254.170.23/v1/credentials",
        env = "IRSA_CONTAINER_CREDENTIALS_FULL_URI",
        help_heading = "Pod Identity"
    )]
    pub container_credentials_full_uri: String,
}

impl Default for PodIdentityFlags {
    fn default() -> Self {
        let d = ContainerCredentials::default();
        Self {
            watch_container_credentials_config: None,
            container_credentials_audience: d.audience,
            container_credentials_token_mount_path: d.mount_path,
            container_credentials_token_volume_name: d.volume_name,
            container_credentials_token_path: d.token_path,
            container_credentials_full_uri: d.full_uri,
        }
    }
}

/// A container-credentials flag irsa cannot use.
#[derive(Debug, thiserror::Error)]
#[error("--container-credentials-{flag}={value:?} {problem}")]
pub struct FlagError {
    /// The flag, after `--container-credentials-`.
    pub flag: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong and what to do.
    pub problem: &'static str,
}

impl PodIdentityFlags {
    /// The injection's settings; a value the API server would refuse in
    /// every pod (or that leaves the token nowhere) is an error.
    pub fn settings(&self) -> Result<ContainerCredentials, FlagError> {
        let volume = &self.container_credentials_token_volume_name;
        let label = volume.len() <= 63
            && volume
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !volume.starts_with('-')
            && !volume.ends_with('-');
        if !label {
            return Err(FlagError {
                flag: "token-volume-name",
                value: volume.clone(),
                problem: "is not a volume name the API server accepts; use lowercase letters, digits and '-' (at most 63)",
            });
        }
        let path = &self.container_credentials_token_path;
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|s| s == "..") {
            return Err(FlagError {
                flag: "token-path",
                value: path.clone(),
                problem: "must be a relative file name inside the volume, without '..'",
            });
        }
        if !self.container_credentials_token_mount_path.starts_with('/') {
            return Err(FlagError {
                flag: "token-mount-path",
                value: self.container_credentials_token_mount_path.clone(),
                problem: "must be an absolute path",
            });
        }
        Ok(self.unchecked())
    }

    /// The injection's settings as given (see [`PodIdentityFlags::settings`]).
    pub fn unchecked(&self) -> ContainerCredentials {
        ContainerCredentials {
            audience: self.container_credentials_audience.clone(),
            mount_path: self.container_credentials_token_mount_path.clone(),
            volume_name: self.container_credentials_token_volume_name.clone(),
            token_path: self.container_credentials_token_path.clone(),
            full_uri: self.container_credentials_full_uri.clone(),
        }
    }
}

/// The ServiceAccounts currently listed in the identities file; cheap to
/// clone, shared by every admission and the watcher.
#[derive(Clone, Default)]
pub struct PodIdentities {
    current: Arc<RwLock<Arc<Identities>>>,
}

impl PodIdentities {
    /// A list that never changes (tests, benchmarks).
    pub fn fixed(identities: Identities) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(identities))),
        }
    }

    /// The list in force.
    pub fn get(&self) -> Arc<Identities> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, identities: Identities) {
        let new = Arc::new(identities);
        match self.current.write() {
            Ok(mut current) => *current = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// How pods of `namespace/name` are given credentials: Pod Identity
    /// (with a fresh random jitter draw) when listed, else IRSA.
    pub fn injection(&self, namespace: &str, name: &str) -> Injection {
        if self.get().contains(namespace, name) {
            Injection::PodIdentity { jitter: jitter() }
        } else {
            Injection::WebIdentity
        }
    }
}

/// A random number for the token lifetime jitter (not for secrets):
/// every `RandomState` is keyed anew.
fn jitter() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}

/// What reading the file gave.
enum FileRead {
    /// The file's bytes (empty when it is missing).
    Content(Vec<u8>),
    /// Too large or unreadable.
    Failed(String),
}

fn read(path: &Path) -> FileRead {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Content(Vec::new()),
        Err(e) => return FileRead::Failed(format!("cannot read it: {e}")),
    };
    let mut content = Vec::new();
    if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut content) {
        return FileRead::Failed(format!("cannot read it: {e}"));
    }
    if content.len() as u64 > MAX_FILE_BYTES {
        return FileRead::Failed(format!(
            "it is larger than {MAX_FILE_BYTES} bytes; list fewer ServiceAccounts"
        ));
    }
    FileRead::Content(content)
}

/// Watches the identities file at `path`.
pub struct Watcher {
    path: PathBuf,
    shared: PodIdentities,
    /// The content last looked at, good or bad (`None`: not read yet, or unreadable).
    seen: Option<Vec<u8>>,
    /// The last read failed (and was reported).
    unreadable: bool,
}

impl Watcher {
    /// Reads the file once; the list in force is [`Watcher::identities`].
    pub fn start(path: &Path) -> Self {
        let mut watcher = Self {
            path: path.to_path_buf(),
            shared: PodIdentities::default(),
            seen: None,
            unreadable: false,
        };
        watcher.check();
        watcher
    }

    /// The shared list.
    pub fn identities(&self) -> PodIdentities {
        self.shared.clone()
    }

    /// Re-reads the file; a change that parses replaces the list, one
    /// that does not is reported (once) and the last good list stays.
    /// Returns whether the list changed.
    pub fn check(&mut self) -> bool {
        let path = self.path.display();
        let content = match read(&self.path) {
            FileRead::Content(content) => content,
            FileRead::Failed(error) => {
                if !self.unreadable {
                    tracing::warn!(%path, %error, "identities file not read; keeping the ServiceAccounts listed before");
                }
                self.unreadable = true;
                self.seen = None;
                return false;
            }
        };
        self.unreadable = false;
        if self.seen.as_deref() == Some(&content[..]) {
            return false;
        }
        let result = Identities::parse(&content);
        self.seen = Some(content);
        match result {
            Ok(identities) => {
                tracing::info!(%path, service_accounts = identities.len(), "identities file loaded: these ServiceAccounts get EKS Pod Identity credentials");
                self.shared.set(identities);
                true
            }
            Err(error) => {
                tracing::warn!(%path, %error, "identities file not loaded; keeping the ServiceAccounts listed before");
                false
            }
        }
    }

    /// Checks the file every `every` until the task is dropped.
    pub async fn run(mut self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check();
        }
    }
}

/// Reads the identities file at `path` and adds the task that keeps
/// checking it to `tasks`; returns the list the admissions read.
pub fn watch(path: &Path, tasks: &mut Vec<tokio::task::JoinHandle<()>>) -> PodIdentities {
    tracing::info!(path = %path.display(), "watching the EKS Pod Identity identities file");
    let watcher = Watcher::start(path);
    let identities = watcher.identities();
    tasks.push(tokio::spawn(watcher.run(POLL_INTERVAL)));
    identities
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_keeps_the_last_good_list_and_a_missing_one_lists_nobody() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("identities.json");
        let write = |s: &str| std::fs::write(&path, s).unwrap_or_else(|e| panic!("{e}"));
        write(r#"{"identities":[{"namespace":"app","serviceAccount":"s3"}]}"#);
        let mut w = Watcher::start(&path);
        let ids = w.identities();
        assert!(ids.get().contains("app", "s3"));
        assert!(matches!(
            ids.injection("app", "s3"),
            Injection::PodIdentity { .. }
        ));
        assert_eq!(ids.injection("app", "other"), Injection::WebIdentity);
        assert!(!w.check(), "unchanged");
        write(r#"{"identities":[{"namespace":"app""#);
        assert!(!w.check());
        assert!(ids.get().contains("app", "s3"), "last good list kept");
        write(r#"{"identities":[{"namespace":"app","serviceAccount":"other"}]}"#);
        assert!(w.check());
        assert!(ids.get().contains("app", "other") && !ids.get().contains("app", "s3"));
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(w.check());
        assert!(
            ids.get().is_empty(),
            "a missing file lists nobody, as in Go"
        );
    }

    #[test]
    fn flags_the_api_server_would_refuse_are_errors() {
        let mut f = PodIdentityFlags::default();
        assert_eq!(f.settings().ok(), Some(ContainerCredentials::default()));
        f.container_credentials_token_volume_name = "Eks_Token".into();
        let e = f
            .settings()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("--container-credentials-token-volume-name=\"Eks_Token\""),
            "{e}"
        );
        f = PodIdentityFlags {
            container_credentials_token_path: "../x".into(),
            ..Default::default()
        };
        assert!(f.settings().is_err());
        f = PodIdentityFlags {
            container_credentials_token_mount_path: "var/run".into(),
            ..Default::default()
        };
        assert!(f.settings().is_err());
    }

    #[test]
    fn jitter_draws_differ() {
        let draws: std::collections::HashSet<u64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.len() > 60, "{}", draws.len());
    }
}
