//! Backend health: which ring members may serve right now.
//!
//! Health never rebuilds the ring. Each backend carries one shared [`BackendHealth`] (atomics)
//! that survives snapshot swaps; routing walks `ring.candidates(key)` and takes the first usable
//! backend, so a dead backend's keys go to the next distinct backend clockwise, every other key
//! stays where it is, and the dead backend's keys come back when it recovers.
//!
//! Three inputs mark a backend unusable:
//! - **passive**: `fail_threshold` consecutive failures (connect error, connect timeout, and 5xx
//!   when `fail_on_5xx`) eject it for `eject_for`, doubling on each ejection without a success
//!   in between, up to `max_eject_for`; one success resets.
//! - **active** (optional): `GET path` every `interval`; `unhealthy_threshold` consecutive failed
//!   checks mark it unhealthy and `healthy_threshold` consecutive passes mark it healthy again.
//!   The two thresholds are hysteresis: a flapping server does not bounce keys back and forth.
//! - **drain**: an operator's `POST /backends/{id}/drain`; it stays a member (its points stay), so
//!   undrain returns exactly its keys.
//!
//! Plain atomics: the request path reads a few of them per candidate and never blocks. Updates
//! are last-writer-wins, which is fine for counters that only steer a threshold. Times are
//! milliseconds from [`crate::clock::now_ms`], passed in by the caller so the logic is testable
//! without a clock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::HealthConfig;

/// What `GET /backends` reports, most significant first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// An operator drained it.
    Draining,
    /// Active checks failed.
    Unhealthy,
    /// Passively ejected after consecutive failures.
    Ejected,
    /// Usable.
    Healthy,
}

impl State {
    /// The state's name in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Draining => "draining",
            State::Unhealthy => "unhealthy",
            State::Ejected => "ejected",
            State::Healthy => "healthy",
        }
    }
}
/// The health of one backend.

#[derive(Debug, Default)]
pub struct BackendHealth {
    draining: AtomicBool,
    /// Set by active checks.
    unhealthy: AtomicBool,
    /// Passive: ejected while `now < ejected_until`.
    ejected_until: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Ejections since the last success; sets the next ejection's length.
    ejections: AtomicU32,
    total_failures: AtomicU64,
    total_ejections: AtomicU64,
    /// Active check streaks.
    check_passes: AtomicU32,
    check_failures: AtomicU32,
}

/// What a recorded result changed, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// Ejected for this long.
    Ejected(Duration),
    /// Active checks marked it unhealthy.
    MarkedUnhealthy,
    /// Active checks marked it healthy again.
    MarkedHealthy,
}

impl BackendHealth {
    /// May this backend take requests right now?
    #[inline]
    pub fn usable(&self, now: u64) -> bool {
        !self.draining.load(Relaxed)
            && !self.unhealthy.load(Relaxed)
            && self.ejected_until.load(Relaxed) <= now
    }

    /// The state to report at `now`.
    pub fn state(&self, now: u64) -> State {
        if self.draining.load(Relaxed) {
            State::Draining
        } else if self.unhealthy.load(Relaxed) {
            State::Unhealthy
        } else if self.ejected_until.load(Relaxed) > now {
            State::Ejected
        } else {
            State::Healthy
        }
    }

