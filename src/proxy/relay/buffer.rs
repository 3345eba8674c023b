//! One side's read buffer, and relaying a body from one socket to another by its framing:
//! exactly `Content-Length` bytes, a chunked body to its last chunk and trailers (scanned, not
//! decoded: the bytes go through as they came), or everything until the sender closes.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::spare::{BUFFERS_KIND, READ_CHUNK};
use crate::http1::{Chunked, Framing};

/// Bytes read from a socket and not yet used.
pub(super) struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    pub(super) fn new() -> Buffer {
        Buffer {
            data: BUFFERS_KIND.take(),
            start: 0,
        }
    }

    /// Lets go of the memory while nothing is pending (an idle keep-alive connection holds
    /// no buffer); the next [`Buffer::fill`] takes one again.
    pub(super) fn release(&mut self) {
        if self.pending().is_empty() {
            BUFFERS_KIND.give(std::mem::take(&mut self.data));
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

    /// Reads more from `stream`; `Ok(0)` at its end. Reading nothing when cancelled.
    pub(super) async fn fill<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<usize> {
        if self.data.capacity() == 0 {
            self.data = BUFFERS_KIND.take();
        }
        if self.start > 0 && self.data.capacity() - self.data.len() < READ_CHUNK / 2 {
            // Move the pending bytes to the front rather than grow.
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.reserve(READ_CHUNK);
        stream.read_buf(&mut self.data).await
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        BUFFERS_KIND.give(std::mem::take(&mut self.data));
    }
}

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
    /// wait at most `write_timeout` in all, across steps.
    pub(super) async fn step<R, W>(
        &mut self,
        buf: &mut Buffer,
        from: &mut R,
        to: &mut W,
        write_timeout: Duration,
    ) -> Result<(), CopyError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        self.frame(buf)?;
        if self.ready > 0 {
            let mut writing = pin!(to.write(&buf.pending()[..self.ready]));
            let written = match ready_now(writing.as_mut()).await {
                Some(written) => Ok(written),
                None => {
                    let since = *self.write_since.get_or_insert_with(Instant::now);
                    tokio::time::timeout_at(since + write_timeout, writing).await
                }
            };
            let n = match written {
                Ok(Ok(0)) => return Err(CopyError::Write(io::ErrorKind::WriteZero.into())),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(CopyError::Write(e)),
                Err(_) => return Err(CopyError::Write(io::ErrorKind::TimedOut.into())),
            };
            self.write_since = None;
            buf.consume(n);
            self.ready -= n;
            if let Left::Length(left) = &mut self.left {
                *left -= n as u64;
            }
        }
        if self.ready == 0 {
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
                match buf.fill(from).await {
                    Ok(0) if matches!(self.left, Left::UntilClose) => self.left = Left::Done,
                    Ok(0) => return Err(CopyError::Read(io::ErrorKind::UnexpectedEof.into())),
                    Ok(_) => {}
                    Err(e) => return Err(CopyError::Read(e)),
                }
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
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
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
        half.step(buf, from, to, write_timeout).await?;
    }
    if let Some(read_all) = read_all {
        read_all();
    }
    Ok(())
}

/// Writes all of `bytes` within `timeout`.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), CopyError> {
    let mut writing = pin!(to.write_all(bytes));
    let written = match ready_now(writing.as_mut()).await {
        Some(written) => Ok(written),
        None => tokio::time::timeout(timeout, writing).await,
    };
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CopyError::Write(e)),
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
    use std::cell::Cell;

    use tokio::io::{duplex, AsyncWriteExt as _, DuplexStream};

    use super::*;

    /// Sends `sent` to the copy's sender and copies for a (paused) second towards a receiver
    /// that reads nothing and has room for `room` bytes: did the copy end, had `read_all`
    /// run, and the receiver's end (closed after what the copy wrote).
    async fn copy_a_while(
        framing: Framing,
        sent: &[u8],
        room: usize,
    ) -> (bool, bool, DuplexStream) {
        let (mut backend, mut from) = duplex(64 * 1024);
        let (mut to, client) = duplex(room);
        backend.write_all(sent).await.unwrap();
        let ran = Cell::new(false);
        let mut buf = Buffer::new();
        let timeout = Duration::from_secs(60);
        let copying = copy_body(framing, &mut buf, &mut from, &mut to, timeout, || {
            ran.set(true);
        });
        let ended = tokio::time::timeout(Duration::from_secs(1), copying)
            .await
            .is_ok();
        (ended, ran.get(), client)
    }

    #[tokio::test(start_paused = true)]
    async fn read_all_runs_when_the_last_byte_is_read_not_written() {
        let chunked = b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n";
        for (framing, body) in [
            (Framing::Length(200), &[b'x'; 200][..]),
            (Framing::Chunked, chunked),
        ] {
            // The receiver takes 16 bytes: the body is read whole, its writing waits.
            let (ended, ran, mut client) = copy_a_while(framing, body, 16).await;
            assert!(!ended, "the copy ended though the receiver read nothing");
            assert!(
                ran,
                "read_all had not run with the whole body read ({framing:?})"
            );
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got));
            read.await.expect("the receiver's side ends").unwrap();
            assert_eq!(got, &body[..16]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn read_all_waits_for_the_body_end() {
        // Half the body, and nothing more arrives.
        let (ended, ran, mut client) = copy_a_while(Framing::Length(200), &[b'x'; 100], 1024).await;
        assert!(!ended && !ran, "read_all ran with half the body unread");
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got));
        read.await.expect("the receiver's side ends").unwrap();
        assert_eq!(got.len(), 100);
    }
}
