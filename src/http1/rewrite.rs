//! Writing the heads the relay forwards, each as one buffer: the request head for the backend
//! and the response head for the client. Header lines go on as received (name and value bytes
//! untouched, in order); only what belongs to one connection is removed and only the proxy's
//! own headers are added — the same meaning as the hyper path's `hop::strip` and
//! `forwarded::add`, without building a header map.
//!
//! Hop-by-hop (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`,
//! `Trailer`, `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`, and every header a
//! `Connection` line names. `Transfer-Encoding` and `Content-Length` are kept even when named:
//! the relay forwards the body bytes in their original framing, and a client must not be able
//! to take the framing headers off a body it sends (`Connection: content-length`).
//!
//! Cost: the parser has already classified every name (`names.rs`), so the lines to keep are a
//! bit mask; consecutive kept lines are copied as one span. `Connection` values are looked at
//! only when one lists something besides the fixed names (`close` is the common case). No
//! allocation besides growing `out` once.

use std::ops::Range;

use super::head::tokens;
use super::names::{Lines, Name};
use super::{RequestHead, ResponseHead};

/// The most `request_head` adds besides the Host value and the peer's address: `host: ` and
/// CRLF (8); one `x-forwarded-for: ` line with a separator and CRLF (17 + 2 + 2);
/// `x-forwarded-proto: http` and CRLF (25). The request line never grows (httparse allows one
/// space between its parts), and joining prior `X-Forwarded-For` values into one line takes
/// less than their own lines did.
const REQUEST_GROWTH: usize = 8 + 21 + 25;

/// The most `response_head` adds besides `extra`: a space before an empty reason phrase (1)
/// and `connection: close` with CRLF (19).
const RESPONSE_GROWTH: usize = 1 + 19;

