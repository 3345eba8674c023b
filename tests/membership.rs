//! Membership as an operator drives it, through the real binary: config reload by `SIGHUP` and
//! `POST /reload`, the state file across `kill -9`, and the ring fingerprint across replicas.
//!
//! Every proxy here is a `ringproxy` child process (see `common/process.rs`) in front of real
//! HTTP backends on 127.0.0.1; expected routing is computed with the library's own `Ring`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use ringproxy::config::DEFAULT_VNODES;
use ringproxy::ring::{moved, Member, Ring};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// The ring the proxy should build for these (id, weight) members.
fn weighted_ring(members: &[(&str, u32)]) -> Ring {
    Ring::new(
        members.iter().map(|(id, w)| Member::new(*id, *w)),
        DEFAULT_VNODES,
    )
    .unwrap()
}

/// (id, weight) of each entry of a `GET /backends` or `GET /ring` answer, sorted by id.
fn members_of(list: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = list["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no backends list in {list}"))
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn members(list: &[(&str, u32)]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = list
        .iter()
        .map(|(id, w)| ((*id).to_string(), u64::from(*w)))
        .collect();
    out.sort();
    out
}

/// The `GET /backends` entry of `id`.
fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}"))
}

/// What a caller can see of the membership: version, fingerprint, ids, weights, addresses,
/// states. Counters are left out.
fn membership(list: &Value) -> Value {
    let mut entries: Vec<Value> = list["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| json!([b["id"], b["address"], b["weight"], b["state"]]))
        .collect();
    entries.sort_by_key(ToString::to_string);
    json!({"version": list["version"], "fingerprint": list["fingerprint"], "backends": entries})
}

/// The keys whose owner differs, as `key: before -> after`.
fn differences(keys: &[String], before: &[String], after: &[String]) -> Vec<String> {
    (0..keys.len())
        .filter(|&i| before[i] != after[i])
        .map(|i| format!("{}: {} -> {}", keys[i], before[i], after[i]))
        .collect()
}

/// Asserts two routings of `keys` are identical, naming a few keys that are not.
fn assert_same_routing(keys: &[String], before: &[String], after: &[String], what: &str) {
    let diff = differences(keys, before, after);
    assert!(
        diff.is_empty(),
        "{what}: {} of {} keys changed owner, e.g. {:?}",
        diff.len(),
        keys.len(),
        &diff[..diff.len().min(5)]
    );
}

/// Writes a config file in place (with the suite's HTTP/1 path); the next reload reads it.
fn rewrite(file: &TempFile, text: &str) {
    write_config(&file.path, text);
}

/// The `ringproxy_ring_info` series of a `/metrics` text: (fingerprint, value) of each.
fn ring_info(metrics: &str) -> Vec<(String, String)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("ringproxy_ring_info{fingerprint=\""))
        .map(|rest| {
            let (fp, value) = rest.split_once("\"}").expect("one label");
            (fp.to_string(), value.trim().to_string())
        })
        .collect()
}

