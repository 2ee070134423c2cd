//! The cache on its own: watch events, API answers and their races.

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

fn role(arn: &str) -> BTreeMap<String, String> {
    [("eks.amazonaws.com/role-arn".to_string(), arn.to_string())].into()
}

const A: &str = "arn:aws:iam::111122223333:role/a";
const B: &str = "arn:aws:iam::111122223333:role/b";

fn arn(lookup: &Lookup) -> Option<String> {
    lookup.identity().and_then(|i| i.role_arn.clone())
}

#[test]
fn a_fetched_account_is_cached_when_nothing_happened_meanwhile() {
    let store = SaStore::new("eks.amazonaws.com");
    let ticket = store.begin_fetch("ns", "sa");
    let got = store.finish_fetch(ticket, Fetched::Found(Some(&role(A))));
    assert!(matches!(got, Lookup::Fetched(Some(_))), "{got:?}");
    assert_eq!(
        arn(&Lookup::Cached(store.get("ns", "sa").expect("cached"))).as_deref(),
        Some(A)
    );
}

#[test]
fn a_fetch_never_overwrites_a_newer_watch_event() {
    let store = SaStore::new("eks.amazonaws.com");
    let ticket = store.begin_fetch("ns", "sa");
    // While the GET is in flight, the watch delivers a newer version.
    store.apply("ns", "sa", Some(&role(B)));
    // The GET answers with what it read before that change.
    let got = store.finish_fetch(ticket, Fetched::Found(Some(&role(A))));
    assert_eq!(
        arn(&got).as_deref(),
        Some(B),
        "the lookup answers the watch's newer state"
    );
    let cached = store.get("ns", "sa").expect("cached");
    assert_eq!(
        arn(&Lookup::Cached(cached)).as_deref(),
        Some(B),
        "the cache keeps the watch's version"
    );
}

#[test]
fn a_fetch_never_resurrects_an_account_deleted_meanwhile() {
    let store = SaStore::new("eks.amazonaws.com");
    let ticket = store.begin_fetch("ns", "sa");
    store.apply("ns", "sa", Some(&role(A)));
    store.delete("ns", "sa");
    let got = store.finish_fetch(ticket, Fetched::Found(Some(&role(A))));
    assert!(matches!(got, Lookup::NotFound), "{got:?}");
    assert_eq!(
        store.get("ns", "sa"),
        None,
        "the deleted account stays deleted"
    );

    // Only a delete seen by the watch (the account was never cached).
    let ticket = store.begin_fetch("ns", "other");
    store.delete("ns", "other");
    let got = store.finish_fetch(ticket, Fetched::Found(Some(&role(A))));
    assert!(matches!(got, Lookup::NotFound), "{got:?}");
    assert_eq!(store.get("ns", "other"), None);
}

#[test]
fn a_relist_during_a_fetch_wins() {
    let store = SaStore::new("eks.amazonaws.com");
    let ticket = store.begin_fetch("ns", "sa");
    store.replace(HashMap::new());
    let got = store.finish_fetch(ticket, Fetched::Found(Some(&role(A))));
    assert!(matches!(got, Lookup::NotFound), "{got:?}");
    assert!(store.is_empty());
}

#[test]
fn events_on_other_accounts_do_not_discard_a_fetch() {
    let store = SaStore::new("eks.amazonaws.com");
    let ticket = store.begin_fetch("ns", "sa");
    store.apply("ns", "unrelated", None);
    store.delete("ns", "gone");
    let got = store.finish_fetch(ticket, Fetched::Found(Some(&role(A))));
    assert_eq!(arn(&got).as_deref(), Some(A), "{got:?}");
    assert!(store.get("ns", "sa").is_some());
}

#[test]
fn concurrent_fetches_of_one_account_each_see_events_after_their_start() {
    let store = SaStore::new("eks.amazonaws.com");
    let first = store.begin_fetch("ns", "sa");
    store.apply("ns", "sa", Some(&role(B)));
    let second = store.begin_fetch("ns", "sa");
    // The second GET started after the event: its answer is newer.
    let got = store.finish_fetch(second, Fetched::Found(Some(&role(A))));
    assert_eq!(arn(&got).as_deref(), Some(A));
    // The first started before it: discarded.
    let got = store.finish_fetch(first, Fetched::Found(Some(&role(B))));
    assert!(matches!(got, Lookup::Cached(_)), "{got:?}");
    assert!(
        store.inner.read().expect("lock").fetching.is_empty(),
        "bookkeeping cleared"
    );
}

#[test]
fn a_cancelled_fetch_leaves_no_bookkeeping() {
    let store = SaStore::new("eks.amazonaws.com");
    drop(store.begin_fetch("ns", "sa"));
    assert!(store.inner.read().expect("lock").fetching.is_empty());
}

#[tokio::test]
async fn not_found_is_remembered_briefly_and_cleared_by_the_watch() {
    let store = SaStore::new("eks.amazonaws.com");
    store.set_not_found_ttl(Duration::from_millis(200));
    let ticket = store.begin_fetch("ns", "missing");
    assert!(matches!(
        store.finish_fetch(ticket, Fetched::NotFound),
        Lookup::NotFound
    ));
    // Within the TTL the API server is not asked again (no client at all here).
    let again = store
        .lookup(None, "ns", "missing", Duration::from_millis(10))
        .await;
    assert!(matches!(again, Lookup::NotFoundCached), "{again:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let later = store
        .lookup(None, "ns", "missing", Duration::from_millis(10))
        .await;
    assert!(
        matches!(later, Lookup::Failed(_)),
        "expired: asked again: {later:?}"
    );

    let ticket = store.begin_fetch("ns", "created");
    store.finish_fetch(ticket, Fetched::NotFound);
    store.apply("ns", "created", Some(&role(A)));
    let now = store
        .lookup(None, "ns", "created", Duration::from_millis(10))
        .await;
    assert_eq!(
        arn(&now).as_deref(),
        Some(A),
        "the watch's create wins over the remembered NotFound"
    );
}

#[test]
fn remembered_not_found_answers_are_bounded() {
    let store = SaStore::new("eks.amazonaws.com");
    for i in 0..NOT_FOUND_ENTRIES + 500 {
        let ticket = store.begin_fetch("ns", &format!("sa-{i}"));
        store.finish_fetch(ticket, Fetched::NotFound);
    }
    assert_eq!(
        store.inner.read().expect("lock").not_found.len(),
        NOT_FOUND_ENTRIES
    );
}

#[tokio::test]
async fn invalid_names_are_refused_before_any_lookup() {
    let store = SaStore::new("eks.amazonaws.com");
    for (ns, name) in [
        ("default", "../../secrets"),
        ("Default", "sa"),
        ("default", ""),
        ("a/b", "sa"),
    ] {
        let got = store
            .lookup(None, ns, name, Duration::from_millis(10))
            .await;
        assert!(matches!(got, Lookup::Invalid(_)), "{ns}/{name}: {got:?}");
    }
}
