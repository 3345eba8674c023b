//! Which keys are hot right now: a fixed-memory heavy-hitter sketch (Metwally, Agrawal and
//! El Abbadi's Space-Saving) over a decaying window.
//!
//! `SLOTS` counters track the most frequent key hashes; a key not tracked replaces the
//! smallest counter and inherits its count as its possible error. Hotness is judged on the
//! guaranteed part (count − error), so a cold key that just took over a slot is never hot. Every `window` observations all counts halve, so the
//! sketch follows the recent past: a key that cools down stops being hot within a window or
//! two. A key is hot when its count is at least `share` of the window's observations. Pure
//! data: no clock, no I/O.

/// Tracked keys. Anything above 1/SLOTS of the traffic is guaranteed to be tracked.
const SLOTS: usize = 64;

/// The sketch.
#[derive(Debug, Clone)]
pub struct HotKeys {
    hashes: [u64; SLOTS],
    counts: [u32; SLOTS],
    /// What each count may overstate: the count its slot had when the key took it over.
    errors: [u32; SLOTS],
    used: usize,
    /// Observations in the current window (halved with the counts).
    seen: u32,
    window: u32,
    share: f64,
}

impl HotKeys {
    /// A sketch marking keys above `share` (0 < share < 1) of recent requests as hot.
    pub fn new(share: f64) -> HotKeys {
        // About a hundred hits of a key at exactly `share` per window: enough to tell it from
        // noise, small enough to follow changes within seconds at modest rates.
        let window = (100.0 / share).clamp(1_000.0, 1_000_000.0) as u32;
        HotKeys {
            hashes: [0; SLOTS],
            counts: [0; SLOTS],
            errors: [0; SLOTS],
            used: 0,
            seen: 0,
            window,
            share,
        }
    }

    /// The share this sketch was built for.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// Counts one request for `hash`; answers whether that key is hot now.
    pub fn observe(&mut self, hash: u64) -> bool {
        self.seen += 1;
        if self.seen >= self.window {
            self.decay();
        }
        let i = match self.hashes[..self.used].iter().position(|&h| h == hash) {
            Some(i) => i,
            None if self.used < SLOTS => {
                self.used += 1;
                self.hashes[self.used - 1] = hash;
                self.counts[self.used - 1] = 0;
                self.errors[self.used - 1] = 0;
                self.used - 1
            }
            None => {
                let (i, _) = self
                    .counts
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, c)| **c)
                    .expect("SLOTS > 0");
                self.hashes[i] = hash;
                self.errors[i] = self.counts[i];
                i
            }
        };
        self.counts[i] = self.counts[i].saturating_add(1);
        self.is_hot_slot(i)
    }

    /// Is `hash` hot, without counting a request?
    pub fn is_hot(&self, hash: u64) -> bool {
        self.hashes[..self.used]
            .iter()
            .position(|&h| h == hash)
            .is_some_and(|i| self.is_hot_slot(i))
    }

    /// How many tracked keys are hot now.
    pub fn hot_count(&self) -> usize {
        (0..self.used).filter(|&i| self.is_hot_slot(i)).count()
    }

    fn is_hot_slot(&self, i: usize) -> bool {
        let sure = self.counts[i] - self.errors[i];
        // Until a tenth of a window has been seen, nothing is hot: too little to judge.
        self.seen >= self.window / 10 && f64::from(sure) >= self.share * f64::from(self.seen)
    }

    fn decay(&mut self) {
        self.seen /= 2;
        for i in 0..self.used {
            self.counts[i] /= 2;
            self.errors[i] /= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream: `hot` at `hot_share`, the rest spread over `cold` keys.
    fn stream(n: usize, hot: u64, hot_share: f64, cold: u64) -> impl Iterator<Item = u64> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (x % 10_000) as f64 / 10_000.0 < hot_share {
                hot
            } else {
                1_000 + x % cold
            }
        })
    }

    #[test]
    fn a_key_at_thirty_percent_is_hot_and_cold_keys_are_not() {
        let mut s = HotKeys::new(0.01);
        for h in stream(50_000, 7, 0.30, 100_000) {
            s.observe(h);
        }
        assert!(s.is_hot(7));
        assert_eq!(s.hot_count(), 1);
        assert!(!s.is_hot(1_000 + 5));
    }

    #[test]
    fn a_key_that_cools_down_stops_being_hot() {
        let mut s = HotKeys::new(0.01);
        for h in stream(30_000, 7, 0.30, 100_000) {
            s.observe(h);
        }
        assert!(s.is_hot(7));
        for h in stream(200_000, 8, 0.0, 100_000) {
            s.observe(h);
        }
        assert!(!s.is_hot(7));
    }

    #[test]
    fn nothing_is_hot_before_enough_traffic() {
        let mut s = HotKeys::new(0.01);
        assert!(!s.observe(1));
        assert!(!s.observe(1));
    }
}