/// The one fingerprint a process shows in `/ring`, `/backends` and `/metrics`, which must agree.
async fn fingerprint(p: &Ringproxy) -> String {
    let ring = p.ring().await["fingerprint"].as_str().unwrap().to_string();
    let backends = p.backends().await["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let metrics = p.metrics().await;
    assert_eq!(ring, backends, "/ring and /backends disagree");
    assert_eq!(
        ring_info(&metrics),
        [(ring.clone(), "1".to_string())],
        "/metrics must carry exactly one ring_info series, at 1, for the current fingerprint:\n{metrics}"
    );
    ring
}

fn with_addr<'a>(
    list: &[(&'a str, u32)],
    backends: &[TestBackend],
) -> Vec<(&'a str, SocketAddr, u32)> {
    list.iter()
        .map(|(id, w)| {
            let b = backends.iter().find(|b| b.name == *id).expect("a backend");
            (*id, b.addr, *w)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_moves_only_the_keys_the_change_moves() {
    let backends = start_backends(&["a", "b", "c", "d"]).await;
    let old = [("a", 1), ("b", 1), ("c", 1)];
    // d joins, c leaves, b doubles.
    let new = [("a", 1), ("b", 2), ("d", 1)];
    let file = TempFile::new(
        "sighup",
        &process_config("debug_headers = true", "", "", &with_addr(&old, &backends)),
    );
    let mut p = Ringproxy::start(&file.path).await;
    let keys = keys(1000);
    let (old_ring, new_ring) = (weighted_ring(&old), weighted_ring(&new));

    let before = p.route(&keys).await;
    assert_same_routing(&keys, &expected(&old_ring, &keys, &[]), &before, "before");
    let listed = p.backends().await;
    assert_eq!(members_of(&listed), members(&old));
    assert_eq!(listed["fingerprint"], old_ring.fingerprint());
    let version = listed["version"].as_u64().unwrap();

    rewrite(
        &file,
        &process_config("debug_headers = true", "", "", &with_addr(&new, &backends)),
    );
    let mark = p.process.line_count();
    p.signal(Signal::Hup);
    let listed = p
        .wait_backends(WAIT, |b| members_of(b) == members(&new))
        .await;
    assert_eq!(listed["version"], version + 1, "one swap: {listed}");
    assert_eq!(listed["fingerprint"], new_ring.fingerprint());
    assert_eq!(entry(&listed, "d")["address"], backends[3].addr.to_string());
    let ring = p.ring().await;
    assert_eq!(members_of(&ring), members(&new));
    assert_eq!(ring["fingerprint"], listed["fingerprint"]);
    assert_eq!(ring["points"], 4 * DEFAULT_VNODES);

    // The reload logs what it changed, with the exact share the ring arithmetic gives.
    let log = p.process.wait_log(mark, "config reloaded", WAIT).await;
    assert_eq!(log["joined"], "[\"d\"]", "{log}");
    assert_eq!(log["left"], "[\"c\"]", "{log}");
    assert_eq!(log["changed"], "[\"b\"]", "{log}");
    let share = moved(&old_ring, &new_ring).share;
    let logged = log["moved"].as_f64().unwrap();
    assert!((logged - share).abs() < 1e-9, "{logged} vs {share}");
    assert!(p.process.is_running(), "SIGHUP must not stop the process");

    let after = p.route(&keys).await;
    assert_same_routing(&keys, &expected(&new_ring, &keys, &[]), &after, "after");
    for i in 0..keys.len() {
        let (was, is) = (before[i].as_str(), after[i].as_str());
        if was != "c" && is != "d" && is != "b" {
            assert_eq!(
                was, is,
                "{} moved though neither c nor d/b explains it",
                keys[i]
            );
        }
        // b only gained points: its keys stay unless the newcomer d took them.
        if was == "b" {
            assert!(is == "b" || is == "d", "{} left b for {is}", keys[i]);
        }
        assert_ne!(is, "c", "{} still on c", keys[i]);
    }
    let moved_keys = differences(&keys, &before, &after).len();
    let observed = moved_keys as f64 / keys.len() as f64;
    assert!(
        moved_keys > 0 && (observed - share).abs() < 0.06,
        "{moved_keys} of 1000 keys moved; the ring says {share:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_reports_the_change_and_an_invalid_file_changes_nothing() {
    let backends = start_backends(&["a", "b", "c", "d"]).await;
    let old = [("a", 1), ("b", 1), ("c", 1)];
    let new = [("a", 1), ("b", 2), ("d", 1)];
    let token = "s3cret-token";
    let admin = format!("token = \"{token}\"");
    let config = |list: &[(&str, u32)]| process_config("", &admin, "", &with_addr(list, &backends));
    let file = TempFile::new("post-reload", &config(&old));
    let mut p = Ringproxy::start_with_token(&file.path, token).await;
    let keys = keys(1000);
    let before = p.route(&keys).await;
    let listed = membership(&p.backends().await);

    // A reload of the unchanged file changes nothing and says so.
    let r = p.reload().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["joined"], json!([]), "{v}");
    assert_eq!(v["left"], json!([]), "{v}");
    assert_eq!(v["changed"], json!([]), "{v}");
    assert_eq!(v["moved"], 0.0, "{v}");
    assert_eq!(v["settings"], json!([]), "{v}");
    assert_eq!(v["version"], listed["version"], "{v}");
    assert_eq!(v["fingerprint"], listed["fingerprint"], "{v}");

    // An invalid file: zero weight on the second backend.
    let invalid = config(&[("a", 1), ("b", 0), ("c", 1)]);
    rewrite(&file, &invalid);
    let r = p.reload().await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("backends[1].weight"), "{error}");
    assert_eq!(membership(&p.backends().await), listed);
    let after = p.route(&keys).await;
    assert_same_routing(&keys, &before, &after, "after a refused POST /reload");

    // The same file by SIGHUP: logged, the process keeps running, nothing changes.
    let mark = p.process.line_count();
    p.signal(Signal::Hup);
    let log = p
        .process
        .wait_log(mark, "config reload failed; the running config stays", WAIT)
        .await;
    assert!(
        log["error"]
            .as_str()
            .unwrap()
            .contains("backends[1].weight"),
        "{log}"
    );
    assert!(p.process.is_running(), "a bad file must not stop the proxy");
    assert_eq!(membership(&p.backends().await), listed);
    let after = p.route(&keys).await;
    assert_same_routing(&keys, &before, &after, "after a refused SIGHUP");

    // A valid change: without the token it is refused and changes nothing.
    rewrite(&file, &config(&new));
    let r = p
        .http
        .request(Method::POST, &p.admin_url("/reload"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(membership(&p.backends().await), listed);

    let r = p.reload().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["joined"], json!(["d"]), "{v}");
    assert_eq!(v["left"], json!(["c"]), "{v}");
    assert_eq!(v["changed"], json!(["b"]), "{v}");
    assert_eq!(v["settings"], json!([]), "{v}");
    assert_eq!(v["ignored"], json!([]), "{v}");
    let (old_ring, new_ring) = (weighted_ring(&old), weighted_ring(&new));
    let share = moved(&old_ring, &new_ring).share;
    let reported = v["moved"].as_f64().unwrap();
    assert!(
        reported > 0.0 && (reported - share).abs() < 1e-9,
        "{reported} vs {share}"
    );
    assert_eq!(v["version"], listed["version"].as_u64().unwrap() + 1, "{v}");
    assert_eq!(v["fingerprint"], new_ring.fingerprint(), "{v}");
    let now = p.backends().await;
    assert_eq!(members_of(&now), members(&new));
    assert_eq!(now["fingerprint"], v["fingerprint"]);
    assert_eq!(p.ring().await["fingerprint"], v["fingerprint"]);
    let after = p.route(&keys).await;
    assert_same_routing(&keys, &expected(&new_ring, &keys, &[]), &after, "after");
}

/// Starts `n` requests for `/slow/MS` with keys `slow-{round}-{i}`; each task answers
/// (status, body, x-backend if any).
fn slow_requests(
    p: &Ringproxy,
    round: usize,
    n: usize,
    ms: u64,
) -> Vec<tokio::task::JoinHandle<(StatusCode, String, Option<String>)>> {
    (0..n)
        .map(|i| {
            let (http, url) = (p.http.clone(), p.url(&format!("/slow/{ms}")));
            tokio::spawn(async move {
                let key = format!("slow-{round}-{i}");
                let r = http.get(&url, &[("x-user-id", &key)]).await;
                let backend = r
                    .headers
                    .get("x-backend")
                    .map(|v| v.to_str().unwrap().to_string());
                (r.status, r.text(), backend)
            })
        })
        .collect()
}

/// Waits (bounded) until the backends together have received `n` requests.
async fn wait_total_hits(backends: &[TestBackend], n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let total: usize = backends.iter().map(TestBackend::hits).sum();
        if total >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backends got {total} of {n} requests"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_across_a_reload_complete() {
    const SLOW_MS: u64 = 3000;
    let backends = start_backends(&["a", "b", "c", "d"]).await;
    let old = [("a", 1), ("b", 1), ("c", 1)];
    let new = [("a", 1), ("b", 1), ("d", 1)];
    let config = |list: &[(&str, u32)]| process_config("", "", "", &with_addr(list, &backends));
    let file = TempFile::new("in-flight", &config(&old));
    let p = Ringproxy::start(&file.path).await;
    let old_ring = weighted_ring(&old);

    // Round 1 by POST /reload (c leaves while some of these are on it), round 2 by SIGHUP
    // (c comes back, d leaves).
    for round in 0..2 {
        let (from, to) = if round == 0 {
            (&old, &new)
        } else {
            (&new, &old)
        };
        let sent_before: usize = backends.iter().map(TestBackend::hits).sum();
        let slow = slow_requests(&p, round, 20, SLOW_MS);
        wait_total_hits(&backends, sent_before + 20).await;
        let leaving = if round == 0 { "c" } else { "d" };
        let on_leaving = backends.iter().find(|b| b.name == leaving).unwrap().hits();
        assert!(on_leaving > 0, "no request in flight on {leaving}");

        rewrite(&file, &config(to));
        if round == 0 {
            let r = p.reload().await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            assert_eq!(r.json()["left"], json!(["c"]));
        } else {
            p.signal(Signal::Hup);
            p.wait_backends(WAIT, |b| members_of(b) == members(to))
                .await;
        }
        assert!(
            slow.iter().all(|t| !t.is_finished()),
            "a slow request finished before the reload was done; nothing was tested"
        );
        let ring = weighted_ring(from);
        for (i, task) in slow.into_iter().enumerate() {
            let (status, body, backend) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "request {i}: {body}");
            let key = format!("slow-{round}-{i}");
            assert_eq!(
                backend.as_deref(),
                Some(&*serving(&ring, &key, &[])),
                "{key}"
            );
            assert_eq!(Some(body), backend);
        }
    }
    assert_eq!(
        members_of(&p.backends().await),
        members(&old),
        "{}",
        old_ring.fingerprint()
    );
}

/// The ids in a saved state file, with their draining flags, sorted.
fn saved_members(path: &std::path::Path) -> Vec<(String, u64, bool)> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out: Vec<(String, u64, bool)> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
                b["draining"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn saved(list: &[(&str, u64, bool)]) -> Vec<(String, u64, bool)> {
    list.iter()
        .map(|(id, w, d)| ((*id).to_string(), *w, *d))
        .collect()
}

/// A test dir with a config whose `[admin]` saves membership to `membership.json` there:
/// (dir, state file, config file).
fn with_state_file(
    tag: &str,
    proxy_lines: &str,
    extra: &str,
    members: &[(&str, u32)],
    backends: &[TestBackend],
) -> (TestDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = TestDir::new(tag);
    let state = dir.join("membership.json");
    let admin = format!("state_file = {:?}", state.display().to_string());
    let config = dir.join("ringproxy.toml");
    let text = process_config(proxy_lines, &admin, extra, &with_addr(members, backends));
    std::fs::write(&config, text).unwrap();
    (dir, state, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_file_survives_kill_9_and_a_corrupt_one_stops_the_start() {
    let backends = start_backends(&["a", "b", "j", "k"]).await;
    let (_dir, state, config) = with_state_file(
        "state",
        "debug_headers = true",
        "",
        &[("a", 1), ("b", 1)],
        &backends,
    );
    let mut p = Ringproxy::start(&config).await;
    assert!(!state.exists(), "nothing changed yet, nothing saved");

    // Each change is in the file by the time the call answers.
    let addr = |id: &str| backends.iter().find(|b| b.name == id).unwrap().addr;
    let put = |id: &str, w: u32| format!("{{\"address\": \"{}\", \"weight\": {w}}}", addr(id));
    let r = p.admin_call(Method::PUT, "/backends/j", &put("j", 2)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        saved_members(&state),
        saved(&[("a", 1, false), ("b", 1, false), ("j", 2, false)])
    );
    let r = p.admin_call(Method::PUT, "/backends/k", &put("k", 1)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = p.admin_call(Method::DELETE, "/backends/a", "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(
        saved_members(&state),
        saved(&[("b", 1, false), ("j", 2, false), ("k", 1, false)])
    );
    let r = p.admin_call(Method::POST, "/backends/b/drain", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        saved_members(&state),
        saved(&[("b", 1, true), ("j", 2, false), ("k", 1, false)])
    );

    let keys = keys(1000);
    let ring = weighted_ring(&[("b", 1), ("j", 2), ("k", 1)]);
    let before = p.route(&keys).await;
    assert_same_routing(
        &keys,
        &expected(&ring, &keys, &["b"]),
        &before,
        "before the kill",
    );
    let fingerprint = p.backends().await["fingerprint"].clone();

    p.signal(Signal::Kill);
    let status = p.process.wait_exit(WAIT).await;
    assert!(killed_by(status, 9), "{status:?}");
    drop(p);

    // The same config again: membership comes from the state file alone.
    let mut p = Ringproxy::start(&config).await;
    p.process
        .wait_log(
            0,
            "membership from the state file; the config's [[backends]] are not used",
            WAIT,
        )
        .await;
    let listed = p.backends().await;
    assert_eq!(
        members_of(&listed),
        members(&[("b", 1), ("j", 2), ("k", 1)])
    );
    assert_eq!(entry(&listed, "b")["state"], "draining", "{listed}");
    assert_eq!(entry(&listed, "j")["address"], addr("j").to_string());
    assert_eq!(listed["fingerprint"], fingerprint);
    let after = p.route(&keys).await;
    assert_same_routing(&keys, &before, &after, "after kill -9 and restart");
    drop(p);

    // A corrupt state file: exit 2, naming the file, before anything listens.
    std::fs::write(&state, "{").unwrap();
    let mut bad = Process::spawn(&config);
    let code = bad.exit_code(WAIT).await;
    bad.wait_stderr_closed(WAIT).await;
    let stderr = bad.stderr();
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&state.display().to_string()),
        "stderr does not name {}:\n{stderr}",
        state.display()
    );
    assert!(!stderr.contains("\"listening\""), "{stderr}");
}

/// The ramp of `id` in a saved state file, as (direction, done_ms), if one is under way.
fn saved_ramp(path: &std::path::Path, id: &str) -> Option<(String, u64)> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let b = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("{id} not saved: {v}"));
    let r = b.get("ramp")?;
    Some((
        r["direction"].as_str().unwrap().to_string(),
        r["done_ms"].as_u64().unwrap(),
    ))
}

/// `id`'s ramp in a `/backends` listing: (direction, progress, points).
fn listed_ramp(list: &Value, id: &str) -> Option<(String, f64, u64)> {
    let r = &entry(list, id)["ramp"];
    Some((
        r.get("direction")?.as_str()?.to_string(),
        r["progress"].as_f64()?,
        r["points"].as_u64()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_ups_and_ramp_downs_resume_where_they_stood_after_kill_9() {
    let backends = start_backends(&["a", "b", "j"]).await;
    let warmup = "[balance]\nwarmup = \"60s\"\n";
    let (_dir, state, config) =
        with_state_file("ramps", "", warmup, &[("a", 1), ("b", 1)], &backends);
    let mut p = Ringproxy::start(&config).await;
    let j = backends.iter().find(|b| b.name == "j").unwrap().addr;
    let body = format!("{{\"address\": \"{j}\", \"weight\": 1}}");
    let r = p.admin_call(Method::PUT, "/backends/j", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = p
        .admin_call(Method::POST, "/backends/a/drain?ramp=60s", "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Both a little way along (the driver steps every 250 ms; 3 % of 60 s is 1.8 s).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = p.backends().await;
        let along = |id| listed_ramp(&listed, id).is_some_and(|(_, done, _)| done >= 0.03);
        if along("j") && along("a") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ramps did not move: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.signal(Signal::Kill);
    let status = p.process.wait_exit(WAIT).await;
    assert!(killed_by(status, 9), "{status:?}");
    drop(p);
    // What the file held at the kill: each ramp and how far it had gone.
    let (up, done_j) = saved_ramp(&state, "j").expect("j's warm-up saved");
    let (down, done_a) = saved_ramp(&state, "a").expect("a's ramp-down saved");
    assert_eq!((up.as_str(), down.as_str()), ("up", "down"));
    assert!(done_j >= 1_000 && done_a >= 1_000, "{done_j} {done_a}");
    assert_eq!(saved_ramp(&state, "b"), None);

    // Restarted, each goes on from there: j neither starts over nor gets its whole share, a
    // is still leaving (not back at full weight, and not drained early).
    let p = Ringproxy::start(&config).await;
    let listed = p.backends().await;
    let full = u64::from(DEFAULT_VNODES);
    let (direction, progress, points) = listed_ramp(&listed, "j").expect("j still warming");
    assert_eq!(direction, "up", "{listed}");
    assert!(
        progress >= done_j as f64 / 60_000.0 && progress < 0.5,
        "{listed}"
    );
    assert!(points > 0 && points < full / 2, "{listed}");
    let (direction, progress, points) = listed_ramp(&listed, "a").expect("a still ramping down");
    assert_eq!(direction, "down", "{listed}");
    assert!(
        progress >= done_a as f64 / 60_000.0 && progress < 0.5,
        "{listed}"
    );
    assert!(points < full && points > full / 2, "{listed}");
    assert_ne!(entry(&listed, "a")["state"], "draining", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_the_same_members_show_the_same_fingerprint() {
    let backends = start_backends(&["a", "b", "c", "d"]).await;
    let start = |list: &[(&str, u32)], tag: &str| {
        let file = TempFile::new(
            tag,
            &process_config("", "", "", &with_addr(list, &backends)),
        );
        async move {
            let p = Ringproxy::start(&file.path).await;
            (p, file)
        }
    };
    let (one, _f1) = start(&[("a", 1), ("b", 1), ("c", 1)], "fp-1").await;
    let (two, _f2) = start(&[("c", 1), ("a", 1), ("b", 1)], "fp-2").await;
    let (three, _f3) = start(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)], "fp-3").await;

    let f1 = fingerprint(&one).await;
    assert_eq!(
        f1,
        weighted_ring(&[("a", 1), ("b", 1), ("c", 1)]).fingerprint()
    );
    assert_eq!(fingerprint(&two).await, f1, "same members in another order");
    let f3 = fingerprint(&three).await;
    assert_ne!(f3, f1, "one extra backend");

    // A weight change changes it; restoring the weight restores it (no version in it).
    let version = one.backends().await["version"].as_u64().unwrap();
    let body = |w: u32| format!("{{\"address\": \"{}\", \"weight\": {w}}}", backends[1].addr);
    let r = one.admin_call(Method::PUT, "/backends/b", &body(3)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let changed = fingerprint(&one).await;
    assert_ne!(changed, f1);
    assert_eq!(
        changed,
        weighted_ring(&[("a", 1), ("b", 3), ("c", 1)]).fingerprint()
    );
    let r = one.admin_call(Method::PUT, "/backends/b", &body(1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(fingerprint(&one).await, f1);
    assert_eq!(one.backends().await["version"], version + 2);
    assert_eq!(fingerprint(&two).await, f1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_change_on_reload_is_reported_as_ignored_and_the_rest_applies() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let file = TempFile::new(
        "ignored",
        &process_config(
            "debug_headers = true",
            "",
            "",
            &with_addr(&[("a", 1), ("b", 1)], &backends),
        ),
    );
    let mut p = Ringproxy::start(&file.path).await;
    let r = p.http.get(&p.url("/"), &[("x-user-id", "k")]).await;
    assert!(r.headers.contains_key("x-ringproxy-backend"));

    // Another proxy address (cannot change while running), debug headers off and c joins
    // (both can).
    let text = process_config(
        "debug_headers = false",
        "",
        "",
        &with_addr(&[("a", 1), ("b", 1), ("c", 1)], &backends),
    )
    .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1);
    rewrite(&file, &text);
    let mark = p.process.line_count();
    let r = p.reload().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ignored"], json!(["proxy.listen"]), "{v}");
    assert_eq!(v["settings"], json!(["proxy"]), "{v}");
    assert_eq!(v["joined"], json!(["c"]), "{v}");
    let warning = p
        .process
        .wait_line(mark, WAIT, |l| {
            (l.contains("WARN") && l.contains("proxy.listen")).then_some(())
        })
        .await;
    assert!(
        warning.is_some(),
        "no warning naming proxy.listen:\n{}",
        p.process.stderr()
    );

    // Still serving on the address it started with, with the new settings and members.
    let r = p.http.get(&p.url("/"), &[("x-user-id", "k")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        !r.headers.contains_key("x-ringproxy-backend"),
        "debug_headers = false was not applied"
    );
    let keys = keys(1000);
    let ring = weighted_ring(&[("a", 1), ("b", 1), ("c", 1)]);
    let after = p.route(&keys).await;
    assert_same_routing(&keys, &expected(&ring, &keys, &[]), &after, "after");
    assert_eq!(p.ring().await["fingerprint"], ring.fingerprint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_the_moment_listening_is_logged_reloads_instead_of_killing() {
    // "listening" is the readiness line operators and scripts wait for; a SIGHUP right after it
    // must already find the handler installed (the default action terminates the process).
    let backends = start_backends(&["a", "b"]).await;
    let file = TempFile::new(
        "early-hup",
        &process_config("", "", "", &with_addr(&[("a", 1), ("b", 1)], &backends)),
    );
    for attempt in 0..5 {
        let mut p =
            Process::spawn_signalling_on(&file.path, "\"message\":\"listening\"", Signal::Hup);
        let reloaded = p
            .wait_line(0, START_WITHIN, |l| {
                l.contains("config reloaded").then_some(())
            })
            .await;
        if reloaded.is_none() || !p.is_running() {
            let status = p.wait_exit(Duration::from_secs(1)).await;
            panic!(
                "attempt {attempt}: SIGHUP right after \"listening\" ended the process ({status}); stderr:\n{}",
                p.stderr()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_admin_changes_unless_the_backends_list_changed() {
    let backends = start_backends(&["a", "b", "c", "j"]).await;
    let dir = TestDir::new("reload-state");
    let state = dir.join("membership.json");
    let admin = format!("state_file = {:?}", state.display().to_string());
    let config = dir.join("ringproxy.toml");
    let write = |list: &[(&str, u32)]| {
        write_config(
            &config,
            &process_config("", &admin, "", &with_addr(list, &backends)),
        );
    };
    write(&[("a", 1), ("b", 1)]);
    let mut p = Ringproxy::start(&config).await;
    let body = format!("{{\"address\": \"{}\"}}", backends[3].addr);
    let r = p.admin_call(Method::PUT, "/backends/j", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = p.admin_call(Method::POST, "/backends/b/drain", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let with_j = saved(&[("a", 1, false), ("b", 1, true), ("j", 1, false)]);
    assert_eq!(saved_members(&state), with_j);

    // The file's list did not change: the admin's join and drain stay, in both places.
    let listed = membership(&p.backends().await);
    let r = p.reload().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!((&v["joined"], &v["left"]), (&json!([]), &json!([])), "{v}");
    assert_eq!(v["moved"], 0.0, "{v}");
    assert_eq!(membership(&p.backends().await), listed);
    assert_eq!(saved_members(&state), with_j);

    // Also after a restart from the state file.
    p.signal(Signal::Kill);
    p.process.wait_exit(WAIT).await;
    drop(p);
    let mut p = Ringproxy::start(&config).await;
    assert_eq!(
        membership(&p.backends().await)["backends"],
        listed["backends"]
    );
    let r = p.reload().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        membership(&p.backends().await)["backends"],
        listed["backends"]
    );
    assert_eq!(saved_members(&state), with_j);

    // The list changed (c joins): membership follows the file, j goes, b stays drained, and the
    // state file says so before the next start reads it.
    write(&[("a", 1), ("b", 1), ("c", 1)]);
    p.signal(Signal::Hup);
    let listed = p
        .wait_backends(WAIT, |b| {
            members_of(b) == members(&[("a", 1), ("b", 1), ("c", 1)])
        })
        .await;
    assert_eq!(entry(&listed, "b")["state"], "draining", "{listed}");
    let with_c = saved(&[("a", 1, false), ("b", 1, true), ("c", 1, false)]);
    assert_eq!(saved_members(&state), with_c);
    p.signal(Signal::Kill);
    p.process.wait_exit(WAIT).await;
    drop(p);
    let p = Ringproxy::start(&config).await;
    let again = p.backends().await;
    assert_eq!(
        membership(&again)["backends"],
        membership(&listed)["backends"]
    );
    assert_eq!(again["fingerprint"], listed["fingerprint"]);
}
