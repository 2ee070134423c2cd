//! The ServiceAccount cache: a metadata-only watch keeping, per account,
//! only what its annotations say ([`SaIdentity`]), plus a direct API GET
//! when a pod names an account the watch has not delivered yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use irsa_core::mutate::SaIdentity;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::Semaphore;

use crate::imds::RoleArnContext;
use irsa_core::names::{check_namespace, check_service_account, NameError};

/// One cached account: `None` when it has none of our annotations.
pub type Entry = Option<Arc<SaIdentity>>;

/// How long an API NotFound is remembered: long enough that a flood of
/// reviews naming a missing account costs one GET, short enough that an
/// account created just after is seen (the watch also clears it).
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(5);

/// Most remembered NotFound answers (each a few dozen bytes).
pub const NOT_FOUND_ENTRIES: usize = 10_000;

/// Default number of API GETs in flight at once.
pub const DEFAULT_LOOKUP_CONCURRENCY: usize = 8;

/// A cloneable, shared view of the cache.
#[derive(Clone)]
pub struct SaStore {
    inner: Arc<RwLock<Inner>>,
    ready: Arc<AtomicBool>,
    prefix: Arc<str>,
    lookups: Arc<Semaphore>,
    lookup_slots: Arc<AtomicUsize>,
    compose: Arc<OnceLock<RoleArnContext>>,
    config_map: Arc<RwLock<crate::configmap::Entries>>,
    /// False while a `--watch-config-map` watch has not listed yet.
    config_map_ready: Arc<AtomicBool>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Box<str>, Entry>,
    /// Accounts the API server said do not exist, until when.
    not_found: HashMap<Box<str>, Instant>,
    /// Accounts with API GETs in flight.
    fetching: HashMap<Box<str>, Fetching>,
    /// Counts watch writes; a GET started at epoch `e` is older than any
    /// watch write on its account stamped after `e`.
    epoch: u64,
    not_found_ttl: Option<Duration>,
}

struct Fetching {
    count: usize,
    /// Epoch of the last watch write on this account.
    touched: u64,
}

impl Inner {
    /// Records a watch write on `key`.
    fn touch(&mut self, key: &str) {
        self.epoch += 1;
        if let Some(f) = self.fetching.get_mut(key) {
            f.touched = self.epoch;
        }
    }

    fn remember_not_found(&mut self, key: Box<str>, until: Instant) {
        if self.not_found.len() >= NOT_FOUND_ENTRIES {
            let now = Instant::now();
            self.not_found.retain(|_, t| *t > now);
        }
        if self.not_found.len() < NOT_FOUND_ENTRIES {
            self.not_found.insert(key, until);
        }
    }

    fn end_fetch(&mut self, key: &str) {
        if let Some(f) = self.fetching.get_mut(key) {
            f.count -= 1;
            if f.count == 0 {
                self.fetching.remove(key);
            }
        }
    }
}

/// How a lookup was answered.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// From the watch cache.
    Cached(Entry),
    /// Not cached; fetched from the API server.
    Fetched(Entry),
    /// The API server says the account does not exist.
    NotFound,
    /// The API server said so a moment ago (not asked again).
    NotFoundCached,
    /// The namespace or name cannot exist; the API server was not asked.
    Invalid(NameError),
    /// The API lookup failed or timed out.
    Failed(String),
}

impl Lookup {
    /// The identity, if any.
    pub fn identity(&self) -> Option<Arc<SaIdentity>> {
        match self {
            Self::Cached(e) | Self::Fetched(e) => e.clone(),
            Self::NotFound | Self::NotFoundCached | Self::Invalid(_) | Self::Failed(_) => None,
        }
    }
}

/// What an API GET answered, for [`SaStore::finish_fetch`].
#[derive(Debug)]
pub enum Fetched<'a> {
    /// The account exists, with these annotations.
    Found(Option<&'a BTreeMap<String, String>>),
    /// The account does not exist.
    NotFound,
    /// The GET failed.
    Failed(String),
}

/// An API GET in flight, from [`SaStore::begin_fetch`]; dropping it
/// unfinished (a cancelled lookup) just forgets it.
pub struct FetchTicket {
    inner: Arc<RwLock<Inner>>,
    key: Option<Box<str>>,
    epoch: u64,
}

impl Drop for FetchTicket {
    fn drop(&mut self) {
        if let (Some(key), Ok(mut inner)) = (self.key.take(), self.inner.write()) {
            inner.end_fetch(&key);
        }
    }
}

fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

