//! Following a chunked body (RFC 9112 §7.1) byte by byte without copying it: the relay
//! forwards the bytes as they came and uses this only to know where the body ends and to
//! refuse what is malformed (a chunk size that is not hex or overflows, a missing CRLF, a bare
//! LF), so the next request on the connection starts exactly where the backend thinks it does.

/// Where in a chunked body the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size { size: u64, digits: u8 },
    /// After the size: an extension (`;name=value`) up to CR.
    Extension { size: u64 },
    /// Seen CR after the size line.
    SizeLf { size: u64 },
    /// Inside chunk data, this many bytes left.
    Data { left: u64 },
    /// After data: expecting CR.
    DataCr,
    /// After data CR: expecting LF.
    DataLf,
    /// After the last chunk: a trailer line or the final CRLF; `empty` while nothing of the
    /// current line has been seen.
    Trailer { empty: bool },
    /// Seen CR of a trailer line.
    TrailerLf { empty: bool },
    /// The body ended.
    Done,
}

/// Why a chunked body is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

/// A chunked-body scanner.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    /// Bytes of trailer section seen, bounded.
    trailer_bytes: usize,
}

/// Bound on the trailer section, like the head limit.
const MAX_TRAILERS: usize = 16 * 1024;

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { size: 0, digits: 0 },
            trailer_bytes: 0,
        }
    }
}

impl Chunked {
    /// Has the whole body been seen?
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `buf`; answers how many of its bytes belong to the body (all of them unless the
    /// body ends inside `buf`).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Data { left } => {
                    // Skip the data in one step.
                    let take = (buf.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::Size { size, digits } => match hex(b) {
                    Some(d) => {
                        if digits >= 15 {
                            return Err(ChunkError("chunk size overflows"));
                        }
                        State::Size {
                            size: size << 4 | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return Err(ChunkError("chunk size is not hex")),
                    None => match b {
                        b'\r' => State::SizeLf { size },
                        b';' | b' ' | b'\t' => State::Extension { size },
                        _ => return Err(ChunkError("chunk size is not hex")),
                    },
                },
                State::Extension { size } => match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Err(ChunkError("bare LF")),
                    0..=8 | 10..=31 | 127 => return Err(ChunkError("control byte in extension")),
                    _ => State::Extension { size },
                },
                State::SizeLf { size } => match b {
                    b'\n' if size == 0 => State::Trailer { empty: true },
                    b'\n' => State::Data { left: size },
                    _ => return Err(ChunkError("bare CR")),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err(ChunkError("chunk data longer than its size")),
                },
                State::DataLf => match b {
                    b'\n' => State::Size { size: 0, digits: 0 },
                    _ => return Err(ChunkError("bare CR")),
                },
                State::Trailer { empty } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(ChunkError("trailers too large"));
                    }
                    match b {
                        b'\r' => State::TrailerLf { empty },
                        b'\n' => return Err(ChunkError("bare LF")),
                        0..=8 | 11..=31 | 127 => return Err(ChunkError("control byte in trailer")),
                        _ => State::Trailer { empty: false },
                    }
                }
                State::TrailerLf { empty } => match b {
                    b'\n' if empty => State::Done,
                    b'\n' => State::Trailer { empty: true },
                    _ => return Err(ChunkError("bare CR")),
                },
            };
            i += 1;
            if self.state == State::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body length found in `text`, fed `step` bytes at a time.
    fn scan(text: &[u8], step: usize) -> Result<Option<usize>, ChunkError> {
        let mut c = Chunked::default();
        let mut used = 0;
        for piece in text.chunks(step) {
            used += c.feed(piece)?;
            if c.done() {
                return Ok(Some(used));
            }
        }
        Ok(None)
    }

    #[test]
    fn bodies_end_where_they_end_whatever_the_pieces() {
        let body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
        let mut text = body.to_vec();
        text.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(scan(&text, step).unwrap(), Some(body.len()), "step {step}");
        }
        assert_eq!(scan(b"0\r\n\r\n", 1).unwrap(), Some(5));
        assert_eq!(scan(b"5\r\nhel", 2).unwrap(), None);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"g\r\n"[..],
            b"ffffffffffffffffff\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello!\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
            b"-1\r\n",
            b"5\rhello",
        ] {
            assert!(scan(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(
                scan(bad, 100).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
