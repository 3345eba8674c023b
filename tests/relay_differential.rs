//! The HTTP/1 relay path against the hyper path (issue 17): the same client bytes go through
//! two proxies, one with `[proxy] http1 = "relay"`, one with `http1 = "hyper"`, each in front of
//! its own recording backend, and what the two backends and the two clients see is compared.
//!
//! For each input, either both proxies forward the same requests — method, target, headers
//! after normalisation, body bytes (de-chunked), trailers — or both refuse with a 4xx and no
//! complete request reaches a backend. The relay may be stricter than hyper, never looser: if
//! hyper refuses, the relay must refuse; if the relay refuses what hyper forwards, the request
//! must belong to a class the relay refuses on purpose (`stricter.rs`).
//!
//! Normalisation: header names lowercased (the recorder does that); hop-by-hop headers, the
//! framing headers (`content-length`, `transfer-encoding`: one path may re-frame what the
//! other relays as it came) and `host` when the client sent none are left out; the rest,
//! `x-forwarded-*` included, must be equal, values of one name in order.
//!
//! Inputs come from a generator (`generate.rs`, 48 cases a run) and from a table of request
//! smuggling classics. Until the relay serves `http1 = "relay"`, both proxies run hyper: the
//! test passes trivially on the generated inputs, and the table's "relay at least" rows are held
//! to "same as hyper"; a probe (a mixed-case header name reaching a raw backend as sent, which
//! only the byte relay does) says which is the case and the test prints it.

mod common;

#[path = "relay_differential/generate.rs"]
mod generate;
#[path = "relay_differential/stricter.rs"]
mod stricter;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use generate::{Input, Req};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The longest any single wait may take.
const BOUND: Duration = Duration::from_secs(5);

/// How long a side may take to answer an input before it counts as stuck.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Hop-by-hop headers (RFC 9110 §7.6.1), the proxy-specific ones clients still send, and the
/// framing headers: never compared.
const NOT_COMPARED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "content-length",
];

/// One proxy and the backend behind it.
struct Side {
    label: &'static str,
    proxy: TestProxy,
    backend: Recorder,
}

/// Both proxies, and whether the relay side really serves through the relay.
struct Pair {
    relay: Side,
    hyper: Side,
    relay_serving: bool,
    /// Sentinel requests sent so far (each has its own target).
    sentinels: AtomicUsize,
}

async fn side(label: &'static str, mode: &str) -> Side {
    let backend = start_body_recorder(&format!("{label}-backend")).await;
    let proxy = start_proxy(&config_addrs(
        &format!("workers = 1\nhttp1 = \"{mode}\""),
        "",
        &[("only", backend.addr)],
    ))
    .await;
    Side {
        label,
        proxy,
        backend,
    }
}

async fn pair() -> Pair {
    Pair {
        relay: side("relay", "relay").await,
        hyper: side("hyper", "hyper").await,
        relay_serving: relay_serving().await,
        sentinels: AtomicUsize::new(0),
    }
}

/// Whether `http1 = "relay"` serves through the byte relay yet: the relay forwards header
/// lines as they came, hyper's client writes names lowercased.
async fn relay_serving() -> bool {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = start_proxy(&config_addrs(
        "workers = 1\nhttp1 = \"relay\"",
        "",
        &[("raw", addr)],
    ))
    .await;
    let backend = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "probe: the proxy closed before a whole head");
            head.extend_from_slice(&buf[..n]);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        head
    });
    let reply = raw_exchange(
        proxy.proxy,
        "GET /probe HTTP/1.1\r\nHost: probe.test\r\nX-Probe-Case: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200, "probe through the relay proxy");
    let head = tokio::time::timeout(BOUND, backend)
        .await
        .expect("probe head within 5s")
        .unwrap();
    proxy.stop().await;
    let has = |s: &[u8]| head.windows(s.len()).any(|w| w == s);
    if has(b"X-Probe-Case: 1\r\n") {
        true
    } else if has(b"x-probe-case: 1\r\n") {
        eprintln!(
            "http1 = \"relay\" is still served by hyper: the comparison holds trivially and \
             the relay-at-least rows are held to \"same as hyper\""
        );
        false
    } else {
        panic!("probe: the header is missing: {}", head.escape_ascii());
    }
}

