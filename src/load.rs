//! Per-backend load, shared by every snapshot holding the backend (like its health): requests
//! in flight, and the bounded-load rule that decides when a backend has more than its share.
//!
//! The rule is Mirrokni, Thorup and Zadimoghaddam's "Consistent Hashing with Bounded Loads"
//! (as in HAProxy's `hash-balance-factor` and Envoy's `hash_balance_factor`): a backend is full
//! when its in-flight requests reach `ceil(bound × (total in flight + 1) / usable backends)`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// One backend's load.
#[derive(Debug, Default)]
pub struct BackendLoad {
    in_flight: AtomicUsize,
    /// Requests that went elsewhere because this backend was over its bound.
    spilled: AtomicU64,
}

impl BackendLoad {
    /// Requests in flight at this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Requests spilled past this backend by the bound.
    pub fn spilled(&self) -> u64 {
        self.spilled.load(Relaxed)
    }

    /// Counts a spill past this backend.
    pub fn spill(&self) {
        self.spilled.fetch_add(1, Relaxed);
    }
}

/// The total in flight across backends, for the bound.
#[derive(Debug, Default)]
pub struct TotalLoad(AtomicUsize);

impl TotalLoad {
    /// Requests in flight across all backends.
    pub fn get(&self) -> usize {
        self.0.load(Relaxed)
    }
}

/// One request in flight at one backend; dropping it ends the request.
#[derive(Debug)]
pub struct LoadGuard {
    backend: Arc<BackendLoad>,
    total: Arc<TotalLoad>,
}

impl LoadGuard {
    /// Starts a request at `backend`.
    pub fn start(backend: &Arc<BackendLoad>, total: &Arc<TotalLoad>) -> LoadGuard {
        backend.in_flight.fetch_add(1, Relaxed);
        total.0.fetch_add(1, Relaxed);
        LoadGuard {
            backend: backend.clone(),
            total: total.clone(),
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Relaxed);
        self.total.0.fetch_sub(1, Relaxed);
    }
}

/// Is a backend with `in_flight` requests over its bound, with `total` in flight over
/// `usable` backends? The `+ 1` counts the request being placed, so an idle cluster never
/// refuses it.
pub fn over_bound(in_flight: usize, total: usize, usable: usize, bound: f64) -> bool {
    let usable = usable.max(1) as f64;
    let cap = (bound * (total as f64 + 1.0) / usable).ceil() as usize;
    in_flight >= cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_follows_the_mean() {
        // 4 backends, 7 in flight: mean with this one 2, bound 1.25 → cap ceil(2.5) = 3.
        assert!(!over_bound(2, 7, 4, 1.25));
        assert!(over_bound(3, 7, 4, 1.25));
        // Idle: never over.
        assert!(!over_bound(0, 0, 4, 1.0));
        // One backend takes everything it gets.
        assert!(!over_bound(5, 5, 1, 1.25));
    }

    #[test]
    fn guards_count_and_uncount() {
        let (b, t) = (
            Arc::new(BackendLoad::default()),
            Arc::new(TotalLoad::default()),
        );
        let g1 = LoadGuard::start(&b, &t);
        let g2 = LoadGuard::start(&b, &t);
        assert_eq!((b.in_flight(), t.get()), (2, 2));
        drop(g1);
        drop(g2);
        assert_eq!((b.in_flight(), t.get()), (0, 0));
    }
}
