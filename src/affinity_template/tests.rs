//! Tests of nginx variable templates. Expected values marked "nginx" were recorded from
//! nginx 1.22.1 answering `return 200 "...$uri..."` to the same raw requests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::request::{arg, cookie, normalize, parse_target, remote_addr, validate_host};
use super::*;

fn t(s: &str) -> Template {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Renders `template` for a request; `None` when render answers false.
fn render_with(template: &str, target: &str, headers: &[(&str, &str)]) -> Option<String> {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let view = RequestView {
        target: target.as_bytes(),
        headers: &pairs,
        peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
        scheme: Scheme::Http,
    };
    let mut out = b"leftover".to_vec();
    let ok = t(template).render(&view, &mut out);
    if !ok {
        assert!(out.is_empty(), "false leaves nothing behind");
    }
    ok.then(|| String::from_utf8(out).unwrap())
}

fn render(template: &str, target: &str) -> Option<String> {
    render_with(template, target, &[("Host", "h")])
}

#[test]
fn parses_names_brackets_and_literals() {
    let tpl = t("$scheme://${host}x$request_uri-$HTTP_X_User");
    assert_eq!(
        tpl.parts,
        [
            Part::Var(Var::Scheme),
            Part::Literal(b"://".to_vec()),
            Part::Var(Var::Host),
            Part::Literal(b"x".to_vec()),
            Part::Var(Var::RequestUri),
            Part::Literal(b"-".to_vec()),
            Part::Var(Var::Http(b"x_user".to_vec())),
        ]
    );
    assert_eq!(
        tpl.to_string(),
        "$scheme://${host}x$request_uri-$HTTP_X_User"
    );
    // A name is the longest run of letters, digits and '_': "$host_x" is not "$host" + "_x".
    assert_eq!(
        "$host_x".parse::<Template>(),
        Err(TemplateError::Unsupported("host_x".into()))
    );
    assert_eq!(t("plain").parts, [Part::Literal(b"plain".to_vec())]);
}

#[test]
fn parse_errors_name_the_problem() {
    let err = |s: &str| s.parse::<Template>().unwrap_err();
    assert_eq!(err(""), TemplateError::Empty);
    assert_eq!(err("$"), TemplateError::InvalidName(0));
    assert_eq!(err("a$-b"), TemplateError::InvalidName(1));
    assert_eq!(err("${}"), TemplateError::InvalidName(0));
    assert_eq!(err("${host"), TemplateError::MissingBracket("host".into()));
    assert_eq!(err("$1"), TemplateError::Capture('1'));
    assert_eq!(err("$arg_"), TemplateError::MissingName("arg_".into()));
    assert_eq!(
        err("$host$server_name"),
        TemplateError::Unsupported("server_name".into())
    );
    let msg = err("$binary_remote_addr").to_string();
    assert!(
        msg.starts_with("$binary_remote_addr: unsupported variable"),
        "{msg}"
    );
}

#[test]
fn request_uri_is_the_target_as_sent() {
    // nginx: ru=[/a//b/./c/../d?x=1&k=v1#frag]
    let target = "/a//b/./c/../d?x=1&k=v1#frag";
    assert_eq!(render("$request_uri", target).as_deref(), Some(target));
    assert_eq!(
        render("$request_uri", "/%41?q=%20").as_deref(),
        Some("/%41?q=%20")
    );
}

#[test]
fn uri_is_decoded_and_normalized_like_nginx() {
    // (target, $uri, $args) — all recorded from nginx.
    let cases = [
        ("/a//b/./c/../d?x=1&k=v1#frag", "/a/b/d", "x=1&k=v1"),
        (
            "/%41%2fb%2F..%2f%3F%23%25?K=Up&k=low",
            "/A/?#%",
            "K=Up&k=low",
        ),
        ("/a/b/..", "/a/", ""),
        ("/a/.", "/a/", ""),
        ("/p?", "/p", ""),
        ("/a/%2e%2E", "/", ""),
        ("/a#b?c", "/a", ""),
        ("/a?b#c?d", "/a", "b"),
    ];
    for (target, uri, args) in cases {
        assert_eq!(render("$uri", target).as_deref(), Some(uri), "{target}");
        let want_args = (!args.is_empty()).then_some(args);
        assert_eq!(render("$args", target).as_deref(), want_args, "{target}");
    }
    // Escapes that decode to the specials stay literal; others re-enter the state machine.
    assert_eq!(normalize(b"/x%2F%2F./y", false).unwrap().0, b"/x/y");
    assert_eq!(normalize(b"/a/b/../../c", false).unwrap().0, b"/c");
    assert_eq!(
        normalize(b"/a/..?q", false).unwrap(),
        (b"/".to_vec(), &b"q"[..])
    );
    assert_eq!(normalize(b"/a/.#x", false).unwrap().0, b"/a/");
    assert_eq!(normalize(b"//..", false), None);
}

#[test]
fn requests_nginx_refuses_render_nothing() {
    // nginx answered 400 to each of these.
    for target in ["/../x", "/a%00b", "/a%zz", "/%2e%2e/x", "/a%2"] {
        assert_eq!(render("$uri", target), None, "{target}");
        assert_eq!(render("x$arg_k", target), None, "{target}");
    }
    // Variables that do not need the path are unaffected by a bad path...
    assert_eq!(render("$http_x", "/../x"), None, "empty key");
    assert_eq!(render("$request_uri", "/../x").as_deref(), Some("/../x"));
    // ...but a target that is neither origin- nor absolute-form is refused outright.
    assert_eq!(render("$remote_addr", "*"), None);
    assert_eq!(parse_target(b"*"), None);
    assert_eq!(parse_target(b"http:/x"), None);
    assert_eq!(parse_target(b"http://h_x/"), None);
}

#[test]
fn absolute_form_targets() {
    // nginx: ru=[/q/%7e?k=1] uri=[/q/~] host=[abs.example] (Host: other ignored)
    let target = "http://Abs.Example:99/q/%7e?k=1";
    let hdr = [("Host", "other")];
    let r = |tpl| render_with(tpl, target, &hdr);
    assert_eq!(r("$request_uri").as_deref(), Some("/q/%7e?k=1"));
    assert_eq!(r("$uri").as_deref(), Some("/q/~"));
    assert_eq!(r("$host").as_deref(), Some("abs.example"));
    assert_eq!(r("$arg_k").as_deref(), Some("1"));
    // nginx: ru=[?k=2] uri=[/] args=[k=2]
    let r = |tpl| render_with(tpl, "http://abs.example?k=2", &hdr);
    assert_eq!(r("$request_uri").as_deref(), Some("?k=2"));
    assert_eq!(r("$uri").as_deref(), Some("/"));
    assert_eq!(r("$args").as_deref(), Some("k=2"));
    // nginx: ru=[/] uri=[/]
    let r = |tpl| render_with(tpl, "http://abs.example", &hdr);
    assert_eq!(r("$request_uri|$uri").as_deref(), Some("/|/"));
    let lit = parse_target(b"https://[::1]:8443/x").unwrap();
    assert_eq!((lit.host, lit.uri), (Some(&b"[::1]"[..]), &b"/x"[..]));
}

#[test]
fn is_args_follows_the_query() {
    assert_eq!(
        render("$uri$is_args$args", "/p?a=1").as_deref(),
        Some("/p?a=1")
    );
    // nginx: args=[] isargs=[] for "/p?": unlike $request_uri, no trailing '?'.
    assert_eq!(render("$uri$is_args$args", "/p?").as_deref(), Some("/p"));
    assert_eq!(render("$is_args", "/p"), None);
}

#[test]
fn host_is_validated_like_nginx() {
    let host = |h: &str| validate_host(h.as_bytes()).map(|v| String::from_utf8(v).unwrap());
    // nginx: host=[example.com] for "Example.COM.:8080", [[::1]] for "[::1]:80".
    assert_eq!(host("Example.COM.:8080").as_deref(), Some("example.com"));
    assert_eq!(host("[::1]:80").as_deref(), Some("[::1]"));
    assert_eq!(host("h").as_deref(), Some("h"));
    // nginx answered 400 to "a..b"; empty, '/', spaces and controls are refused too.
    for bad in ["a..b", "", ":80", "a/b", "a b", "a\x01", "."] {
        assert_eq!(host(bad), None, "{bad:?}");
    }
    assert_eq!(
        render_with("$host", "/", &[("Host", "Example.COM.:8080")]).as_deref(),
        Some("example.com")
    );
    // Two Host headers, or an invalid one, are a 400 in nginx.
    assert_eq!(
        render_with("$host", "/", &[("Host", "h"), ("host", "h")]),
        None
    );
    assert_eq!(render_with("$host$uri", "/", &[("Host", "a..b")]), None);
    // No host at all (HTTP/1.0): nginx would use server_name; the key is the rest.
    assert_eq!(render_with("$host$uri", "/x", &[]).as_deref(), Some("/x"));
}

#[test]
fn args_match_like_ngx_http_arg() {
    // nginx: argk=[3] for "kk=1&k&k=3&ak=4"; argk=[Up] for "K=Up&k=low".
    assert_eq!(arg(b"kk=1&k&k=3&ak=4", b"k"), Some(&b"3"[..]));
    assert_eq!(arg(b"K=Up&k=low", b"k"), Some(&b"Up"[..]));
    assert_eq!(arg(b"k=", b"k"), Some(&b""[..]));
    assert_eq!(arg(b"k", b"k"), None);
    assert_eq!(arg(b"a=1&k=%20x+y&b", b"k"), Some(&b"%20x+y"[..]));
    assert_eq!(arg(b"", b"k"), None);
    assert_eq!(arg(b"xk=1", b"k"), None);
    assert_eq!(arg(b"a=1;k=2", b"k"), None, "';' is not a separator");
    // An empty argument value alone is an empty key.
    assert_eq!(render("$arg_k", "/?k="), None);
    assert_eq!(render("id-$arg_k", "/?k=").as_deref(), Some("id-"));
}

#[test]
fn cookies_match_like_nginx() {
    // nginx: ck=[x y ] for "a=1; sid = x y ;b=2" (spaces skipped around '=', value kept to ';')
    assert_eq!(cookie(b"a=1; sid = x y ;b=2", b"sid"), Some(&b"x y "[..]));
    assert_eq!(cookie(b"SID=1", b"sid"), Some(&b"1"[..]));
    assert_eq!(cookie(b"sidx=1; sid=2", b"sid"), Some(&b"2"[..]));
    assert_eq!(cookie(b"sid; sid=3", b"sid"), Some(&b"3"[..]));
    assert_eq!(cookie(b"a=1;sid=4", b"sid"), Some(&b"4"[..]));
    assert_eq!(cookie(b"a=1", b"sid"), None);
    // Since nginx 1.23 only ';' separates pairs (1.22 also split at ',' and found "comma").
    assert_eq!(cookie(b"a=1, sid=comma", b"sid"), None);
    // The first Cookie header holding the name wins.
    let headers = [
        ("Cookie", "a=1"),
        ("cookie", "sid=first"),
        ("Cookie", "sid=2nd"),
    ];
    assert_eq!(
        render_with("$cookie_sid", "/", &headers).as_deref(),
        Some("first")
    );
}

#[test]
fn headers_join_and_skip_invalid_names() {
    let headers = [
        ("X-User", "a"),
        ("x-user", "b"),
        ("X_User", "c"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
    ];
    // Modern nginx joins repeats with ", " ("; " for Cookie); "X_User" is dropped as invalid
    // (nginx 1.22.1 answered hx=[a]: it took the first only).
    assert_eq!(
        render_with("$http_x_user", "/", &headers).as_deref(),
        Some("a, b")
    );
    assert_eq!(
        render_with("$http_cookie", "/", &headers).as_deref(),
        Some("a=1; b=2")
    );
    assert_eq!(render_with("$http_x_other", "/", &headers), None);
    // http::HeaderMap works as a header source too.
    let mut map = http::HeaderMap::new();
    map.append("x-user", "m1".parse().unwrap());
    map.append("x-user", "m2".parse().unwrap());
    let view = RequestView {
        target: b"/",
        headers: &map,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        scheme: Scheme::Https,
    };
    let mut out = Vec::new();
    assert!(t("$scheme:$http_x_user").render(&view, &mut out));
    assert_eq!(out, b"https:m1, m2");
}

#[test]
fn remote_addr_prints_like_nginx() {
    let show = |ip: IpAddr| {
        let mut out = Vec::new();
        remote_addr(ip, &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(show(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))), "10.0.0.7");
    let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
    // nginx: ra=[::1] over IPv6.
    assert_eq!(show(v6("::1")), "::1");
    assert_eq!(show(v6("2001:db8::1")), "2001:db8::1");
    assert_eq!(show(v6("2001:db8:0:0:1:0:0:1")), "2001:db8::1:0:0:1");
    assert_eq!(show(v6("2001:0:0:1::1")), "2001:0:0:1::1");
    assert_eq!(show(v6("1:0:2:3:4:5:6:7")), "1:0:2:3:4:5:6:7");
    assert_eq!(show(v6("::ffff:1.2.3.4")), "::ffff:1.2.3.4");
    assert_eq!(show(v6("::1.2.3.4")), "::1.2.3.4");
    assert_eq!(show(v6("::")), "::");
    assert_eq!(show(v6("fe80::")), "fe80::");
    assert_eq!(render("$remote_addr", "/").as_deref(), Some("10.0.0.7"));
}

#[test]
fn absent_parts_render_empty_and_an_empty_key_is_missing() {
    assert_eq!(render("$host$request_uri", "/x").as_deref(), Some("h/x"));
    assert_eq!(
        render_with("$host$request_uri", "/x", &[]).as_deref(),
        Some("/x")
    );
    assert_eq!(render("$cookie_sid$arg_uid", "/"), None);
    assert_eq!(render("u:$arg_uid", "/").as_deref(), Some("u:"));
    assert_eq!(
        render("$scheme://$host$uri", "/a/../b").as_deref(),
        Some("http://h/b")
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any target renders without panicking, and a path nginx would not flag as complex (no
    /// '%', '#', '?', no "/." and no "//") comes out unchanged.
    #[test]
    fn any_target_renders_and_plain_paths_are_unchanged(
        target in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        plain in "(/[a-zA-Z0-9_~+-]+[a-z.]*)+",
    ) {
        let mut out = Vec::new();
        let headers: Vec<(&[u8], &[u8])> = vec![(b"host", &target)];
        let view = RequestView {
            target: &target,
            headers: &headers,
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            scheme: Scheme::Http,
        };
        let tpl = t("$host$uri$args$arg_k$cookie_a$http_host$request_uri");
        let _ = tpl.render(&view, &mut out);
        let (uri, args) = normalize(plain.as_bytes(), false).unwrap();
        proptest::prop_assert_eq!(uri, plain.as_bytes());
        proptest::prop_assert!(args.is_empty());
    }
}