    /// Is an operator draining it?
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Drains or undrains it.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Relaxed);
    }

    /// Failures in a row since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed)
    }

    /// Failures ever recorded.
    pub fn total_failures(&self) -> u64 {
        self.total_failures.load(Relaxed)
    }

    /// Ejections ever.
    pub fn total_ejections(&self) -> u64 {
        self.total_ejections.load(Relaxed)
    }

    /// Milliseconds of ejection left.
    pub fn ejected_for(&self, now: u64) -> u64 {
        self.ejected_until.load(Relaxed).saturating_sub(now)
    }

    /// A request reached the backend and got an acceptable answer.
    pub fn record_success(&self) {
        // Loads first: the hot path should not dirty the cache line when nothing changes.
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
        if self.ejections.load(Relaxed) != 0 {
            self.ejections.store(0, Relaxed);
        }
    }

    /// A request failed at this backend; ejects it when the streak reaches the threshold.
    pub fn record_failure(&self, now: u64, config: &HealthConfig) -> Transition {
        self.total_failures.fetch_add(1, Relaxed);
        // Failures of requests that were in flight when it was ejected say nothing new.
        if self.ejected_until.load(Relaxed) > now {
            return Transition::None;
        }
        let streak = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if streak < config.fail_threshold {
            return Transition::None;
        }
        self.consecutive_failures.store(0, Relaxed);
        let n = self.ejections.fetch_add(1, Relaxed).min(20);
        let length = config
            .eject_for
            .saturating_mul(1 << n)
            .min(config.max_eject_for);
        self.ejected_until
            .store(now + length.as_millis() as u64, Relaxed);
        self.total_ejections.fetch_add(1, Relaxed);
        Transition::Ejected(length)
    }

    /// One active check result; flips the state only after the configured streak.
    pub fn record_check(
        &self,
        passed: bool,
        unhealthy_threshold: u32,
        healthy_threshold: u32,
    ) -> Transition {
        if passed {
            self.check_failures.store(0, Relaxed);
            let streak = self.check_passes.fetch_add(1, Relaxed) + 1;
            if self.unhealthy.load(Relaxed) && streak >= healthy_threshold {
                self.unhealthy.store(false, Relaxed);
                return Transition::MarkedHealthy;
            }
        } else {
            self.check_passes.store(0, Relaxed);
            let streak = self.check_failures.fetch_add(1, Relaxed) + 1;
            if !self.unhealthy.load(Relaxed) && streak >= unhealthy_threshold {
                self.unhealthy.store(true, Relaxed);
                return Transition::MarkedUnhealthy;
            }
        }
        Transition::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HealthConfig {
        HealthConfig {
            fail_threshold: 3,
            eject_for: Duration::from_secs(10),
            max_eject_for: Duration::from_secs(35),
            ..HealthConfig::default()
        }
    }

    #[test]
    fn threshold_failures_eject_and_a_success_resets() {
        let (h, c) = (BackendHealth::default(), config());
        assert_eq!(h.record_failure(0, &c), Transition::None);
        assert_eq!(h.record_failure(0, &c), Transition::None);
        h.record_success();
        assert_eq!(h.record_failure(0, &c), Transition::None);
        assert_eq!(h.record_failure(0, &c), Transition::None);
        assert!(h.usable(0));
        assert_eq!(
            h.record_failure(100, &c),
            Transition::Ejected(Duration::from_secs(10))
        );
        assert!(!h.usable(100));
        assert_eq!(h.state(100), State::Ejected);
        assert_eq!(h.record_failure(200, &c), Transition::None);
        assert_eq!(
            h.consecutive_failures(),
            0,
            "late failures while ejected do not count"
        );
        assert!(h.usable(10_100));
        assert_eq!(h.state(10_100), State::Healthy);
    }

    #[test]
    fn repeated_ejections_double_up_to_the_cap() {
        let (h, c) = (BackendHealth::default(), config());
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..4 {
            for _ in 0..3 {
                if let Transition::Ejected(d) = h.record_failure(now, &c) {
                    lengths.push(d.as_secs());
                    now += d.as_millis() as u64;
                }
            }
        }
        assert_eq!(lengths, [10, 20, 35, 35]);
        h.record_success();
        for _ in 0..3 {
            h.record_failure(now, &c);
        }
        assert_eq!(h.ejected_for(now), 10_000, "a success resets the doubling");
    }

    #[test]
    fn active_checks_flip_only_after_their_streaks() {
        let h = BackendHealth::default();
        assert_eq!(h.record_check(false, 3, 2), Transition::None);
        assert_eq!(h.record_check(false, 3, 2), Transition::None);
        assert_eq!(h.record_check(true, 3, 2), Transition::None);
        assert_eq!(h.record_check(false, 3, 2), Transition::None);
        assert_eq!(h.record_check(false, 3, 2), Transition::None);
        assert!(h.usable(0));
        assert_eq!(h.record_check(false, 3, 2), Transition::MarkedUnhealthy);
        assert_eq!(h.state(0), State::Unhealthy);
        assert_eq!(h.record_check(true, 3, 2), Transition::None);
        assert_eq!(h.record_check(false, 3, 2), Transition::None);
        assert_eq!(h.record_check(true, 3, 2), Transition::None);
        assert_eq!(h.record_check(true, 3, 2), Transition::MarkedHealthy);
        assert!(h.usable(0));
    }

    #[test]
    fn draining_wins_over_everything() {
        let h = BackendHealth::default();
        h.set_draining(true);
        assert_eq!(h.state(0), State::Draining);
        assert!(!h.usable(0));
        h.set_draining(false);
        assert!(h.usable(0));
    }
}