/// What one side did with an input.
#[derive(Debug)]
struct Outcome {
    /// Final status codes received, in order (1xx skipped).
    statuses: Vec<u16>,
    /// How the exchange ended if not with every request answered.
    end: Option<String>,
    /// Complete requests the backend got, in order.
    forwarded: Vec<Seen>,
    /// Heads the backend got whose body never completed.
    broken: Vec<Seen>,
}

impl Outcome {
    /// A refusal: the first failing answer is a 4xx and nothing more got through.
    fn rejected(&self) -> bool {
        self.statuses
            .iter()
            .find(|&&s| s >= 300)
            .is_some_and(|&s| (400..500).contains(&s))
            && self.statuses.iter().filter(|&&s| s < 300).count() == self.forwarded.len()
    }

    fn describe(&self) -> String {
        let mut s = format!("answered {:?}", self.statuses);
        if let Some(end) = &self.end {
            let _ = write!(s, ", then {end}");
        }
        let _ = write!(
            s,
            "; backend got {} complete request(s)",
            self.forwarded.len()
        );
        for seen in &self.forwarded {
            let _ = write!(
                s,
                "\n      {} {} {:?} body b\"{}\" trailers {:?}",
                seen.method,
                seen.target,
                seen.headers,
                seen.body.escape_ascii(),
                seen.trailers
            );
        }
        for seen in &self.broken {
            let _ = write!(
                s,
                "\n      a head with a broken body: {} {} ({})",
                seen.method,
                seen.target,
                seen.body_error.as_deref().unwrap_or("?")
            );
        }
        s
    }
}

/// Sends `bytes` in one write on a new connection and reads the answers to `methods` (one
/// per request); then a sentinel request on another connection proves the proxy still serves
/// and marks the end of what the backend got for this input.
async fn observe(side: &Side, bytes: &[u8], methods: &[&str], sentinel: usize) -> Outcome {
    let before = side.backend.seen().len();
    let mut conn = RawConn::connect(side.proxy.proxy).await;
    let mut statuses = Vec::new();
    let mut end = None;
    if let Err(e) = conn.send(bytes).await {
        end = Some(format!("write failed: {e}"));
    }
    let deadline = Instant::now() + ANSWER_WITHIN;
    while end.is_none() {
        let head_request = methods.get(statuses.len()) == Some(&"HEAD");
        match parse_response(conn.buffered(), head_request) {
            Some(Ok((status, used))) => {
                conn.read_exact_within(used, BOUND).await;
                if status >= 200 {
                    statuses.push(status);
                }
                if statuses.len() == methods.len() || status >= 300 {
                    break;
                }
                continue;
            }
            Some(Err(e)) => {
                end = Some(format!("an unreadable response ({e})"));
                break;
            }
            None => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.read_some(left).await {
            Read::Data(_) => {}
            Read::Closed => end = Some("closed".to_string()),
            Read::TimedOut => end = Some(format!("no answer within {ANSWER_WITHIN:?}")),
        }
    }
    drop(conn);
    let target = format!("/sentinel-{sentinel}");
    let reply = raw_exchange(
        side.proxy.proxy,
        format!("GET {target} HTTP/1.1\r\nHost: s.test\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(
        reply.status, 200,
        "{}: sentinel after the input",
        side.label
    );
    let started = Instant::now();
    let seen = loop {
        let seen = side.backend.seen();
        if let Some(at) = seen[before..].iter().position(|s| s.target == target) {
            break seen[before..before + at].to_vec();
        }
        assert!(
            started.elapsed() < BOUND,
            "{}: sentinel not recorded",
            side.label
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let (forwarded, broken) = seen.into_iter().partition(|s| s.body_error.is_none());
    Outcome {
        statuses,
        end,
        forwarded,
        broken,
    }
}

/// One response at the start of `buf`: its status and length, `None` if incomplete.
fn parse_response(buf: &[u8], head_request: bool) -> Option<Result<(u16, usize), String>> {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut storage);
    let head = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let status = res.code.unwrap_or(0);
    let header = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return Some(Ok((status, head)));
    }
    if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        return chunked_len(&buf[head..]).map(|n| Ok((status, head + n)));
    }
    let Some(length) = header("content-length") else {
        return Some(Err("a response without a length".to_string()));
    };
    let Ok(length) = length.parse::<usize>() else {
        return Some(Err(format!("content-length {length:?}")));
    };
    (buf.len() >= head + length).then_some(Ok((status, head + length)))
}

/// Length of the complete chunked body at the start of `buf`, if it is there.
fn chunked_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let text = std::str::from_utf8(&buf[at..at + line]).ok()?;
        let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
        at += line + 2;
        if size == 0 {
            loop {
                let line = buf[at..].windows(2).position(|w| w == b"\r\n")?;
                at += line + 2;
                if line == 0 {
                    return Some(at);
                }
            }
        }
        at += size + 2;
        if at > buf.len() {
            return None;
        }
    }
}

