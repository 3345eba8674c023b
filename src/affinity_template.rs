//! Affinity keys written as nginx writes them: a template in nginx's variable syntax, such as
//! `$host$request_uri` or `$scheme://$host$uri`, that renders to exactly the bytes nginx's
//! `hash <template> consistent` hashes for the same request. With the nginx-compatible ring
//! this is what lets a fleet move from nginx to ringproxy without moving a key.
//!
//! Syntax (nginx's `ngx_http_script_compile`, `src/http/ngx_http_script.c`): `$name` takes the
//! longest run of letters, digits and `_`; `${name}` delimits a name inside text; everything
//! else is literal. Names are case-insensitive. `$1`…`$9` (regex captures) and variables not
//! listed below are errors that name the variable.
//!
//! The variables, with nginx's semantics (defaults: `merge_slashes on`,
//! `ignore_invalid_headers on`, `underscores_in_headers off`):
//!
//! | variable | value |
//! |---|---|
//! | `$request_uri` | the target as sent, from the path on (no scheme or authority), undecoded |
//! | `$uri`, `$document_uri` | the path: `%XX` decoded, `//` merged, `.`/`..` resolved |
//! | `$args`, `$query_string` | after the first `?`, up to a `#`, undecoded |
//! | `$is_args` | `?` if `$args` is not empty, else empty |
//! | `$host` | the absolute-form target's host, else the `Host` header; port cut, one trailing dot dropped, lowercased. Neither: nginx takes the `server_name`, we render empty |
//! | `$http_NAME` | every header named NAME (`_` matching `-`), values joined by `, ` (`; ` for `Cookie`); nginx 1.22 took only the first |
//! | `$cookie_NAME` | the raw value of cookie NAME in the `Cookie` headers (name case-insensitive) |
//! | `$arg_NAME` | the raw (undecoded) value of query argument NAME (name case-insensitive) |
//! | `$remote_addr` | the peer's IP as nginx prints it |
//! | `$scheme` | `http` or `https` |
//!
//! A variable that is absent renders as nothing and the rest of the template still renders
//! (`$host$request_uri` without a host is just the URI). When the whole key comes out empty,
//! nginx does not hash at all: it falls back to round robin (`hp->key.len == 0` in
//! `ngx_http_upstream_get_chash_peer`); [`Template::render`] then answers `false` so the
//! caller can treat the key as missing. It also answers `false` where a variable the template
//! uses comes from a request nginx would refuse with 400 (a `..` above the root, a bad `%`
//! escape, an invalid or duplicate `Host`), since nginx would not route it at all.
//!
//! `$uri` here is the request's own path; nginx's `$uri` can change through `rewrite`,
//! `try_files` or `index` before the upstream is picked, which a template cannot know.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

mod request;
#[cfg(test)]
mod tests;

/// A parsed key template; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Var(Var),
}

/// One supported nginx variable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    RequestUri,
    Uri,
    Args,
    IsArgs,
    Host,
    /// Lowercase, `_` standing for `-`.
    Http(Vec<u8>),
    /// Lowercase.
    Cookie(Vec<u8>),
    /// Lowercase.
    Arg(Vec<u8>),
    RemoteAddr,
    Scheme,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Nothing to render.
    #[error("the key template is empty")]
    Empty,
    /// A `$` without a name after it.
    #[error("a \"$\" at byte {0} is not followed by a variable name")]
    InvalidName(usize),
    /// `${name` without `}`.
    #[error("the closing bracket in \"${{{0}\" is missing")]
    MissingBracket(String),
    /// `$1`: regex captures.
    #[error("${0}: regex captures are not supported")]
    Capture(char),
    #[error(
        "${0}: unsupported variable; use $request_uri, $uri, $args, $is_args, $host, $http_NAME, \
         $cookie_NAME, $arg_NAME, $remote_addr or $scheme"
    )]
    /// A variable this translation does not know.
    Unsupported(String),
    /// `$http_` and the like without the name.
    #[error("${0}: needs a name after the prefix, e.g. ${0}name")]
    MissingName(String),
}

