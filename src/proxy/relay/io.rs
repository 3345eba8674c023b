//! The relay's sockets, on its worker's runtime: monoio, on io_uring where the kernel allows
//! it (a worker then waits in `io_uring_enter`, which submits its sends and receives and
//! collects their completions in one call), else on epoll.
//!
//! Reads and writes take their buffers by value and give them back with the result. A read
//! or write that two directions race (a request body going up while the response comes back)
//! is cancelled and then awaited, never dropped: on io_uring a dropped read may already have
//! taken bytes off the socket, which would then be lost.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::Weak;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{CancelHandle, Canceller, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::proxy::pool::{sweeper, Pool, Pooled};
use crate::proxy::upstream::{UpstreamError, TCP_KEEPALIVE};

/// The read side of a relayed connection.
pub(crate) type Reader = OwnedReadHalf<TcpStream>;
/// The write side of a relayed connection.
pub(crate) type Writer = OwnedWriteHalf<TcpStream>;

/// A connection split in its two directions, so a request body can go up while the response
/// comes back.
pub(crate) struct Conn {
    pub(super) read: Reader,
    pub(super) write: Writer,
    /// The same socket (a second descriptor): for what monoio does not offer (a peek, socket
    /// options, a hand-over to tokio), without unsafe code to borrow monoio's descriptor.
    socket: std::net::TcpStream,
}

impl Conn {
    /// A connection on `socket` (connected), on this thread's runtime.
    pub(crate) fn from_std(socket: std::net::TcpStream) -> io::Result<Conn> {
        set_blocking_for_runtime(&socket)?;
        let ours = TcpStream::from_std(socket.try_clone()?)?;
        Ok(Conn::of(ours, socket))
    }

    fn of(ours: TcpStream, socket: std::net::TcpStream) -> Conn {
        let (read, write) = ours.into_split();
        Conn {
            read,
            write,
            socket,
        }
    }

    /// The socket as a std stream (non-blocking, as tokio wants it), for a hand-over to
    /// another runtime; this one lets go of its descriptor.
    pub(super) fn into_std(self) -> io::Result<std::net::TcpStream> {
        let Conn {
            read,
            write,
            socket,
        } = self;
        // Whole again before it is dropped: a write half dropped alone shuts the socket's
        // sending side down.
        match read.reunite(write) {
            Ok(whole) => drop(whole),
            Err(_) => return Err(io::Error::other("the halves are of two sockets")),
        }
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    /// An idle connection has nothing to say: a peek that would block means it is alive. End
    /// of stream (the peer closed it), bytes nobody asked for (the stream is out of step), or
    /// an error (reset) all mean it must not carry another request.
    pub(crate) fn is_closed(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
        match SockRef::from(&self.socket).recv_with_flags(&mut byte, flags) {
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            Ok(_) => true,
        }
    }
}

impl Pooled for Conn {
    fn is_closed(&self) -> bool {
        Conn::is_closed(self)
    }

    /// A peek is a system call; the one when the connection is taken is the one that counts
    /// (the relay puts a connection back only after a whole exchange the backend did not end
    /// with `close`).
    const CHECKED_ON_RETURN: bool = false;

    /// Put back only after its exchange ended, so always ready.
    fn is_ready(&self) -> bool {
        true
    }

    fn spawn_sweeper(pool: Weak<Pool<Self>>) -> bool {
        monoio::spawn(sweeper(pool, monoio::time::sleep));
        true
    }
}

/// Whether this thread's runtime is on io_uring (else epoll).
pub(crate) fn on_uring() -> bool {
    !monoio::utils::is_legacy()
}

/// io_uring waits in the kernel for a blocking socket (and answers `EAGAIN` for a
/// non-blocking one), where epoll needs it non-blocking.
fn set_blocking_for_runtime(socket: &std::net::TcpStream) -> io::Result<()> {
    socket.set_nonblocking(!on_uring())
}

/// Connects to `address` within `timeout`. An `ip:port` address connects at once; a name is
/// resolved on `resolver`'s blocking threads, as tokio's connect does, never on this one.
pub(super) async fn connect(
    address: &str,
    timeout: Duration,
    resolver: &tokio::runtime::Handle,
) -> Result<Conn, UpstreamError> {
    let connecting = async {
        let addr = match address.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                let name = address.to_string();
                let looked_up = resolver.spawn_blocking(move || name.to_socket_addrs());
                looked_up
                    .await
                    .map_err(io::Error::other)??
                    .next()
                    .ok_or_else(|| io::Error::other("the name has no address"))?
            }
        };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        // Best effort: a socket without these options still works.
        let _ = socket.set_tcp_nodelay(true);
        let _ = socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(TCP_KEEPALIVE));
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let socket = std::net::TcpStream::from(socket);
        let ours = TcpStream::from_std(socket.try_clone()?)?;
        // Connected (or failed) once writable.
        ours.writable(false).await?;
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        set_blocking_for_runtime(&socket)?;
        Ok(Conn::of(ours, socket))
    };
    match monoio::time::timeout(timeout, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(UpstreamError::Connect(e)),
        Err(_) => Err(UpstreamError::ConnectTimeout),
    }
}

