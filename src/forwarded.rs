//! `X-Forwarded-For` and `X-Forwarded-Proto`: what the proxy adds to a request so the backend
//! knows the client it came from. The counterpart of [`crate::hop`], which removes what
//! belongs to one connection.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Adds the client `peer` to `X-Forwarded-For` and sets `X-Forwarded-Proto: http`.
pub fn add(headers: &mut HeaderMap, peer: SocketAddr) {
    append_forwarded_for(headers, peer);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// Appends the peer to `X-Forwarded-For`, keeping what earlier proxies wrote.
fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let mut buf = [0u8; 48];
    let ip = format_ip(peer.ip().to_canonical(), &mut buf);

    let mut value = Vec::new();
    for prior in &headers.get_all(X_FORWARDED_FOR) {
        let prior = prior.as_bytes().trim_ascii();
        if !prior.is_empty() {
            value.extend_from_slice(prior);
            value.extend_from_slice(b", ");
        }
    }
    let value = if value.is_empty() {
        HeaderValue::from_bytes(ip)
    } else {
        value.extend_from_slice(ip);
        HeaderValue::from_bytes(&value)
    };
    if let Ok(v) = value {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// A client address as `X-Forwarded-For` carries it, formatted once for a connection's
/// requests.
pub(crate) struct PeerText {
    buf: [u8; 48],
    len: u8,
}

impl PeerText {
    pub(crate) fn new(ip: IpAddr) -> PeerText {
        let mut buf = [0u8; 48];
        // At most 45 bytes (the longest IPv6 text).
        let len = format_ip(ip.to_canonical(), &mut buf).len() as u8;
        PeerText { buf, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Writes `ip` into `buf` and returns the text. IPv4 is formatted by hand: `Display` through
/// `core::fmt` cost about 1,000 instructions per request, more than the rest of the rewrite.
pub(crate) fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            &buf[..n]
        }
        IpAddr::V6(v6) => {
            let mut cursor = &mut buf[..];
            // At most 45 bytes ("ffff:...:255.255.255.255"), so this cannot run out of room.
            let _ = write!(cursor, "{v6}");
            let unused = cursor.len();
            &buf[..48 - unused]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_addresses_like_display() {
        let cases = [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.99.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for text in cases {
            let ip: IpAddr = text.parse().unwrap();
            let mut buf = [0u8; 48];
            assert_eq!(format_ip(ip, &mut buf), ip.to_string().as_bytes(), "{text}");
        }
    }

    #[test]
    fn forwarded_for_appends_to_what_earlier_proxies_wrote() {
        let peer: SocketAddr = "[::ffff:10.0.0.7]:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, peer);
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.7");

        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(" 1.1.1.1 "));
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("2.2.2.2, 3.3.3.3"),
        );
        append_forwarded_for(&mut h, "127.0.0.1:1".parse().unwrap());
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1");
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
    }
}
