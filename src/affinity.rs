//! The affinity key: which part of a request decides its backend.
//!
//! Sources are tried in the configured order and the first one present wins. Only the key's
//! *value* is hashed, never its source, so user 42 sent as a header and user 42 sent as a
//! cookie land on the same backend.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use http::header::HeaderName;
use http::request::Parts;

use crate::affinity_template::{Headers, RequestView, Scheme, Template};

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
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        self.extract_view(&RequestView {
            target: target.as_bytes(),
            headers: &parts.headers,
            peer,
            scheme: Scheme::Http,
        })
    }

    /// [`AffinityConfig::extract`] over a view both server paths provide: hyper's parsed
    /// request and the relay's raw head give the same key for the same request.
    pub fn extract_view<'a>(&self, view: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        self.sources.iter().find_map(|s| s.extract(view))
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
    fn extract<'a>(&self, view: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let headers: &'a dyn Headers = view.headers;
        let value: Cow<'a, [u8]> = match self {
            Source::Header(name) => Cow::Borrowed(headers.first(name.as_str())?),
            Source::Cookie(name) => cookie_value(headers, name)?,
            Source::Query(name) => {
                let query = query(view.target)?;
                let (_, v) = form_urlencoded::parse(query).find(|(k, _)| k == name)?;
                match v {
                    Cow::Borrowed(s) => {
                        Cow::Borrowed(&query[offset_in(query, s.as_bytes())?..][..s.len()])
                    }
                    Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                }
            }
            Source::Path => Cow::Borrowed(path(view.target)),
            Source::SourceIp => Cow::Owned(view.peer.to_string().into_bytes()),
            Source::Uri => Cow::Borrowed(view.target),
            Source::Host => render(&HOST_TEMPLATE, view)?,
            Source::Template(t) => render(t, view)?,
        };
        (!value.is_empty()).then_some(value)
    }
}

/// The path of an origin-form target: up to the first `?`.
fn path(target: &[u8]) -> &[u8] {
    target
        .iter()
        .position(|&b| b == b'?')
        .map_or(target, |at| &target[..at])
}

/// The query of a target: after the first `?`.
fn query(target: &[u8]) -> Option<&[u8]> {
    let at = target.iter().position(|&b| b == b'?')?;
    Some(&target[at + 1..])
}

/// `$host`, parsed once.
static HOST_TEMPLATE: std::sync::LazyLock<Template> =
    std::sync::LazyLock::new(|| "$host".parse().expect("a valid template"));

/// Renders `template` over the request; `None` where nginx would hash nothing.
fn render(template: &Template, view: &RequestView<'_>) -> Option<Cow<'static, [u8]>> {
    // nginx's IPv4 listener sees an IPv4-mapped peer as IPv4.
    let peer = match view.peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(view.peer, IpAddr::V4),
        v4 => v4,
    };
    let view = RequestView { peer, ..*view };
    let mut out = Vec::new();
    template.render(&view, &mut out).then_some(Cow::Owned(out))
}

/// Where `inner` (a borrowed slice of `outer`) starts within `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

/// Visible ASCII or tab: what `HeaderValue::to_str` accepts.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The first cookie called `name` across all `Cookie` headers.
fn cookie_value<'a>(headers: &'a dyn Headers, name: &str) -> Option<Cow<'a, [u8]>> {
    let mut found = None;
    headers.values("cookie", &mut |header: &'a [u8]| {
        let Some(text) = visible_ascii(header) else {
            return false;
        };
        for c in cookie::Cookie::split_parse(text).flatten() {
            if c.name() == name {
                // RFC 6265 allows a value in double quotes; the key is what is inside.
                let value = c.value_trimmed().as_bytes();
                // Borrow from the header when the cookie crate handed back a slice of it.
                found = Some(match offset_in(header, value) {
                    Some(at) => Cow::Borrowed(&header[at..at + value.len()]),
                    None => Cow::Owned(value.to_vec()),
                });
                return true;
            }
        }
        false
    });
    found
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
