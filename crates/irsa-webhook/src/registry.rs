//! The open HTTPS connections: each with its own stop signal and its
//! [`Activity`], so the server can drain them all on shutdown, and close
//! the longest-idle one when all `--max-connections` slots are taken.
//!
//! A connection polls only its own oneshot receiver: a signal shared by
//! every connection (a watch channel, hyper-util's `GracefulShutdown`)
//! takes a lock shared by all of them on every poll; under load on two
//! cores that lock cost about as much CPU as the whole admission (the
//! `admission` bench: 1.55x the bare server's CPU per request with it,
//! 1.40x without).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::conn::Activity;

/// The registry; share it as `Arc<Mutex<Connections>>`.
#[derive(Default)]
pub struct Connections {
    next: u64,
    open: HashMap<u64, (oneshot::Sender<()>, Arc<Activity>)>,
}

impl Connections {
    /// Registers a new connection: its id, stop signal and activity.
    pub fn open(this: &Mutex<Self>) -> (u64, oneshot::Receiver<()>, Arc<Activity>) {
        let (tx, rx) = oneshot::channel();
        let activity = Arc::new(Activity::new());
        let Ok(mut c) = this.lock() else {
            // A poisoned registry cannot signal this connection; it still
            // ends when its client goes, a limit cuts it, or the server
            // task is dropped.
            return (u64::MAX, rx, activity);
        };
        let id = c.next;
        c.next += 1;
        c.open.insert(id, (tx, activity.clone()));
        (id, rx, activity)
    }

    /// Forgets a connection that ended.
    pub fn close(this: &Mutex<Self>, id: u64) {
        if let Ok(mut c) = this.lock() {
            c.open.remove(&id);
        }
    }

    /// Asks every open connection to finish its request in flight and close.
    pub fn stop_all(this: &Mutex<Self>) {
        let senders: Vec<_> = match this.lock() {
            Ok(mut c) => c.open.drain().map(|(_, (tx, _))| tx).collect(),
            Err(_) => Vec::new(),
        };
        for tx in senders {
            let _ = tx.send(());
        }
    }

    /// Closes the connection idle the longest (TLS done, no request and
    /// no partial request on it), as a graceful stop: a request that
    /// arrives meanwhile is still answered. Returns whether there was one.
    /// Used when every slot is taken, so idle connections, which cost
    /// memory but serve nobody, cannot lock out new clients.
    pub fn evict_idle(this: &Mutex<Self>) -> bool {
        let Ok(mut c) = this.lock() else {
            return false;
        };
        let victim = c
            .open
            .iter()
            .filter_map(|(id, (_, activity))| Some((activity.idle_since()?, *id)))
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        if let Some((tx, _)) = c.open.remove(&id) {
            let _ = tx.send(());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_longest_idle_served_connection_only() {
        let registry = Mutex::new(Connections::default());
        let (_, mut in_handshake, _) = Connections::open(&registry);
        let (_, mut busy_rx, busy) = Connections::open(&registry);
        busy.mark_served(crate::conn::Protocol::Http1);
        busy.begin_request();
        // `old` is opened well before `recent` but served (idle from) only
        // just before it: idle times compare as instants, not as offsets
        // from each connection's own opening.
        let (_, mut old_rx, old) = Connections::open(&registry);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let (_, mut recent_rx, recent) = Connections::open(&registry);
        std::thread::sleep(std::time::Duration::from_millis(5));
        old.mark_served(crate::conn::Protocol::Http1);
        std::thread::sleep(std::time::Duration::from_millis(5));
        recent.mark_served(crate::conn::Protocol::Http1);

        assert!(Connections::evict_idle(&registry));
        assert!(old_rx.try_recv().is_ok(), "the longest idle goes first");
        assert!(recent_rx.try_recv().is_err());
        assert!(Connections::evict_idle(&registry));
        assert!(recent_rx.try_recv().is_ok());
        assert!(!Connections::evict_idle(&registry), "no idle one left");
        assert!(
            busy_rx.try_recv().is_err(),
            "a request in flight is never evicted"
        );
        assert!(in_handshake.try_recv().is_err(), "nor a handshake");
    }
}
