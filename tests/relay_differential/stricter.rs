//! The classes of request the relay refuses on purpose although hyper accepts them: the list
//! in `src/http1/head.rs` (head) and `src/http1/chunked.rs` (chunked body), re-derived here
//! from the bytes on their own, so the relay's parser does not vouch for itself. A request the
//! relay refuses and hyper forwards must fall in one of these, or the relay is wrong.

/// Trailer bytes the relay accepts after a chunked body (`chunked.rs`).
const MAX_TRAILERS: usize = 16 * 1024;
/// Header lines in one head (`head.rs`, `MAX_HEADERS`): more is a 431.
const MAX_HEADERS: usize = 100;

/// The deliberately-stricter classes `request` (one request's bytes) belongs to.
pub fn classes(request: &[u8]) -> Vec<&'static str> {
    let mut out = Vec::new();
    let end = find(request, b"\r\n\r\n")
        .map(|i| i + 4)
        .into_iter()
        .chain(find(request, b"\n\n").map(|i| i + 2))
        .min()
        .unwrap_or(request.len());
    let (head, body) = request.split_at(end);
    for (i, &b) in head.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| head[p]);
        if b == b'\n' && prev != Some(b'\r') || b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            add(&mut out, "bare LF or CR in the head");
        }
        if prev == Some(b'\n') && (b == b' ' || b == b'\t') {
            add(&mut out, "obs-fold");
        }
    }
    let lines: Vec<&[u8]> = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .skip(1)
        .collect();
    if lines.len() > MAX_HEADERS {
        add(&mut out, "more than 100 header lines (431)");
    }
    let mut lengths = Vec::new();
    let mut codings: Vec<Vec<u8>> = Vec::new();
    let mut te = false;
    for line in &lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        if value.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            add(&mut out, "control byte in a header value");
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                add(&mut out, "Content-Length not a plain number (sign, list)");
            }
            lengths.push(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            codings.extend(
                value
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|c| !c.is_empty())
                    .map(<[u8]>::to_ascii_lowercase),
            );
        }
    }
    lengths.dedup();
    if lengths.len() > 1 {
        add(&mut out, "differing Content-Length values");
    }
    if te && !lengths.is_empty() {
        add(&mut out, "Content-Length with Transfer-Encoding");
    }
    let chunked_count = codings
        .iter()
        .filter(|c| c.as_slice() == b"chunked")
        .count();
    if te && (codings.last().map(Vec::as_slice) != Some(b"chunked") || chunked_count > 1) {
        add(&mut out, "Transfer-Encoding not ending in a single chunked");
    }
    if te && lengths.is_empty() && codings.last().map(Vec::as_slice) == Some(b"chunked") {
        chunked_classes(body, &mut out);
    }
    out
}

/// Classes of a chunked body: bare LF in its framing lines, control bytes in an extension or
/// a trailer, trailers over the limit.
fn chunked_classes(mut body: &[u8], out: &mut Vec<&'static str>) {
    loop {
        let Some(nl) = body.iter().position(|&b| b == b'\n') else {
            return;
        };
        let line = &body[..nl];
        let Some(line) = line.strip_suffix(b"\r") else {
            add(out, "bare LF in the chunked framing");
            return;
        };
        let (size, ext) = line.split_at(line.iter().position(|&b| b == b';').unwrap_or(line.len()));
        if ext.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            add(out, "control byte in a chunk extension");
        }
        let Some(size) = std::str::from_utf8(size.trim_ascii())
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
        else {
            return;
        };
        body = &body[nl + 1..];
        if size == 0 {
            break;
        }
        if body.len() < size + 1 {
            return;
        }
        body = &body[size..];
        if body.starts_with(b"\n") {
            add(out, "bare LF in the chunked framing");
            return;
        }
        let Some(rest) = body.strip_prefix(b"\r\n") else {
            return;
        };
        body = rest;
    }
    // Trailers, up to the empty line.
    let mut size = 0;
    loop {
        let Some(nl) = body.iter().position(|&b| b == b'\n') else {
            return;
        };
        let line = &body[..nl];
        size += nl + 1;
        if size > MAX_TRAILERS {
            add(out, "trailers over 16 KiB");
        }
        let Some(line) = line.strip_suffix(b"\r") else {
            add(out, "bare LF in the chunked framing");
            return;
        };
        if line.is_empty() {
            return;
        }
        if line.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            add(out, "control byte in a trailer");
        }
        body = &body[nl + 1..];
    }
}

fn add(out: &mut Vec<&'static str>, class: &'static str) {
    if !out.contains(&class) {
        out.push(class);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
