//! One side's read buffer, and relaying a body from one socket to another by its framing:
//! exactly `Content-Length` bytes, a chunked body to its last chunk and trailers (scanned, not
//! decoded: the bytes go through as they came), or everything until the sender closes.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, Slice, SliceMut};
use monoio::io::{
    AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent, CancelableAsyncWriteRent,
};
use monoio::time::Instant;

use super::io::cancelled;
use super::spare::{BUFFERS_KIND, READ_CHUNK, WAITING_KIND, WAITING_READ};
use crate::http1::{Chunked, Framing};

/// Bytes read from a socket and not yet used.
pub(super) struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    /// A buffer for a response (read in [`READ_CHUNK`]s).
    pub(super) fn new() -> Buffer {
        Buffer {
            data: BUFFERS_KIND.take(),
            start: 0,
        }
    }

    /// A buffer for a client's requests: it holds no memory until a read, and a read made
    /// while nothing is pending (waiting for the next request) gets a small one.
    pub(super) fn for_requests() -> Buffer {
        Buffer {
            data: Vec::new(),
            start: 0,
        }
    }

    /// Lets go of the memory while nothing is pending: a keep-alive connection waits for its
    /// next request with a small buffer.
    pub(super) fn release(&mut self) {
        if self.pending().is_empty() {
            give(std::mem::take(&mut self.data));
            self.start = 0;
        }
    }

    /// The unused bytes.
    pub(super) fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Marks `n` pending bytes used.
    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Takes every pending byte out.
    pub(super) fn take_all(&mut self) -> Vec<u8> {
        let rest = self.data.split_off(self.start);
        self.data.clear();
        self.start = 0;
        rest
    }

    /// Reads more from `from`; `Ok(0)` at its end. `cancel`, if given, can stop it: it then
    /// ends with [`cancelled`], having read nothing, or with what it read before the cancel
    /// took. Dropped unfinished, it loses what the buffer held: only for a connection that
    /// closes then.
    pub(super) async fn fill<R: CancelableAsyncReadRent>(
        &mut self,
        from: &mut R,
        cancel: Option<CancelHandle>,
    ) -> io::Result<usize> {
        let (free, start) = self.free_space();
        let (read, free) = match cancel {
            Some(cancel) => from.cancelable_read(free, cancel).await,
            None => from.read(free).await,
        };
        self.keep(free.into_inner(), start);
        read
    }

    /// The buffer's room for a read, lent out whole (the read owns it until it ends), and
    /// where its pending bytes start.
    fn free_space(&mut self) -> (SliceMut<Vec<u8>>, usize) {
        if self.data.capacity() == 0 {
            self.data = WAITING_KIND.take();
        }
        if self.start > 0 && self.data.capacity() - self.data.len() < READ_CHUNK / 2 {
            // Move the pending bytes to the front rather than grow.
            self.data.drain(..self.start);
            self.start = 0;
        }
        if self.data.capacity() - self.data.len() < MIN_READ {
            self.data.reserve(READ_CHUNK);
        }
        let (data, start) = self.lend();
        let len = data.len();
        (data.slice_mut(len..), start)
    }

    /// The bytes and where the pending ones start, lent to an operation. What stays behind
    /// is empty and consistent, should the operation never give them back.
    fn lend(&mut self) -> (Vec<u8>, usize) {
        (
            std::mem::take(&mut self.data),
            std::mem::take(&mut self.start),
        )
    }

    /// Takes the bytes back from an operation.
    fn keep(&mut self, data: Vec<u8>, start: usize) {
        self.data = data;
        self.start = start;
    }

    /// Writes some of the first `n` pending bytes to `to` (one write); answers how many and
    /// marks them used.
    async fn write_some<W: CancelableAsyncWriteRent>(
        &mut self,
        to: &mut W,
        n: usize,
        cancel: Option<CancelHandle>,
    ) -> io::Result<usize> {
        let (data, start) = self.lend();
        let bytes = Slice::new(data, start, start + n);
        let (written, bytes) = match cancel {
            Some(cancel) => to.cancelable_write(bytes, cancel).await,
            None => to.write(bytes).await,
        };
        self.keep(bytes.into_inner(), start);
        if let Ok(n) = written {
            self.consume(n);
        }
        written
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.data));
    }
}

