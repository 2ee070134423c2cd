//! The ServiceAccount cache: a metadata-only watch keeping, per account,
//! only what its annotations say ([`SaIdentity`]), plus a direct API GET
//! when a pod names an account the watch has not delivered yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::TryStreamExt;
use irsa_core::mutate::SaIdentity;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;

/// One cached account: `None` when it has none of our annotations.
pub type Entry = Option<Arc<SaIdentity>>;

/// A cloneable, shared view of the cache.
#[derive(Clone)]
pub struct SaStore {
    map: Arc<RwLock<HashMap<Box<str>, Entry>>>,
    ready: Arc<AtomicBool>,
    prefix: Arc<str>,
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
    /// The API lookup failed or timed out.
    Failed(String),
}

impl Lookup {
    /// The identity, if any.
    pub fn identity(&self) -> Option<Arc<SaIdentity>> {
        match self {
            Self::Cached(e) | Self::Fetched(e) => e.clone(),
            Self::NotFound | Self::Failed(_) => None,
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
            map: Arc::default(),
            ready: Arc::default(),
            prefix: prefix.into(),
        }
    }

    fn entry(&self, annotations: Option<&BTreeMap<String, String>>) -> Entry {
        annotations
            .and_then(|a| SaIdentity::from_annotations(a, &self.prefix))
            .map(Arc::new)
    }

    /// Inserts or replaces an account from its metadata.
    pub fn apply(
        &self,
        namespace: &str,
        name: &str,
        annotations: Option<&BTreeMap<String, String>>,
    ) {
        let entry = self.entry(annotations);
        if let Ok(mut map) = self.map.write() {
            map.insert(key(namespace, name), entry);
        }
    }

    /// Removes an account.
    pub fn delete(&self, namespace: &str, name: &str) {
        if let Ok(mut map) = self.map.write() {
            map.remove(&key(namespace, name));
        }
    }

    /// Replaces the whole content (after a full list) and marks the store ready.
    pub fn replace(&self, entries: HashMap<Box<str>, Entry>) {
        if let Ok(mut map) = self.map.write() {
            *map = entries;
        }
        self.ready.store(true, Ordering::Release);
    }

    /// The cached entry, or `None` on a miss.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Entry> {
        self.map.read().ok()?.get(&key(namespace, name)).cloned()
    }

    /// Whether the first full list has been applied.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Number of cached accounts.
    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks an account up, asking the API server (bounded by `timeout`) on a miss.
    pub async fn lookup(
        &self,
        client: Option<&Client>,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Lookup {
        if let Some(entry) = self.get(namespace, name) {
            return Lookup::Cached(entry);
        }
        let Some(client) = client else {
            return Lookup::Failed("no API client".into());
        };
        let api: Api<PartialObjectMeta<ServiceAccount>> =
            Api::namespaced(client.clone(), namespace);
        match tokio::time::timeout(timeout, api.get_opt(name)).await {
            Ok(Ok(Some(meta))) => {
                self.apply(namespace, name, meta.metadata.annotations.as_ref());
                Lookup::Fetched(self.entry(meta.metadata.annotations.as_ref()))
            }
            Ok(Ok(None)) => Lookup::NotFound,
            Ok(Err(e)) => Lookup::Failed(e.to_string()),
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
mod tests {
    use super::*;

    #[test]
    fn keeps_only_identity_and_replaces_on_resync() {
        let store = SaStore::new("eks.amazonaws.com");
        let mut a = BTreeMap::new();
        a.insert(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::111122223333:role/x".to_string(),
        );
        a.insert("unrelated".to_string(), "y".repeat(1000));
        store.apply("ns", "sa", Some(&a));
        store.apply("ns", "plain", None);
        let got = store
            .get("ns", "sa")
            .expect("cached")
            .expect("has identity");
        assert_eq!(
            got.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/x")
        );
        assert_eq!(
            store.get("ns", "plain"),
            Some(None),
            "known account without role"
        );
        assert_eq!(store.get("ns", "missing"), None);
        assert!(!store.is_ready());
        store.replace(HashMap::new());
        assert!(store.is_ready() && store.is_empty());
    }
}
