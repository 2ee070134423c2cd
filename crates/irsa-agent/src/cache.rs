//! Sessions per (role, pod UID), fetched once however many requests for
//! the pod arrive together (single flight), handed out until
//! [`irsa_core::podidentity::REFRESH_MARGIN_SECONDS`] before they end.
//!
//! Bounded: at most [`MAX_SESSIONS`] entries, each holding at most
//! [`MAX_SESSION_BYTES`] of credentials (a larger answer is served but
//! not kept). When full, entries whose session can no longer be handed
//! out go first, then the one ending soonest. When STS fails, a cached
//! session that has not ended is served instead; a failure is remembered
//! for [`FAILURE_HOLD`] so requests waiting on it do not repeat it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use irsa_core::podidentity::{fresh, ContainerCredentials, Refusal};

/// Most sessions cached.
pub const MAX_SESSIONS: usize = 16_384;
/// Largest credentials kept (an assumed role's are about 1.5 KiB).
pub const MAX_SESSION_BYTES: usize = 8 * 1024;
/// How long a failed AssumeRole answers the requests that waited for it.
pub const FAILURE_HOLD: Duration = Duration::from_secs(1);
/// A session ending within this is not served even when STS fails.
const LAST_SECONDS: i64 = 60;

#[derive(Default)]
struct Slot {
    session: Option<Arc<ContainerCredentials>>,
    failed: Option<(Instant, Refusal)>,
}

type Entry = Arc<tokio::sync::Mutex<Slot>>;

/// The cache; share it by reference.
#[derive(Default)]
pub struct Sessions {
    slots: Mutex<HashMap<(String, String), (Entry, i64)>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cache.
    Cached,
    /// A new AssumeRole.
    Fetched,
    /// The cache, after STS failed.
    Stale,
}

impl Sessions {
    /// Sessions cached.
    pub fn len(&self) -> usize {
        self.slots.lock().map_or(0, |s| s.len())
    }

    /// Whether none is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry(&self, role: &str, uid: &str) -> Entry {
        let Ok(mut slots) = self.slots.lock() else {
            return Entry::default();
        };
        let key = (role.to_string(), uid.to_string());
        if let Some((entry, _)) = slots.get(&key) {
            return entry.clone();
        }
        if slots.len() >= MAX_SESSIONS {
            let t = now();
            slots.retain(|_, (entry, ends)| Arc::strong_count(entry) > 1 || fresh(*ends, t));
        }
        if slots.len() >= MAX_SESSIONS {
            let soonest = slots
                .iter()
                .filter(|(_, (entry, _))| Arc::strong_count(entry) == 1)
                .min_by_key(|(_, (_, ends))| *ends)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                slots.remove(&k);
            }
        }
        let entry = Entry::default();
        if slots.len() < MAX_SESSIONS {
            slots.insert(key, (entry.clone(), 0));
        }
        entry
    }

    fn note_end(&self, role: &str, uid: &str, ends: i64) {
        if let Ok(mut slots) = self.slots.lock() {
            if let Some((_, e)) = slots.get_mut(&(role.to_string(), uid.to_string())) {
                *e = ends;
            }
        }
    }

    /// The session for (`role`, `uid`): cached while fresh, else from
    /// `fetch`, called by one request while the others for the same key
    /// wait for its result.
    pub async fn get<F, Fut>(
        &self,
        role: &str,
        uid: &str,
        fetch: F,
    ) -> Result<(Arc<ContainerCredentials>, Source), Refusal>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ContainerCredentials, Refusal>>,
    {
        let entry = self.entry(role, uid);
        let mut slot = entry.lock().await;
        if let Some(s) = &slot.session {
            if fresh(s.expiration.unix(), now()) {
                return Ok((s.clone(), Source::Cached));
            }
        }
        if let Some((at, refusal)) = &slot.failed {
            if at.elapsed() < FAILURE_HOLD {
                return self.fallback(&slot, refusal.clone());
            }
        }
        match fetch().await {
            Ok(creds) => {
                let creds = Arc::new(creds);
                slot.failed = None;
                if creds.bytes() <= MAX_SESSION_BYTES {
                    slot.session = Some(creds.clone());
                    self.note_end(role, uid, creds.expiration.unix());
                }
                Ok((creds, Source::Fetched))
            }
            Err(refusal) => {
                slot.failed = Some((Instant::now(), refusal.clone()));
                self.fallback(&slot, refusal)
            }
        }
    }

    fn fallback(
        &self,
        slot: &Slot,
        refusal: Refusal,
    ) -> Result<(Arc<ContainerCredentials>, Source), Refusal> {
        match &slot.session {
            Some(s)
                if refusal.status >= 500
                    && s.expiration.unix() > now().saturating_add(LAST_SECONDS) =>
            {
                Ok((s.clone(), Source::Stale))
            }
            _ => Err(refusal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn creds(ends_in: i64) -> ContainerCredentials {
        ContainerCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s".into(),
            token: "t".into(),
            expiration: irsa_core::Timestamp::saturating_from_unix(now() + ends_in),
            account_id: "111122223333".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixteen_concurrent_requests_make_one_fetch() {
        let sessions = Arc::new(Sessions::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (sessions, calls) = (sessions.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                sessions
                    .get("role", "uid", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(creds(3600))
                    })
                    .await
                    .map(|(c, _)| c.access_key_id.clone())
            }));
        }
        for t in tasks {
            assert_eq!(t.await.ok().and_then(Result::ok).as_deref(), Some("AKID"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let other = sessions
            .get("role", "uid-2", || async { Ok(creds(3600)) })
            .await;
        assert_eq!(
            other.map(|(_, s)| s),
            Ok(Source::Fetched),
            "another pod has its own session"
        );
    }

    #[tokio::test]
    async fn a_session_near_its_end_is_replaced_and_served_when_sts_fails() {
        let sessions = Sessions::default();
        let near = sessions
            .get("r", "u", || async { Ok(creds(600)) })
            .await
            .map(|(_, s)| s);
        assert_eq!(near, Ok(Source::Fetched));
        let failing = || async { Err(Refusal::new(503, "STS did not answer")) };
        let stale = sessions.get("r", "u", failing).await.map(|(_, s)| s);
        assert_eq!(
            stale,
            Ok(Source::Stale),
            "600 s left: inside the margin, still valid"
        );
        let denied = sessions
            .get("x", "u", || async { Err(Refusal::new(403, "denied")) })
            .await;
        assert_eq!(denied.err().map(|r| r.status), Some(403));
        let held = sessions.get("x", "u", || async { Ok(creds(3600)) }).await;
        assert_eq!(
            held.err().map(|r| r.status),
            Some(403),
            "a failure is held for a second"
        );
    }
}
