//! Passive failover with real backends killed for real: a kill under a steady request stream,
//! a restart on the same address after the ejection, drain/undrain, health kept across
//! membership changes, every backend down, and `fail_on_5xx`. Expected routing is computed with
//! the same `Ring` the proxy uses: a key whose owner is unusable goes to its next usable
//! candidate clockwise, and no other key ever moves.
//!
//! Nothing here depends on the machine being fast: waits are bounded polls for a condition,
//! ejections last long enough (set in each test's config) that the test looks at them while
//! they are on, and ejection lengths are checked against the time actually measured around them.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};

// ---- a backend that can be restarted on the same address ------------------------------------

/// Answers like the common backends (body = name, `x-backend: name`); `stop` closes the port
/// and every connection, `restart` binds the same address again, as a restarted process would.
struct Restartable {
    name: String,
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl Restartable {
    async fn start(name: &str) -> Restartable {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut b = Restartable {
            name: name.to_string(),
            addr: listener.local_addr().unwrap(),
            hits: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(AtomicUsize::new(0)),
            task: None,
        };
        b.serve(listener);
        b
    }

    fn serve(&mut self, listener: TcpListener) {
        self.task = Some(serve_backend(
            listener,
            &self.name,
            self.hits.clone(),
            self.open.clone(),
        ));
    }

    /// Closes the listener and every connection; returns once the port and every connection
    /// are closed.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let what = format!("{} still has connections open after stop", self.name);
        wait_closed(&self.open, &what).await;
    }

