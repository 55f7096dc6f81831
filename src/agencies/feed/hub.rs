//! Wakes long-polls of this instance when an entry is appended here (a hint: the endpoint also
//! re-reads the store, see [`super::POLL_INTERVAL`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// The newest sequence number appended here, per subscription.
#[derive(Debug, Default)]
pub struct Hub {
    feeds: Mutex<BTreeMap<String, watch::Sender<i64>>>,
}

impl Hub {
    fn sender(&self, subscription: &str) -> watch::Sender<i64> {
        self.feeds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(subscription.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    /// Entry `seq` was appended to `subscription`'s feed: wake its watchers if it is newer.
    pub fn appended(&self, subscription: &str, seq: i64) {
        self.sender(subscription).send_if_modified(|s| {
            let newer = seq > *s;
            if newer {
                *s = seq;
            }
            newer
        });
    }

    /// A receiver that changes when an entry is appended to `subscription` here.
    pub fn watch(&self, subscription: &str) -> watch::Receiver<i64> {
        self.sender(subscription).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hub_wakes_watchers_of_one_feed_only() {
        let hub = Hub::default();
        let mut ioc = hub.watch("ioc");
        let other = hub.watch("other");
        hub.appended("ioc", 3);
        ioc.changed().await.unwrap();
        assert_eq!(*ioc.borrow_and_update(), 3);
        hub.appended("ioc", 2); // older: no wakeup
        assert!(!ioc.has_changed().unwrap());
        assert!(!other.has_changed().unwrap());
    }
}