/// Back to its list, by its size.
fn give(data: Vec<u8>) {
    if data.capacity() == WAITING_READ {
        WAITING_KIND.give(data);
    } else {
        BUFFERS_KIND.give(data);
    }
}

/// Room below which a buffer grows before a read: a read into less would take more calls.
const MIN_READ: usize = 512;

/// Why a body could not be relayed.
#[derive(Debug)]
pub(super) enum CopyError {
    /// Reading the sender failed, or it closed before the body ended.
    Read(io::Error),
    /// Writing to the receiver failed or timed out.
    Write(io::Error),
    /// The chunked framing is malformed.
    Framing(crate::http1::ChunkError),
}

/// Where one body is: what is left of it by its framing.
#[derive(Debug)]
enum Left {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// One direction of a relayed body, advanced a step at a time so two directions can share one
/// task: each step is one read or one write, and a step that is dropped unfinished did
/// nothing (a request body still arriving while its response already streams back).
#[derive(Debug)]
pub(super) struct Half {
    left: Left,
    /// Bytes at the front of the buffer already known to be body, not yet written.
    ready: usize,
    /// Since when a write has been waiting on the receiver.
    write_since: Option<Instant>,
}

impl Half {
    /// A body framed as `framing`.
    pub(super) fn new(framing: Framing) -> Half {
        let left = match framing {
            Framing::None | Framing::Length(0) => Left::Done,
            Framing::Length(n) => Left::Length(n),
            Framing::Chunked => Left::Chunked(Chunked::default()),
            Framing::UntilClose => Left::UntilClose,
        };
        Half {
            left,
            ready: 0,
            write_since: None,
        }
    }

    /// Has the whole body been written?
    pub(super) fn done(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    /// Marks how much of `buf` is body, unless that is known already.
    fn frame(&mut self, buf: &Buffer) -> Result<(), CopyError> {
        if self.ready == 0 && !buf.pending().is_empty() {
            let pending = buf.pending();
            self.ready = match &mut self.left {
                Left::Length(left) => pending
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX)),
                Left::Chunked(chunked) => chunked.feed(pending).map_err(CopyError::Framing)?,
                Left::UntilClose => pending.len(),
                Left::Done => 0,
            };
        }
        Ok(())
    }

    /// Is the rest of the body in the buffer already (nothing more to read, maybe more to
    /// write)?
    fn read_all(&self) -> bool {
        match &self.left {
            Left::Done => true,
            Left::Length(left) => self.ready as u64 == *left,
            Left::Chunked(chunked) => chunked.done(),
            Left::UntilClose => false,
        }
    }

