//! The inputs: HTTP/1.1 requests as a client could write them, valid and hostile, rendered to
//! the exact bytes sent. Mostly well-formed (so both paths forward and the forwarded requests
//! can be compared), with invalid bytes, odd framing and line-ending tricks mixed in.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// One request of an input.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    pub target: Vec<u8>,
    /// Header lines in order, framing headers excluded (they come from `body`).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Body,
    /// Header line (index into `headers`) ended by a bare LF instead of CRLF.
    pub bare_lf_at: Option<usize>,
    /// Header line continued on an obs-fold line (` folded`).
    pub fold_at: Option<usize>,
}

/// How a request's body is framed.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Length(Vec<u8>),
    Chunked {
        /// Data and extension (`;name=value`) of each chunk but the last.
        chunks: Vec<(Vec<u8>, Vec<u8>)>,
        trailers: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

impl Req {
    pub fn has_host(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(b"host"))
    }

    /// The exact bytes of this request.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (i, (name, value)) in self.headers.iter().enumerate() {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            if self.fold_at == Some(i) {
                out.extend_from_slice(b"\r\n folded");
            }
            out.extend_from_slice(if self.bare_lf_at == Some(i) {
                b"\n"
            } else {
                b"\r\n"
            });
        }
        match &self.body {
            Body::None => out.extend_from_slice(b"\r\n"),
            Body::Length(data) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", data.len()).as_bytes());
                out.extend_from_slice(data);
            }
            Body::Chunked { chunks, trailers } => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for (data, ext) in chunks {
                    out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
                    out.extend_from_slice(ext);
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                for (name, value) in trailers {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }
}

/// One input: one request, or two pipelined in one write.
#[derive(Clone)]
pub struct Input {
    pub reqs: Vec<Req>,
}

/// The bytes sent, escaped: what a failure report needs to replay the input.
impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: Vec<u8> = self.reqs.iter().flat_map(Req::render).collect();
        write!(f, "b\"{}\"", bytes.escape_ascii())
    }
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// Header names a client sends, hop-by-hop ones among them; never the framing headers.
const NAMES: [&str; 14] = [
    "Accept",
    "User-Agent",
    "X-Trace",
    "x-a",
    "Via",
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "Keep-Alive",
    "TE",
    "Proxy-Connection",
    "Authorization",
    "X-User-Id",
    "Accept-Encoding",
];

const TOKEN: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";

fn bytes_of(pattern: &'static str) -> BoxedStrategy<Vec<u8>> {
    pattern.prop_map(String::into_bytes).boxed()
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        6 => bytes_of("[a-z0-9._~-]{0,8}"),
        2 => bytes_of("%[0-9A-Fa-f]{2}"),
        1 => bytes_of("%[g-z]{2}"),
        1 => select(vec![b'"', b'{', b'|', b'\\', b'^', b'`', 0x7f, 0x80, b'#', b'<'])
            .prop_map(|b| vec![b'a', b]),
    ];
    let query = prop_oneof![
        2 => Just(Vec::new()),
        3 => bytes_of("\\?[a-z]{1,4}=[a-z0-9%+]{0,6}(&[a-z]{1,4}=[a-zA-Z0-9%+]{0,6}){0,2}"),
    ];
    (vec(segment, 0..3), query).prop_map(|(segments, query)| {
        let mut t = Vec::new();
        for s in segments {
            t.push(b'/');
            t.extend(s);
        }
        if t.is_empty() {
            t.push(b'/');
        }
        t.extend(query);
        t
    })
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => select(NAMES.to_vec()).prop_map(|n| n.as_bytes().to_vec()),
        2 => bytes_of(TOKEN),
        // Not a token: a space, a separator or a non-ASCII byte inside.
        1 => (bytes_of("[a-z]{1,4}"), select(vec![b' ', b'(', b'"', b'@', 0x80, 0xff, b'/'])).prop_map(
            |(mut n, bad)| {
                n.insert(1, bad);
                n
            }
        ),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => bytes_of("[ -~]{0,20}"),
        // obs-text, which both paths must carry as bytes.
        1 => vec(prop_oneof![Just(b'a'), 0x80u8..=0xff], 1..6),
        // A control byte inside a value.
        1 => (bytes_of("[a-z]{1,6}"), select(vec![0u8, 1, 0x0b, 0x1f, 0x7f, b'\r', b'\t'])).prop_map(
            |(mut v, bad)| {
                v.insert(1, bad);
                v
            }
        ),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let ext = prop_oneof![
        4 => Just(Vec::new()),
        1 => bytes_of(";[a-z]{1,5}"),
        1 => bytes_of(";[a-z]{1,5}=[a-z0-9]{1,5}"),
        1 => bytes_of(";[a-z]{1,5}=\"[a-z ]{0,5}\""),
    ];
    let chunked = (
        vec((vec(any::<u8>(), 1..24), ext), 0..4),
        vec((bytes_of("X-T[a-z]{0,4}"), bytes_of("[a-z0-9]{0,8}")), 0..2),
    )
        .prop_map(|(chunks, trailers)| Body::Chunked { chunks, trailers });
    prop_oneof![
        3 => Just(Body::None),
        3 => vec(any::<u8>(), 0..64).prop_map(Body::Length),
        3 => chunked,
    ]
}

/// One request; `last` says whether it may carry `Connection: close`.
fn req(last: bool) -> impl Strategy<Value = Req> {
    let header = (name(), value());
    (
        select(METHODS.to_vec()),
        target(),
        prop::bool::weighted(0.9),
        prop::option::weighted(0.7, bytes_of("[a-z0-9-]{1,12}")),
        vec(
            bytes_of("[a-z]{1,3}=[a-z0-9]{0,4}(; [a-z]{1,3}=[a-z0-9]{0,4}){0,2}"),
            0..3,
        ),
        vec(header, 0..5),
        prop::bool::weighted(0.15),
        (
            prop::bool::weighted(if last { 0.3 } else { 0.0 }),
            prop::bool::weighted(0.2),
        ),
        body(),
        (
            prop::option::weighted(0.06, 0usize..8),
            prop::option::weighted(0.06, 0usize..8),
        ),
    )
        .prop_map(
            |(
                method,
                target,
                host,
                key,
                cookies,
                extra,
                repeat,
                (close, expect),
                body,
                (lf, fold),
            )| {
                let mut headers = Vec::new();
                if host {
                    headers.push((b"Host".to_vec(), b"proxy.test".to_vec()));
                }
                if let Some(key) = key {
                    headers.push((b"x-user-id".to_vec(), key));
                }
                for c in cookies {
                    headers.push((b"Cookie".to_vec(), c));
                }
                headers.extend(extra.iter().cloned());
                if repeat {
                    if let Some(first) = extra.first() {
                        headers.push(first.clone());
                    }
                }
                if close {
                    headers.push((b"Connection".to_vec(), b"close".to_vec()));
                }
                if expect && !matches!(body, Body::None) {
                    headers.push((b"Expect".to_vec(), b"100-continue".to_vec()));
                }
                let within = |at: Option<usize>| at.filter(|&i| i < headers.len());
                Req {
                    method,
                    target,
                    bare_lf_at: within(lf),
                    fold_at: within(fold),
                    headers,
                    body,
                }
            },
        )
}

/// An input: one request (3 in 4) or two pipelined.
pub fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => req(true).prop_map(|r| Input { reqs: vec![r] }),
        1 => (req(false), req(true)).prop_map(|(a, b)| Input { reqs: vec![a, b] }),
    ]
}
