//! Affinity keys from arbitrary request heads.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Uri};
use ringproxy::affinity::{AffinityConfig, Source};
use ringproxy::config::Config;

/// The source lists tried on every head: each kind alone, then the reference config's order.
const KEYS: &[&str] = &[
    r#"["header:x-user-id"]"#,
    r#"["cookie:session"]"#,
    r#"["query:uid"]"#,
    r#"["path"]"#,
    r#"["source_ip"]"#,
    r#"["header:x-user-id", "cookie:session", "query:uid", "path", "source_ip"]"#,
    r#"["query:a b", "cookie:sid", "header:cookie"]"#,
];

const PEERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

/// Each list in [`KEYS`], validated by the config parser as an operator's would be.
fn configs() -> &'static [AffinityConfig] {
    static CONFIGS: OnceLock<Vec<AffinityConfig>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        KEYS.iter()
            .map(|key| {
                let text = format!(
                    "[affinity]\nkey = {key}\n[[backends]]\nid = \"a\"\naddress = \"127.0.0.1:9001\"\n"
                );
                Config::parse(&text)
                    .unwrap_or_else(|e| panic!("affinity key {key}: {e}"))
                    .affinity
            })
            .collect()
    })
}

/// Parses `data` as a request head the way hyper's HTTP/1 server does (httparse, then `Method`,
/// `Uri` and header values checked), and checks the key every source list extracts.
pub fn affinity(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let Some(parts) = parts(&req) else {
        return;
    };
    for config in configs() {
        for peer in PEERS {
            let key = config.extract(&parts, peer);
            if let Some(k) = &key {
                assert!(!k.is_empty(), "an empty key from {config:?}");
            }
            // The first source present wins: the list's key is the first single source's key.
            let first = config
                .sources
                .iter()
                .find_map(|s| expected(s, &parts, peer));
            assert_eq!(key.as_deref(), first.as_deref(), "{config:?} on {parts:?}");
        }
    }
}

/// What one source should give, read independently of the library (cookies: the library's
/// answer, as the cookie rules are not restated here).
fn expected<'a>(source: &Source, parts: &'a Parts, peer: IpAddr) -> Option<Cow<'a, [u8]>> {
    let single = AffinityConfig {
        sources: vec![source.clone()],
        on_missing: ringproxy::affinity::OnMissing::Random,
    };
    let value: Cow<'a, [u8]> = match source {
        Source::Header(name) => Cow::Borrowed(parts.headers.get(name)?.as_bytes()),
        // Cookies, and the nginx-style sources (uri, host, templates) whose rules live in the
        // template module: the library's answer, checked for not panicking and not empty.
        Source::Cookie(_) | Source::Uri | Source::Host | Source::Template(_) => {
            return single
                .extract(parts, peer)
                .map(|k| Cow::Owned(k.into_owned()))
        }
        Source::Query(name) => {
            let query = parts.uri.query()?;
            let (_, v) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name)?;
            Cow::Owned(v.into_owned().into_bytes())
        }
        Source::Path => Cow::Borrowed(parts.uri.path().as_bytes()),
        Source::SourceIp => Cow::Owned(peer.to_string().into_bytes()),
    };
    (!value.is_empty()).then_some(value)
}

/// The request's `Parts`, or `None` where hyper would refuse the head.
fn parts(req: &httparse::Request<'_, '_>) -> Option<Parts> {
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri = Uri::try_from(req.path?).ok()?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        builder = builder.header(name, value);
    }
    Some(builder.body(()).ok()?.into_parts().0)
}
