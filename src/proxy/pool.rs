//! Idle keep-alive connections to backends, per backend address, for one worker.
//!
//! A request takes the newest idle connection that can take it now (the newest is the one
//! least likely to have been timed out by the backend); a connection whose exchange ended
//! cleanly goes back. At most [`MAX_IDLE_PER_BACKEND`] wait per backend, each for its idle
//! timeout: a sweeper task closes expired ones so an idle backend is not held open.
//!
//! The pool is generic over the connection, so hyper's `SendRequest` (the hyper path) and a
//! raw `TcpStream` (the byte relay) share one implementation; each worker holds one pool per
//! kind, so the two paths never hand each other a connection.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use prometheus_client::metrics::gauge::Gauge;

use crate::sync::lock;

/// Idle connections kept per backend; more concurrent requests still get connections.
pub const MAX_IDLE_PER_BACKEND: usize = 256;

/// A connection the pool can hold: it can say, without waiting, whether it is still usable.
pub trait Pooled: Sized + 'static {
    /// The connection is gone (closed by the peer, reset, or otherwise unusable): drop it.
    fn is_closed(&self) -> bool;
    /// The connection can take a request now (not still finishing the previous exchange).
    fn is_ready(&self) -> bool;
    /// Is it worth asking [`is_closed`](Self::is_closed) when the connection is put back, or
    /// is that too dear to ask twice (it is asked again when the connection is taken)?
    const CHECKED_ON_RETURN: bool = true;
    /// Runs `sweeper` on the runtime this kind of connection lives on, if there is one.
    fn spawn_sweeper(pool: Weak<Pool<Self>>) -> bool;
}

impl<B: Send + 'static> Pooled for SendRequest<B> {
    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }

    fn is_ready(&self) -> bool {
        SendRequest::is_ready(self)
    }

    fn spawn_sweeper(pool: Weak<Pool<Self>>) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        runtime.spawn(sweeper(pool, tokio::time::sleep));
        true
    }
}

/// Closes `pool`'s expired idle connections periodically, so an idle backend is not held
/// open; ends with the pool. `sleep` is the runtime's.
pub(crate) async fn sweeper<C: Pooled, S: Future>(
    pool: Weak<Pool<C>>,
    sleep: impl Fn(Duration) -> S,
) {
    loop {
        let every = match pool.upgrade() {
            Some(pool) => pool.sweep_every_ms.load(Ordering::Relaxed),
            None => return,
        };
        sleep(Duration::from_millis(every)).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep(Instant::now());
    }
}

/// One worker's idle connections of one kind, keyed by backend address.
pub struct Pool<C> {
    /// Keyed by address; each list oldest first. foldhash: SipHash of the key was a
    /// measurable part of each request.
    idle: Mutex<HashMap<Arc<str>, Vec<Idle<C>>, foldhash::fast::RandomState>>,
    /// How often the sweeper looks for expired idle connections, in ms: a quarter of the
    /// shortest idle timeout seen (settings can change on reload).
    sweep_every_ms: AtomicU64,
    /// Idle connections, summed over every worker's pool.
    idle_gauge: Gauge,
    /// Set once the task that closes expired idle connections runs.
    sweeping: AtomicBool,
}

struct Idle<C> {
    conn: C,
    /// Closed by the sweeper after this.
    expires: Instant,
}

impl<C: Pooled> Pool<C> {
    /// An empty pool; `idle_gauge` counts its idle connections.
    pub fn new(idle_gauge: Gauge) -> Pool<C> {
        Pool {
            idle: Mutex::new(HashMap::default()),
            sweep_every_ms: u64::MAX.into(),
            idle_gauge,
            sweeping: false.into(),
        }
    }

    /// The newest idle connection to `address` that can take a request now.
    pub fn take(&self, address: &str) -> Option<C> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(address)?;
        let before = list.len();
        let taken = newest_ready(list);
        self.idle_gauge.dec_by((before - list.len()) as i64);
        taken
    }

    /// Keeps `conn` for the next request to `address`, for at most `idle_timeout`; dropped
    /// (closed) instead when it is already closed (if [`Pooled::CHECKED_ON_RETURN`]) or the
    /// backend has its fill of idle ones.
    pub fn put(self: &Arc<Self>, address: Arc<str>, conn: C, idle_timeout: Duration) {
        if C::CHECKED_ON_RETURN && conn.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        let list = idle.entry(address).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle {
                conn,
                expires: Instant::now() + idle_timeout,
            });
            self.idle_gauge.inc();
        }
        drop(idle);
        // An idle connection lives at most a quarter longer than its timeout.
        let every = (idle_timeout / 4)
            .max(Duration::from_millis(10))
            .as_millis() as u64;
        if every < self.sweep_every_ms.load(Ordering::Relaxed) {
            self.sweep_every_ms.fetch_min(every, Ordering::Relaxed);
        }
        self.start_sweeping();
    }

    /// Closes expired idle connections periodically, so an idle backend is not held open.
    fn start_sweeping(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        if !C::spawn_sweeper(Arc::downgrade(self)) {
            self.sweeping.store(false, Ordering::Relaxed);
        }
    }

    /// Drops the idle connections that expired by `now` or closed.
    fn sweep(&self, now: Instant) {
        let mut closed = 0;
        lock(&self.idle).retain(|_, list| {
            let before = list.len();
            list.retain(|e| !e.conn.is_closed() && now <= e.expires);
            closed += before - list.len();
            !list.is_empty()
        });
        self.idle_gauge.dec_by(closed as i64);
    }
}