    /// Listens on the same address again (retrying while the old socket lingers, up to 3 s).
    async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let listener = loop {
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            match socket.bind(self.addr).and_then(|()| socket.listen(1024)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    println!("rebinding {}: {e}; retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

// ---- kill under load ------------------------------------------------------------------------

const BEFORE_KILL: u8 = 0;
const KILLED: u8 = 1;
const EJECTED: u8 = 2;

struct Sample {
    key: usize,
    /// What the test had done when the request was sent.
    phase: u8,
    status: StatusCode,
    backend: Option<String>,
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_fails_over_to_next_candidate_without_errors() {
    let names = ["cache-a", "cache-b", "cache-c", "cache-d"];
    let backends = start_backends(&names).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let health = format!("[health]\n{EJECT_FOR_LONG}");
    let p = Arc::new(start_proxy(&config_proxy("debug_headers = true", &health, &refs)).await);
    let ring = ring(&names);
    let keys = Arc::new(keys(400));
    let owners = expected(&ring, &keys, &[]);
    p.assert_routing(&keys, &owners, "before the kill").await;
    let version = p.ring_version().await;

    let victim = "cache-c";
    let after = expected(&ring, &keys, &[victim]);
    let victim_keys = owners.iter().filter(|o| *o == victim).count();
    assert!(victim_keys > 50, "{victim} owns only {victim_keys} keys");

    // Two clients, each sending PASSES passes over every key (in opposite orders).
    const PASSES: usize = 4;
    let total = 2 * PASSES * keys.len();
    let sent = Arc::new(AtomicUsize::new(0));
    let phase = Arc::new(AtomicU8::new(BEFORE_KILL));
    let mut clients = JoinSet::new();
    for worker in 0..2 {
        let (p, keys, sent, phase) = (p.clone(), keys.clone(), sent.clone(), phase.clone());
        clients.spawn(async move {
            let mut samples = Vec::new();
            for _ in 0..PASSES {
                for j in 0..keys.len() {
                    let key = if worker == 0 { j } else { keys.len() - 1 - j };
                    let started = phase.load(Ordering::SeqCst);
                    sent.fetch_add(1, Ordering::SeqCst);
                    let r = p.get_key("/", &keys[key]).await;
                    // A request in flight when the backend died may meet either side of it.
                    let phase = match (started, phase.load(Ordering::SeqCst)) {
                        (BEFORE_KILL, BEFORE_KILL) => BEFORE_KILL,
                        (BEFORE_KILL, _) => KILLED,
                        (started, _) => started,
                    };
                    let backend = r
                        .headers
                        .get("x-ringproxy-backend")
                        .map(|v| v.to_str().unwrap().to_string());
                    if r.status == StatusCode::OK {
                        assert_eq!(backend.as_deref(), Some(r.backend().as_str()));
                    }
                    let body = r.text();
                    samples.push(Sample {
                        key,
                        phase,
                        status: r.status,
                        backend,
                        body,
                    });
                }
            }
            samples
        });
    }

    // Kill mid-stream, then watch for the ejection.
    wait_until(Duration::from_secs(60), "clients stalled", || {
        sent.load(Ordering::SeqCst) >= total / 4
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent_at_kill = sent.load(Ordering::SeqCst);
    let killed_at = Instant::now();
    phase.store(KILLED, Ordering::SeqCst);
    backends[2].stop();
    let sent_at_ejection = loop {
        if p.backend_state(victim).await["state"] == "ejected" {
            break sent.load(Ordering::SeqCst);
        }
        assert!(
            Instant::now() < deadline,
            "{victim} not ejected: {}",
            p.backend_state(victim).await
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let ejected_after = killed_at.elapsed();
    phase.store(EJECTED, Ordering::SeqCst);

    let mut samples = Vec::new();
    while let Some(done) = clients.join_next().await {
        samples.extend(done.unwrap());
    }
    assert_eq!(samples.len(), total);
    let mut errors = Vec::new();
    for s in &samples {
        let (key, owner) = (&keys[s.key], owners[s.key].as_str());
        if s.status != StatusCode::OK {
            errors.push(format!("{key} (owner {owner}): {} {:?}", s.status, s.body));
            continue;
        }
        let got = s.backend.as_deref().unwrap();
        if owner != victim {
            assert_eq!(
                got, owner,
                "{key} of live {owner} moved (phase {})",
                s.phase
            );
        } else {
            let ok = match s.phase {
                BEFORE_KILL => got == victim,
                KILLED => got == victim || got == after[s.key],
                _ => got == after[s.key],
            };
            assert!(
                ok,
                "{key} of {victim}: served by {got} in phase {}",
                s.phase
            );
        }
    }
    let state = p.backend_state(victim).await;
    let dead_key_requests_until_ejection = samples
        .iter()
        .filter(|s| s.phase == KILLED && owners[s.key] == victim)
        .count();
    println!(
        "kill test: {total} requests over {} keys ({victim_keys} on {victim}); killed after {sent_at_kill}; \
         ejected {:?} and {} requests ({dead_key_requests_until_ejection} for {victim}'s keys) later; \
         connect failures recorded: {}; non-200 responses: {}",
        keys.len(),
        ejected_after,
        sent_at_ejection - sent_at_kill,
        state["failures"],
        errors.len()
    );
    for e in &errors {
        println!("  non-200: {e}");
    }
    assert!(
        errors.len() <= 3,
        "{} non-200 responses (fail_threshold is 3): {errors:?}",
        errors.len()
    );

    // Settled: the dead backend's keys on their next candidate, everything else untouched.
    p.assert_routing(&keys, &after, "after the ejection").await;
    assert_eq!(state["state"], "ejected", "{state}");
    assert_eq!(state["ejections"], 1, "{state}");
    assert!(state["failures"].as_u64().unwrap() >= 3, "{state}");
    assert!(state["ejected_for_ms"].as_u64().unwrap() > 0, "{state}");
    for id in names.iter().filter(|id| **id != victim) {
        let s = p.backend_state(id).await;
        assert_eq!(s["state"], "healthy", "{s}");
        assert_eq!(s["failures"], 0, "{s}");
    }
    assert_eq!(
        p.ring_version().await,
        version,
        "health must not rebuild the ring"
    );
    let k = (0..keys.len()).find(|&i| owners[i] == victim).unwrap();
    let route = p.owner_by_admin(&keys[k]).await;
    assert_eq!(route["backend"], after[k].as_str(), "{route}");
    assert_eq!(route["owner"], victim, "{route}");
    assert_eq!(route["owner_state"], "ejected", "{route}");
}

// ---- restart on the same address ------------------------------------------------------------

/// `eject_for` in the restart test: far longer than the few requests between an ejection and
/// the look at it, short enough to wait out twice.
const EJECT_FOR_MS: u64 = 1000;

/// An ejection, as `GET /backends` showed it right after the request that caused it.
struct Ejection {
    /// The requests it took.
    requests: usize,
    state: Value,
    /// An upper bound on the time between the ejection and the reading of `state`.
    since: Duration,
}

impl Ejection {
    /// Asserts that the ejection lasts `ms`. `ejected_for_ms` is `ms` minus the time since the
    /// ejection, which `since` bounds: true however slow the machine, and tight when it is fast.
    fn assert_length(&self, ms: u64, what: &str) {
        let left = self.state["ejected_for_ms"].as_u64().unwrap();
        let since = self.since.as_millis() as u64 + 1;
        assert!(
            left <= ms && ms <= left + since,
            "{what}: want {ms} ms, but {left} ms were left at most {since} ms after: {}",
            self.state
        );
    }
}

/// Sends requests for `keys` (which must all be served by `want` meanwhile) until `id` has
/// been ejected `ejections` times in all.
async fn requests_until_ejected(
    p: &TestProxy,
    id: &str,
    keys: &[(String, String)],
    ejections: u64,
) -> Ejection {
    for n in 1..=20 {
        let (key, want) = &keys[(n - 1) % keys.len()];
        let sent = Instant::now();
        let r = p.get_key("/", key).await;
        assert_eq!(r.status, StatusCode::OK, "{key}: {}", r.text());
        assert_eq!(&r.backend(), want, "{key} while {id} is down");
        let state = p.backend_state(id).await;
        if state["ejections"] == ejections {
            return Ejection {
                requests: n,
                state,
                since: sent.elapsed(),
            };
        }
    }
    panic!(
        "{id} not ejected (for the {ejections}th time) after 20 requests: {}",
        p.backend_state(id).await
    );
}

#[tokio::test]
async fn restarted_backend_gets_its_keys_back_after_the_ejection() {
    let (a, b, c) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
        start_backend("cache-c").await,
    );
    let mut r = Restartable::start("cache-r").await;
    let list = [
        ("cache-a", a.addr),
        ("cache-b", b.addr),
        ("cache-c", c.addr),
        ("cache-r", r.addr),
    ];
    let health = format!(
        "[health]\nfail_threshold = 3\neject_for = \"{EJECT_FOR_MS}ms\"\nmax_eject_for = \"1m\""
    );
    let p = start_proxy(&config_addrs("", &health, &list)).await;
    let ring = ring(&["cache-a", "cache-b", "cache-c", "cache-r"]);
    let keys = keys(200);
    let owners = expected(&ring, &keys, &[]);
    let after = expected(&ring, &keys, &["cache-r"]);
    p.assert_routing(&keys, &owners, "at start").await;
    let r_keys: Vec<(String, String)> = (0..keys.len())
        .filter(|&i| owners[i] == "cache-r")
        .map(|i| (keys[i].clone(), after[i].clone()))
        .collect();
    assert!(r_keys.len() > 20, "cache-r owns {} keys", r_keys.len());
    let version = p.ring_version().await;

    // Down: connect failures are retried on the next candidate, the third one ejects.
    r.stop().await;
    let e = requests_until_ejected(&p, "cache-r", &r_keys, 1).await;
    println!(
        "restart test: ejected after {} requests: {}",
        e.requests, e.state
    );
    assert_eq!(e.requests, 3, "fail_threshold = 3: {}", e.state);
    e.assert_length(EJECT_FOR_MS, "first ejection is eject_for");

    // While ejected, cache-r is not even tried: its keys go straight to the next candidate.
    let (few, few_after): (Vec<String>, Vec<String>) = (0..keys.len())
        .filter(|&i| owners[i] == "cache-r")
        .take(8)
        .chain((0..keys.len()).filter(|&i| owners[i] != "cache-r").take(8))
        .map(|i| (keys[i].clone(), after[i].clone()))
        .unzip();
    p.assert_routing(&few, &few_after, "while cache-r is ejected")
        .await;
    let s = p.backend_state("cache-r").await;
    assert!(
        s["state"] == "ejected" && s["failures"] == e.state["failures"],
        "cache-r was tried while ejected (or 16 requests outlasted its {EJECT_FOR_MS} ms \
         ejection): {s}, at the ejection: {}",
        e.state
    );

    // Still down when the ejection ends: ejected again, for twice as long.
    p.wait_state("cache-r", "healthy", Duration::from_secs(10))
        .await;
    let e = requests_until_ejected(&p, "cache-r", &r_keys, 2).await;
    assert_eq!(e.requests, 3, "{}", e.state);
    e.assert_length(2 * EJECT_FOR_MS, "second ejection doubles");

    // Back on the same address: once the ejection ends, its keys come back; nothing else moved.
    r.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (key, _) = &r_keys[0];
        let got = p.get_key("/", key).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
        if got.backend() == "cache-r" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never came back to cache-r"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.assert_routing(&keys, &owners, "after the restart").await;
    let s = p.backend_state("cache-r").await;
    assert_eq!(s["state"], "healthy", "{s}");
    assert_eq!(s["consecutive_failures"], 0, "{s}");
    assert!(r.hits.load(Ordering::SeqCst) > 0);
    assert_eq!(p.ring_version().await, version);

    // A success reset the doubling: the next ejection is eject_for again.
    r.stop().await;
    let e = requests_until_ejected(&p, "cache-r", &r_keys, 3).await;
    assert_eq!(e.requests, 3, "{}", e.state);
    e.assert_length(EJECT_FOR_MS, "doubling reset by the success");
}

// ---- drain / undrain ------------------------------------------------------------------------

#[tokio::test]
async fn drain_moves_exactly_the_drained_keys_and_undrain_restores_them() {
    let names = ["cache-a", "cache-b", "cache-c", "cache-d"];
    let (held, release) = start_held_backend("cache-b").await;
    let backends = [
        start_backend("cache-a").await,
        held,
        start_backend("cache-c").await,
        start_backend("cache-d").await,
    ];
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let p = Arc::new(start_proxy(&config_with("", &refs)).await);
    let ring = ring(&names);
    let keys = keys(300);
    let owners = expected(&ring, &keys, &[]);
    p.assert_routing(&keys, &owners, "at start").await;
    let version = p.ring_version().await;

    // A request cache-b already holds (until the test releases it) finishes there.
    let b_key = keys[owners.iter().position(|o| o == "cache-b").unwrap()].clone();
    let before = backends[1].hits();
    let inflight = {
        let p = p.clone();
        tokio::spawn(async move { p.get_key("/held", &b_key).await })
    };
    wait_until(
        Duration::from_secs(10),
        "request never reached cache-b",
        || backends[1].hits() > before,
    )
    .await;
    let r = p.admin(Method::POST, "/backends/cache-b/drain", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let b = r.json();
    assert_eq!(b["id"], "cache-b", "{b}");
    assert_eq!(b["state"], "draining", "{b}");
    assert!(!inflight.is_finished(), "the held request ended early");
    release.send(true).unwrap();
    let r = inflight.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "in-flight request: {}", r.text());
    assert_eq!(r.backend(), "cache-b");
    let hits = backends[1].hits();
    let drained = expected(&ring, &keys, &["cache-b"]);
    let moved = (0..keys.len()).filter(|&i| drained[i] != owners[i]).count();
    assert_eq!(moved, owners.iter().filter(|o| *o == "cache-b").count());
    p.assert_routing(&keys, &drained, "cache-b drained").await;
    assert_eq!(
        backends[1].hits(),
        hits,
        "a draining backend gets no requests"
    );
    let k = (0..keys.len()).find(|&i| owners[i] == "cache-b").unwrap();
    let route = p.owner_by_admin(&keys[k]).await;
    assert_eq!(route["backend"], drained[k].as_str(), "{route}");
    assert_eq!(route["owner"], "cache-b", "{route}");
    assert_eq!(route["owner_state"], "draining", "{route}");

    // Draining again is a no-op; a second drained backend sends keys one candidate further.
    let r = p.admin(Method::POST, "/backends/cache-b/drain", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = p.admin(Method::POST, "/backends/cache-c/drain", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let two = expected(&ring, &keys, &["cache-b", "cache-c"]);
    p.assert_routing(&keys, &two, "cache-b and cache-c drained")
        .await;

    for id in ["cache-c", "cache-b"] {
        let r = p
            .admin(Method::POST, &format!("/backends/{id}/undrain"), "")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["state"], "healthy");
    }
    p.assert_routing(&keys, &owners, "after undrain").await;
    assert_eq!(
        p.ring_version().await,
        version,
        "drain must not rebuild the ring"
    );
    assert_eq!(p.backends().await["version"], version);

    let r = p.admin(Method::POST, "/backends/nope/drain", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("nope"));
    let r = p.admin(Method::POST, "/backends/nope/undrain", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = p.admin(Method::GET, "/backends/cache-b/drain", "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
    assert_eq!(r.headers["allow"], "POST");
    assert!(r.json()["error"].is_string());
    assert_eq!(p.backend_state("cache-b").await["state"], "healthy");
}

// ---- health across membership changes --------------------------------------------------------

#[tokio::test]
async fn health_survives_membership_changes() {
    let (a, b, c) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
        start_backend("cache-c").await,
    );
    let x_dead = dead_addr().await;
    let list = [
        ("cache-a", a.addr),
        ("cache-b", b.addr),
        ("cache-c", c.addr),
        ("cache-x", x_dead),
    ];
    let health = format!("[health]\n{EJECT_FOR_LONG}");
    let p = start_proxy(&config_addrs("", &health, &list)).await;
    let four = ring(&["cache-a", "cache-b", "cache-c", "cache-x"]);
    let x_key = key_owned_by(&four, "cache-x");
    for _ in 0..3 {
        let r = p.get_key("/", &x_key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(p.backend_state("cache-x").await["state"], "ejected");
    let r = p.admin(Method::POST, "/backends/cache-b/drain", "").await;
    assert_eq!(r.status, StatusCode::OK);

    // A join builds a new snapshot: the ejection and the drain carry over.
    let d = start_backend("cache-d").await;
    let put =
        |addr: SocketAddr, weight: u32| format!(r#"{{"address":"{addr}","weight":{weight}}}"#);
    let r = p
        .admin(Method::PUT, "/backends/cache-d", &put(d.addr, 1))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(p.ring_version().await, 2);
    let x = p.backend_state("cache-x").await;
    assert_eq!(
        (x["state"].as_str(), x["ejections"].as_u64()),
        (Some("ejected"), Some(1)),
        "{x}"
    );
    assert_eq!(p.backend_state("cache-b").await["state"], "draining");
    let five = ring(&["cache-a", "cache-b", "cache-c", "cache-d", "cache-x"]);
    let keys = keys(200);
    let want = expected(&five, &keys, &["cache-b", "cache-x"]);
    p.assert_routing(&keys, &want, "after the join").await;

    // Same address, new weight: same server, same health.
    let r = p
        .admin(Method::PUT, "/backends/cache-x", &put(x_dead, 2))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(p.backend_state("cache-x").await["state"], "ejected");
    // A new address is a new server: a fresh start, but an operator's drain stays.
    let x_new = start_backend("cache-x").await;
    let r = p
        .admin(Method::PUT, "/backends/cache-x", &put(x_new.addr, 1))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let x = p.backend_state("cache-x").await;
    assert_eq!(
        (x["state"].as_str(), x["failures"].as_u64()),
        (Some("healthy"), Some(0)),
        "{x}"
    );
    let b_new = start_backend("cache-b").await;
    let r = p
        .admin(Method::PUT, "/backends/cache-b", &put(b_new.addr, 1))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(p.backend_state("cache-b").await["state"], "draining");
    let want = expected(&five, &keys, &["cache-b"]);
    p.assert_routing(&keys, &want, "cache-x back at a new address")
        .await;
    assert_eq!(b_new.hits(), 0);
}

// ---- all down -------------------------------------------------------------------------------

/// Timers far longer than an answer given at once: a response that came before 10 s waited
/// for none of them.
const NO_QUICK_TIMERS: &str = "connect_timeout = \"10s\"\nrequest_timeout = \"10s\"";

#[tokio::test]
async fn all_drained_answers_503_at_once() {
    let names = ["cache-a", "cache-b", "cache-c"];
    let backends = start_backends(&names).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let p = start_proxy(&config_proxy(NO_QUICK_TIMERS, "", &refs)).await;
    for id in names {
        let r = p
            .admin(Method::POST, &format!("/backends/{id}/drain"), "")
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let started = Instant::now();
    let r = p.get_key("/", "user-1").await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(r.text().contains("no usable backend"), "{:?}", r.text());
    let r = p.admin(Method::GET, "/route?key=user-1", "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("draining"),
        "{}",
        r.text()
    );
    assert!(backends.iter().all(|b| b.hits() == 0));

    let r = p.admin(Method::POST, "/backends/cache-b/undrain", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = p.get_key("/", "user-1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.backend(), "cache-b");
}

#[tokio::test]
async fn dead_and_drained_everywhere_answers_503_once_the_dead_are_ejected() {
    let z = start_backend("cache-z").await;
    let list = [
        ("cache-x", dead_addr().await),
        ("cache-y", dead_addr().await),
        ("cache-z", z.addr),
    ];
    let health = format!("[health]\n{EJECT_FOR_LONG}");
    let p = start_proxy(&config_addrs(NO_QUICK_TIMERS, &health, &list)).await;
    let r = p.admin(Method::POST, "/backends/cache-z/drain", "").await;
    assert_eq!(r.status, StatusCode::OK);

    // Until the dead are known, each request tries them and reports the refused connection.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let r = p.get_key("/", &format!("user-{i}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        statuses.push(r.status.as_u16());
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(r.text().contains("no usable backend"), "{:?}", r.text());
            break;
        }
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
        // A fixed text: which backend and why stay in the log.
        assert_eq!(r.text(), "Bad Gateway: the backend failed\n");
    }
    println!("all down: statuses until 503: {statuses:?}");
    assert_eq!(
        statuses,
        [502, 502, 502, 503],
        "3 failures eject each dead backend"
    );
    for id in ["cache-x", "cache-y"] {
        assert_eq!(p.backend_state(id).await["state"], "ejected");
    }
    assert_eq!(p.backend_state("cache-z").await["state"], "draining");
    let started = Instant::now();
    let r = p.get_key("/", "another").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = p.admin(Method::GET, "/route?key=another", "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.json()["error"].is_string());
    assert_eq!(z.hits(), 0);
}

// ---- fail_on_5xx ----------------------------------------------------------------------------

#[tokio::test]
async fn consecutive_5xx_eject_only_with_fail_on_5xx() {
    let names = ["cache-a", "cache-b", "cache-c"];
    let backends = start_backends(&names).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let ring = ring(&names);
    let key = key_owned_by(&ring, "cache-a");
    let next = serving(&ring, &key, &["cache-a"]);

    // Off (the default): 500s pass through and count for nothing.
    let p = start_proxy(&config_with("", &refs)).await;
    for _ in 0..5 {
        let r = p.get_key("/status/500", &key).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.backend(), "cache-a");
    }
    let s = p.backend_state("cache-a").await;
    assert_eq!(s["state"], "healthy", "{s}");
    assert_eq!(s["failures"], 0, "{s}");

    // On: 5xx count, a success resets the streak, 4xx do not count, 3 in a row eject.
    let health = format!("[health]\nfail_on_5xx = true\n{EJECT_FOR_LONG}");
    let p = start_proxy(&config_with(&health, &refs)).await;
    for path in [
        "/status/500",
        "/status/503",
        "/",
        "/status/404",
        "/status/502",
    ] {
        p.get_key(path, &key).await;
    }
    let s = p.backend_state("cache-a").await;
    assert_eq!(s["state"], "healthy", "{s}");
    assert_eq!(s["consecutive_failures"], 1, "{s}");
    for _ in 0..2 {
        let r = p.get_key("/status/500", &key).await;
        assert_eq!(
            r.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "the 5xx is not retried"
        );
        assert_eq!(r.backend(), "cache-a");
    }
    let s = p.backend_state("cache-a").await;
    assert_eq!(s["state"], "ejected", "{s}");
    assert_eq!(s["failures"], 5, "{s}");
    assert_eq!(s["ejections"], 1, "{s}");
    let r = p.get_key("/", &key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.backend(),
        next,
        "the ejected backend's key goes to the next candidate"
    );
    let route = p.owner_by_admin(&key).await;
    assert_eq!(route["owner_state"], "ejected", "{route}");
}