    /// One step: writes body bytes that are in `buf`, or reads more from `from`. A write may
    /// wait at most `write_timeout` in all, across steps. A step `cancel` stopped did nothing,
    /// or what it did is counted.
    pub(super) async fn step<R, W>(
        &mut self,
        buf: &mut Buffer,
        from: &mut R,
        to: &mut W,
        write_timeout: Duration,
        cancel: Option<CancelHandle>,
    ) -> Result<(), CopyError>
    where
        R: CancelableAsyncReadRent,
        W: CancelableAsyncWriteRent,
    {
        self.frame(buf)?;
        if self.ready > 0 {
            let mut writing = pin!(buf.write_some(to, self.ready, cancel));
            let written = match ready_now(writing.as_mut()).await {
                Some(written) => Ok(written),
                None => {
                    let since = *self.write_since.get_or_insert_with(Instant::now);
                    monoio::time::timeout_at(since + write_timeout, writing).await
                }
            };
            let n = match written {
                Ok(Ok(0)) => return Err(CopyError::Write(io::ErrorKind::WriteZero.into())),
                Ok(Ok(n)) => n,
                Ok(Err(e)) if cancelled(&e) => return Ok(()),
                Ok(Err(e)) => return Err(CopyError::Write(e)),
                Err(_) => return Err(CopyError::Write(io::ErrorKind::TimedOut.into())),
            };
            self.write_since = None;
            self.ready -= n;
            if let Left::Length(left) = &mut self.left {
                *left -= n as u64;
            }
            return Ok(());
        }
        let ended = match &self.left {
            Left::Length(left) => *left == 0,
            Left::Chunked(chunked) => chunked.done(),
            _ => false,
        };
        if ended {
            self.left = Left::Done;
            return Ok(());
        }
        if buf.pending().is_empty() && !self.done() {
            match buf.fill(from, cancel).await {
                Ok(0) if matches!(self.left, Left::UntilClose) => self.left = Left::Done,
                Ok(0) => return Err(CopyError::Read(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) if cancelled(&e) => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
        Ok(())
    }
}

/// Relays a body framed as `framing` from `from` (its first bytes already in `buf`) to `to`.
/// Bytes after the body stay in `buf`. A write may wait at most `write_timeout`.
/// `read_all` runs once the body's last byte has been read, before the last write: what
/// `from` owes is settled then, however long `to` takes.
pub(super) async fn copy_body<R, W>(
    framing: Framing,
    buf: &mut Buffer,
    from: &mut R,
    to: &mut W,
    write_timeout: Duration,
    read_all: impl FnOnce(),
) -> Result<(), CopyError>
where
    R: CancelableAsyncReadRent,
    W: CancelableAsyncWriteRent,
{
    let mut half = Half::new(framing);
    let mut read_all = Some(read_all);
    while !half.done() {
        half.frame(buf)?;
        if half.read_all() {
            if let Some(read_all) = read_all.take() {
                read_all();
            }
        }
        half.step(buf, from, to, write_timeout, None).await?;
    }
    if let Some(read_all) = read_all {
        read_all();
    }
    Ok(())
}

/// Writes all of `bytes` within `timeout`, and gives them back (a failed write may keep them:
/// the connection closes then).
pub(super) async fn write<W, T>(to: &mut W, bytes: T, timeout: Duration) -> Result<T, CopyError>
where
    W: CancelableAsyncWriteRent,
    T: IoBuf + 'static,
{
    let mut writing = pin!(to.write_all(bytes));
    let written = match ready_now(writing.as_mut()).await {
        Some(written) => Ok(written),
        None => monoio::time::timeout(timeout, writing).await,
    };
    match written {
        Ok((Ok(_), bytes)) => Ok(bytes),
        Ok((Err(e), _)) => Err(CopyError::Write(e)),
        Err(_) => Err(CopyError::Write(io::ErrorKind::TimedOut.into())),
    }
}

/// Polls `f` once: its output if it is ready at once. A write usually is (the socket has
/// room), and then needs no timer: arming one costs more than the write's own work.
async fn ready_now<F: Future>(mut f: std::pin::Pin<&mut F>) -> Option<F::Output> {
    poll_fn(|cx| {
        Poll::Ready(match f.as_mut().poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::cell::{Cell, RefCell};
    use std::future::Future;
    use std::io::Write as _;
    use std::rc::Rc;

    use monoio::io::{AsyncWriteRent, CancelHandle, CancelableAsyncWriteRent};
    use monoio::BufResult;

    use super::super::io::{tests::pair, Conn};
    use super::*;

    /// A receiver that takes `room` bytes, then no more: its writes wait forever.
    struct Stuck {
        room: usize,
        took: Rc<RefCell<Vec<u8>>>,
    }

    impl Stuck {
        fn take<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
            // The relay writes body bytes as a slice of its buffer.
            let Some(bytes) = (&buf as &dyn Any).downcast_ref::<Slice<Vec<u8>>>() else {
                panic!("a write of {}", std::any::type_name::<T>());
            };
            let n = bytes.bytes_init().min(self.room);
            self.room -= n;
            let from = bytes.begin();
            let taken = &bytes.get_ref()[from..from + n];
            self.took.borrow_mut().extend_from_slice(taken);
            async move {
                if n == 0 {
                    std::future::pending::<()>().await;
                }
                (Ok(n), buf)
            }
        }
    }

    impl AsyncWriteRent for Stuck {
        fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
            self.take(buf)
        }

        async fn writev<T: monoio::buf::IoVecBuf>(&mut self, _: T) -> BufResult<usize, T> {
            unimplemented!("the relay writes no vectors")
        }

        async fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }

        async fn shutdown(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl CancelableAsyncWriteRent for Stuck {
        fn cancelable_write<T: IoBuf>(
            &mut self,
            buf: T,
            _: CancelHandle,
        ) -> impl Future<Output = BufResult<usize, T>> {
            self.take(buf)
        }

        async fn cancelable_writev<T: monoio::buf::IoVecBuf>(
            &mut self,
            _: T,
            _: CancelHandle,
        ) -> BufResult<usize, T> {
            unimplemented!("the relay writes no vectors")
        }

        async fn cancelable_flush(&mut self, _: CancelHandle) -> io::Result<()> {
            Ok(())
        }

        async fn cancelable_shutdown(&mut self, _: CancelHandle) -> io::Result<()> {
            Ok(())
        }
    }

    /// Sends `sent` to the copy's sender and copies towards a receiver with room for `room`
    /// bytes, until `done(read_all ran, bytes the receiver took)` holds (bounded: 5 s);
    /// answers whether the copy ended first, and the bytes the receiver took.
    async fn copy_until(
        framing: Framing,
        sent: &[u8],
        room: usize,
        done: impl Fn(bool, usize) -> bool,
    ) -> (bool, Vec<u8>) {
        let (mut backend, from) = pair();
        backend.write_all(sent).unwrap();
        let Conn { mut read, .. } = from;
        let (ran, took) = (Cell::new(false), Rc::new(RefCell::new(Vec::new())));
        let mut to = Stuck {
            room,
            took: took.clone(),
        };
        let mut buf = Buffer::new();
        let timeout = Duration::from_secs(60);
        let copying = copy_body(framing, &mut buf, &mut read, &mut to, timeout, || {
            ran.set(true);
        });
        let watching = async {
            for _ in 0..1000 {
                if done(ran.get(), took.borrow().len()) {
                    return;
                }
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!(
                "not after 5 s: read_all ran {}, took {}",
                ran.get(),
                took.borrow().len()
            );
        };
        let ended = monoio::select! {
            _ = copying => true,
            () = watching => false,
        };
        let took = took.borrow().clone();
        (ended, took)
    }

    #[monoio::test(timer_enabled = true)]
    async fn read_all_runs_when_the_last_byte_is_read_not_written() {
        let chunked = b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n";
        for (framing, body) in [
            (Framing::Length(200), &[b'x'; 200][..]),
            (Framing::Chunked, chunked),
        ] {
            // The receiver takes 16 bytes: the body is read whole, its writing waits.
            let (ended, took) = copy_until(framing, body, 16, |ran, took| ran && took == 16).await;
            assert!(
                !ended,
                "the copy ended though the receiver read nothing ({framing:?})"
            );
            assert_eq!(took, &body[..16]);
        }
    }

    #[monoio::test(timer_enabled = true)]
    async fn read_all_waits_for_the_body_end() {
        // Half the body, and nothing more arrives: the receiver gets that half, and read_all
        // has not run.
        let (ended, took) = copy_until(Framing::Length(200), &[b'x'; 100], 1024, |ran, took| {
            assert!(!ran, "read_all ran with half the body unread");
            took == 100
        })
        .await;
        assert!(!ended);
        assert_eq!(took, [b'x'; 100]);
    }
}
