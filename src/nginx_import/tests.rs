//! Tests of the nginx import: the tokenizer and includes against nginx's rules, and the
//! translation of the realistic configuration in `tests/data/nginx/` (checked with
//! `nginx -t`, host names and the stream block aside).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::glob::{expand, matches};
use super::parse::{parse_text, Directive};
use super::translate::{parse_time, with_default_port};
use super::*;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nginx")
}

fn words(d: &Directive) -> Vec<&str> {
    std::iter::once(d.name.as_str())
        .chain(d.args.iter().map(|w| w.text.as_str()))
        .collect()
}

/// A directory of files for one test, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringproxy-import-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Dir(dir)
    }

    fn translate(&self, upstream: Option<&str>) -> Result<Translation, ImportError> {
        translate(&self.0.join("nginx.conf"), upstream)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An nginx.conf with one upstream block holding `body`, proxied from `location /`.
fn one_upstream(body: &str) -> Dir {
    let conf = format!(
        "http {{\n  upstream u {{\n{body}\n  }}\n  server {{ location / {{ proxy_pass http://u; }} }}\n}}\n"
    );
    Dir::new(&[("nginx.conf", &conf)])
}

fn messages(t: &Translation) -> Vec<String> {
    t.warnings.iter().map(|w| w.message.clone()).collect()
}

#[test]
fn tokenizer_follows_nginx_quoting_and_comments() {
    let text = r#"
a "two words" 'single "q"' esc\"aped\ space;   # trailing comment
b x#y "a;b{c}" ${var}x foo};
c "t\tn\nr\r bs\\ q\' other\x";
d '' "";
"#;
    let tree = parse_text(text, "t.conf").unwrap();
    assert_eq!(
        words(&tree[0]),
        ["a", "two words", "single \"q\"", "esc\"aped\\ space"]
    );
    // '#' inside a word is literal, and so is '}' there; "${" does not open a block.
    assert_eq!(words(&tree[1]), ["b", "x#y", "a;b{c}", "${var}x", "foo}"]);
    assert_eq!(words(&tree[2]), ["c", "t\tn\nr\r bs\\ q' other\\x"]);
    assert_eq!(words(&tree[3]), ["d", "", ""]);
    assert_eq!(
        tree.iter().map(|d| d.line).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
}

#[test]
fn tokenizer_builds_blocks_and_keeps_word_lines() {
    let text = "http {\n  server {\n    listen\n      80;\n  }\n}\nlast;";
    let tree = parse_text(text, "t.conf").unwrap();
    assert_eq!(tree.len(), 2);
    let server = &tree[0].children()[0];
    let listen = &server.children()[0];
    assert_eq!((listen.line, listen.args[0].line), (3, 4));
    assert_eq!(tree[1].name, "last");
}

#[test]
fn tokenizer_errors_say_where() {
    let err = |text: &str| parse_text(text, "t.conf").unwrap_err().to_string();
    assert_eq!(err("a;\n}"), "t.conf:2: unexpected \"}\"");
    assert_eq!(
        err("http {\n a;\n"),
        "t.conf:3: unexpected end of file, expecting \"}\""
    );
    assert_eq!(
        err("a b"),
        "t.conf:1: unexpected end of file, expecting \";\" or \"}\""
    );
    assert_eq!(err("a \"b\"c;"), "t.conf:1: unexpected \"c\"");
    assert_eq!(err("\n;"), "t.conf:2: unexpected \";\"");
    assert_eq!(err("a b }"), "t.conf:1: unexpected \"}\"");
    assert_eq!(
        err("include a b;"),
        "t.conf:1: \"include\" takes exactly one file or pattern"
    );
    // A quote closing before ')' is fine (nginx's "if" conditions).
    let tree = parse_text("if ($a = \"x\") { b; }", "t.conf").unwrap();
    assert_eq!(words(&tree[0]), ["if", "($a", "=", "x", ")"]);
}

#[test]
fn glob_matches_like_fnmatch() {
    for (pattern, name, want) in [
        ("*.conf", "a.conf", true),
        ("*.conf", ".hidden.conf", false),
        (".*.conf", ".hidden.conf", true),
        ("*.conf", "a.conf.bak", false),
        ("site-?.conf", "site-1.conf", true),
        ("site-[0-9].conf", "site-7.conf", true),
        ("site-[!0-9].conf", "site-7.conf", false),
        ("site-[^a].conf", "site-b.conf", true),
        ("[]x].conf", "].conf", true),
        ("a[b.conf", "a[b.conf", true),
        ("a\\*", "a*", true),
        ("a\\*", "ab", false),
        ("*a*b*", "xxaxxbxx", true),
        ("*", "", true),
    ] {
        assert_eq!(
            matches(pattern.as_bytes(), name.as_bytes()),
            want,
            "{pattern} vs {name}"
        );
    }
}

#[test]
fn includes_expand_sorted_and_skip_dotfiles() {
    let found = expand(&data().join("conf.d/*.conf")).unwrap();
    assert_eq!(found, [data().join("conf.d/00-upstreams.conf")]);
    let dir = Dir::new(&[
        ("nginx.conf", "include sub/*.conf;\ninclude none/*.conf;\n"),
        ("sub/b.conf", "b;"),
        ("sub/a.conf", "a;"),
        ("sub/B.conf", "upper;"),
    ]);
    let tree = super::parse::parse_main(&dir.0.join("nginx.conf")).unwrap();
    // Bytewise order ('B' < 'a'), and a pattern matching nothing includes nothing.
    let names: Vec<&str> = tree.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["upper", "a", "b"]);
    assert!(tree[1].file.ends_with("sub/a.conf"));
}

#[test]
fn include_errors_name_the_file() {
    let dir = Dir::new(&[("nginx.conf", "http {\n  include missing.conf;\n}\n")]);
    let e = dir.translate(None).unwrap_err().to_string();
    assert!(
        e.starts_with("cannot read ") && e.contains("missing.conf"),
        "{e}"
    );
    let dir = Dir::new(&[
        ("nginx.conf", "include loop.conf;"),
        ("loop.conf", "include loop.conf;"),
    ]);
    let e = dir.translate(None).unwrap_err().to_string();
    assert!(
        e.contains("loop.conf:1: includes nest deeper than 32"),
        "{e}"
    );
    let dir = Dir::new(&[
        ("nginx.conf", "include bad.conf;"),
        ("bad.conf", "a {\n}\n}\n"),
    ]);
    let e = dir.translate(None).unwrap_err().to_string();
    assert!(e.ends_with("bad.conf:3: unexpected \"}\""), "{e}");
}

#[test]
fn translates_the_realistic_config() {
    let t = translate(&data().join("nginx.conf"), None).unwrap();
    assert_eq!(t.upstream, "cache_tier");
    assert!(t.upstream_at.file.ends_with("conf.d/00-upstreams.conf"));
    assert_eq!(t.upstream_at.line, 2);
    let backends: Vec<(&str, &str, u32)> = t
        .backends
        .iter()
        .map(|b| (b.id.as_str(), b.address.as_str(), b.weight))
        .collect();
    assert_eq!(
        backends,
        [
            ("10.0.1.10:8080", "10.0.1.10:8080", 2),
            ("10.0.1.11:8080", "10.0.1.11:8080", 1),
            ("cache-3.internal:8080", "cache-3.internal:8080", 3),
            ("cache-4.internal", "cache-4.internal:80", 1),
        ]
    );
    assert!(t.consistent);
    assert_eq!(t.key.as_deref(), Some("$scheme://$host$request_uri"));
    assert_eq!(t.hash.as_ref().unwrap().at.line, 14);
    assert_eq!(t.fail_threshold.as_ref().unwrap().value, 3);
    assert_eq!(t.eject_for.as_ref().unwrap().value, Duration::from_secs(30));
    // The location's own connect timeout beats the http one; the read timeout is the server's.
    let connect = t.connect_timeout.as_ref().unwrap();
    assert_eq!(connect.value, Duration::from_millis(500));
    assert!(connect.at.file.ends_with("sites/cache.conf"));
    assert_eq!(connect.at.line, 15);
    let read = t.request_timeout.as_ref().unwrap();
    assert_eq!((read.value, read.at.line), (Duration::from_secs(45), 4));
    // Exactly two things are not translated: the backup server and the Host header.
    let w: Vec<String> = t
        .warnings
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].contains("conf.d/00-upstreams.conf:11: server 10.0.1.99:8080 is a backup"),
        "{}",
        w[0]
    );
    assert!(
        w[1].ends_with("sites/cache.conf:14: \"proxy_set_header Host $host\" is not translated"),
        "{}",
        w[1]
    );
    assert!(t.is_partial());
}

