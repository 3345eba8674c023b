//! Per-worker lists of spare vectors. A relayed request needs a few vectors for a moment (read
//! buffers, the rewritten heads, the header line ranges); taking them from the worker's list
//! and giving them back costs less than allocating and freeing each per request, and an idle
//! connection holds none of them.

use std::cell::RefCell;
use std::ops::Range;
use std::thread::LocalKey;

/// One worker's spare vectors of one kind.
type List<T> = RefCell<Vec<Vec<T>>>;

/// A kind of spare vector: its list, how many are kept, and the capacities kept and made.
pub(super) struct Kind<T: 'static> {
    list: &'static LocalKey<List<T>>,
    keep: usize,
    /// Vectors with a capacity outside this are dropped rather than kept.
    kept: Range<usize>,
    /// The capacity of a new one.
    fresh: usize,
}

impl<T> Kind<T> {
    /// A spare vector of this kind, or a new one. Empty.
    pub(super) fn take(&self) -> Vec<T> {
        self.list
            .try_with(|list| list.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| Vec::with_capacity(self.fresh))
    }

    /// Keeps `v` for a later [`Kind::take`], unless enough are kept or it is oddly sized.
    pub(super) fn give(&self, mut v: Vec<T>) {
        if !self.kept.contains(&v.capacity()) {
            return;
        }
        v.clear();
        // Gone only when the thread is exiting.
        let _ = self.list.try_with(|list| {
            let mut list = list.borrow_mut();
            if list.len() < self.keep {
                list.push(v);
            }
        });
    }
}

thread_local! {
    static BUFFERS: List<u8> = const { RefCell::new(Vec::new()) };
    static WAITING: List<u8> = const { RefCell::new(Vec::new()) };
    static HEADS: List<u8> = const { RefCell::new(Vec::new()) };
    static LINES: List<(Range<usize>, Range<usize>)> = const { RefCell::new(Vec::new()) };
}

/// Read size: one syscall's worth for a typical head or body piece.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Read buffers: a response buffer is taken and dropped once per request, and allocating
/// 16 KiB each time cost more than parsing the response head.
pub(super) static BUFFERS_KIND: Kind<u8> = Kind {
    list: &BUFFERS,
    keep: 16,
    kept: READ_CHUNK..2 * READ_CHUNK + 1,
    fresh: READ_CHUNK,
};

/// The size of a read that waits for a client's next request.
pub(super) const WAITING_READ: usize = 2048;

/// Read buffers for a client's next request: the read holds its buffer as long as the
/// connection waits, so it is small (most request heads fit; a larger one grows it).
pub(super) static WAITING_KIND: Kind<u8> = Kind {
    list: &WAITING,
    keep: 64,
    kept: WAITING_READ..WAITING_READ + 1,
    fresh: WAITING_READ,
};

/// A rewritten head on its way out (the request's, then the response's), with a body that
/// was read whole.
pub(super) static HEADS_KIND: Kind<u8> = Kind {
    list: &HEADS,
    keep: 64,
    kept: 1..4 * 1024 + 1,
    fresh: 1024,
};

/// The header line ranges of a parsed head.
pub(super) static LINES_KIND: Kind<(Range<usize>, Range<usize>)> = Kind {
    list: &LINES,
    keep: 64,
    kept: 1..crate::http1::MAX_HEADERS + 1,
    fresh: 16,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_vector_is_taken_again_and_odd_ones_are_not_kept() {
        let mut v = HEADS_KIND.take();
        v.extend_from_slice(b"abc");
        let at = v.as_ptr();
        HEADS_KIND.give(v);
        let again = HEADS_KIND.take();
        assert_eq!(again.as_ptr(), at, "the spare was not reused");
        assert!(again.is_empty());
        HEADS_KIND.give(Vec::with_capacity(1 << 20));
        assert!(
            HEADS_KIND.take().capacity() <= 4 * 1024,
            "a huge vector was kept"
        );
    }
}
