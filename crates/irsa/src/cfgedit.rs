//! Read-modify-write of `irsa.yaml` that never loses an edit.
//!
//! An edit (`bind`, `unbind`, `keys rotate`) holds an advisory lock on a
//! sidecar file (`.irsa.yaml.lock` next to the real file) from before it
//! reads until after it has written, so two irsa commands on the same file
//! run one after the other. Editors and scripts do not take that lock, so
//! right before the atomic rename the file on disk is compared with what was
//! read (content, size, modification time, inode): if anything differs the
//! edit is refused and nothing is written.
//!
//! A symlinked `irsa.yaml` is written through: the new content replaces the
//! link's target atomically in the target's own directory, and the link
//! stays a link. The file keeps its permission bits.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::fsutil;

/// How long an edit waits for another irsa command holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// What identifies the version of the file that was read.
#[derive(Debug, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Version {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// `irsa.yaml` read under the edit lock; [`ConfigEdit::commit`] writes the
/// new text only if the file is still the one read. The lock is released
/// when this is dropped.
pub struct ConfigEdit {
    /// The path as given (may be a symlink).
    path: PathBuf,
    /// `path` with every symlink resolved: the file that is replaced.
    target: PathBuf,
    /// Holds the advisory lock while alive.
    _lock: File,
    text: String,
    version: Version,
    mode: u32,
}

/// The sidecar lock file for `target`: `.NAME.lock` in the same directory.
fn lock_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.lock"))
}

fn open_lock(path: &Path) -> Result<File> {
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path);
    match created {
        Ok(f) => Ok(f),
        // Someone else's lock file that we may not write: an advisory lock
        // works on a read-only handle too.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && path.exists() => {
            File::open(path).with_context(|| format!("cannot open the lock file {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot create the lock file {}; irsa needs to write in that directory to edit the config there",
                path.display()
            )
        }),
    }
}

fn acquire(lock: &File, path: &Path, config: &Path) -> Result<()> {
    let start = Instant::now();
    let mut told = false;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        if start.elapsed() >= LOCK_WAIT {
            bail!(
                "another irsa command has been editing {} for {} s (it holds the lock on {}); let it finish, then run this again",
                config.display(),
                LOCK_WAIT.as_secs(),
                path.display()
            );
        }
        if !told {
            eprintln!(
                "waiting for another irsa command editing {} to finish",
                config.display()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl ConfigEdit {
    /// Locks `path` for editing and reads it.
    pub fn open(path: &Path) -> Result<Self> {
        let target = fs::canonicalize(path).with_context(|| {
            format!(
                "cannot read {}; create it with `irsa init` or pass -f",
                path.display()
            )
        })?;
        let lock_file = lock_path(&target);
        let lock = open_lock(&lock_file)?;
        acquire(&lock, &lock_file, path)?;
        let mut file =
            File::open(&target).with_context(|| format!("cannot read {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            target,
            _lock: lock,
            text,
            version: Version::of(&meta),
            mode: meta.permissions().mode() & 0o7777,
        })
    }

    /// The text as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Replaces the file's content with `new_text`, keeping its mode, if it
    /// is still exactly what was read.
    pub fn commit(&self, new_text: &str) -> Result<()> {
        fsutil::write_atomic_checked(&self.target, new_text.as_bytes(), self.mode, || {
            self.unchanged()
        })
    }

    /// Fails when the file on disk is no longer the version read.
    fn unchanged(&self) -> Result<()> {
        let changed = || {
            anyhow::anyhow!(
                "{} changed on disk since irsa read it (edited by hand or by another tool meanwhile), so irsa wrote nothing; run the command again to apply it on top of the current file",
                self.path.display()
            )
        };
        let retargeted = fs::canonicalize(&self.path).map_or(true, |t| t != self.target);
        if retargeted {
            return Err(changed());
        }
        let mut file = File::open(&self.target).map_err(|_| changed())?;
        let meta = file.metadata().map_err(|_| changed())?;
        let mut now = Vec::new();
        file.read_to_end(&mut now).map_err(|_| changed())?;
        if now != self.text.as_bytes() || Version::of(&meta) != self.version {
            return Err(changed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_file_changed_after_reading_and_keeps_the_other_edit() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("irsa.yaml");
        fs::write(&path, "a: 1\n").expect("write");
        let edit = ConfigEdit::open(&path).expect("open");
        fs::write(&path, "a: 2\n").expect("write");
        let err = edit.commit("a: 3\n").expect_err("refused");
        assert!(
            format!("{err:#}").contains("run the command again"),
            "{err:#}"
        );
        assert_eq!(fs::read_to_string(&path).expect("read"), "a: 2\n");
        let names: Vec<String> = fs::read_dir(t.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("irsa-tmp")),
            "no temporary file left: {names:?}"
        );
    }

    #[test]
    fn a_second_edit_waits_for_the_first() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("irsa.yaml");
        fs::write(&path, "a: 1\n").expect("write");
        let first = ConfigEdit::open(&path).expect("open");
        let lock = open_lock(&lock_path(&fs::canonicalize(&path).expect("canon"))).expect("lock");
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        first.commit("a: 2\n").expect("commit");
        drop(first);
        assert!(lock.try_lock().is_ok(), "released on drop");
    }
}
