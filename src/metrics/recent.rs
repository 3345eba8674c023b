//! The response counters a worker thread used last, so counting a response is a few pointer
//! compares rather than a lookup in the family (a lock and a SipHash of the labels: about a
//! thirtieth of the relay's work per request). Each entry holds its backend id and counter:
//! an id seen again is the same allocation, never a reused address; a departed backend's
//! entry is simply not hit again and is overwritten in turn.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

/// Entries per thread: a few backends' common status codes.
const SLOTS: usize = 16;

struct Entry {
    /// Which [`super::Metrics`] (tests run several in one thread).
    registry: u64,
    backend: Arc<str>,
    code: u16,
    counter: Counter,
}

#[derive(Default)]
struct Recent {
    entries: Vec<Entry>,
    /// The entry replaced next once all slots are used.
    next: usize,
}

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::default();
}

/// A number for each registry, for [`count`]'s entries.
pub(super) fn registry_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Counts one response with `code` from `backend` in `registry`; `counter` finds its counter
/// when this thread has not used it lately.
pub(super) fn count(
    registry: u64,
    backend: &Arc<str>,
    code: u16,
    counter: impl FnOnce() -> Counter,
) {
    let mut counter = Some(counter);
    let counted = RECENT.try_with(|recent| {
        let mut recent = recent.borrow_mut();
        let hit = recent
            .entries
            .iter()
            .find(|e| e.code == code && e.registry == registry && Arc::ptr_eq(&e.backend, backend));
        if let Some(e) = hit {
            e.counter.inc();
            return;
        }
        let Some(find) = counter.take() else { return };
        let found = find();
        found.inc();
        let entry = Entry {
            registry,
            backend: backend.clone(),
            code,
            counter: found,
        };
        if recent.entries.len() < SLOTS {
            recent.entries.push(entry);
        } else {
            let at = recent.next;
            recent.entries[at] = entry;
            recent.next = (at + 1) % SLOTS;
        }
    });
    // Only while the thread is exiting.
    if counted.is_err() {
        if let Some(find) = counter {
            find().inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::family::Family;

    use super::*;

    #[test]
    fn counts_land_on_the_registrys_counter_for_the_backend_and_code() {
        let (one, two) = (registry_serial(), registry_serial());
        let families = [
            Family::<(String, u16), Counter>::default(),
            Family::default(),
        ];
        let count_in = |r: usize, backend: &Arc<str>, code: u16| {
            let family = &families[r];
            let serial = [one, two][r];
            count(serial, backend, code, || {
                family.get_or_create(&(backend.to_string(), code)).clone()
            });
        };
        let a: Arc<str> = Arc::from("a");
        let a_again: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        for _ in 0..3 {
            count_in(0, &a, 200);
        }
        count_in(0, &a_again, 200);
        count_in(0, &a, 404);
        count_in(1, &a, 200);
        // More pairs than slots: the first ones are overwritten and found again.
        for code in 0..2 * SLOTS as u16 {
            count_in(0, &b, 500 + code);
        }
        count_in(0, &a, 200);
        let get =
            |r: usize, id: &str, code: u16| families[r].get_or_create(&(id.into(), code)).get();
        assert_eq!(get(0, "a", 200), 5);
        assert_eq!(get(0, "a", 404), 1);
        assert_eq!(get(1, "a", 200), 1);
        assert_eq!(get(0, "b", 500), 1);
        assert_eq!(get(0, "b", 500 + 2 * SLOTS as u16 - 1), 1);
    }
}
