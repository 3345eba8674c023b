//! The wire side of node mode: bounded line reading, envelope parsing and reply writing.

use std::io::{self, BufRead, Read, Write};

use serde_json::{Map, Value};

use super::handlers::{Node, Request};

/// Lines longer than this are skipped without being buffered whole, so one huge line cannot
/// exhaust memory. 16 MiB is far more than any real message, even a long `keys` list.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Answers the messages on `input`, one JSON object per line, with replies on `output` (one per
/// line, flushed after each) until EOF.
///
/// # Errors
///
/// Bad input never ends the loop; only an I/O error reading `input` or writing `output` does,
/// and it is returned.
pub fn run<R: BufRead, W: Write>(mut input: R, mut output: W) -> io::Result<()> {
    let mut node = Node::default();
    let mut line = Vec::new();
    for line_no in 1u64.. {
        match read_line(&mut input, &mut line)? {
            Line::Eof => break,
            Line::TooLong => {
                tracing::warn!(line_no, "skipped a line longer than {MAX_LINE_BYTES} bytes");
            }
            Line::Read => {
                let Some(request) = parse_request(&line, line_no) else {
                    continue;
                };
                let reply = node.handle(request);
                serde_json::to_writer(&mut output, &reply)?;
                output.write_all(b"\n")?;
                output.flush()?;
            }
        }
    }
    Ok(())
}

/// [`run`] over the process's stdin and stdout.
///
/// # Errors
///
/// An I/O error reading stdin or writing stdout (a closed pipe, say).
pub fn run_stdio() -> io::Result<()> {
    run(io::stdin().lock(), io::stdout().lock())
}

enum Line {
    /// A line is in the buffer, without its newline.
    Read,
    /// A line longer than [`MAX_LINE_BYTES`] was read and thrown away.
    TooLong,
    Eof,
}

/// Reads the next line into `buf` (bytes: invalid UTF-8 is the parser's business, not an I/O
/// error that would end the session).
fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = input.by_ref().take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Read);
    }
    if n <= MAX_LINE_BYTES {
        return Ok(Line::Read); // the last line, without a newline
    }
    buf.clear();
    skip_past_newline(input)?;
    Ok(Line::TooLong)
}

/// Discards input up to and including the next newline (or to EOF).
fn skip_past_newline<R: BufRead>(input: &mut R) -> io::Result<()> {
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            input.consume(i + 1);
            return Ok(());
        }
        let len = chunk.len();
        input.consume(len);
    }
}

/// Parses one line into a request to answer, or logs why it is skipped and returns `None`.
fn parse_request(line: &[u8], line_no: u64) -> Option<Request> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let message: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => {
            tracing::warn!(line_no, "skipped a line that is not JSON: {e}");
            return None;
        }
    };
    let Value::Object(mut message) = message else {
        tracing::warn!(line_no, "skipped a JSON value that is not an object");
        return None;
    };
    let Some(Value::Object(body)) = message.remove("body") else {
        tracing::warn!(line_no, "skipped a message without an object `body`");
        return None;
    };
    let Some(kind) = body.get("type").and_then(Value::as_str).map(str::to_owned) else {
        tracing::warn!(line_no, "skipped a message without a string `body.type`");
        return None;
    };
    if !is_null_or_absent(&body, "in_reply_to") {
        tracing::debug!(line_no, kind, "ignored a reply addressed to us");
        return None;
    }
    let Some(Value::String(src)) = message.remove("src") else {
        tracing::warn!(
            line_no,
            kind,
            "skipped a message without a string `src` to answer to"
        );
        return None;
    };
    let dest = match message.remove("dest") {
        Some(Value::String(dest)) => Some(dest),
        _ => None,
    };
    let msg_id = body.get("msg_id").filter(|v| !v.is_null()).cloned();
    Some(Request {
        src,
        dest,
        msg_id,
        kind,
        body,
    })
}

fn is_null_or_absent(body: &Map<String, Value>, field: &str) -> bool {
    body.get(field).is_none_or(Value::is_null)
}
