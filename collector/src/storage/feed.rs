//! The live feed: every event [`super::Store::insert`] newly stores is published, after the
//! commit, on a broadcast channel that live followers read ([`super::Store::subscribe`]).
//! Sending never waits; a follower that falls behind loses the oldest events and is told how
//! many ([`FEED_CAPACITY`]). The feed is per collector process: on a PostgreSQL database shared
//! by several collectors, a follower sees the events stored through its own collector.

use std::sync::Arc;

use jitgate_proto::audit::v1::Event;
use tokio::sync::broadcast;

/// Events the live feed holds for its slowest follower before that follower misses some.
pub const FEED_CAPACITY: usize = 4096;

/// The sending side of the feed; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Feed(broadcast::Sender<Arc<Event>>);

impl Feed {
    /// A feed nobody follows yet.
    pub fn new() -> Feed {
        Feed(broadcast::channel(FEED_CAPACITY).0)
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.0.subscribe()
    }

    /// Sends `events[i]` for each `i` in `stored` (in that order); never waits (nobody
    /// listening: nothing is copied).
    pub fn publish(&self, events: &[Event], stored: &[usize]) {
        if self.0.receiver_count() == 0 {
            return;
        }
        for event in stored.iter().filter_map(|&i| events.get(i)) {
            // An error only means every follower left meanwhile.
            let _ = self.0.send(Arc::new(event.clone()));
        }
    }
}
