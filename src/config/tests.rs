//! Config validation: every mistake names its field.

use std::time::Duration;

use super::*;
use crate::affinity::OnMissing;

const BASE: &str = r#"
[[backends]]
id = "cache-a"
address = "127.0.0.1:9001"
"#;

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn defaults_fill_everything_but_backends() {
    let c = Config::parse(BASE).unwrap();
    assert_eq!(c.proxy.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.admin.token, None);
    assert_eq!(c.vnodes, DEFAULT_VNODES);
    assert_eq!(c.affinity.on_missing, OnMissing::Random);
    assert_eq!(c.affinity.describe(), "header:x-user-id");
    assert_eq!(c.proxy.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.backends[0].weight, 1);
    assert_eq!(c.proxy.http1, Http1::Relay);
    assert_eq!(c.proxy.io, Io::IoUring);
}

#[test]
fn the_shipped_example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/ringproxy.toml"
    ))
    .unwrap();
    let c = Config::parse(&text).unwrap();
    assert!(!c.backends.is_empty());
}

#[test]
fn each_mistake_names_its_field() {
    let cases: &[(&str, &str)] = &[
        ("", "backends: missing"),
        ("[proxy]\nlisten = \"nope\"\n", "proxy.listen"),
        (
            "[proxy]\nconnect_timeout = \"soon\"\n",
            "proxy.connect_timeout",
        ),
        (
            "[proxy]\nupstream_idle_timeout = \"0s\"\n",
            "proxy.upstream_idle_timeout: must be at least 1ms",
        ),
        (
            "[proxy]\nrequest_timeout = \"0s\"\n",
            "proxy.request_timeout: must be at least 1ms",
        ),
        ("[proxy]\nworkers = 0\n", "proxy.workers: 0 is out of range"),
        (
            "[proxy]\nmax_attempts = 0\n",
            "proxy.max_attempts: 0 is out of range",
        ),
        (
            "[proxy]\nhttp1 = \"h2\"\n",
            "proxy.http1: \"h2\" is not a server path",
        ),
        (
            "[proxy]\nio = \"kqueue\"\n",
            "proxy.io: \"kqueue\" is not an I/O model",
        ),
        ("[admin]\ntoken = \"\"\n", "admin.token"),
        ("[ring]\nvnodes = 0\n", "ring.vnodes: 0 is out of range"),
        ("[affinity]\nkey = []\n", "affinity.key"),
        ("[affinity]\nkey = [\"ip\"]\n", "affinity.key[0]"),
        ("[affinity]\non_missing = \"drop\"\n", "affinity.on_missing"),
        ("[proxy]\nlisten_port = 1\n", "unknown field `listen_port`"),
    ];
    for (text, want) in cases {
        let text = if text.is_empty() {
            text.to_string()
        } else {
            format!("{text}{BASE}")
        };
        let e = err(&text);
        assert!(
            e.contains(want),
            "config {text:?}: error {e:?} does not mention {want:?}"
        );
    }
}

#[test]
fn backend_mistakes_name_the_backend() {
    let cases: &[(&str, &str)] = &[
        (
            "id = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 0",
            "backends[1].weight: 0 is not allowed",
        ),
        ("id = \"a\"\naddress = \"127.0.0.1\"", "backends[1].address"),
        (
            "id = \"a\"\naddress = \"no spaces:1\"",
            "backends[1].address",
        ),
        ("id = \"a\"\naddress = \"h:0\"", "backends[1].address"),
        (
            "id = \"cache-a\"\naddress = \"127.0.0.1:2\"",
            "backends[1].id: duplicate id",
        ),
        ("id = \"a/b\"\naddress = \"127.0.0.1:2\"", "backends[1].id"),
        ("address = \"127.0.0.1:2\"", "backends[1].id: missing"),
        ("id = \"a\"", "backends[1].address: missing"),
        (
            "id = \"a\"\naddress = \"127.0.0.1:2\"\nport = 3",
            "unknown field `port`",
        ),
    ];
    for (body, want) in cases {
        let text = format!("{BASE}\n[[backends]]\n{body}\n");
        let e = err(&text);
        assert!(
            e.contains(want),
            "backend {body:?}: error {e:?} does not mention {want:?}"
        );
    }
}

#[test]
fn hostnames_and_an_empty_start_are_allowed() {
    let c = Config::parse("backends = []\n").unwrap();
    assert!(c.backends.is_empty());
    let c = Config::parse(
        "[[backends]]\nid = \"a\"\naddress = \"cache-a.internal:11211\"\nweight = 3\n",
    )
    .unwrap();
    assert_eq!(c.backends[0].weight, 3);
}

#[test]
fn too_many_points_is_a_config_error() {
    let e = err("[ring]\nvnodes = 10000\n[[backends]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 10000\n");
    assert!(e.starts_with("ring.vnodes:"), "{e}");
}
