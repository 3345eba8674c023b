//! A deadline that moves with every request and almost never fires, kept on one timer.
//!
//! A keep-alive connection gets a new deadline for each request head and each attempt. Arming
//! a timer for each (register, then cancel when the request is on time) was the relay's
//! costliest timer work per request. A `Deadline` leaves its timer where it was set while the
//! deadline only moves later; when the timer fires early it is set again at the current
//! deadline. A deadline moved earlier resets the timer at once, so the timer never fires late.

use std::future::{poll_fn, Future as _};
use std::pin::Pin;
use std::task::{Poll, Waker};

use monoio::time::{sleep_until, Instant, Sleep};

/// One moving deadline on one timer.
#[derive(Debug)]
pub(super) struct Deadline {
    timer: Pin<Box<Sleep>>,
    /// Where the timer is set; never later than `at`.
    armed: Instant,
    /// The deadline.
    at: Instant,
    /// The waker the armed timer holds, once polled: a poll for the same task can then ask
    /// whether it fired instead of polling it (which registers the waker again).
    waker: Option<Waker>,
}

impl Deadline {
    /// A deadline at `at`.
    pub(super) fn new(at: Instant) -> Deadline {
        Deadline {
            timer: Box::pin(sleep_until(at)),
            armed: at,
            at,
            waker: None,
        }
    }

    /// Moves the deadline to `at`. The timer is only touched when `at` is earlier than where
    /// it is set.
    pub(super) fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.armed {
            self.timer.as_mut().reset(at);
            self.armed = at;
            self.waker = None;
        }
    }

    /// Resolves when the deadline has passed.
    pub(super) async fn expired(&mut self) {
        poll_fn(|cx| loop {
            let holds_waker = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if holds_waker && !self.timer.is_elapsed() {
                return Poll::Pending;
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                if !holds_waker {
                    self.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // Firing used the waker up.
            self.waker = None;
            // The timer fired at an earlier deadline; the current one may still be ahead.
            if self.armed >= self.at {
                return Poll::Ready(());
            }
            self.armed = self.at;
            self.timer.as_mut().reset(self.at);
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Does `expired` resolve without time moving on?
    async fn expired_now(deadline: &mut Deadline) -> bool {
        monoio::select! {
            biased;
            () = deadline.expired() => true,
            () = std::future::ready(()) => false,
        }
    }

    /// `expired`, bounded: a deadline that never fires fails the test.
    async fn expires(deadline: &mut Deadline) {
        let within = Duration::from_secs(10);
        monoio::time::timeout(within, deadline.expired())
            .await
            .expect("the deadline fired");
    }

    const MS: Duration = Duration::from_millis(1);

    #[monoio::test(timer_enabled = true)]
    async fn fires_at_the_latest_deadline_not_the_first() {
        let start = Instant::now();
        let mut d = Deadline::new(start + 20 * MS);
        d.set(start + 150 * MS);
        expires(&mut d).await;
        assert!(start.elapsed() >= 150 * MS, "fired at the old deadline");
    }

    #[monoio::test(timer_enabled = true)]
    async fn a_deadline_moved_earlier_fires_early() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(30));
        d.set(start + 20 * MS);
        expires(&mut d).await;
        assert!(start.elapsed() >= 20 * MS);
    }

    #[monoio::test(timer_enabled = true)]
    async fn moved_after_firing_waits_again() {
        let mut d = Deadline::new(Instant::now() + 10 * MS);
        expires(&mut d).await;
        let moved = Instant::now();
        d.set(moved + 100 * MS);
        assert!(
            !expired_now(&mut d).await,
            "a passed timer counted for a new deadline"
        );
        expires(&mut d).await;
        assert!(moved.elapsed() >= 100 * MS);
    }
}