#[test]
fn the_realistic_config_becomes_ringproxy_toml() {
    let t = translate(&data().join("nginx.conf"), None).unwrap();
    let text = t.to_toml();
    let v: ::toml::Value = ::toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(v["ring"]["compat"].as_str(), Some("nginx"));
    assert_eq!(
        v["affinity"]["key"][0].as_str(),
        Some("template:$scheme://$host$request_uri")
    );
    assert_eq!(v["affinity"]["on_missing"].as_str(), Some("random"));
    assert_eq!(v["proxy"]["connect_timeout"].as_str(), Some("500ms"));
    assert_eq!(v["proxy"]["request_timeout"].as_str(), Some("45s"));
    assert_eq!(v["health"]["fail_threshold"].as_integer(), Some(3));
    assert_eq!(v["health"]["eject_for"].as_str(), Some("30s"));
    let backends = v["backends"].as_array().unwrap();
    let ids: Vec<&str> = backends.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "10.0.1.10:8080",
            "10.0.1.11:8080",
            "cache-3.internal:8080",
            "cache-4.internal"
        ]
    );
    assert_eq!(backends[3]["address"].as_str(), Some("cache-4.internal:80"));
    assert_eq!(backends[2]["weight"].as_integer(), Some(3));
    // The warnings are in the file for whoever reviews it.
    assert!(
        text.contains("# PARTIAL: 2 thing(s) could not be translated"),
        "{text}"
    );
    assert!(text.contains("00-upstreams.conf:11: server 10.0.1.99:8080 is a backup"));
    // No vnodes: the compat ring fixes 160 points per unit of weight.
    assert!(v["ring"].get("vnodes").is_none());
}

