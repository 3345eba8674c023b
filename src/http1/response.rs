//! Parsing a backend's response head with `httparse`, as strictly as `head.rs` parses a
//! request, and deciding how its body is delimited (RFC 9112 §6.3): the relay forwards the
//! bytes as they came, so the proxy and the client must agree on where the body ends.
//!
//! In order: a response to HEAD, and any 1xx, 204 or 304, has no body whatever its framing
//! headers say (hyper reads them the same way); an HTTP/1.0 response with
//! `Transfer-Encoding` is refused (§6.1: its framing is faulty); `Content-Length` with
//! `Transfer-Encoding`, differing or malformed `Content-Length` values, or `chunked` followed
//! by another coding are refused; `chunked` last is chunked; other codings, or no framing
//! header, are read until the backend closes. A refused response is a 502 for the client.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::head::{
    complete, crlf_line_ends, record_lines, reserved, ConnectionOptions, FramingHeaders,
};
use super::names::{Lines, Name};
use super::{Framing, HeadError, MAX_HEADERS};

/// A parsed response head: everything as ranges into the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, final CRLF CRLF included.
    pub len: usize,
    /// The status code, 100 to 999.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The reason phrase, as sent (may be empty).
    pub reason: Range<usize>,
    /// `(name, value)` for each header line, in order.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    /// How the body is delimited. `Content-Length: 0` is [`Framing::None`], as for requests.
    pub framing: Framing,
    /// The backend closes after this response: `Connection: close`, HTTP/1.0 without
    /// `keep-alive`, or a body delimited by the close itself.
    pub close: bool,
    /// The lines whose names the rewrite acts on.
    pub lines: Lines,
}

/// Parses the response head at the start of `buf` (at most `limit` bytes of it).
/// `head_request` says the request was HEAD: then the response has no body.
pub fn parse_response(
    buf: &[u8],
    limit: usize,
    head_request: bool,
) -> Result<ResponseHead, HeadError> {
    parse_response_with(buf, limit, head_request, Vec::new)
}

/// [`parse_response`], with the vector for the header lines from `lines` (called once the
/// head is complete).
pub fn parse_response_with(
    buf: &[u8],
    limit: usize,
    head_request: bool,
    lines: impl FnOnce() -> Vec<(Range<usize>, Range<usize>)>,
) -> Result<ResponseHead, HeadError> {
    let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut storage,
    );
    let len = complete(parsed, buf.len(), limit)?;
    let head_bytes = &buf[..len];
    // httparse skips empty lines before the status line.
    let start = head_bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(len);
    let status = res.code.ok_or(HeadError::Malformed("no status"))?;
    // hyper refuses these too: there is no class for a client to fall back on.
    if status < 100 {
        return Err(HeadError::Malformed("status below 100"));
    }
    let minor = res.version.ok_or(HeadError::Malformed("no version"))?;
    let bodiless = head_request || status < 200 || status == 204 || status == 304;

    let mut head = ResponseHead {
        len,
        status,
        minor,
        reason: reason(head_bytes, start),
        headers: reserved(lines(), res.headers.len()),
        framing: Framing::None,
        close: false,
        lines: Lines::default(),
    };
    let mut framing = FramingHeaders::default();
    let mut connection = ConnectionOptions::default();
    record_lines(
        buf,
        res.headers,
        &mut head.headers,
        &mut head.lines,
        |name, value| {
            match name {
                // A bodiless response's framing headers describe a body it does not carry.
                Name::ContentLength if !bodiless => framing.length(value)?,
                Name::TransferEncoding if !bodiless => framing.codings(value)?,
                Name::Connection => connection.observe(value),
                _ => {}
            }
            Ok(())
        },
    )?;
    let names = head.headers.iter().map(|(name, _)| name.start);
    crlf_line_ends(head_bytes, start, names)?;
    if !bodiless {
        if minor == 0 && framing.transfer_encoding() {
            return Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        head.framing = match framing.decide()? {
            Framing::None => Framing::UntilClose,
            Framing::Length(0) => Framing::None,
            framing => framing,
        };
    }
    head.close = connection.close(minor) || head.framing == Framing::UntilClose;
    Ok(head)
}