impl SaStore {
    /// An empty, not-ready store for annotations under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            inner: Arc::default(),
            ready: Arc::default(),
            prefix: prefix.into(),
            lookups: Arc::new(Semaphore::new(DEFAULT_LOOKUP_CONCURRENCY)),
            lookup_slots: Arc::new(AtomicUsize::new(DEFAULT_LOOKUP_CONCURRENCY)),
            compose: Arc::default(),
            config_map: Arc::default(),
            config_map_ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Sets how many API GETs may be in flight at once (call before use).
    pub fn set_lookup_concurrency(&self, n: u64) {
        let n = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 1 << 16);
        let old = self.lookup_slots.swap(n, Ordering::Relaxed);
        if n > old {
            self.lookups.add_permits(n - old);
        } else {
            self.lookups.forget_permits(old - n);
        }
    }

    /// Sets how long a NotFound is remembered (default [`NOT_FOUND_TTL`]).
    pub fn set_not_found_ttl(&self, ttl: Duration) {
        if let Some(mut inner) = self.write() {
            inner.not_found_ttl = Some(ttl);
        }
    }

    fn write(&self) -> Option<RwLockWriteGuard<'_, Inner>> {
        self.inner.write().ok()
    }

    /// `--compose-role-arn`: from now on a `role-arn` annotation holding a
    /// role name is read as that role of `context` (set it before the
    /// store is filled; a second call is ignored).
    pub fn set_compose_role_arn(&self, context: RoleArnContext) {
        let _ = self.compose.set(context);
    }

    fn entry(&self, annotations: Option<&BTreeMap<String, String>>) -> Entry {
        let mut id = SaIdentity::from_annotations(annotations?, &self.prefix)?;
        if let (Some(context), Some(value)) = (self.compose.get(), id.role_arn.as_deref()) {
            if let Some(arn) = context.compose(value) {
                id.role_arn = Some(arn);
            }
        }
        Some(Arc::new(id))
    }

    /// Inserts or replaces an account from its metadata (a watch event).
    pub fn apply(
        &self,
        namespace: &str,
        name: &str,
        annotations: Option<&BTreeMap<String, String>>,
    ) {
        let entry = self.entry(annotations);
        let key = key(namespace, name);
        if let Some(mut inner) = self.write() {
            inner.touch(&key);
            inner.not_found.remove(&key);
            inner.map.insert(key, entry);
        }
    }

    /// Removes an account (a watch event).
    pub fn delete(&self, namespace: &str, name: &str) {
        let key = key(namespace, name);
        if let Some(mut inner) = self.write() {
            inner.touch(&key);
            inner.map.remove(&key);
        }
    }

    /// Replaces the whole content (after a full list) and marks the store ready.
    pub fn replace(&self, entries: HashMap<Box<str>, Entry>) {
        if let Some(mut inner) = self.write() {
            inner.epoch += 1;
            let epoch = inner.epoch;
            for f in inner.fetching.values_mut() {
                f.touched = epoch;
            }
            inner.not_found.retain(|k, _| !entries.contains_key(k));
            inner.map = entries;
        }
        self.ready.store(true, Ordering::Release);
    }

    /// The cached entry, or `None` on a miss.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Entry> {
        self.inner
            .read()
            .ok()?
            .map
            .get(&key(namespace, name))
            .cloned()
    }

    fn recently_not_found(&self, namespace: &str, name: &str) -> bool {
        let Ok(inner) = self.inner.read() else {
            return false;
        };
        inner
            .not_found
            .get(&key(namespace, name))
            .is_some_and(|until| *until > Instant::now())
    }

    /// Whether the first full list has been applied (and, with
    /// `--watch-config-map`, the ConfigMap read).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.config_map_ready.load(Ordering::Acquire)
    }

    /// `--watch-config-map`: not ready until [`SaStore::set_config_map_ready`].
    pub fn expect_config_map(&self) {
        self.config_map_ready.store(false, Ordering::Release);
    }

    /// The ConfigMap watch has listed.
    pub fn set_config_map_ready(&self) {
        self.config_map_ready.store(true, Ordering::Release);
    }

    /// Replaces the accounts configured by the ConfigMap.
    pub fn set_config_map(&self, entries: crate::configmap::Entries) {
        if let Ok(mut map) = self.config_map.write() {
            *map = entries;
        }
    }

    /// The ConfigMap's settings for an account: `namespace/name`, else `*/name`.
    pub fn config_map_entry(&self, namespace: &str, name: &str) -> Entry {
        let map = self.config_map.read().ok()?;
        map.get(&format!("{namespace}/{name}"))
            .or_else(|| map.get(&format!("*/{name}")))
            .cloned()
    }

    /// Number of cached accounts.
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.map.len()).unwrap_or(0)
    }

    /// Every cached account as `namespace/name` with its entry, sorted.
    pub fn entries(&self) -> Vec<(String, Entry)> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let mut out: Vec<(String, Entry)> = inner
            .map
            .iter()
            .map(|(k, e)| (k.to_string(), e.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers an API GET about to start, so that watch events arriving
    /// while it is in flight take precedence over its answer.
    pub fn begin_fetch(&self, namespace: &str, name: &str) -> FetchTicket {
        let key = key(namespace, name);
        let mut epoch = 0;
        if let Some(mut inner) = self.write() {
            epoch = inner.epoch;
            inner
                .fetching
                .entry(key.clone())
                .and_modify(|f| f.count += 1)
                .or_insert(Fetching {
                    count: 1,
                    touched: epoch,
                });
        }
        FetchTicket {
            inner: self.inner.clone(),
            key: Some(key),
            epoch,
        }
    }

    /// Records what a GET answered, unless the watch wrote this account
    /// (or relisted everything) since the GET began: the watch's state is
    /// then newer, and is what the lookup answers; a fetched account never
    /// overwrites a newer event nor comes back after a watched delete.
    pub fn finish_fetch(&self, mut ticket: FetchTicket, fetched: Fetched<'_>) -> Lookup {
        let Some(key) = ticket.key.take() else {
            return Lookup::Failed("fetch already finished".into());
        };
        let entry = match &fetched {
            Fetched::Found(annotations) => Some(self.entry(*annotations)),
            _ => None,
        };
        let Some(mut inner) = self.write() else {
            return Lookup::Failed("service account cache lock poisoned".into());
        };
        let stale = inner
            .fetching
            .get(&key)
            .is_some_and(|f| f.touched > ticket.epoch);
        inner.end_fetch(&key);
        if stale {
            return match inner.map.get(&key) {
                Some(entry) => Lookup::Cached(entry.clone()),
                None => Lookup::NotFound,
            };
        }
        match (fetched, entry) {
            (Fetched::Found(_), Some(entry)) => {
                inner.not_found.remove(&key);
                inner.map.insert(key, entry.clone());
                Lookup::Fetched(entry)
            }
            (Fetched::NotFound, _) => {
                let until = Instant::now() + inner.not_found_ttl.unwrap_or(NOT_FOUND_TTL);
                inner.remember_not_found(key, until);
                Lookup::NotFound
            }
            (Fetched::Failed(error), _) => Lookup::Failed(error),
            (Fetched::Found(_), None) => Lookup::Failed("unreachable".into()),
        }
    }

    /// Looks an account up, asking the API server on a miss: only for a
    /// valid namespace and name, not again for a recent NotFound, at most
    /// `--sa-lookup-concurrency` at once, all within `timeout`.
    pub async fn lookup(
        &self,
        client: Option<&Client>,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Lookup {
        if let Err(e) = check_namespace(namespace).and_then(|()| check_service_account(name)) {
            return Lookup::Invalid(e);
        }
        if let Some(entry) = self.get(namespace, name) {
            return Lookup::Cached(entry);
        }
        if self.recently_not_found(namespace, name) {
            return Lookup::NotFoundCached;
        }
        let Some(client) = client else {
            return Lookup::Failed("no API client".into());
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(Ok(_slot)) =
            tokio::time::timeout_at(deadline, self.lookups.clone().acquire_owned()).await
        else {
            return Lookup::Failed(format!(
                "{} API lookups already in flight and none finished within {} ms (--sa-lookup-concurrency)",
                self.lookup_slots.load(Ordering::Relaxed),
                timeout.as_millis()
            ));
        };
        let ticket = self.begin_fetch(namespace, name);
        let api: Api<PartialObjectMeta<ServiceAccount>> =
            Api::namespaced(client.clone(), namespace);
        match tokio::time::timeout_at(deadline, api.get_opt(name)).await {
            Ok(Ok(Some(meta))) => {
                self.finish_fetch(ticket, Fetched::Found(meta.metadata.annotations.as_ref()))
            }
            Ok(Ok(None)) => self.finish_fetch(ticket, Fetched::NotFound),
            Ok(Err(e)) => self.finish_fetch(ticket, Fetched::Failed(e.to_string())),
            Err(_) => Lookup::Failed(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// Keeps the store in sync with the cluster until the stream ends.
    pub async fn watch(self, client: Client) {
        let api: Api<PartialObjectMeta<ServiceAccount>> = Api::all(client);
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut buffer: HashMap<Box<str>, Entry> = HashMap::new();
        loop {
            match stream.try_next().await {
                Ok(Some(event)) => match event {
                    Event::Init => buffer = HashMap::new(),
                    Event::InitApply(sa) => {
                        let (ns, name) = names(&sa);
                        buffer.insert(
                            key(&ns, &name),
                            self.entry(sa.metadata.annotations.as_ref()),
                        );
                    }
                    Event::InitDone => {
                        let count = buffer.len();
                        self.replace(std::mem::take(&mut buffer));
                        tracing::info!(service_accounts = count, "service account cache synced");
                    }
                    Event::Apply(sa) => {
                        let (ns, name) = names(&sa);
                        self.apply(&ns, &name, sa.metadata.annotations.as_ref());
                    }
                    Event::Delete(sa) => {
                        let (ns, name) = names(&sa);
                        self.delete(&ns, &name);
                    }
                },
                Ok(None) => return,
                Err(error) => tracing::warn!(%error, "service account watch failed; retrying"),
            }
        }
    }
}

fn names(sa: &PartialObjectMeta<ServiceAccount>) -> (String, String) {
    (
        sa.metadata.namespace.clone().unwrap_or_default(),
        sa.metadata.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