#[test]
fn upstreams_are_picked_by_name_or_by_consistent_hash() {
    let conf = data().join("nginx.conf");
    let api = translate(&conf, Some("api")).unwrap();
    assert_eq!(api.backends.len(), 2);
    assert_eq!(api.key, None);
    let m = messages(&api);
    assert!(
        m.iter().any(|m| m.contains("upstream api has no \"hash\"")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|m| m.contains("\"least_conn\" is not translated")),
        "{m:?}"
    );
    // The api location's own read timeout, and the http-level connect timeout.
    assert_eq!(api.request_timeout.unwrap().value, Duration::from_secs(5));
    assert_eq!(api.connect_timeout.unwrap().value, Duration::from_secs(2));
    let e = translate(&conf, Some("nope")).unwrap_err().to_string();
    assert_eq!(
        e,
        "no upstream named \"nope\"; upstreams found: cache_tier, api"
    );

    let none = Dir::new(&[("nginx.conf", "http { upstream a { server x:1; } }")]);
    assert!(matches!(
        none.translate(None),
        Err(ImportError::NoConsistentUpstream { found }) if found == ["a"]
    ));
    let two = Dir::new(&[(
        "nginx.conf",
        "http { upstream a { hash $uri consistent; server x:1; }\n\
         upstream b { hash $uri consistent; server y:1; } }",
    )]);
    assert_eq!(
        two.translate(None).unwrap_err().to_string(),
        "several upstreams use \"hash ... consistent\": a, b; pick one with --upstream"
    );
}

#[test]
fn server_parameters_translate_or_warn() {
    let dir = one_upstream(
        "hash $arg_k consistent;\n\
         server 10.0.0.1:80 down;\n\
         server unix:/run/cache.sock weight=2;\n\
         server [::1] max_fails=2;\n\
         server 10.0.0.1:80 weight=3 max_fails=5 resolve;\n\
         server 10.0.0.2:80 max_conns=10 fail_timeout=1m30s;",
    );
    let t = dir.translate(None).unwrap();
    let b: Vec<(&str, &str, u32, bool)> = t
        .backends
        .iter()
        .map(|b| (b.id.as_str(), b.address.as_str(), b.weight, b.down))
        .collect();
    assert_eq!(
        b,
        [
            ("10.0.0.1:80", "10.0.0.1:80", 3, false),
            ("unix:/run/cache.sock", "unix:/run/cache.sock", 2, false),
            ("[::1]", "[::1]:80", 1, false),
            ("10.0.0.2:80", "10.0.0.2:80", 1, false),
        ]
    );
    assert_eq!(t.fail_threshold.as_ref().unwrap().value, 2);
    assert_eq!(t.eject_for.as_ref().unwrap().value, Duration::from_secs(90));
    let m = messages(&t);
    let has = |s: &str| assert!(m.iter().any(|m| m.contains(s)), "no {s:?} in {m:#?}");
    has("server 10.0.0.1:80 is down: kept on the ring");
    has("unix socket");
    has("\"resolve\" on server 10.0.0.1:80");
    has("listed twice: merged");
    has("servers differ in max_fails; ringproxy has one fail_threshold: using 2");
    has("\"max_conns=10\" on server 10.0.0.2:80 is not translated");
    // Lines point at the parameter's own line.
    let down = t
        .warnings
        .iter()
        .find(|w| w.message.contains("down"))
        .unwrap();
    assert_eq!(down.at.line, 4);

    let bad = one_upstream("hash $uri consistent; server a:1 weight=x;");
    assert_eq!(
        bad.translate(None).unwrap_err().to_string(),
        format!(
            "{}:3: invalid parameter \"weight=x\" of server a:1",
            bad.0.join("nginx.conf").display()
        )
    );
}

