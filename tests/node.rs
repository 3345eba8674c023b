//! Black-box tests of node mode: the real `ringproxy-node` binary driven over stdin/stdout.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ringproxy::config::DEFAULT_VNODES;
use ringproxy::ring::{Member, Ring};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ringproxy-node");

struct Output {
    lines: Vec<String>,
    stderr: String,
    status: ExitStatus,
}

impl Output {
    /// Every stdout line parsed; panics if any line is not a JSON protocol message.
    fn messages(&self) -> Vec<Value> {
        self.lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?}: {e}")))
            .collect()
    }

    /// Reply bodies keyed by `in_reply_to`.
    fn replies(&self) -> HashMap<u64, Value> {
        let mut by_id = HashMap::new();
        for m in self.messages() {
            let id = m["body"]["in_reply_to"]
                .as_u64()
                .expect("reply has in_reply_to");
            assert!(
                by_id.insert(id, m["body"].clone()).is_none(),
                "two replies to {id}"
            );
        }
        by_id
    }
}

/// Runs the binary on `input` (stdin is closed after it) and collects everything it printed.
fn run_bytes(input: Vec<u8>) -> Output {
    let mut child = Command::new(BIN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringproxy-node");
    let mut stdin = child.stdin.take().unwrap();
    // Write from another thread so a full stdout pipe cannot deadlock us.
    let writer = thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("write stdin");
    Output {
        lines: String::from_utf8(out.stdout)
            .expect("stdout is UTF-8")
            .lines()
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status,
    }
}

fn run_lines(lines: &[String]) -> Output {
    let mut input = lines.join("\n").into_bytes();
    input.push(b'\n');
    run_bytes(input)
}

/// A request line from client `c0` to node `n1`; `body` must be an object with a `type`.
fn req(msg_id: u64, mut body: Value) -> String {
    body["msg_id"] = json!(msg_id);
    json!({"src": "c0", "dest": "n1", "body": body}).to_string()
}

fn init_with(msg_id: u64, servers: &[String]) -> String {
    req(
        msg_id,
        json!({"type": "init", "node_id": "n1", "node_ids": ["n1"], "servers": servers}),
    )
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn error_code(body: &Value) -> u64 {
    assert_eq!(body["type"], "error", "expected an error, got {body}");
    assert!(body["text"].as_str().is_some_and(|t| !t.is_empty()));
    body["code"].as_u64().unwrap()
}

#[test]
fn init_golden_line() {
    let input = r#"{"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}"#;
    let out = run_lines(&[input.to_owned()]);
    assert!(out.status.success());
    assert_eq!(
        out.lines,
        [r#"{"src":"n1","dest":"c0","body":{"type":"init_ok","in_reply_to":1,"msg_id":0}}"#]
    );
}

#[test]
fn replies_keep_protocol_key_order_and_count_msg_ids() {
    let out = run_lines(&[
        init_with(7, &["a".into()]),
        req(8, json!({"type": "get_server", "key": "k"})),
        req(9, json!({"type": "bogus"})),
    ]);
    assert_eq!(
        out.lines,
        [
            r#"{"src":"n1","dest":"c0","body":{"type":"init_ok","in_reply_to":7,"msg_id":0}}"#,
            r#"{"src":"n1","dest":"c0","body":{"type":"get_server_ok","in_reply_to":8,"msg_id":1,"key":"k","server":"a"}}"#,
            r#"{"src":"n1","dest":"c0","body":{"type":"error","in_reply_to":9,"msg_id":2,"code":10,"text":"unsupported message type \"bogus\""}}"#,
        ]
    );
}

#[test]
fn init_servers_come_from_node_ids_or_servers() {
    let out = run_lines(&[
        req(
            1,
            json!({"type": "init", "node_id": "n1", "node_ids": ["n3", "n1", "n2"]}),
        ),
        req(2, json!({"type": "get_servers"})),
        req(
            3,
            json!({"type": "init", "node_id": "n1", "node_ids": ["n1"], "servers": ["b", "a"], "vnodes": 7}),
        ),
        req(4, json!({"type": "ring_state"})),
    ]);
    let r = out.replies();
    assert_eq!(r[&2]["type"], "get_servers_ok");
    assert_eq!(r[&2]["servers"], json!(["n2", "n3"]));
    assert_eq!(r[&4]["type"], "ring_state_ok");
    assert_eq!(r[&4]["servers"], json!(["a", "b"]));
    assert_eq!(r[&4]["vnodes"], 7);
    let shares = r[&4]["shares"].as_object().unwrap();
    assert_eq!(shares.keys().collect::<Vec<_>>(), ["a", "b"]);
    let total: f64 = shares.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "shares sum to {total}");
}

#[test]
fn add_get_remove_sequence() {
    let out = run_lines(&[
        init_with(1, &[]),
        req(2, json!({"type": "add_servers", "servers": ["c", "a"]})),
        req(3, json!({"type": "add_server", "server": "b"})),
        req(4, json!({"type": "add_server", "server": "b"})),
        req(5, json!({"type": "get_server", "key": "user-1"})),
        req(6, json!({"type": "remove_server", "server": "a"})),
        req(7, json!({"type": "remove_server", "server": "not-there"})),
        req(8, json!({"type": "get_servers"})),
        req(9, json!({"type": "remove_servers", "servers": ["b", "c"]})),
        req(10, json!({"type": "get_server", "key": "user-1"})),
    ]);
    assert!(out.status.success());
    let msgs = out.messages();
    assert_eq!(msgs.len(), 10);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            (m["src"].as_str(), m["dest"].as_str()),
            (Some("n1"), Some("c0"))
        );
        assert_eq!(m["body"]["msg_id"], i as u64, "msg_id counts every reply");
        assert_eq!(m["body"]["in_reply_to"], i as u64 + 1);
    }
    let body = |i: usize| &msgs[i]["body"];
    assert_eq!(body(1)["type"], "add_servers_ok");
    assert_eq!(body(1)["servers"], json!(["a", "c"]));
    assert_eq!(body(2)["type"], "add_server_ok");
    assert_eq!(body(2)["servers"], json!(["a", "b", "c"]));
    assert_eq!(
        body(3)["servers"],
        json!(["a", "b", "c"]),
        "adding twice is idempotent"
    );
    assert_eq!(body(4)["type"], "get_server_ok");
    assert_eq!(body(4)["key"], "user-1");
    assert!(["a", "b", "c"].contains(&body(4)["server"].as_str().unwrap()));
    assert_eq!(body(5)["type"], "remove_server_ok");
    assert_eq!(body(5)["servers"], json!(["b", "c"]));
    assert_eq!(
        body(6)["type"],
        "remove_server_ok",
        "removing an absent server is ok"
    );
    assert_eq!(body(7)["servers"], json!(["b", "c"]));
    assert_eq!(body(8)["type"], "remove_servers_ok");
    assert_eq!(body(8)["servers"], json!([]));
    assert_eq!(error_code(body(9)), 11);
}