/// Writes the head to send the backend to `out` (appending): the request line as received
/// but always `HTTP/1.1`; the header lines in order as received (name and value bytes
/// untouched) minus hop-by-hop ones and any `X-Forwarded-For` / `X-Forwarded-Proto`; `Host:
/// default_host` first when no `Host` is left; then one `x-forwarded-for` line (earlier
/// values, trimmed and joined with ", ", then `peer`, the client address as
/// [`PeerText`](crate::forwarded::PeerText) writes it) and `x-forwarded-proto: http`.
///
/// `head` must be what [`super::parse_request`] made of `buf`.
pub fn request_head(
    buf: &[u8],
    head: &RequestHead,
    peer: &[u8],
    default_host: &[u8],
    out: &mut Vec<u8>,
) {
    out.reserve(head.len + default_host.len() + peer.len() + REQUEST_GROWTH);
    out.extend_from_slice(&buf[head.method.clone()]);
    out.push(b' ');
    out.extend_from_slice(&buf[head.target.clone()]);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let lines = out.len();
    let seen = copy_headers(buf, &head.headers, &head.lines, true, out);

    if seen.host == 0 {
        // Rare (HTTP/1.0 clients): worth a move of the lines to keep Host first (RFC 9112 §3.2).
        let host = b"host: ".iter().chain(default_host).chain(b"\r\n").copied();
        out.splice(lines..lines, host);
    }

    out.extend_from_slice(b"x-forwarded-for: ");
    for i in bits(seen.forwarded_for) {
        let prior = buf[head.headers[i].1.clone()].trim_ascii();
        if !prior.is_empty() {
            out.extend_from_slice(prior);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(peer);
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n\r\n");
}

/// Writes the head to send the client to `out` (appending): `HTTP/1.1 <status> <reason>`,
/// the header lines in order as received minus hop-by-hop ones, then the `extra` lines
/// (names and values the caller knows to be valid), then `connection: close` if `close`.
///
/// `head` must be what [`super::parse_response`] made of `buf`.
pub fn response_head(
    buf: &[u8],
    head: &ResponseHead,
    extra: &[(&[u8], &[u8])],
    close: bool,
    out: &mut Vec<u8>,
) {
    let extra_len: usize = extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(head.len + extra_len + RESPONSE_GROWTH);
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut status = [0u8; 5];
    out.extend_from_slice(decimal(head.status, &mut status));
    // The space stays even before an empty phrase: RFC 9112 §4 requires it.
    out.push(b' ');
    out.extend_from_slice(&buf[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    copy_headers(buf, &head.headers, &head.lines, false, out);
    for (name, value) in extra {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What [`copy_headers`] saw that the caller writes about: bit masks of header lines.
struct Seen {
    /// `Host` lines kept.
    host: u128,
    /// `X-Forwarded-For` lines whose values go into the new one.
    forwarded_for: u128,
}

/// Copies the header lines that go on to `out`, in order. For a request, `Host` lines are
/// reported and `X-Forwarded-*` lines left to the caller; for a response they are ordinary.
fn copy_headers(
    buf: &[u8],
    headers: &[(Range<usize>, Range<usize>)],
    lines: &Lines,
    request: bool,
    out: &mut Vec<u8>,
) -> Seen {
    // Every line: bits 0 to len - 1.
    let all = match headers.len() {
        0 => 0,
        n => u128::MAX >> (128 - n),
    };
    let mut kept = all & !lines.hop;
    let mut seen = Seen {
        host: lines.host,
        forwarded_for: 0,
    };
    if request {
        seen.forwarded_for = lines.forwarded_for;
        kept &= !(lines.forwarded_for | lines.forwarded_proto);
    }
    // Connection lines listing a name beyond the fixed ones (`close` is the common case).
    let naming = bits(lines.connection)
        .filter(|&c| {
            let names_more = |t: &[u8]| {
                let name = Name::of(t);
                !name.is_hop() && !name.is_framing()
            };
            tokens(&buf[headers[c].1.clone()]).any(names_more)
        })
        .fold(0u128, |mask, c| mask | 1u128 << c);
    if naming != 0 {
        let named = connection_named(buf, headers, naming);
        kept &= !named;
        seen.host &= !named;
        seen.forwarded_for &= !named;
    }
    copy_lines(buf, headers, kept, out);
    seen
}

/// Copies the lines in `kept` as received, consecutive lines that end in CRLF as one span.
/// (httparse has dropped a value's trailing whitespace; a line that had some is written
/// without it, as the value reads.)
fn copy_lines(buf: &[u8], headers: &[(Range<usize>, Range<usize>)], kept: u128, out: &mut Vec<u8>) {
    // Bytes of `buf` still to copy: whole lines, CRLF included.
    let mut run = 0..0;
    for i in bits(kept) {
        let (name, value) = &headers[i];
        if name.start != run.end {
            out.extend_from_slice(&buf[run]);
            run = name.start..name.start;
        }
        if buf.get(value.end..value.end + 2) == Some(b"\r\n") {
            run.end = value.end + 2;
        } else {
            out.extend_from_slice(&buf[run.start..value.end]);
            out.extend_from_slice(b"\r\n");
            run = 0..0;
        }
    }
    out.extend_from_slice(&buf[run]);
}

/// The header lines named by the `Connection` lines in `connection`, framing headers aside.
/// At most the head's tokens times its lines compares, mostly of lengths: bounded by the head
/// size limit and [`MAX_HEADERS`].
fn connection_named(
    buf: &[u8],
    headers: &[(Range<usize>, Range<usize>)],
    connection: u128,
) -> u128 {
    let mut named = 0u128;
    for c in bits(connection) {
        for token in tokens(&buf[headers[c].1.clone()]) {
            // Fixed names are gone already; framing headers stay whatever Connection says.
            let name = Name::of(token);
            if name.is_hop() || name.is_framing() {
                continue;
            }
            for (i, (name, _)) in headers.iter().enumerate() {
                if name.len() == token.len() && buf[name.clone()].eq_ignore_ascii_case(token) {
                    named |= 1u128 << i;
                }
            }
        }
    }
    named
}

/// The indexes of the set bits of `mask`, lowest first.
fn bits(mut mask: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

/// `n` in decimal, without `core::fmt`.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