/// A forwarded request after normalisation.
#[derive(Debug, PartialEq, Eq)]
struct Normal {
    method: String,
    target: String,
    headers: BTreeMap<String, Vec<String>>,
    /// Escaped (one-to-one), so a difference reads as text.
    body: String,
    trailers: BTreeMap<String, Vec<String>>,
}

fn normal(seen: &Seen, client_sent_host: bool) -> Normal {
    let group = |fields: &[(String, String)]| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in fields {
            if NOT_COMPARED.contains(&name.as_str()) || name == "host" && !client_sent_host {
                continue;
            }
            map.entry(name.clone()).or_default().push(value.clone());
        }
        map
    };
    Normal {
        method: seen.method.clone(),
        target: seen.target.clone(),
        headers: group(&seen.headers),
        body: seen.body.escape_ascii().to_string(),
        trailers: group(&seen.trailers),
    }
}

/// Whether `o` answered 2xx to exactly the requests its backend got, and then either answered
/// them all or closed the connection (a server may close a persistent connection after any
/// response; the rest of a pipeline is then not served).
fn served_then_closed(o: &Outcome) -> bool {
    o.statuses.iter().all(|&s| s < 300) && o.statuses.len() == o.forwarded.len()
}

/// The comparison of one input's two outcomes; `Err` says what is wrong.
fn compare(
    reqs: &[Vec<u8>],
    hosts: &[bool],
    relay: &Outcome,
    hyper: &Outcome,
) -> Result<(), String> {
    for (label, o) in [("relay", relay), ("hyper", hyper)] {
        if !served_then_closed(o) && !o.rejected() {
            return Err(format!(
                "{label} neither forwarded the requests it answered nor refused with a 4xx"
            ));
        }
    }
    let (r, h) = (relay.forwarded.len(), hyper.forwarded.len());
    if hyper.rejected() && !(relay.rejected() && r <= h) {
        return Err(format!(
            "hyper refused request #{} and the relay did not refuse it: the relay is looser than hyper",
            h + 1
        ));
    }
    if r < h {
        if !relay.rejected() {
            return Err(format!(
                "the relay closed the connection after {r} request(s) without refusing; hyper forwarded {h}"
            ));
        }
        let classes = stricter::classes(&reqs[r]);
        if classes.is_empty() {
            return Err(format!(
                "the relay refused request #{} that hyper forwarded, and it is in no deliberately-stricter class",
                r + 1
            ));
        }
    }
    for (i, (r, h)) in relay.forwarded.iter().zip(&hyper.forwarded).enumerate() {
        let (mut r, h) = (normal(r, hosts[i]), normal(h, hosts[i]));
        // Trailers: the relay passes the chunked body through as it came, trailers included;
        // hyper's client sends only trailer fields the request declares in `Trailer`, which
        // is hop-by-hop and stripped, so it sends none. What hyper does forward must match.
        if h.trailers.is_empty() {
            r.trailers.clear();
        }
        if r != h {
            return Err(format!(
                "request #{} forwarded differently:\n    relay: {r:?}\n    hyper: {h:?}",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Runs one input through both sides; `Err` is the whole report.
async fn check(
    pair: &Pair,
    reqs: &[Vec<u8>],
    methods: &[&str],
    hosts: &[bool],
) -> Result<(Outcome, Outcome), String> {
    let bytes: Vec<u8> = reqs.concat();
    let sentinel = pair.sentinels.fetch_add(1, Ordering::Relaxed);
    let relay = observe(&pair.relay, &bytes, methods, sentinel).await;
    let hyper = observe(&pair.hyper, &bytes, methods, sentinel).await;
    match compare(reqs, hosts, &relay, &hyper) {
        Ok(()) => Ok((relay, hyper)),
        Err(problem) => Err(report(&bytes, &problem, &relay, &hyper)),
    }
}

fn report(bytes: &[u8], problem: &str, relay: &Outcome, hyper: &Outcome) -> String {
    format!(
        "{problem}\n  input ({} bytes): b\"{}\"\n  relay: {}\n  hyper: {}",
        bytes.len(),
        bytes.escape_ascii(),
        relay.describe(),
        hyper.describe()
    )
}

fn parts(input: &Input) -> (Vec<Vec<u8>>, Vec<&'static str>, Vec<bool>) {
    (
        input.reqs.iter().map(Req::render).collect(),
        input.reqs.iter().map(|r| r.method).collect(),
        input.reqs.iter().map(Req::has_host).collect(),
    )
}

#[test]
fn generated_requests_fare_the_same_on_both_paths() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pair = runtime.block_on(pair());
    let config = ProptestConfig {
        cases: 48,
        max_shrink_iters: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&generate::input(), |input| {
        let (reqs, methods, hosts) = parts(&input);
        runtime
            .block_on(check(&pair, &reqs, &methods, &hosts))
            .map(drop)
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// What a named case must come to.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Both paths refuse it with a 4xx; no complete request reaches a backend.
    Refused,
    /// The relay refuses it (hyper may forward it: it is in a deliberately-stricter class).
    RelayRefuses,
    /// Both forward exactly one request whose body is these bytes, and nothing else.
    BodyOnly(&'static [u8]),
}

const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: proxy.test\r\n\r\n";

/// The request smuggling classics and other hostile framing, each with what it must come to.
fn named_cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    let post = |headers: &str, body: &[u8]| {
        let mut r =
            format!("POST /named HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: u1\r\n{headers}\r\n")
                .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let chunked = |body: &[u8]| post("Transfer-Encoding: chunked\r\n", body);
    let big_trailers: Vec<u8> = {
        let mut b = b"1\r\na\r\n0\r\n".to_vec();
        for i in 0..400 {
            b.extend_from_slice(format!("X-Trailer-{i}: {}\r\n", "t".repeat(40)).as_bytes());
        }
        b.extend_from_slice(b"\r\n");
        b
    };
    let mut smuggled_chunk = format!("{:x}\r\n", SMUGGLED.len()).into_bytes();
    smuggled_chunk.extend_from_slice(SMUGGLED);
    smuggled_chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    vec![
        (
            "CL.TE",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nG",
            ),
            Want::RelayRefuses,
        ),
        (
            "TE.CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                b"8\r\nSMUGGLED\r\n0\r\n\r\n",
            ),
            Want::RelayRefuses,
        ),
        (
            "TE: xchunked",
            post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
            Want::Refused,
        ),
        (
            "TE: chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
            Want::Refused,
        ),
        (
            "TE: chunked by obs-fold",
            post("Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
            Want::Refused,
        ),
        (
            "TE with a space before the colon",
            post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
            Want::Refused,
        ),
        (
            "TE: chunked then TE: x",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
                b"0\r\n\r\n",
            ),
            Want::Refused,
        ),
        (
            "two differing Content-Length",
            post("Content-Length: 6\r\nContent-Length: 7\r\n", b"abcdefg"),
            Want::Refused,
        ),
        (
            "Content-Length with a sign",
            post("Content-Length: +6\r\n", b"abcdef"),
            Want::Refused,
        ),
        (
            "Content-Length as a list",
            post("Content-Length: 6, 6\r\n", b"abcdef"),
            Want::Refused,
        ),
        (
            "chunk size overflow",
            chunked(b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
            Want::Refused,
        ),
        (
            "chunk size not hex",
            chunked(b"zz\r\nabc\r\n0\r\n\r\n"),
            Want::Refused,
        ),
        (
            "chunk data longer than its size",
            chunked(b"3\r\nabcdef\r\n0\r\n\r\n"),
            Want::Refused,
        ),
        (
            "bare LF in chunk lines",
            chunked(b"3\nabc\n0\n\n"),
            Want::Refused,
        ),
        (
            "trailers over 16 KiB",
            chunked(&big_trailers),
            Want::Refused,
        ),
        (
            "NUL in a header value",
            post("X-Bad: a\0b\r\nContent-Length: 0\r\n", b""),
            Want::Refused,
        ),
        (
            "a request in a Content-Length body",
            post(&format!("Content-Length: {}\r\n", SMUGGLED.len()), SMUGGLED),
            Want::BodyOnly(SMUGGLED),
        ),
        (
            "a request in a chunked body",
            chunked(&smuggled_chunk),
            Want::BodyOnly(SMUGGLED),
        ),
    ]
}

/// Whether `o` refused (a 4xx) with no complete request at the backend.
fn refused_cleanly(o: &Outcome) -> bool {
    o.rejected() && o.forwarded.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_classics_are_refused_or_carried_as_body() {
    let pair = pair().await;
    let mut failures = Vec::new();
    for (name, bytes, want) in named_cases() {
        let reqs = [bytes.clone()];
        let (relay, hyper) = match check(&pair, &reqs, &["POST"], &[true]).await {
            Ok(both) => both,
            Err(report) => {
                failures.push(format!("{name}: {report}"));
                continue;
            }
        };
        let problem = match want {
            Want::Refused if !refused_cleanly(&relay) || !refused_cleanly(&hyper) => {
                Some("both paths must refuse it with a 4xx, nothing reaching a backend")
            }
            Want::RelayRefuses if pair.relay_serving && !refused_cleanly(&relay) => {
                Some("the relay must refuse it with a 4xx, nothing reaching its backend")
            }
            Want::RelayRefuses if !stricter_or_refused(&bytes, &hyper) => {
                Some("hyper forwards it, yet it is in no deliberately-stricter class")
            }
            Want::BodyOnly(body)
                if [&relay, &hyper].iter().any(|o| {
                    o.forwarded.len() != 1 || o.forwarded[0].body != body || !o.broken.is_empty()
                }) =>
            {
                Some("both paths must forward exactly one request carrying these bytes as its body")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "{name}: {}",
                report(&bytes, problem, &relay, &hyper)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A relay-at-least row must be one hyper refuses or one in a stricter class.
fn stricter_or_refused(bytes: &[u8], hyper: &Outcome) -> bool {
    refused_cleanly(hyper) || !stricter::classes(bytes).is_empty()
}

#[test]
fn the_suite_switch_lands_in_the_proxy_table_once() {
    let text = "backends = []\n[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\n[proxy.x]\n";
    assert_eq!(
        with_proxy_key(text, "http1", "hyper"),
        "backends = []\n[proxy]\nhttp1 = \"hyper\"\nlisten = \"127.0.0.1:0\"\n[admin]\n[proxy.x]\n"
    );
    assert_eq!(
        with_proxy_key("[admin]\nlisten = \"x\"", "http1", "relay"),
        "[admin]\nlisten = \"x\"\n[proxy]\nhttp1 = \"relay\"\n"
    );
    let set = "[proxy]\n  http1 = \"relay\"\n";
    assert_eq!(with_proxy_key(set, "http1", "hyper"), set);
    assert_eq!(
        with_proxy_key("[ proxy ] # clients\n", "http1", "hyper"),
        "[ proxy ] # clients\nhttp1 = \"hyper\"\n"
    );
    // And the config it makes is one the proxy reads as asked.
    let text = "backends = []\n[proxy]\nlisten = \"127.0.0.1:0\"\n";
    let text = with_proxy_key(&with_proxy_key(text, "http1", "hyper"), "io", "epoll");
    let config = ringproxy::config::Config::parse(&text).unwrap();
    assert_eq!(config.proxy.http1, ringproxy::config::Http1::Hyper);
    assert_eq!(config.proxy.io, ringproxy::config::Io::Epoll);
}
