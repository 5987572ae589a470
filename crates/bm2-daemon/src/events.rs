//! The event bus: process lifecycle events and the messages apps send over IPC, published to
//! whoever follows `/v1/events`. Publishing never waits: a subscriber that falls behind loses
//! the oldest events and is told how many (`lagged`). Log lines have their own feed (the log
//! hub's) and are merged in by the API.

use std::sync::Arc;

use bm2_types::BusEvent;
use tokio::sync::broadcast;

/// Events kept for a subscriber that has not read them yet.
const BUFFER: usize = 4096;

/// The bus.
#[derive(Debug)]
pub struct Bus {
    tx: broadcast::Sender<Arc<BusEvent>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(BUFFER).0,
        }
    }
}

impl Bus {
    /// Publishes the event `make` builds, built only when someone follows.
    pub fn emit(&self, make: impl FnOnce() -> BusEvent) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(make()));
        }
    }

    /// A subscription from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.tx.subscribe()
    }
}
