//! Parsing a request head with `httparse` into stack storage, then validating it more
//! strictly than a general server must (RFC 9112): the relay forwards bytes as they came, so
//! anything two parsers could read differently is refused instead of normalised. The checks
//! shared with the response parser (`response.rs`) live here too.
//!
//! Refused (400 and close): `Content-Length` together with `Transfer-Encoding`; several
//! `Content-Length` values that differ, or one that is not a plain decimal number; a
//! `Transfer-Encoding` whose last coding is not `chunked` (or that lists `chunked` twice, or
//! anything after it); obs-fold continuation lines; a bare CR or bare LF anywhere in the head;
//! NUL and other control bytes in names or values (`httparse` refuses them: a value byte must
//! be HTAB, SP, visible or obs-text, and a name a token). A head larger than the limit is a 431.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::names::{eq_lower, Lines, Name};

/// Headers one head may carry.
pub const MAX_HEADERS: usize = 100;

// Lines are tracked as bits of a `u128` (`names::Lines`).
const _: () = assert!(MAX_HEADERS <= 128);

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding (the last coding), trailers possible.
    Chunked,
    /// Everything until the server closes the connection. Responses only: a request in this
    /// shape has no knowable end and is refused (RFC 9112 §6.3).
    UntilClose,
}

/// A parsed request head: everything as ranges into the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, final CRLF CRLF included.
    pub len: usize,
    /// The method token.
    pub method: Range<usize>,
    /// The request target, as sent.
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// `(name, value)` for each header line, in order.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    /// How the body is delimited.
    pub framing: Framing,
    /// `Connection: close` (or HTTP/1.0 without keep-alive).
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The lines whose names the rewrite acts on.
    pub lines: Lines,
}

/// `v`, emptied, with room for `n` more.
pub(super) fn reserved<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    v.clear();
    v.reserve(n);
    v
}

/// Why a head cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// More bytes are needed.
    #[error("incomplete head")]
    Partial,
    /// Larger than the limit (or too many headers): 431 for a request, 502 for a response.
    #[error("head too large")]
    TooLarge,
    /// Malformed or ambiguous: 400 for a request, 502 for a response.
    #[error("malformed head: {0}")]
    Malformed(&'static str),
}

/// Parses the request head at the start of `buf` (at most `limit` bytes of it).
pub fn parse_request(buf: &[u8], limit: usize) -> Result<RequestHead, HeadError> {
    parse_request_with(buf, limit, Vec::new)
}

/// [`parse_request`], with the vector for the header lines from `lines` (called once the
/// head is complete): a caller parsing head after head can reuse vectors.
pub fn parse_request_with(
    buf: &[u8],
    limit: usize,
    lines: impl FnOnce() -> Vec<(Range<usize>, Range<usize>)>,
) -> Result<RequestHead, HeadError> {
    // Uninitialised: filling 100 empty headers first costs more than parsing a typical head.
    let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut storage,
    );
    let len = complete(parsed, buf.len(), limit)?;
    let method = range_of(
        buf,
        req.method
            .ok_or(HeadError::Malformed("no method"))?
            .as_bytes(),
    );
    let target = range_of(
        buf,
        req.path
            .ok_or(HeadError::Malformed("no target"))?
            .as_bytes(),
    );
    let minor = req.version.ok_or(HeadError::Malformed("no version"))?;

    let mut head = RequestHead {
        len,
        method,
        target,
        minor,
        headers: reserved(lines(), req.headers.len()),
        framing: Framing::None,
        close: false,
        expect_continue: false,
        lines: Lines::default(),
    };
    let mut framing = FramingHeaders::default();
    let mut connection = ConnectionOptions::default();
    let mut expect_continue = false;
    record_lines(
        buf,
        req.headers,
        &mut head.headers,
        &mut head.lines,
        |name, value| {
            match name {
                Name::ContentLength => framing.length(value)?,
                Name::TransferEncoding => framing.codings(value)?,
                Name::Connection => connection.observe(value),
                Name::Expect => {
                    expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
                }
                _ => {}
            }
            Ok(())
        },
    )?;
    let names = head.headers.iter().map(|(name, _)| name.start);
    crlf_line_ends(&buf[..len], head.method.start, names)?;
    head.expect_continue = expect_continue;
    head.close = connection.close(minor);
    head.framing = match framing.decide()? {
        // A request whose last coding is not chunked has no knowable length (RFC 9112 §6.3).
        Framing::UntilClose => {
            return Err(HeadError::Malformed(
                "Transfer-Encoding not ending in chunked",
            ))
        }
        Framing::Length(0) => Framing::None,
        framing => framing,
    };
    Ok(head)
}