#[test]
fn hash_keys_translate_or_warn() {
    let t = one_upstream("hash $request_uri consistent; server a:1;")
        .translate(None)
        .unwrap();
    assert_eq!(
        (t.key.as_deref(), t.warnings.len()),
        (Some("$request_uri"), 0)
    );
    assert!(!t.is_partial());

    let t = one_upstream("hash $binary_remote_addr consistent; server a:1;")
        .translate(None)
        .unwrap();
    assert_eq!(t.key, None);
    assert!(messages(&t)[0].contains("$binary_remote_addr: unsupported variable"));
    assert!(t.to_toml().contains("# NOT TRANSLATED: the hash key"));

    let t = one_upstream("hash $arg_k; server a:1;")
        .translate(Some("u"))
        .unwrap();
    assert!(!t.consistent);
    assert!(messages(&t)[0].contains("without \"consistent\" is nginx's modulo hash"));
}

#[test]
fn silent_directives_stay_silent() {
    let dir = Dir::new(&[(
        "nginx.conf",
        "http {\n  upstream u { hash $host$uri consistent; keepalive 16; keepalive_timeout 60s;\n\
         server a:1; }\n  server { location / {\n    proxy_pass http://U/;\n\
         proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n  } }\n}\n",
    )]);
    let t = dir.translate(None).unwrap();
    assert_eq!(t.warnings, []);
    assert_eq!((t.connect_timeout, t.request_timeout), (None, None));
}

#[test]
fn nginx_time_syntax() {
    let ms = |s: &str, sec| parse_time(s, sec).map(|d| d.as_millis());
    assert_eq!(ms("30", false), Some(30_000));
    assert_eq!(ms("500ms", false), Some(500));
    assert_eq!(ms("1m30s", false), Some(90_000));
    assert_eq!(ms("1h 2m", false), Some(3_720_000));
    assert_eq!(ms("2d", true), Some(172_800_000));
    assert_eq!(ms("1y", true), Some(31_536_000_000));
    // Units largest first, once each; "ms" is not for seconds; msec mode refuses y and M.
    for (bad, sec) in [
        ("1s1m", false),
        ("1s1s", false),
        ("5ms", true),
        ("1y", false),
        ("1M", false),
        ("", false),
        ("s", false),
        ("1x", false),
    ] {
        assert_eq!(ms(bad, sec), None, "{bad:?}");
    }
}

#[test]
fn default_port_is_added_only_when_missing() {
    assert_eq!(with_default_port("cache"), "cache:80");
    assert_eq!(with_default_port("cache:8080"), "cache:8080");
    assert_eq!(with_default_port("[::1]"), "[::1]:80");
    assert_eq!(with_default_port("[::1]:81"), "[::1]:81");
    assert_eq!(with_default_port("unix:/x.sock"), "unix:/x.sock");
}

#[test]
fn non_ascii_input_does_not_panic() {
    let t = one_upstream("hash $uri consistent; server ünïx€:80 wéight=2;")
        .translate(None)
        .unwrap();
    assert_eq!(t.backends[0].id, "ünïx€:80");
    assert!(messages(&t)[0].contains("\"wéight=2\" on server ünïx€:80 is not translated"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever the bytes, the tokenizer answers (a tree or an error), never panics.
    #[test]
    fn tokenizer_never_panics(text in "[a-z ;{}#\"'\\\\$\n\t()]{0,60}") {
        let _ = parse_text(&text, "fuzz.conf");
    }
}
