//! The `ringproxy` command line: `check` exit codes and messages, and `route` agreeing with the
//! admin `/route` of a proxy started from the same config.

mod common;

use std::process::{Command, Output};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ringproxy");

fn ringproxy(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RINGPROXY_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ringproxy")
}

fn run_with(config: &str, args: &[&str]) -> Output {
    let file = TempFile::new("cli", config);
    let path = file.path.to_str().unwrap().to_string();
    // `ringproxy SUBCOMMAND --config FILE REST...`, as documented.
    let mut all: Vec<&str> = vec![args[0], "--config", &path];
    all.extend(&args[1..]);
    ringproxy(&all)
}

const GOOD: &str = r#"
[proxy]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[affinity]
key = ["header:x-user-id", "cookie:session"]
[[backends]]
id = "cache-a"
address = "127.0.0.1:9001"
[[backends]]
id = "cache-b"
address = "10.0.0.2:9002"
weight = 2
[[backends]]
id = "cache-c"
address = "cache-c.internal:11211"
"#;

#[test]
fn check_accepts_a_valid_config_and_summarises_it() {
    let out = run_with(GOOD, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config ok"), "{stdout}");
    for needle in [
        "cache-a 127.0.0.1:9001",
        "cache-b 10.0.0.2:9002",
        "cache-c cache-c.internal:11211",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from {stdout}");
    }
}

#[test]
fn check_rejects_bad_configs_naming_the_field() {
    let backend = "[[backends]]\nid = \"a\"\naddress = \"127.0.0.1:9001\"\n";
    let cases: Vec<(String, &str)> = vec![
        (format!("{backend}weight = 0\n"), "backends[0].weight"),
        (format!("{backend}weight = -3\n"), "backends[0].weight"),
        (
            format!("{backend}[[backends]]\nid = \"b\"\naddress = \"nope\"\n"),
            "backends[1].address",
        ),
        (
            format!("{backend}[[backends]]\nid = \"a\"\naddress = \"127.0.0.1:9002\"\n"),
            "backends[1].id",
        ),
        (
            "[[backends]]\naddress = \"127.0.0.1:9001\"\n".to_string(),
            "backends[0].id",
        ),
        (format!("{backend}wieght = 1\n"), "wieght"),
        (format!("[ring]\nvnodes = 0\n{backend}"), "ring.vnodes"),
        (
            format!("[affinity]\non_missing = \"drop\"\n{backend}"),
            "affinity.on_missing",
        ),
        (
            format!("[affinity]\nkey = [\"header\"]\n{backend}"),
            "affinity.key[0]",
        ),
        (
            format!("[proxy]\nrequest_timeout = \"soon\"\n{backend}"),
            "proxy.request_timeout",
        ),
        (
            format!("[proxy]\nlisten = \"localhost\"\n{backend}"),
            "proxy.listen",
        ),
        ("[proxy]\n".to_string(), "backends"),
        ("this is = = not toml".to_string(), "invalid config"),
    ];
    for (config, field) in &cases {
        let out = run_with(config, &["check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config:?}: {stderr}");
        assert!(
            stderr.contains(field),
            "{config:?}: {stderr:?} does not name {field}"
        );
        assert!(out.stdout.is_empty(), "{config:?} printed a summary");
    }
}

#[test]
fn missing_config_exits_2() {
    let out = ringproxy(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let out = ringproxy(&["check", "--config", "/nonexistent/ringproxy.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ringproxy.toml"));
}

#[tokio::test]
async fn route_command_agrees_with_admin_route() {
    let keys = keys(60);
    let mut args = vec!["route"];
    args.extend(keys.iter().map(String::as_str));
    let out = run_with(GOOD, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), keys.len(), "{stdout}");

    let p = start_proxy(GOOD).await;
    for (key, line) in keys.iter().zip(&lines) {
        let route = p.owner_by_admin(key).await;
        let expected = format!(
            "{key} -> {} ({})",
            route["backend"].as_str().unwrap(),
            route["address"].as_str().unwrap()
        );
        assert_eq!(*line, expected);
    }
}