/// Removes and returns the newest connection in `list` that can take a request now, dropping
/// closed ones on the way. Expiry is the sweeper's job.
fn newest_ready<C: Pooled>(list: &mut Vec<Idle<C>>) -> Option<C> {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        let entry = &list[i];
        if entry.conn.is_closed() {
            list.remove(i);
        } else if entry.conn.is_ready() {
            return Some(list.remove(i).conn);
        }
        // Not ready yet: still finishing the exchange it was returned after. Leave it.
    }
    None
}

impl<C> Drop for Pool<C> {
    fn drop(&mut self) {
        let left: usize = lock(&self.idle).values().map(Vec::len).sum();
        self.idle_gauge.dec_by(left as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// The pool's logic, tried with plain tokio sockets.
    impl Pooled for TcpStream {
        fn is_closed(&self) -> bool {
            let mut byte = [0u8; 1];
            match self.try_read(&mut byte) {
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                Ok(_) => true,
            }
        }

        fn is_ready(&self) -> bool {
            true
        }

        fn spawn_sweeper(pool: Weak<Pool<Self>>) -> bool {
            tokio::spawn(sweeper(pool, tokio::time::sleep));
            true
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// A listener and `n` connections to it: (our ends, the backend's ends), in order.
    async fn connections(n: usize) -> (Arc<str>, Vec<TcpStream>, Vec<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: Arc<str> = listener.local_addr().unwrap().to_string().into();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..n {
            ours.push(TcpStream::connect(&*address).await.unwrap());
            theirs.push(listener.accept().await.unwrap().0);
        }
        (address, ours, theirs)
    }

    fn port(s: &TcpStream) -> u16 {
        s.local_addr().unwrap().port()
    }

    /// Until `pred` holds, bounded: the kernel delivers a peer's FIN asynchronously.
    async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
        for _ in 0..200 {
            if pred() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not after 2 s");
    }

    #[tokio::test]
    async fn newest_first_and_counted() {
        let gauge = Gauge::default();
        let pool = Arc::new(Pool::new(gauge.clone()));
        let (address, ours, _theirs) = connections(3).await;
        let ports: Vec<u16> = ours.iter().map(port).collect();
        for conn in ours {
            pool.put(address.clone(), conn, MINUTE);
        }
        assert_eq!(gauge.get(), 3);
        for expected in ports.iter().rev() {
            assert_eq!(port(&pool.take(&address).unwrap()), *expected);
        }
        assert!(pool.take(&address).is_none());
        assert!(pool.take("127.0.0.1:1").is_none());
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_connection_whose_backend_closed_is_not_handed_out() {
        let gauge = Gauge::default();
        let pool = Arc::new(Pool::new(gauge.clone()));
        let (address, ours, mut theirs) = connections(2).await;
        let older = port(&ours[0]);
        for conn in ours {
            pool.put(address.clone(), conn, MINUTE);
        }
        // The backend closes the newer one while it sits idle.
        drop(theirs.pop());
        // Time for the FIN to arrive, without touching the pooled socket (loopback delivers
        // it at once in practice).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = pool.take(&address).expect("the older one is still open");
        assert_eq!(port(&taken), older);
        assert!(pool.take(&address).is_none());
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_put_back() {
        let gauge = Gauge::default();
        let pool = Arc::new(Pool::new(gauge.clone()));
        let (address, mut ours, theirs) = connections(1).await;
        drop(theirs);
        let conn = ours.pop().unwrap();
        eventually("peer's FIN seen", || conn.is_closed()).await;
        pool.put(address.clone(), conn, MINUTE);
        assert_eq!(gauge.get(), 0);
        assert!(pool.take(&address).is_none());
    }

    #[tokio::test]
    async fn at_most_max_idle_per_backend_are_kept() {
        let gauge = Gauge::default();
        let pool = Arc::new(Pool::new(gauge.clone()));
        let (address, ours, _theirs) = connections(MAX_IDLE_PER_BACKEND + 2).await;
        for conn in ours {
            pool.put(address.clone(), conn, MINUTE);
        }
        assert_eq!(gauge.get(), MAX_IDLE_PER_BACKEND as i64);
        let mut taken = 0;
        while pool.take(&address).is_some() {
            taken += 1;
        }
        assert_eq!(taken, MAX_IDLE_PER_BACKEND);
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn the_sweeper_closes_expired_connections() {
        let gauge = Gauge::default();
        let pool = Arc::new(Pool::new(gauge.clone()));
        let (address, mut ours, mut theirs) = connections(2).await;
        pool.put(address.clone(), ours.remove(0), Duration::from_millis(40));
        pool.put(address.clone(), ours.remove(0), MINUTE);
        assert_eq!(gauge.get(), 2);
        // The sweeper runs every 10 ms here (a quarter of 40 ms): the first expires, the
        // second stays. The backend sees the expired one closed.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut theirs[0], &mut byte),
        );
        assert_eq!(read.await.expect("closed by the sweeper").unwrap(), 0);
        assert_eq!(gauge.get(), 1);
        assert!(pool.take(&address).is_some());
        assert!(pool.take(&address).is_none());
    }

    #[tokio::test]
    async fn dropping_the_pool_uncounts_its_idle_connections() {
        let gauge = Gauge::default();
        let pool = Arc::new(Pool::new(gauge.clone()));
        let (address, ours, _theirs) = connections(2).await;
        for conn in ours {
            pool.put(address.clone(), conn, MINUTE);
        }
        assert_eq!(gauge.get(), 2);
        drop(pool);
        assert_eq!(gauge.get(), 0);
    }
}
