//! The affinity key: which part of a request decides its backend.
//!
//! Sources are tried in the configured order and the first one present wins. Only the key's
//! *value* is hashed, never its source, so user 42 sent as a header and user 42 sent as a
//! cookie land on the same backend.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use http::header::{HeaderName, COOKIE};
use http::request::Parts;

use crate::affinity_template::{RequestView, Scheme, Template};

/// One place an affinity key can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `header:NAME`: the header's value.
    Header(HeaderName),
    /// `cookie:NAME`: the cookie's value.
    Cookie(String),
    /// `query:NAME`: the query parameter's decoded value.
    Query(String),
    /// `path`: the request path.
    Path,
    /// `source_ip`: the client's IP address.
    SourceIp,
    /// `uri`: path and query exactly as sent (nginx's `$request_uri`).
    Uri,
    /// `host`: the host, lowercased, without port (nginx's `$host`).
    Host,
    /// `template:EXPR`: nginx variable syntax, e.g. `template:$host$request_uri`, rendering
    /// the bytes nginx would hash.
    Template(Box<Template>),
}

/// What to do with a request that carries none of the sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// Pick a uniformly random backend.
    Random,
    /// Answer 400, naming the sources tried.
    Reject,
}
/// The key rule: sources in order, and what to do when none is present.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityConfig {
    /// Tried in order; the first present wins.
    pub sources: Vec<Source>,
    /// What a request without a key gets.
    pub on_missing: OnMissing,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Header(n) => write!(f, "header:{n}"),
            Source::Cookie(n) => write!(f, "cookie:{n}"),
            Source::Query(n) => write!(f, "query:{n}"),
            Source::Path => f.write_str("path"),
            Source::SourceIp => f.write_str("source_ip"),
            Source::Uri => f.write_str("uri"),
            Source::Host => f.write_str("host"),
            Source::Template(t) => write!(f, "template:{t}"),
        }
    }
}

impl AffinityConfig {
    /// The affinity key of a request, from the first source present. Empty values count as
    /// absent: an empty key would pin every such request to one backend.
    pub fn extract<'a>(&self, parts: &'a Parts, peer: IpAddr) -> Option<Cow<'a, [u8]>> {
        self.sources.iter().find_map(|s| s.extract(parts, peer))
    }

    /// The tried sources, for the 400 body of `on_missing = "reject"`.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .sources
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        names.join(", ")
    }
}

impl Source {
    fn extract<'a>(&self, parts: &'a Parts, peer: IpAddr) -> Option<Cow<'a, [u8]>> {
        let value: Cow<'a, [u8]> = match self {
            Source::Header(name) => Cow::Borrowed(parts.headers.get(name)?.as_bytes()),
            Source::Cookie(name) => cookie_value(parts, name)?,
            Source::Query(name) => {
                let query = parts.uri.query()?;
                let (_, v) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name)?;
                match v {
                    Cow::Borrowed(s) => {
                        Cow::Borrowed(&query.as_bytes()[offset_in(query, s)?..][..s.len()])
                    }
                    Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                }
            }
            Source::Path => Cow::Borrowed(parts.uri.path().as_bytes()),
            Source::SourceIp => Cow::Owned(peer.to_string().into_bytes()),
            Source::Uri => Cow::Borrowed(parts.uri.path_and_query()?.as_str().as_bytes()),
            Source::Host => render(&HOST_TEMPLATE, parts, peer)?,
            Source::Template(t) => render(t, parts, peer)?,
        };
        (!value.is_empty()).then_some(value)
    }
}

/// `$host`, parsed once.
static HOST_TEMPLATE: std::sync::LazyLock<Template> =
    std::sync::LazyLock::new(|| "$host".parse().expect("a valid template"));

/// Renders `template` over the request; `None` where nginx would hash nothing.
fn render(template: &Template, parts: &Parts, peer: IpAddr) -> Option<Cow<'static, [u8]>> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    let view = RequestView {
        target: target.as_bytes(),
        headers: &parts.headers,
        peer,
        scheme: Scheme::Http,
    };
    let mut out = Vec::new();
    template.render(&view, &mut out).then_some(Cow::Owned(out))
}

/// Where `inner` (a borrowed slice of `outer`) starts within `outer`.
fn offset_in(outer: &str, inner: &str) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

/// The first cookie called `name` across all `Cookie` headers.
fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<Cow<'a, [u8]>> {
    for header in parts.headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for c in cookie::Cookie::split_parse(text).flatten() {
            if c.name() == name {
                // RFC 6265 allows a value in double quotes; the key is what is inside.
                let value = c.value_trimmed();
                // Borrow from the header when the cookie crate handed back a slice of it.
                return Some(match offset_in(text, value) {
                    Some(at) => Cow::Borrowed(&header.as_bytes()[at..at + value.len()]),
                    None => Cow::Owned(value.as_bytes().to_vec()),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn config(keys: &[&str]) -> AffinityConfig {
        AffinityConfig {
            sources: keys.iter().map(|k| k.parse().unwrap()).collect(),
            on_missing: OnMissing::Reject,
        }
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

    fn key(c: &AffinityConfig, p: &Parts) -> Option<String> {
        c.extract(p, PEER)
            .map(|k| String::from_utf8(k.into_owned()).unwrap())
    }

    #[test]
    fn first_present_source_wins() {
        let c = config(&[
            "header:x-user-id",
            "cookie:session",
            "query:uid",
            "path",
            "source_ip",
        ]);
        let p = parts(
            "/a?uid=q",
            &[("cookie", "a=b; session=c"), ("x-user-id", "h")],
        );
        assert_eq!(key(&c, &p).as_deref(), Some("h"));
        let p = parts("/a?uid=q", &[("cookie", "a=b; session=c")]);
        assert_eq!(key(&c, &p).as_deref(), Some("c"));
        let p = parts("/a?x=1&uid=q%20r", &[]);
        assert_eq!(key(&c, &p).as_deref(), Some("q r"));
        let p = parts("/some/path", &[]);
        assert_eq!(key(&c, &p).as_deref(), Some("/some/path"));
        let c = config(&["header:x-user-id", "source_ip"]);
        assert_eq!(key(&c, &parts("/", &[])).as_deref(), Some("10.1.2.3"));
    }

    #[test]
    fn empty_values_count_as_absent() {
        let c = config(&["header:x-user-id", "query:uid"]);
        let p = parts("/?uid=", &[("x-user-id", "")]);
        assert_eq!(key(&c, &p), None);
    }

    #[test]
    fn quoted_cookie_values_are_unquoted() {
        let c = config(&["cookie:session"]);
        let p = parts("/", &[("cookie", "session=\"user-77\"")]);
        assert_eq!(key(&c, &p).as_deref(), Some("user-77"));
    }

    #[test]
    fn cookies_across_several_headers() {
        let c = config(&["cookie:session"]);
        let p = parts("/", &[("cookie", "a=1"), ("cookie", "b=2; session=s3")]);
        assert_eq!(key(&c, &p).as_deref(), Some("s3"));
    }
}