#[test]
fn route_aliases_and_key_fields() {
    let out = run_lines(&[
        init_with(1, &names("cache", 5)),
        req(2, json!({"type": "get_server", "key": "u7"})),
        req(3, json!({"type": "route", "client_id": "u7"})),
        req(4, json!({"type": "route_request", "user_id": "u7"})),
        req(5, json!({"type": "lookup", "session_id": "u7"})),
        req(6, json!({"type": "get_server", "key": 42})),
        req(7, json!({"type": "get_server", "key": "42"})),
    ]);
    let r = out.replies();
    let server = r[&2]["server"].clone();
    for (id, kind) in [(3, "route_ok"), (4, "route_request_ok"), (5, "lookup_ok")] {
        assert_eq!(r[&id]["type"], kind);
        assert_eq!(r[&id]["server"], server);
        assert_eq!(r[&id]["key"], "u7");
    }
    assert_eq!(r[&6]["key"], 42, "the key is echoed as given");
    assert_eq!(
        r[&6]["server"], r[&7]["server"],
        "a number routes like its text"
    );
}

#[test]
fn answers_match_the_library_ring() {
    let servers = names("cache", 6);
    let keys = names("user", 300);
    let mut lines = vec![init_with(0, &servers)];
    lines.extend(
        keys.iter()
            .enumerate()
            .map(|(i, k)| req(i as u64 + 1, json!({"type": "get_server", "key": k}))),
    );
    let r = run_lines(&lines).replies();
    let ring = Ring::new(
        servers.iter().map(|s| Member::new(s.as_str(), 1)),
        DEFAULT_VNODES,
    )
    .unwrap();
    for (i, k) in keys.iter().enumerate() {
        let expected = &*ring.member(ring.lookup(k.as_bytes()).unwrap()).id;
        assert_eq!(r[&(i as u64 + 1)]["server"], expected, "key {k}");
    }
}

