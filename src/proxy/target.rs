//! The request target (RFC 9112 §3.2): which forms a reverse proxy accepts, and the `Host` a
//! request goes upstream with.
//!
//! Origin-form (`/path?q`) is the normal case; absolute-form (`http://host/path`) must be
//! accepted too, and then its authority replaces any `Host` header (§3.2.2). Asterisk-form is
//! `OPTIONS *` only. Authority-form belongs to `CONNECT`, which a reverse proxy does not do
//! (405). Anything else (`GET evil HTTP/1.1`) is a 400, never forwarded as `/`.

use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::Method;

use super::error::ProxyError;

/// Refuses what cannot be forwarded: `CONNECT`, and targets in no valid form.
pub fn check(parts: &Parts) -> Result<(), ProxyError> {
    if parts.method == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let uri = &parts.uri;
    let valid = match (uri.scheme_str(), uri.authority()) {
        // Absolute-form (and HTTP/2's :scheme/:authority/:path).
        (Some("http" | "https"), Some(_)) => uri.path().starts_with('/') || uri.path().is_empty(),
        (Some(_), _) => false,
        // Authority-form without CONNECT.
        (None, Some(_)) => false,
        (None, None) => {
            uri.path().starts_with('/') || (uri.path() == "*" && parts.method == Method::OPTIONS)
        }
    };
    if valid {
        Ok(())
    } else {
        Err(ProxyError::BadTarget)
    }
}

/// Sets `Host` from an absolute-form target's authority (which wins over the header), and
/// keeps the header otherwise.
pub fn set_host(parts: &mut Parts) {
    if let Some(v) = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(HOST, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(method: &str, uri: &str, host: Option<&str>) -> Parts {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn forms() {
        assert!(check(&parts("GET", "/x?y", None)).is_ok());
        assert!(check(&parts("GET", "http://a.example/x", None)).is_ok());
        assert!(check(&parts("OPTIONS", "*", None)).is_ok());
        assert!(matches!(
            check(&parts("GET", "evil", None)),
            Err(ProxyError::BadTarget)
        ));
        assert!(matches!(
            check(&parts("GET", "ftp://a/x", None)),
            Err(ProxyError::BadTarget)
        ));
        assert!(matches!(
            check(&parts("GET", "*", None)),
            Err(ProxyError::BadTarget)
        ));
        assert!(matches!(
            check(&parts("CONNECT", "a.example:443", None)),
            Err(ProxyError::MethodNotAllowed)
        ));
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        let mut p = parts("GET", "http://a.example/x", Some("b"));
        set_host(&mut p);
        assert_eq!(p.headers[HOST], "a.example");
        let mut p = parts("GET", "/x", Some("b"));
        set_host(&mut p);
        assert_eq!(p.headers[HOST], "b");
    }
}