/// The request as seen when picking a backend: the parts nginx's variables come from.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The request target exactly as sent on the request line (origin-form `/p?q` or
    /// absolute-form `http://host/p?q`).
    pub target: &'a [u8],
    /// The request headers in the order received.
    pub headers: &'a dyn Headers,
    /// The client's address (an IPv4-mapped IPv6 peer should be passed as IPv4, as nginx's
    /// IPv4 listener would see it).
    pub peer: IpAddr,
    /// How the client reached the proxy.
    pub scheme: Scheme,
}

/// The scheme the client used to reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// TLS.
    Https,
}

/// Request headers, visited in the order received (only the relative order of same-named
/// headers matters).
pub trait Headers {
    /// Calls `f(name, value)` for each header line.
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8]));

    /// Calls `f` with the value of each header called `name` (lowercase), in order, until it
    /// answers `true`.
    fn values<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8]) -> bool);
}

impl dyn Headers + '_ {
    /// The value of the first header called `name` (lowercase).
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        let mut found = None;
        self.values(name, &mut |v| {
            found = Some(v);
            true
        });
        found
    }
}

impl Headers for http::HeaderMap {
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (name, value) in self {
            f(name.as_str().as_bytes(), value.as_bytes());
        }
    }

    fn values<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8]) -> bool) {
        for value in self.get_all(name) {
            if f(value.as_bytes()) {
                return;
            }
        }
    }
}

/// (name, value) pairs, e.g. collected from a zero-copy parser's header array.
impl Headers for &[(&[u8], &[u8])] {
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (name, value) in *self {
            f(name, value);
        }
    }

    fn values<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8]) -> bool) {
        for (n, value) in *self {
            if n.eq_ignore_ascii_case(name.as_bytes()) && f(value) {
                return;
            }
        }
    }
}

impl Headers for Vec<(&[u8], &[u8])> {
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        self.as_slice().each(f);
    }

    fn values<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8]) -> bool) {
        for (n, value) in self {
            if n.eq_ignore_ascii_case(name.as_bytes()) && f(value) {
                return;
            }
        }
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Template, TemplateError> {
        if s.is_empty() {
            return Err(TemplateError::Empty);
        }
        let b = s.as_bytes();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'$')
                    .map_or(b.len(), |n| i + n);
                parts.push(Part::Literal(b[i..end].to_vec()));
                i = end;
                continue;
            }
            let dollar = i;
            i += 1;
            match b.get(i) {
                None => return Err(TemplateError::InvalidName(dollar)),
                Some(c @ b'1'..=b'9') => return Err(TemplateError::Capture(*c as char)),
                _ => {}
            }
            let bracket = b[i] == b'{';
            if bracket {
                i += 1;
            }
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let name = &s[start..i];
            if bracket {
                if b.get(i) != Some(&b'}') {
                    return Err(TemplateError::MissingBracket(name.to_string()));
                }
                i += 1;
            }
            if name.is_empty() {
                return Err(TemplateError::InvalidName(dollar));
            }
            parts.push(Part::Var(Var::parse(name)?));
        }
        Ok(Template {
            source: s.to_string(),
            parts,
        })
    }
}

impl Var {
    fn parse(name: &str) -> Result<Var, TemplateError> {
        let lower = name.to_ascii_lowercase();
        let prefixed = |prefix: &str, make: fn(Vec<u8>) -> Var| {
            lower.strip_prefix(prefix).map(|rest| {
                if rest.is_empty() {
                    Err(TemplateError::MissingName(lower.clone()))
                } else {
                    Ok(make(rest.as_bytes().to_vec()))
                }
            })
        };
        if let Some(v) = prefixed("http_", Var::Http)
            .or_else(|| prefixed("cookie_", Var::Cookie))
            .or_else(|| prefixed("arg_", Var::Arg))
        {
            return v;
        }
        Ok(match lower.as_str() {
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "host" => Var::Host,
            "remote_addr" => Var::RemoteAddr,
            "scheme" => Var::Scheme,
            _ => return Err(TemplateError::Unsupported(name.to_string())),
        })
    }
}