/// Routes `keys` (msg ids from `first_id`) and returns the servers in key order.
fn route_all(keys: &[String], first_id: u64) -> Vec<String> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| req(first_id + i as u64, json!({"type": "get_server", "key": k})))
        .collect()
}

fn servers_for(r: &HashMap<u64, Value>, first_id: u64, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| r[&(first_id + i)]["server"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn same_key_same_server_across_a_session() {
    let keys = names("user", 200);
    let mut lines = vec![init_with(1, &names("cache", 4))];
    lines.extend(route_all(&keys, 1000));
    // Membership that changes and comes back gives back the same ring.
    lines.push(req(2, json!({"type": "add_server", "server": "extra"})));
    lines.push(req(3, json!({"type": "remove_server", "server": "extra"})));
    lines.push(req(4, json!({"type": "get_servers"})));
    lines.extend(route_all(&keys, 2000));
    lines.extend(route_all(&keys, 3000));
    let r = run_lines(&lines).replies();
    let first = servers_for(&r, 1000, keys.len());
    assert_eq!(first, servers_for(&r, 2000, keys.len()));
    assert_eq!(first, servers_for(&r, 3000, keys.len()));
    let used: BTreeSet<_> = first.iter().collect();
    assert_eq!(used.len(), 4, "200 keys should touch all 4 servers");
}

#[test]
fn add_server_moves_keys_only_to_the_new_server() {
    let n = 4;
    let keys = names("user", 4000);
    let mut lines = vec![init_with(1, &names("cache", n))];
    lines.extend(route_all(&keys, 10_000));
    lines.push(req(2, json!({"type": "add_server", "server": "new"})));
    lines.extend(route_all(&keys, 20_000));
    let r = run_lines(&lines).replies();
    let before = servers_for(&r, 10_000, keys.len());
    let after = servers_for(&r, 20_000, keys.len());
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(
        moved.iter().all(|(_, a)| *a == "new"),
        "a key moved between old servers"
    );
    let fraction = moved.len() as f64 / keys.len() as f64;
    let expected = 1.0 / (n + 1) as f64;
    assert!(
        (fraction - expected).abs() < 0.08,
        "{fraction:.3} of keys moved, expected about {expected:.3}"
    );
}

#[test]
fn remove_server_moves_only_its_keys() {
    let keys = names("user", 4000);
    let mut lines = vec![init_with(1, &names("cache", 5))];
    lines.extend(route_all(&keys, 10_000));
    lines.push(req(
        2,
        json!({"type": "remove_server", "server": "cache-2"}),
    ));
    lines.extend(route_all(&keys, 20_000));
    let r = run_lines(&lines).replies();
    let before = servers_for(&r, 10_000, keys.len());
    let after = servers_for(&r, 20_000, keys.len());
    let mut on_removed = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "cache-2" {
            on_removed += 1;
            assert_ne!(a, "cache-2");
        } else {
            assert_eq!(a, b, "a key of a remaining server moved");
        }
    }
    assert!(on_removed > 400, "cache-2 owned only {on_removed} keys");
}

#[test]
fn ring_add_and_remove_node_report_migration() {
    let old = names("cache", 4);
    let out = run_lines(&[
        init_with(1, &old),
        req(2, json!({"type": "ring_add_node", "new_node": "cache-4"})),
        req(3, json!({"type": "ring_remove_node", "node": "cache-1"})),
        req(
            4,
            json!({"type": "ring_add_node", "new_node": "cache-1", "keys": ["a", "b", 3]}),
        ),
        req(
            5,
            json!({"type": "ring_add_node", "new_node": "cache-1", "keys": []}),
        ),
        req(6, json!({"type": "get_servers"})),
    ]);
    let r = out.replies();

    let add = &r[&2];
    assert_eq!(add["type"], "ring_add_node_ok");
    assert_eq!(add["total_keys"], 10_000);
    let migrated = add["keys_migrated"].as_u64().unwrap();
    let pct = add["migration_pct"].as_f64().unwrap();
    assert!((pct - migrated as f64 / 100.0).abs() < 1e-9);
    assert!(
        (10.0..30.0).contains(&pct),
        "adding a 5th server moved {pct}%"
    );
    assert_eq!(add["destination_nodes"], json!(["cache-4"]));
    assert_eq!(
        add["source_nodes"],
        json!(old),
        "every old server gives some keys"
    );
    assert_eq!(
        add["servers"],
        json!(["cache-0", "cache-1", "cache-2", "cache-3", "cache-4"])
    );

    let remove = &r[&3];
    assert_eq!(remove["type"], "ring_remove_node_ok");
    assert_eq!(remove["source_nodes"], json!(["cache-1"]));
    assert_eq!(
        remove["destination_nodes"],
        json!(["cache-0", "cache-2", "cache-3", "cache-4"])
    );
    let pct = remove["migration_pct"].as_f64().unwrap();
    assert!(
        (10.0..30.0).contains(&pct),
        "removing 1 of 5 servers moved {pct}%"
    );

    assert_eq!(r[&4]["total_keys"], 3);
    assert_eq!(r[&5]["total_keys"], 0, "adding a present node again");
    assert_eq!(r[&5]["keys_migrated"], 0);
    assert_eq!(r[&5]["migration_pct"], 0.0);
    assert_eq!(
        r[&6]["servers"],
        json!(["cache-0", "cache-1", "cache-2", "cache-3", "cache-4"])
    );
}

#[test]
fn error_10_for_unknown_types() {
    let r = run_lines(&[
        init_with(1, &[]),
        req(2, json!({"type": "echo", "echo": "hi"})),
    ])
    .replies();
    assert_eq!(error_code(&r[&2]), 10);
    assert_eq!(
        r[&2].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["type", "in_reply_to", "msg_id", "code", "text"]
    );
}

#[test]
fn error_11_when_there_are_no_servers() {
    let r = run_lines(&[
        req(1, json!({"type": "get_server", "key": "k"})),
        req(
            2,
            json!({"type": "init", "node_id": "n1", "node_ids": ["n1"]}),
        ),
        req(3, json!({"type": "route", "key": "k"})),
        req(4, json!({"type": "get_servers"})),
    ])
    .replies();
    assert_eq!(error_code(&r[&1]), 11, "before init");
    assert_eq!(error_code(&r[&3]), 11, "a lone node has no servers");
    assert_eq!(r[&4]["servers"], json!([]));
    assert_eq!(r[&4]["shares"], json!({}));
}

#[test]
fn error_12_for_missing_or_bad_fields() {
    let bad = [
        json!({"type": "init", "node_ids": ["n1"]}),
        json!({"type": "init", "node_id": "n1"}),
        json!({"type": "init", "node_id": "n1", "node_ids": ["n1"], "vnodes": 0}),
        json!({"type": "init", "node_id": "n1", "node_ids": ["n1"], "vnodes": "many"}),
        json!({"type": "init", "node_id": "n1", "node_ids": "n1"}),
        json!({"type": "add_servers"}),
        json!({"type": "add_servers", "servers": ["ok", 5]}),
        json!({"type": "add_servers", "servers": "a"}),
        json!({"type": "add_server"}),
        json!({"type": "add_server", "server": ""}),
        json!({"type": "add_server", "server": ["x"]}),
        json!({"type": "remove_server", "server": null}),
        json!({"type": "remove_servers", "servers": [{}]}),
        json!({"type": "get_server"}),
        json!({"type": "get_server", "key": true}),
        json!({"type": "lookup", "user_id": [1]}),
        json!({"type": "ring_add_node"}),
        json!({"type": "ring_add_node", "new_node": "x", "keys": [null]}),
        json!({"type": "ring_remove_node", "keys": ["a"]}),
    ];
    let mut lines = vec![init_with(0, &["keep".into()])];
    lines.extend(
        bad.iter()
            .enumerate()
            .map(|(i, b)| req(i as u64 + 1, b.clone())),
    );
    lines.push(req(100, json!({"type": "get_servers"})));
    let out = run_lines(&lines);
    assert!(out.status.success());
    let r = out.replies();
    for (i, b) in bad.iter().enumerate() {
        assert_eq!(error_code(&r[&(i as u64 + 1)]), 12, "request {b}");
    }
    assert_eq!(
        r[&100]["servers"],
        json!(["keep"]),
        "failed requests change nothing"
    );
}

#[test]
fn garbage_is_skipped_and_logged_and_the_next_message_answered() {
    let mut input = Vec::new();
    for garbage in [
        &b"not json at all"[..],
        b"{\"src\": \"c0\", \"dest\": \"n1\", \"body\": ",
        b"[1, 2, 3]",
        b"42",
        b"{}",
        b"{\"src\": \"c0\", \"dest\": \"n1\"}",
        b"{\"src\": \"c0\", \"dest\": \"n1\", \"body\": {}}",
        b"{\"src\": \"c0\", \"dest\": \"n1\", \"body\": {\"type\": 7, \"msg_id\": 1}}",
        b"{\"src\": \"c0\", \"dest\": \"n1\", \"body\": \"init\"}",
        b"{\"dest\": \"n1\", \"body\": {\"type\": \"get_servers\", \"msg_id\": 1}}",
        b"\xff\xfe invalid utf-8 \xc3",
        b"",
        b"   ",
        &[b'['; 10_000],
    ] {
        input.extend_from_slice(garbage);
        input.push(b'\n');
    }
    input.extend_from_slice(init_with(5, &[]).as_bytes());
    input.push(b'\n');
    let out = run_bytes(input);
    assert!(out.status.success());
    assert_eq!(
        out.lines,
        [r#"{"src":"n1","dest":"c0","body":{"type":"init_ok","in_reply_to":5,"msg_id":0}}"#]
    );
    assert!(out.stderr.contains("not JSON"), "stderr: {}", out.stderr);
}

#[test]
fn an_overlong_line_is_skipped_without_stopping_the_node() {
    let mut input = vec![b'x'; ringproxy::node::MAX_LINE_BYTES + 10];
    input.push(b'\n');
    input.extend_from_slice(init_with(1, &[]).as_bytes());
    let out = run_bytes(input);
    assert!(out.status.success());
    assert_eq!(out.replies().len(), 1);
}

#[test]
fn replies_addressed_to_us_are_ignored() {
    let out = run_lines(&[
        req(1, json!({"type": "init_ok", "in_reply_to": 3})),
        req(2, json!({"type": "error", "in_reply_to": 4, "code": 10})),
        req(3, json!({"type": "get_servers", "in_reply_to": null})),
    ]);
    assert_eq!(out.lines.len(), 1);
    assert_eq!(out.replies()[&3]["type"], "get_servers_ok");
}

#[test]
fn a_request_without_msg_id_is_answered_without_in_reply_to() {
    let line = json!({"src": "c9", "dest": "n4", "body": {"type": "get_servers"}}).to_string();
    let out = run_lines(&[line]);
    assert_eq!(
        out.lines,
        [format!(
            r#"{{"src":"n4","dest":"c9","body":{{"type":"get_servers_ok","msg_id":0,"servers":[],"shares":{{}},"vnodes":{DEFAULT_VNODES}}}}}"#
        )]
    );
}

#[test]
fn eof_exits_0() {
    let out = run_bytes(Vec::new());
    assert!(out.status.success());
    assert!(out.lines.is_empty());

    // A last line without a newline is still answered.
    let out = run_bytes(init_with(1, &[]).into_bytes());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.lines.len(), 1);
}

#[test]
fn each_reply_is_flushed_before_the_next_request() {
    let mut child = Command::new(BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut ask = |line: String| {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let reply = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a reply while stdin is open");
        serde_json::from_str::<Value>(&reply).unwrap()
    };
    assert_eq!(ask(init_with(1, &["a".into()]))["body"]["type"], "init_ok");
    assert_eq!(
        ask(req(2, json!({"type": "get_server", "key": "k"})))["body"]["server"],
        "a"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

#[test]
fn library_run_speaks_the_same_protocol() {
    let input = r#"{"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}"#;
    let mut output = Vec::new();
    ringproxy::node::run(input.as_bytes(), &mut output).unwrap();
    assert_eq!(
        String::from_utf8(output).unwrap(),
        "{\"src\":\"n1\",\"dest\":\"c0\",\"body\":{\"type\":\"init_ok\",\"in_reply_to\":1,\"msg_id\":0}}\n"
    );
}

/// Maelstrom names nodes `n0`, `n1`, ... `n10`: three-byte ids that differ only in their last
/// byte. The ring must spread them as evenly as any other ids.
#[test]
fn three_byte_ids_share_the_ring_evenly() {
    let servers: Vec<String> = (10..15).map(|i| format!("n{i}")).collect();
    let r = run_lines(&[
        init_with(1, &servers),
        req(2, json!({"type": "ring_state"})),
    ])
    .replies();
    for (server, share) in r[&2]["shares"].as_object().unwrap() {
        let share = share.as_f64().unwrap();
        assert!(
            (0.1..0.3).contains(&share),
            "{server} owns {share:.3} of the ring"
        );
    }
}