/// The reason phrase's range in a complete, line-checked head. Found here rather than taken
/// from `httparse`, which hands back a static empty string for a phrase with obs-text: that
/// phrase is still relayed as sent.
fn reason(head: &[u8], start: usize) -> Range<usize> {
    // "HTTP/1.x 200" is 12 bytes; then a space and the phrase, or the line's CR.
    let line_end = head[start..]
        .iter()
        .position(|&b| b == b'\r')
        .map_or(head.len(), |i| start + i);
    let phrase = start + 13;
    if phrase <= line_end {
        phrase..line_end
    } else {
        line_end..line_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ResponseHead, HeadError> {
        parse_response(text.as_bytes(), 16 * 1024, false)
    }

    #[test]
    fn ranges_of_a_plain_response() {
        let text = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-Cache:  hit\r\n\r\nabc";
        let h = parse(text).unwrap();
        assert_eq!(h.len, text.len() - 3);
        assert_eq!((h.status, h.minor), (404, 1));
        assert_eq!(&text[h.reason.clone()], "Not Found");
        assert_eq!(h.headers.len(), 2);
        assert_eq!(&text[h.headers[1].0.clone()], "X-Cache");
        assert_eq!(&text[h.headers[1].1.clone()], "hit");
        assert_eq!(h.framing, Framing::Length(3));
        assert!(!h.close);
    }

    #[test]
    fn reason_phrases_empty_odd_and_after_empty_lines() {
        let reason = |text: &str| {
            let h = parse(text).unwrap();
            text.as_bytes()[h.reason].to_vec()
        };
        assert_eq!(reason("HTTP/1.1 200 OK\r\n\r\n"), b"OK");
        assert_eq!(reason("HTTP/1.1 200\r\n\r\n"), b"");
        assert_eq!(reason("HTTP/1.1 200 \r\n\r\n"), b"");
        assert_eq!(reason("HTTP/1.1 200 A  b\tc\r\n\r\n"), b"A  b\tc");
        assert_eq!(reason("\r\nHTTP/1.1 201 Created\r\n\r\n"), b"Created");
        // obs-text: httparse gives "" for it, the relay keeps the bytes.
        let text = b"HTTP/1.1 200 Gr\xfc\xdfe\r\n\r\n";
        let h = parse_response(text, 1024, false).unwrap();
        assert_eq!(&text[h.reason], b"Gr\xfc\xdfe");
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        use Framing::*;
        // (status line + headers, HEAD request?, framing, close)
        let cases: &[(&str, bool, Framing, bool)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5",
                false,
                Length(5),
                false,
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0", false, None, false),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7",
                false,
                Length(7),
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                false,
                Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked",
                false,
                Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
                false,
                UntilClose,
                true,
            ),
            ("HTTP/1.1 200 OK", false, UntilClose, true),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5", true, None, false),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                true,
                None,
                false,
            ),
            ("HTTP/1.1 200 OK", true, None, false),
            ("HTTP/1.1 100 Continue", false, None, false),
            ("HTTP/1.1 101 Switching Protocols", false, None, false),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5",
                false,
                None,
                false,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5",
                false,
                None,
                false,
            ),
            // Framing headers of a bodiless response are not read, so not refused either.
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
                false,
                None,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close",
                false,
                Length(5),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5",
                false,
                Length(5),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive",
                false,
                Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 5",
                false,
                Length(5),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive",
                false,
                UntilClose,
                true,
            ),
        ];
        for &(text, head_request, framing, close) in cases {
            let full = format!("{text}\r\n\r\n");
            let h = parse_response(full.as_bytes(), 1024, head_request)
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!((h.framing, h.close), (framing, close), "{text:?}");
        }
    }

    #[test]
    fn hostile_heads_are_refused() {
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n",
            "HTTP/1.1 200 OK\nX: a\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n",
            "HTTP/1.1 200 O\x00K\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeadError::Malformed(_))),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn partial_and_too_large() {
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nX: 1\r\n"),
            Err(HeadError::Partial)
        );
        assert_eq!(parse("HTTP/1.1 200"), Err(HeadError::Partial));
        assert_eq!(parse(""), Err(HeadError::Partial));
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_response(big.as_bytes(), 64, false),
            Err(HeadError::TooLarge)
        );
        // Still partial at the limit: it will never fit.
        assert_eq!(
            parse_response(&big.as_bytes()[..64], 64, false),
            Err(HeadError::TooLarge)
        );
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            parse_response(many.as_bytes(), 64 * 1024, false),
            Err(HeadError::TooLarge)
        );
    }
}