impl fmt::Display for Template {
    /// The template as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Template {
    /// Renders the key nginx would hash for `view` into `out` (cleared first). `false` when
    /// nginx would hash nothing: the key is empty (nginx then balances round robin), or a
    /// variable used comes from a request nginx refuses with 400 (see the module docs).
    pub fn render(&self, view: &RequestView<'_>, out: &mut Vec<u8>) -> bool {
        out.clear();
        let Some(target) = request::parse_target(view.target) else {
            return false;
        };
        // Computed once, only if a variable needs it.
        let mut normalized: Option<(Vec<u8>, &[u8])> = None;
        for part in &self.parts {
            let ok = match part {
                Part::Literal(text) => {
                    out.extend_from_slice(text);
                    true
                }
                Part::Var(var) => render_var(var, view, &target, &mut normalized, out),
            };
            if !ok {
                out.clear();
                return false;
            }
        }
        !out.is_empty()
    }
}

/// Appends one variable; `false` if nginx would refuse the request it comes from.
fn render_var<'t>(
    var: &Var,
    view: &RequestView<'_>,
    target: &request::Target<'t>,
    normalized: &mut Option<(Vec<u8>, &'t [u8])>,
    out: &mut Vec<u8>,
) -> bool {
    let needs_uri = matches!(var, Var::Uri | Var::Args | Var::IsArgs | Var::Arg(_));
    if needs_uri && normalized.is_none() {
        match request::normalize(target.uri, target.empty_path) {
            Some(n) => *normalized = Some(n),
            None => return false,
        }
    }
    let args = normalized.as_ref().map_or(&b""[..], |n| n.1);
    match var {
        Var::RequestUri => out.extend_from_slice(target.uri),
        Var::Uri => out.extend_from_slice(normalized.as_ref().map_or(&b""[..], |n| &n.0)),
        Var::Args => out.extend_from_slice(args),
        Var::IsArgs => {
            if !args.is_empty() {
                out.push(b'?');
            }
        }
        Var::Arg(name) => {
            if let Some(v) = request::arg(args, name) {
                out.extend_from_slice(v);
            }
        }
        Var::Host => return host(view, target, out),
        Var::Http(name) => {
            let sep: &[u8] = if name == b"cookie" { b"; " } else { b", " };
            let mut first = true;
            view.headers.each(&mut |n, v| {
                if request::valid_header_name(n) && request::header_matches(n, name) {
                    if !first {
                        out.extend_from_slice(sep);
                    }
                    out.extend_from_slice(v);
                    first = false;
                }
            });
        }
        Var::Cookie(name) => {
            let mut found: Option<Vec<u8>> = None;
            view.headers.each(&mut |n, v| {
                if found.is_none() && n.eq_ignore_ascii_case(b"cookie") {
                    found = request::cookie(v, name).map(<[u8]>::to_vec);
                }
            });
            if let Some(v) = found {
                out.extend_from_slice(&v);
            }
        }
        Var::RemoteAddr => request::remote_addr(view.peer, out),
        Var::Scheme => out.extend_from_slice(match view.scheme {
            Scheme::Http => b"http",
            Scheme::Https => b"https",
        }),
    }
    true
}

/// `$host`: the absolute-form host, else the `Host` header, validated as nginx does. nginx
/// validates a `Host` header (and refuses a second one) even when the target carries a host.
fn host(view: &RequestView<'_>, target: &request::Target<'_>, out: &mut Vec<u8>) -> bool {
    let mut header: Option<Option<Vec<u8>>> = None;
    let mut hosts = 0;
    view.headers.each(&mut |n, v| {
        if n.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            header = Some(request::validate_host(v));
        }
    });
    let header = match (hosts, header) {
        (0, _) => None,
        (1, Some(Some(h))) => Some(h),
        _ => return false,
    };
    let host = match target.host {
        Some(h) => match request::validate_host(h) {
            Some(h) => h,
            None => return false,
        },
        None => header.unwrap_or_default(),
    };
    out.extend_from_slice(&host);
    true
}
