//! Locking that survives a panicked holder, and a cheap-to-poll one-time signal.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Locks `m`, ignoring poisoning: every mutex here guards data a panicking holder cannot
/// leave half-written (a pool list, a body slot, the writers' turn), so carrying on is safe.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Read-locks `l`, ignoring poisoning, for the same reason as [`lock`].
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-locks `l`, ignoring poisoning, for the same reason as [`lock`].
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A signal rung once, for many tasks to wait on and poll often: a waiter registers its task's
/// waker at its first poll and again only if that waker changes, so polling it is an atomic
/// load and a waker compare. (`CancellationToken::cancelled()` locks a mutex at every poll,
/// and a connection's wait for the shutdown is polled at every wake-up of its task.)
#[derive(Debug, Default)]
pub struct Bell {
    rung: AtomicBool,
    waiters: Mutex<Slab<Waker>>,
}

impl Bell {
    /// Rings: every wait, now or later, is over.
    pub fn ring(&self) {
        self.rung.store(true, Ordering::SeqCst);
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Has it rung?
    pub fn is_rung(&self) -> bool {
        self.rung.load(Ordering::SeqCst)
    }

    /// Resolves once the bell has rung. Keep it across polls: its registration is made once.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            bell: self,
            key: None,
            waker: None,
        }
    }
}

/// A wait for a [`Bell`].
#[derive(Debug)]
pub struct Wait<'a> {
    bell: &'a Bell,
    key: Option<usize>,
    waker: Option<Waker>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.bell.is_rung() {
            return Poll::Ready(());
        }
        let this = &mut *self;
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let mut waiters = lock(&this.bell.waiters);
            match this.key {
                Some(key) if waiters.contains(key) => waiters[key] = cx.waker().clone(),
                _ => this.key = Some(waiters.insert(cx.waker().clone())),
            }
            this.waker = Some(cx.waker().clone());
        }
        // Rung before the waker went in: `ring` took the list without it.
        if this.bell.is_rung() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut waiters = lock(&self.bell.waiters);
            // Gone already if the bell rang.
            if waiters.contains(key) {
                waiters.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_end_when_it_rings_and_after() {
        let bell = Arc::new(Bell::default());
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let bell = bell.clone();
                tokio::spawn(async move { bell.wait().await })
            })
            .collect();
        // Every waiter polled (and registered) before the ring.
        while lock(&bell.waiters).len() < 3 {
            tokio::task::yield_now().await;
        }
        bell.ring();
        for w in waiting {
            tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .expect("woken")
                .unwrap();
        }
        // Late waits end at once; nothing is left registered.
        bell.wait().await;
        assert_eq!(lock(&bell.waiters).len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_no_waker() {
        let bell = Bell::default();
        {
            let mut wait = std::pin::pin!(bell.wait());
            assert!(futures_poll_once(wait.as_mut()).is_pending());
            // Polled again by the same task: registered once.
            assert!(futures_poll_once(wait.as_mut()).is_pending());
            assert_eq!(lock(&bell.waiters).len(), 1);
        }
        assert_eq!(lock(&bell.waiters).len(), 0);
    }

    fn futures_poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        f.poll(&mut cx)
    }
}