/// Runs `a` and `b` together until one ends, then cancels the other and waits for it. Each
/// is handed its cancel handle; a cancelled operation ends having done all of its work or
/// none of it ([`cancelled`]), so no byte read or written is lost to the race.
pub(super) async fn race<FA: Future, FB: Future>(
    a: impl FnOnce(CancelHandle) -> FA,
    b: impl FnOnce(CancelHandle) -> FB,
) -> (FA::Output, FB::Output) {
    let (cancel_a, cancel_b) = (Canceller::new(), Canceller::new());
    let mut a = pin!(a(cancel_a.handle()));
    let mut b = pin!(b(cancel_b.handle()));
    let first = std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        b.as_mut().poll(cx).map(Err)
    })
    .await;
    match first {
        Ok(out_a) => {
            cancel_b.cancel();
            (out_a, b.await)
        }
        Err(out_b) => {
            cancel_a.cancel();
            (a.await, out_b)
        }
    }
}

/// Did an operation end because it was cancelled (having done nothing)?
pub(super) fn cancelled(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECANCELED)
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::{Read as _, Write as _};

    use super::super::buffer::Buffer;
    use super::*;

    /// A connected pair: the peer's end (std, blocking) and ours, on this runtime.
    pub(in super::super) fn pair() -> (std::net::TcpStream, Conn) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (peer, Conn::from_std(ours).unwrap())
    }

    /// Until `pred` holds, bounded: the kernel delivers a peer's FIN asynchronously.
    async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
        for _ in 0..500 {
            if pred() {
                return;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not after 5 s");
    }

    #[monoio::test(timer_enabled = true)]
    async fn a_live_idle_connection_is_open() {
        let (_peer, ours) = pair();
        assert!(!ours.is_closed());
    }

    #[monoio::test(timer_enabled = true)]
    async fn a_connection_the_peer_closed_or_wrote_on_is_closed() {
        let (peer, closed) = pair();
        drop(peer);
        let (mut peer, written) = pair();
        peer.write_all(b"HTTP/1.1 408 \r\n\r\n").unwrap();
        eventually("peer's FIN seen", || closed.is_closed()).await;
        eventually("unasked bytes seen", || written.is_closed()).await;
    }

    #[monoio::test(timer_enabled = true)]
    async fn a_handed_over_socket_stays_open_both_ways() {
        let (mut peer, ours) = pair();
        let mut theirs = ours.into_std().unwrap();
        theirs.set_nonblocking(false).unwrap();
        theirs.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(
            &got, b"ping",
            "the socket was shut down when this runtime let go"
        );
        peer.write_all(b"pong").unwrap();
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
    }

    #[monoio::test(timer_enabled = true)]
    async fn a_read_that_loses_a_race_loses_no_bytes() {
        for ahead in [true, false] {
            let (mut peer, mut ours) = pair();
            if ahead {
                // The bytes may be read before the cancel takes; they must not vanish.
                peer.write_all(b"abc").unwrap();
            }
            let mut buf = Buffer::new();
            let (read, ()) = race(
                |cancel| buf.fill(&mut ours.read, Some(cancel)),
                |_| std::future::ready(()),
            )
            .await;
            match read {
                Ok(n) => assert!(ahead && n > 0, "read {n} bytes that were not sent"),
                Err(e) => assert!(cancelled(&e), "{e}"),
            }
            if !ahead {
                peer.write_all(b"abc").unwrap();
            }
            while buf.pending().len() < 3 {
                let read =
                    monoio::time::timeout(Duration::from_secs(5), buf.fill(&mut ours.read, None));
                assert!(read.await.expect("the bytes arrive").unwrap() > 0);
            }
            assert_eq!(buf.pending(), b"abc");
        }
    }

    #[monoio::test(timer_enabled = true)]
    async fn connects_to_addresses_and_names_and_names_refusals() {
        let resolver = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let second = Duration::from_secs(5);
        for address in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            let conn = connect(&address, second, resolver.handle()).await;
            let mut conn = conn.unwrap_or_else(|e| panic!("{address}: {e}"));
            let (mut theirs, _) = listener.accept().unwrap();
            theirs.write_all(b"hi").unwrap();
            let mut buf = Buffer::new();
            while buf.pending().len() < 2 {
                let read = monoio::time::timeout(second, buf.fill(&mut conn.read, None));
                assert!(read.await.expect("the bytes arrive").unwrap() > 0);
            }
            assert_eq!(buf.pending(), b"hi");
        }
        drop(listener);
        let refused = connect(&format!("127.0.0.1:{port}"), second, resolver.handle()).await;
        assert!(
            matches!(refused, Err(UpstreamError::Connect(_))),
            "a closed port: {:?}",
            refused.err()
        );
    }
}
