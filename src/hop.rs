//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not the message, so a
//! proxy removes them before forwarding in either direction. That is `Connection`, every header
//! `Connection` names, and the well-known ones below even when `Connection` does not list them.

use http::header::{
    HeaderMap, HeaderName, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Always hop-by-hop, whether `Connection` lists them or not.
const FIXED: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Removes the hop-by-hop headers from `headers`.
///
/// Runs twice per proxied request, so it reads the names once and removes only what is there:
/// most messages carry no hop-by-hop header or just `Connection`.
pub fn strip(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = FIXED.iter().position(|f| f == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Headers named by Connection first: the names must be read before Connection goes. Each
    // value is cloned out (a reference count, no copy) so the map can be changed meanwhile.
    let mut i = 0;
    while let Some(value) = headers.get_all(CONNECTION).iter().nth(i).cloned() {
        for name in value.to_str().unwrap_or("").split(',') {
            // Looking up by &str neither allocates nor fails on an invalid name.
            headers.remove(name.trim());
        }
        i += 1;
    }
    for (i, name) in FIXED.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-private"),
            ("connection", "X-Other"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("x-private", "1"),
            ("x-other", "2"),
            ("x-user-id", "42"),
            ("content-length", "3"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(http::HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["content-length", "x-user-id"]);
    }

    #[test]
    fn leaves_end_to_end_headers_alone_and_survives_odd_connection_values() {
        let mut h = HeaderMap::new();
        h.append("x-user-id", "42".parse().unwrap());
        h.append("content-type", "text/plain".parse().unwrap());
        let before = h.clone();
        strip(&mut h);
        assert_eq!(h, before);

        for value in ["connection, x-a", "bad name, ,,x-a", "\u{7f}"] {
            let mut h = before.clone();
            h.append("x-a", "1".parse().unwrap());
            if let Ok(v) = value.parse() {
                h.append("connection", v);
            }
            strip(&mut h);
            assert!(!h.contains_key("connection"), "{value}");
            assert_eq!(h.get("x-user-id").unwrap(), "42", "{value}");
        }
    }
}
