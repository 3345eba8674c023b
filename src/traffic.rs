//! Traffic state shared by every proxy worker and the admin API: the total in flight (for
//! the load bound) and the hot-key sketch. Not part of the snapshot: it changes with every
//! request, membership changes do not touch it.

use std::sync::{Arc, Mutex};

use crate::hot::HotKeys;
use crate::load::TotalLoad;
use crate::sync::lock;

/// The process's traffic state.
#[derive(Debug)]
pub struct Traffic {
    /// Requests in flight across all backends.
    pub total: Arc<TotalLoad>,
    /// One sketch for the process: workers share it so a key hot across workers is hot.
    hot: Mutex<HotKeys>,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            total: Arc::default(),
            hot: Mutex::new(HotKeys::new(0.01)),
        }
    }
}

impl Traffic {
    /// Counts a request for the key at `hash`; is the key hot at `share`?
    pub fn observe(&self, hash: u64, share: f64) -> bool {
        let mut hot = lock(&self.hot);
        if hot.share() != share {
            // The setting changed on reload: start a sketch for the new threshold.
            *hot = HotKeys::new(share);
        }
        hot.observe(hash)
    }

    /// Is the key at `hash` hot, without counting a request?
    pub fn is_hot(&self, hash: u64) -> bool {
        lock(&self.hot).is_hot(hash)
    }

    /// Hot keys tracked now.
    pub fn hot_keys(&self) -> usize {
        lock(&self.hot).hot_count()
    }
}
