//! Unit tests of `rewrite.rs`: exact bytes written, hop-by-hop and `Connection`-named
//! removal, `X-Forwarded-*`, `Host`, and the written heads read back by the parsers and
//! compared with what the hyper path forwards.

use std::net::IpAddr;

use super::*;
use crate::forwarded::PeerText;
use crate::http1::{parse_request, parse_response, Framing, MAX_HEADERS};

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

fn request(text: &str, peer: IpAddr) -> String {
    let head = parse_request(text.as_bytes(), 16 * 1024).unwrap();
    let mut out = b"kept|".to_vec();
    let peer = PeerText::new(peer);
    request_head(
        text.as_bytes(),
        &head,
        peer.as_bytes(),
        b"backend:80",
        &mut out,
    );
    let out = String::from_utf8(out).unwrap();
    out.strip_prefix("kept|").unwrap().to_owned()
}

fn response(text: &str, extra: &[(&[u8], &[u8])], close: bool) -> String {
    let head = parse_response(text.as_bytes(), 16 * 1024, false).unwrap();
    let mut out = Vec::new();
    response_head(text.as_bytes(), &head, extra, close, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn request_lines_go_on_as_received() {
    let text = "GET /a?b=c HTTP/1.0\r\nHost: x\r\nX-A:  1 \r\nX-Empty:\r\nAccept: */*\r\n\r\nbody";
    assert_eq!(
        request(text, PEER),
        "GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A:  1\r\nX-Empty:\r\nAccept: */*\r\n\
         x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
    let text = "\r\nPOST /p HTTP/1.1\r\nhost: y\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(
        request(text, PEER),
        "POST /p HTTP/1.1\r\nhost: y\r\nContent-Length: 3\r\n\
         x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn hop_by_hop_lines_go_and_connection_named_ones_too() {
    let text = "GET / HTTP/1.1\r\nHost: x\r\nX-Foo: 1\r\nkeep-alive: timeout=5\r\n\
                Connection: close, x-foo\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\
                Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n\
                Proxy-Authenticate: Basic\r\nconnection: X-BAR\r\nx-bar: 2\r\nX-Baz: 3\r\n\r\n";
    assert_eq!(
        request(text, PEER),
        "GET / HTTP/1.1\r\nHost: x\r\nX-Baz: 3\r\n\
         x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn connection_cannot_take_off_the_framing_headers() {
    let text = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
                Connection: content-length, Transfer-Encoding, x-a\r\nX-A: 1\r\n\r\n";
    assert_eq!(
        request(text, PEER),
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
         x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
    let text = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                Connection: transfer-encoding\r\n\r\n";
    assert!(request(text, PEER).contains("\r\nTransfer-Encoding: chunked\r\n"));
    let text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Content-Length\r\n\r\n";
    assert_eq!(
        response(text, &[], false),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    );
}

#[test]
fn forwarded_for_appends_the_peer_to_earlier_values() {
    let text = "GET / HTTP/1.1\r\nX-Forwarded-For:  1.1.1.1 \r\nHost: x\r\n\
                x-forwarded-for:\r\nX-Forwarded-Proto: https\r\n\
                X-FORWARDED-FOR: 2.2.2.2, 3.3.3.3\r\n\r\n";
    assert_eq!(
        request(text, PEER),
        "GET / HTTP/1.1\r\nHost: x\r\n\
         x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1\r\n\
         x-forwarded-proto: http\r\n\r\n"
    );
    // Named by Connection, earlier values are hop-by-hop: only the peer is left.
    let text = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\n\
                Connection: x-forwarded-for\r\n\r\n";
    assert!(request(text, PEER).contains("\r\nx-forwarded-for: 10.0.0.1\r\n"));
}

#[test]
fn ipv6_peers_and_ipv4_mapped_ones() {
    let text = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert!(request(text, v6).contains("\r\nx-forwarded-for: 2001:db8::1\r\n"));
    let mapped: IpAddr = "::ffff:192.168.0.9".parse().unwrap();
    assert!(request(text, mapped).contains("\r\nx-forwarded-for: 192.168.0.9\r\n"));
}

#[test]
fn host_is_added_first_only_when_absent() {
    assert_eq!(
        request("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", PEER),
        "GET / HTTP/1.1\r\nhost: backend:80\r\nAccept: */*\r\n\
         x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
    assert!(request("GET / HTTP/1.0\r\n\r\n", PEER)
        .starts_with("GET / HTTP/1.1\r\nhost: backend:80\r\nx-forwarded-for"));
    let kept = request("GET / HTTP/1.1\r\nAccept: */*\r\nHOST:\r\n\r\n", PEER);
    assert!(!kept.contains("backend:80"), "{kept}");
    assert!(kept.contains("\r\nHOST:\r\n"), "{kept}");
    // A Host named by Connection is gone, so the default takes its place.
    let named = request(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n",
        PEER,
    );
    assert!(named.starts_with("GET / HTTP/1.1\r\nhost: backend:80\r\nx-forwarded-for"));
}

#[test]
fn the_last_of_many_lines_can_be_named() {
    let mut text = String::from("GET / HTTP/1.1\r\nConnection: x-last\r\n");
    for i in 0..MAX_HEADERS - 2 {
        text.push_str(&format!("X-{i}: {i}\r\n"));
    }
    text.push_str("X-Last: 1\r\n\r\n");
    let out = request(&text, PEER);
    assert!(out.contains(&format!(
        "\r\nX-{}: {}\r\n",
        MAX_HEADERS - 3,
        MAX_HEADERS - 3
    )));
    assert!(!out.contains("X-Last"));
}

#[test]
fn one_reserve_covers_the_longest_additions() {
    let text = "GET / HTTP/1.0\r\nX-Forwarded-For: 1\r\nX-Forwarded-For: 2\r\n\r\n";
    let head = parse_request(text.as_bytes(), 1024).unwrap();
    let peer: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
    let mut out = Vec::new();
    let peer = PeerText::new(peer);
    request_head(text.as_bytes(), &head, peer.as_bytes(), b"h", &mut out);
    assert!(out.len() <= head.len + 1 + peer.as_bytes().len() + REQUEST_GROWTH);

    let text = "HTTP/1.1 200\r\nX: 1\r\n\r\n";
    let head = parse_response(text.as_bytes(), 1024, false).unwrap();
    let extra: &[(&[u8], &[u8])] = &[(b"x-ringproxy-backend", b"cache-1")];
    let mut out = Vec::new();
    response_head(text.as_bytes(), &head, extra, true, &mut out);
    assert!(out.len() <= head.len + 19 + 7 + 4 + RESPONSE_GROWTH);
}

/// What `parse_request` reads back: framing and every header, as (lowercase name, value).
fn read_back(text: &[u8]) -> (Framing, Vec<(String, String)>) {
    let head = parse_request(text, 16 * 1024).unwrap();
    let s = |r: &Range<usize>| String::from_utf8_lossy(&text[r.clone()]).into_owned();
    let headers = head
        .headers
        .iter()
        .map(|(n, v)| (s(n).to_ascii_lowercase(), s(v)))
        .collect();
    (head.framing, headers)
}

#[test]
fn the_written_head_parses_back_with_the_same_framing() {
    for (text, expected) in [
        (
            "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: keep-alive, x-p\r\n\
             X-P: 1\r\nX-Q: 2\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n",
            &[
                ("host", "a"),
                ("content-length", "5"),
                ("x-q", "2"),
                ("x-forwarded-for", "9.9.9.9, 10.0.0.1"),
                ("x-forwarded-proto", "http"),
            ][..],
        ),
        (
            "PUT /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nTE: trailers\r\n\
             Host: b\r\nUpgrade: h2c\r\n\r\n",
            &[
                ("transfer-encoding", "gzip, chunked"),
                ("host", "b"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "http"),
            ][..],
        ),
        (
            "GET / HTTP/1.0\r\nConnection: close\r\n\r\n",
            &[
                ("host", "backend:80"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "http"),
            ][..],
        ),
    ] {
        let (framing, _) = read_back(text.as_bytes());
        let written = request(text, PEER);
        let (framing_again, headers) = read_back(written.as_bytes());
        assert_eq!(framing_again, framing, "{text:?}");
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(headers, expected, "{text:?}");
    }
}

/// The hyper path's rewrite of the same request: `hop::strip` then `forwarded::add`,
/// as sorted (name, value) pairs. `Transfer-Encoding` is left out: hyper takes it off and
/// frames the body itself, where the relay keeps it and the bytes as they came.
fn hyper_path(text: &str) -> Vec<(String, String)> {
    use http::{HeaderMap, HeaderName, HeaderValue};
    let head = parse_request(text.as_bytes(), 16 * 1024).unwrap();
    let mut map = HeaderMap::new();
    for (n, v) in &head.headers {
        map.append(
            HeaderName::from_bytes(&text.as_bytes()[n.clone()]).unwrap(),
            HeaderValue::from_bytes(&text.as_bytes()[v.clone()]).unwrap(),
        );
    }
    crate::hop::strip(&mut map);
    crate::forwarded::add(&mut map, std::net::SocketAddr::new(PEER, 1234));
    sorted(
        map.iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned())),
    )
}

fn sorted(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs.filter(|(n, _)| n != "transfer-encoding").collect();
    v.sort();
    v
}

#[test]
fn means_what_the_hyper_path_forwards() {
    for text in [
        "GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nX-A: 1\r\n\
         X-Forwarded-For: , 2.2.2.2 \r\nX-Forwarded-Proto: https\r\nX-A: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: x-a, close\r\nX-A: 1\r\nX-B: 2\r\n\
         Keep-Alive: 5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: close\r\n\
         Proxy-Authorization: x\r\nTrailer: y\r\nConnection: X-B\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: x-c\r\n\
         x-c: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\n\
         Connection: X-Forwarded-For\r\n\r\n",
    ] {
        let written = request(text, PEER);
        let (_, relay) = read_back(written.as_bytes());
        assert_eq!(sorted(relay.into_iter()), hyper_path(text), "{text:?}");
    }
}

#[test]
fn response_status_line_and_lines() {
    let text = "HTTP/1.0 404 Not  Found\r\nContent-Length: 3\r\nX-Cache: hit\r\n\
                Keep-Alive: timeout=5\r\nConnection: keep-alive, x-cache\r\n\r\nabc";
    assert_eq!(
        response(text, &[], false),
        "HTTP/1.1 404 Not  Found\r\nContent-Length: 3\r\n\r\n"
    );
    let text = "HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nETag: \"v1\"\r\n\r\n";
    assert_eq!(
        response(text, &[(b"x-ringproxy-backend", b"cache-1")], true),
        "HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\nETag: \"v1\"\r\n\
         x-ringproxy-backend: cache-1\r\nconnection: close\r\n\r\n"
    );
    // Response headers the request side rewrites are ordinary here.
    let text = "HTTP/1.1 204 No Content\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
    assert_eq!(
        response(text, &[], false),
        "HTTP/1.1 204 No Content\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n"
    );
}

#[test]
fn the_written_response_parses_back() {
    let text = b"HTTP/1.1 503 Gr\xfc\xdfe\r\nContent-Length: 4\r\nConnection: x-a\r\nX-A: 1\r\n\
                 Retry-After: 5\r\n\r\n";
    let head = parse_response(text, 1024, false).unwrap();
    let mut out = Vec::new();
    response_head(text, &head, &[], false, &mut out);
    let again = parse_response(&out, 1024, false).unwrap();
    assert_eq!(out.len(), again.len);
    assert_eq!((again.status, again.framing), (503, Framing::Length(4)));
    assert_eq!(&out[again.reason.clone()], b"Gr\xfc\xdfe");
    let names: Vec<&[u8]> = again.headers.iter().map(|(n, _)| &out[n.clone()]).collect();
    assert_eq!(names, [&b"Content-Length"[..], b"Retry-After"]);
}

#[test]
fn status_codes_in_decimal() {
    let mut buf = [0u8; 5];
    for n in [0u16, 7, 100, 204, 999, 1000, u16::MAX] {
        assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
    }
}