/// The head length from an `httparse` result, or why there is none: a head still partial at
/// `limit` bytes, or with more than [`MAX_HEADERS`] headers, is too large.
pub(super) fn complete(
    status: httparse::Result<usize>,
    buffered: usize,
    limit: usize,
) -> Result<usize, HeadError> {
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buffered >= limit => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("unparsable head")),
    };
    if len > limit {
        return Err(HeadError::TooLarge);
    }
    Ok(len)
}

/// Records the header lines httparse found in `buf`: each line's name and value ranges into
/// `headers`, what its name means into `lines`; `act` sees each line's meaning and value (the
/// parser acts on framing and `Connection` lines there).
pub(super) fn record_lines(
    buf: &[u8],
    parsed: &[httparse::Header<'_>],
    headers: &mut Vec<(Range<usize>, Range<usize>)>,
    lines: &mut Lines,
    mut act: impl FnMut(Name, &[u8]) -> Result<(), HeadError>,
) -> Result<(), HeadError> {
    for (i, h) in parsed.iter().enumerate() {
        let (name, value) = (h.name.as_bytes(), h.value);
        headers.push((range_of(buf, name), range_of(buf, value)));
        let known = Name::of(name);
        lines.add(i, known);
        act(known, value)?;
    }
    Ok(())
}

/// Where `part`, a slice `httparse` cut out of `buf`, lies in `buf`.
pub(super) fn range_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// The non-empty, trimmed elements of a comma-separated header value.
pub(super) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The `Connection` options the relay acts on, gathered over every `Connection` line.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ConnectionOptions {
    /// `close` was listed.
    pub(super) close: bool,
    /// `keep-alive` was listed.
    pub(super) keep_alive: bool,
}

impl ConnectionOptions {
    /// Takes in the value of one `Connection` line.
    pub(super) fn observe(&mut self, value: &[u8]) {
        for option in tokens(value) {
            if eq_lower(option, b"close") {
                self.close = true;
            } else if eq_lower(option, b"keep-alive") {
                self.keep_alive = true;
            }
        }
    }

    /// Must the connection close after this message? HTTP/1.1 persists unless `close` is
    /// listed; HTTP/1.0 closes unless `keep-alive` is. `close` wins over `keep-alive`.
    pub(super) fn close(&self, minor: u8) -> bool {
        self.close || (minor == 0 && !self.keep_alive)
    }
}

/// What the framing headers of one message say, gathered line by line (RFC 9112 §6).
#[derive(Debug, Default)]
pub(super) struct FramingHeaders {
    length: Option<u64>,
    te_seen: bool,
    chunked: bool,
}

impl FramingHeaders {
    /// Takes in the value of one `Content-Length` line.
    pub(super) fn length(&mut self, value: &[u8]) -> Result<(), HeadError> {
        let n = content_length(value)?;
        if self.length.is_some_and(|l| l != n) {
            return Err(HeadError::Malformed("differing Content-Length values"));
        }
        self.length = Some(n);
        Ok(())
    }

    /// Takes in the value of one `Transfer-Encoding` line.
    pub(super) fn codings(&mut self, value: &[u8]) -> Result<(), HeadError> {
        self.te_seen = true;
        // Codings accumulate across header lines; chunked must be last and only once.
        for coding in tokens(value) {
            if self.chunked {
                return Err(HeadError::Malformed("a coding after chunked"));
            }
            self.chunked = coding.eq_ignore_ascii_case(b"chunked");
        }
        Ok(())
    }

    /// Was there a `Transfer-Encoding` header?
    pub(super) fn transfer_encoding(&self) -> bool {
        self.te_seen
    }

    /// The framing the headers seen declare, for a message that may have a body. Both
    /// `Content-Length` and `Transfer-Encoding` is refused; a coding list not ending in
    /// `chunked` is [`Framing::UntilClose`] and no framing header at all is [`Framing::None`],
    /// for the caller to map (a request refuses the first and has no body in the second; a
    /// response reads until close in both).
    pub(super) fn decide(&self) -> Result<Framing, HeadError> {
        Ok(match (self.te_seen, self.length) {
            (true, Some(_)) => {
                return Err(HeadError::Malformed(
                    "both Content-Length and Transfer-Encoding",
                ))
            }
            (true, None) if self.chunked => Framing::Chunked,
            (true, None) => Framing::UntilClose,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::None,
        })
    }
}

/// Every line of `head` ends in CRLF: no bare CR or LF for two parsers to read differently.
/// `head` is complete as httparse accepted it, and httparse refuses a CR not followed by LF
/// and obs-fold but takes a bare LF as a line end. The line ends it found are known places:
/// the empty lines skipped before the start line (`head[..start]`), the two bytes before each
/// header name (`names`: where each starts), and the last four bytes (the last line's end and
/// the empty line). Checking those is the whole check, without visiting every byte.
pub(super) fn crlf_line_ends(
    head: &[u8],
    start: usize,
    mut names: impl Iterator<Item = usize>,
) -> Result<(), HeadError> {
    let crlf_at = |at: usize| head.get(at..at + 2) == Some(b"\r\n");
    let len = head.len();
    if (0..start).step_by(2).all(crlf_at)
        && len >= 4
        && crlf_at(len - 4)
        && crlf_at(len - 2)
        && names.all(|at| at >= 2 && crlf_at(at - 2))
    {
        Ok(())
    } else {
        Err(HeadError::Malformed("a line not ending in CRLF"))
    }
}

/// A Content-Length value: 1*DIGIT, nothing else (no sign, no spaces inside, no list).
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Malformed("invalid Content-Length"));
    }
    v.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(HeadError::Malformed("invalid Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RequestHead, HeadError> {
        parse_request(text.as_bytes(), 16 * 1024)
    }

    #[test]
    fn a_plain_get_and_its_ranges() {
        let text = "GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-User-Id: 42\r\n\r\nrest";
        let h = parse(text).unwrap();
        assert_eq!(&text[h.method.clone()], "GET");
        assert_eq!(&text[h.target.clone()], "/a?b=c");
        assert_eq!(h.minor, 1);
        assert_eq!(h.len, text.len() - 4);
        assert_eq!(&text[h.headers[1].0.clone()], "X-User-Id");
        assert_eq!(&text[h.headers[1].1.clone()], "42");
        assert_eq!(h.framing, Framing::None);
        assert!(!h.close);
    }

    #[test]
    fn framing_is_decided_strictly() {
        let ok = |t: &str| parse(t).unwrap().framing;
        assert_eq!(
            ok("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Framing::Chunked
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\nX: a\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",
            "GET / HTTP/1.1\r\nX\x00: a\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n\rY: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\nX: a\r\n\r\n",
            "GET /\r HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeadError::Malformed(_))),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
    }

    /// Every byte visited: what `crlf_line_ends` must agree with on heads httparse accepts.
    fn every_line_ends_in_crlf(head: &[u8]) -> bool {
        head.iter().enumerate().all(|(i, &b)| match b {
            b'\n' => i > 0 && head[i - 1] == b'\r',
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            _ => true,
        })
    }

    fn head_from(prefix: &str, start: &str, lines: &[(&str, &str)], last: &str) -> Vec<u8> {
        let mut text = format!("{prefix}{start}");
        for (line, end) in lines {
            text.push_str(line);
            text.push_str(end);
        }
        text.push_str(last);
        text.into_bytes()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Line ends checked at the places httparse found them agree with a scan of every
        /// byte, for requests and responses, whatever CR, LF, SP and HTAB are put where.
        #[test]
        fn line_ends_agree_with_a_full_scan(
            prefix in proptest::sample::select(vec!["", "\r\n", "\n", "\r\n\r\n", "\n\r\n", "\r\n\n"]),
            response in proptest::prelude::any::<bool>(),
            start_end in proptest::sample::select(vec!["\r\n", "\n", "\r", " \r\n", "\r\n "]),
            lines in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["X: a", "Y:b ", "Z:", "X-User-Id: 7", "H:\tv\t", "A: b c"]),
                    proptest::sample::select(vec!["\r\n", "\r\n", "\n", "\r", " \r\n", "\r\n\t", "\r\n "]),
                ),
                0..5,
            ),
            last in proptest::sample::select(vec!["\r\n", "\n", "\r\n\r\n"]),
        ) {
            let start = if response { "HTTP/1.1 200 OK" } else { "GET /a HTTP/1.1" };
            let start = format!("{start}{start_end}");
            let head = head_from(prefix, &start, &lines, last);
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let accepted = if response {
                httparse::Response::new(&mut storage).parse(&head)
            } else {
                httparse::Request::new(&mut storage).parse(&head)
            };
            let ours = if response {
                super::super::parse_response(&head, 1024, false).map(|h| h.len)
            } else {
                parse_request(&head, 1024).map(|h| h.len)
            };
            match accepted {
                Ok(httparse::Status::Complete(len)) => {
                    proptest::prop_assert_eq!(ours.is_ok(), every_line_ends_in_crlf(&head[..len]), "{:?}", String::from_utf8_lossy(&head));
                }
                _ => proptest::prop_assert!(ours.is_err(), "{:?}", String::from_utf8_lossy(&head)),
            }
        }
    }

    #[test]
    fn limits_partial_heads_and_connection_options() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: x\r\n"),
            Err(HeadError::Partial)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(parse_request(big.as_bytes(), 64), Err(HeadError::TooLarge));
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(h.close);
        let h = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(!h.close);
        // close wins, whatever the order.
        let h = parse("GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n").unwrap();
        assert!(h.close);
        let h =
            parse("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").unwrap();
        assert!(h.close);
        let h =
            parse("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert_ne!(h.lines.upgrade, 0);
        let h =
            parse("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert!(h.expect_continue);
    }
}
