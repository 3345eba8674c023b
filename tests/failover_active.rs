//! Failover, part two: active health checks against a backend whose `/health` answers follow a
//! script (hysteresis both ways), every state `GET /backends` can show, and retry semantics
//! (bodies resent after a refused connection, no resend after sending unless
//! `retry_idempotent`, `max_attempts`).
//!
//! Waits are bounded polls for a condition. Where a timer is the point of a test, the live
//! backends' answers must still fit in it, so those timers are set far above a loopback round
//! trip on a loaded machine; time bounds are checked against what the alternative would take
//! (the slow backend's answer), not against a guess of how fast the machine is.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Short enough for a quick test, long enough that a check of a healthy backend (a loopback
/// round trip) never times out, even on a loaded 2-core machine: a spurious failed check would
/// break the streaks the tests count.
const ACTIVE: &str = "[health.active]\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
                      unhealthy_threshold = 3\nhealthy_threshold = 2\n";

/// How long a test waits for a few active checks (at 500 ms each) before it fails.
const CHECKS_WITHIN: Duration = Duration::from_secs(20);

// ---- a scripted backend ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Pass,
    Fail,
    /// Never answers: the check times out.
    Hang,
}

/// What the scripted backend does; shared with the test.
struct Script {
    /// The `/health` answer once `queue` is empty.
    health: Mutex<Check>,
    /// Answers for the next checks, before falling back to `health`.
    queue: Mutex<VecDeque<Check>>,
    /// Every `/health` answer given, in order.
    log: Mutex<Vec<Check>>,
    /// Other requests get no answer at all.
    hang: Mutex<bool>,
    /// Requests other than `/health`.
    hits: AtomicUsize,
}

/// A backend like the common ones (body = name, `x-backend`, `/echo`, `/status/NNN`) whose
/// `/health` follows a script and which can hang every other request.
struct Scripted {
    name: String,
    addr: SocketAddr,
    script: Arc<Script>,
    accept: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Scripted {
    async fn start(name: &str, health: Check, hang: bool) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Script {
            health: Mutex::new(health),
            queue: Mutex::new(VecDeque::new()),
            log: Mutex::new(Vec::new()),
            hang: Mutex::new(hang),
            hits: AtomicUsize::new(0),
        });
        let (name_owned, shared) = (name.to_string(), script.clone());
        let open = Arc::new(AtomicUsize::new(0));
        let accept = serve_http(listener, open, move |req| {
            let (name, script) = (name_owned.clone(), shared.clone());
            async move { answer(&name, &script, req).await }
        });
        Scripted {
            name: name.to_string(),
            addr,
            script,
            accept,
        }
    }

    fn set_health(&self, check: Check) {
        *self.script.health.lock().unwrap() = check;
    }

    fn queue(&self, checks: &[Check]) {
        self.script.queue.lock().unwrap().extend(checks);
    }

    fn log(&self) -> Vec<Check> {
        self.script.log.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.script.hits.load(Ordering::SeqCst)
    }
}

/// `/health` as the script says; anything else counted, then hung or answered like the common
/// backends.
async fn answer(name: &str, script: &Script, req: Request<Incoming>) -> Response<BackendBody> {
    if req.uri().path() != "/health" {
        script.hits.fetch_add(1, Ordering::SeqCst);
        if *script.hang.lock().unwrap() {
            std::future::pending::<()>().await;
        }
        return backend_answer(name, req).await;
    }
    let check = {
        let next = script.queue.lock().unwrap().pop_front();
        next.unwrap_or(*script.health.lock().unwrap())
    };
    script.log.lock().unwrap().push(check);
    let (status, body) = match check {
        Check::Pass => (StatusCode::OK, "ok"),
        Check::Fail => (StatusCode::SERVICE_UNAVAILABLE, "down"),
        Check::Hang => std::future::pending().await,
    };
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert("x-backend", name.parse().unwrap());
    res
}

// ---- active checks: hysteresis --------------------------------------------------------------

/// Polls `id`'s state until `f` has answered `n` more checks than `from` (at most
/// [`CHECKS_WITHIN`]), probing `key` through the proxy each round; returns the distinct states
/// and servers seen.
async fn watch(
    p: &TestProxy,
    f: &Scripted,
    from: usize,
    n: usize,
    key: &str,
) -> (Vec<String>, Vec<String>) {
    let (mut states, mut servers) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + CHECKS_WITHIN;
    loop {
        let s = p.backend_state(&f.name).await["state"]
            .as_str()
            .unwrap()
            .to_string();
        if !states.contains(&s) {
            states.push(s);
        }
        let server = p.owner_by_request(key).await;
        if !servers.contains(&server) {
            servers.push(server);
        }
        if f.log().len() >= from + n {
            return (states, servers);
        }
        assert!(
            Instant::now() < deadline,
            "only {} checks",
            f.log().len() - from
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn trailing(log: &[Check], check: Check) -> usize {
    log.iter().rev().take_while(|c| **c == check).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_backend_flips_only_after_full_streaks() {
    let (a, b, c) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
        start_backend("cache-c").await,
    );
    let f = Scripted::start("cache-f", Check::Pass, false).await;
    let list = [
        ("cache-a", a.addr),
        ("cache-b", b.addr),
        ("cache-c", c.addr),
        ("cache-f", f.addr),
    ];
    let p = start_proxy(&config_addrs("", ACTIVE, &list)).await;
    let ring = ring(&["cache-a", "cache-b", "cache-c", "cache-f"]);
    let keys = keys(200);
    let owners = expected(&ring, &keys, &[]);
    let down = expected(&ring, &keys, &["cache-f"]);
    let f_key = &keys[owners.iter().position(|o| o == "cache-f").unwrap()];
    let f_next = serving(&ring, f_key, &["cache-f"]);
    watch(&p, &f, 0, 2, f_key).await;
    assert_eq!(p.owners_by_request(&keys).await, owners);

    // Two failed checks (fewer than unhealthy_threshold), then passes: no flip, no key moves.
    let from = f.log().len();
    f.queue(&[Check::Fail, Check::Fail]);
    let (states, servers) = watch(&p, &f, from, 5, f_key).await;
    let fails = f.log()[from..]
        .iter()
        .filter(|c| **c == Check::Fail)
        .count();
    assert_eq!(fails, 2, "{:?}", f.log());
    assert_eq!(states, ["healthy"], "2 failed checks must not flip it");
    assert_eq!(servers, ["cache-f"]);

    // Failing for good: unhealthy after 3 in a row; its keys (only) go to the next candidates.
    let from = f.log().len();
    f.set_health(Check::Fail);
    p.wait_state("cache-f", "unhealthy", CHECKS_WITHIN).await;
    let log = f.log();
    let fails = log[from..].iter().filter(|c| **c == Check::Fail).count();
    println!("flapping: unhealthy seen after {fails} failed checks");
    assert!(trailing(&log, Check::Fail) >= 3, "{log:?}");
    assert_eq!(p.owners_by_request(&keys).await, down);
    let route = p.owner_by_admin(f_key).await;
    assert_eq!(route["backend"], f_next.as_str(), "{route}");
    assert_eq!(route["owner_state"], "unhealthy", "{route}");

    // One passing check among failures (fewer than healthy_threshold): stays unhealthy.
    let from = f.log().len();
    f.queue(&[Check::Pass]);
    let (states, servers) = watch(&p, &f, from, 4, f_key).await;
    let passes = f.log()[from..]
        .iter()
        .filter(|c| **c == Check::Pass)
        .count();
    assert_eq!(passes, 1, "{:?}", f.log());
    assert_eq!(
        states,
        ["unhealthy"],
        "1 passed check must not flip it back"
    );
    assert_eq!(servers, [f_next]);

    // Passing for good: healthy after 2 in a row, exactly the original mapping again.
    f.set_health(Check::Pass);
    p.wait_state("cache-f", "healthy", CHECKS_WITHIN).await;
    assert!(trailing(&f.log(), Check::Pass) >= 2, "{:?}", f.log());
    assert_eq!(p.owners_by_request(&keys).await, owners);
    assert_eq!(
        p.backends().await["version"],
        1,
        "health must not rebuild the ring"
    );
}

// ---- every state in GET /backends -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_healthy_ejected_draining_and_unhealthy() {
    let (h, e, d) = (
        start_backend("cache-h").await,
        start_backend("cache-e").await,
        start_backend("cache-d").await,
    );
    // Its checks time out.
    let u = Scripted::start("cache-u", Check::Hang, false).await;
    let ids = ["cache-d", "cache-e", "cache-h", "cache-u"];
    let list = [
        ("cache-h", h.addr),
        ("cache-e", e.addr),
        ("cache-d", d.addr),
        ("cache-u", u.addr),
    ];
    // An ejection that outlasts the test, so cache-e is still ejected when the test looks.
    const EJECT_FOR_MS: u64 = 3_600_000;
    let extra = format!("[health]\nfail_on_5xx = true\neject_for = \"{EJECT_FOR_MS}ms\"\n{ACTIVE}");
    let p = start_proxy(&config_addrs("", &extra, &list)).await;
    let ring = ring(&ids);

    let e_key = key_owned_by(&ring, "cache-e");
    let ejecting = Instant::now();
    for _ in 0..3 {
        let r = p.get_key("/status/500", &e_key).await;
        assert_eq!(r.backend(), "cache-e");
    }
    let r = p.admin(Method::POST, "/backends/cache-d/drain", "").await;
    assert_eq!(r.status, StatusCode::OK);
    p.wait_state("cache-u", "unhealthy", CHECKS_WITHIN).await;

    let all = p.backends().await;
    println!("{all}");
    let want = [
        ("cache-d", "draining"),
        ("cache-e", "ejected"),
        ("cache-h", "healthy"),
        ("cache-u", "unhealthy"),
    ];
    for (id, state) in want {
        let s = p.backend_state(id).await;
        assert_eq!(s["state"], state, "{s}");
        let route = p.owner_by_admin(&key_owned_by(&ring, id)).await;
        assert_eq!(route["owner_state"], state, "{route}");
        assert_eq!(route["backend"], "cache-h", "{route}");
        if id == "cache-e" {
            assert_eq!(s["failures"], 3, "{s}");
            assert_eq!(s["ejections"], 1, "{s}");
            assert_eq!(s["consecutive_failures"], 0, "{s}");
            // eject_for minus the time since the ejection, which is at most `ejecting`'s age.
            let left = s["ejected_for_ms"].as_u64().unwrap();
            let since = ejecting.elapsed().as_millis() as u64 + 1;
            assert!(
                left <= EJECT_FOR_MS && EJECT_FOR_MS <= left + since,
                "ejected for eject_for: {s}"
            );
        } else {
            assert_eq!(s["failures"], 0, "{s}");
            assert_eq!(s["ejections"], 0, "{s}");
            assert_eq!(s["ejected_for_ms"], 0, "{s}");
        }
    }
    // Draining is shown over anything else.
    let r = p.admin(Method::POST, "/backends/cache-e/drain", "").await;
    assert_eq!(r.json()["state"], "draining");
    let r = p.admin(Method::POST, "/backends/cache-e/undrain", "").await;
    assert_eq!(r.json()["state"], "ejected");
}

// ---- retries --------------------------------------------------------------------------------

#[tokio::test]
async fn bodies_for_a_dead_owner_are_resent_intact_to_the_next_candidate() {
    let (a, b, c) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
        start_backend("cache-c").await,
    );
    let list = [
        ("cache-a", a.addr),
        ("cache-b", b.addr),
        ("cache-c", c.addr),
        ("cache-x", dead_addr().await),
    ];
    let ring = ring(&["cache-a", "cache-b", "cache-c", "cache-x"]);
    let p = start_proxy(&config_addrs("", "", &list)).await;
    let data = pattern(100 * 1024);

    // A POST (never retried after sending) with a 100 KiB body, content-length then chunked.
    let key = key_owned_by(&ring, "cache-x");
    let r = p
        .http
        .request(
            Method::POST,
            &p.url("/echo"),
            &[("x-user-id", &key)],
            data.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.backend(), serving(&ring, &key, &["cache-x"]));
    assert!(
        r.body == data,
        "body changed on the way ({} bytes)",
        r.body.len()
    );

    let key = find_key(&ring, |c| c[0] == "cache-x" && c[1] != r.backend());
    let body = Pattern::new(100 * 1024).boxed();
    let r = p
        .http
        .send(Method::POST, &p.url("/echo"), &[("x-user-id", &key)], body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.backend(), serving(&ring, &key, &["cache-x"]));
    assert!(
        r.body == data,
        "chunked body changed ({} bytes)",
        r.body.len()
    );

    let s = p.backend_state("cache-x").await;
    assert_eq!(
        s["failures"], 2,
        "each POST met the refused connection first: {s}"
    );

    // max_attempts = 1: no second candidate.
    let p = start_proxy(&config_addrs("max_attempts = 1", "", &list)).await;
    let hits = a.hits() + b.hits() + c.hits();
    let r = p.get_key("/", &key).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    // Clients get a fixed text; the reason (cannot connect) is in the log and the metrics.
    assert_eq!(r.text(), "Bad Gateway: the backend failed\n");
    assert_eq!(
        a.hits() + b.hits() + c.hits(),
        hits,
        "no retry with max_attempts = 1"
    );
}

#[tokio::test]
async fn sent_requests_are_not_retried_by_default() {
    let names = ["cache-a", "cache-b", "cache-c"];
    let backends = start_backends(&names).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let ring = ring(&names);
    let total = |bs: &[TestBackend]| bs.iter().map(TestBackend::hits).sum::<usize>();

    // Timed out after sending: 504 after one attempt, at the timeout, long before the backend
    // would have answered.
    let p = start_proxy(&config_proxy("request_timeout = \"300ms\"", "", &refs)).await;
    let key = key_owned_by(&ring, "cache-a");
    let started = Instant::now();
    let r = p.get_key("/slow/8000", &key).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_eq!(
        (backends[0].hits(), total(&backends)),
        (1, 1),
        "one attempt only"
    );
    assert_eq!(p.backend_state("cache-a").await["failures"], 0);

    // The backend dies while it holds the request (which it would answer only after the test
    // is over): 502, not sent to the next candidate.
    let p = Arc::new(start_proxy(&config_with("", &refs)).await);
    let key = key_owned_by(&ring, "cache-b");
    let before = total(&backends);
    let inflight = {
        let (p, key) = (p.clone(), key.clone());
        tokio::spawn(async move { p.get_key("/slow/600000", &key).await })
    };
    wait_until(
        Duration::from_secs(10),
        "request never reached cache-b",
        || backends[1].hits() > 0,
    )
    .await;
    backends[1].stop();
    let r = inflight.await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    // A fixed text: the backend's id and the cause stay in the log.
    assert_eq!(r.text(), "Bad Gateway: the backend failed\n");
    assert_eq!(total(&backends), before + 1, "not retried");
}

#[tokio::test]
async fn retry_idempotent_resends_small_idempotent_requests_after_a_timeout() {
    let (a, b) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
    );
    let h1 = Scripted::start("cache-h1", Check::Pass, true).await;
    let h2 = Scripted::start("cache-h2", Check::Pass, true).await;
    let list = [
        ("cache-a", a.addr),
        ("cache-b", b.addr),
        ("cache-h1", h1.addr),
        ("cache-h2", h2.addr),
    ];
    let ring = ring(&["cache-a", "cache-b", "cache-h1", "cache-h2"]);
    // Long enough for any answer of a live backend; each hanging attempt costs this much.
    let lines = "request_timeout = \"1s\"\nretry_idempotent = true";
    let p = start_proxy(&config_addrs(lines, "", &list)).await;
    let live = |id: &String| id == "cache-a" || id == "cache-b";
    let key = find_key(&ring, |c| c[0] == "cache-h1" && live(&c[1]));
    let next = serving(&ring, &key, &["cache-h1", "cache-h2"]);
    let hdr = [("x-user-id", key.as_str())];

    let started = Instant::now();
    let r = p.get_key("/", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.backend(), next, "GET retried on the next candidate");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "after the timeout"
    );
    assert_eq!(h1.hits(), 1);

    let small = pattern(1024);
    let r = p
        .http
        .request(Method::PUT, &p.url("/echo"), &hdr, small.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.backend(), next);
    assert!(r.body == small, "PUT body changed on the retry");

    // Not idempotent, or too big to keep for a replay: one attempt, 504.
    let hits = a.hits() + b.hits();
    let r = p
        .http
        .request(Method::POST, &p.url("/echo"), &hdr, small)
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "POST: {}", r.text());
    let r = p
        .http
        .request(Method::PUT, &p.url("/echo"), &hdr, pattern(100 * 1024))
        .await;
    assert_eq!(
        r.status,
        StatusCode::GATEWAY_TIMEOUT,
        "100 KiB PUT: {}",
        r.text()
    );
    assert_eq!(a.hits() + b.hits(), hits, "neither was resent");
    assert_eq!(h1.hits(), 4);

    // Two hanging candidates first: max_attempts bounds the walk.
    let key = find_key(&ring, |c| !live(&c[0]) && !live(&c[1]));
    let third = candidates(&ring, &key)[2].clone();
    let r = p.get_key("/", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.backend(), third, "third attempt (max_attempts = 3)");
    let p = start_proxy(&config_addrs(
        &format!("{lines}\nmax_attempts = 2"),
        "",
        &list,
    ))
    .await;
    let hits = a.hits() + b.hits();
    let r = p.get_key("/", &key).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert_eq!(
        a.hits() + b.hits(),
        hits,
        "max_attempts = 2 stops before {third}"
    );
}

/// A listener that never accepts, with its accept queue filled: the kernel drops further SYNs,
/// so connecting to it times out instead of being refused. Keep the returned values alive.
async fn blackhole() -> (SocketAddr, TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(100), connect).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => panic!("connect to the blackhole: {e}"),
            Err(_) => return (addr, listener, held),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[tokio::test]
async fn connect_timeouts_fail_over_and_eject() {
    let (a, b) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
    );
    let (hole, _listener, _held) = blackhole().await;
    let list = [("cache-a", a.addr), ("cache-b", b.addr), ("cache-t", hole)];
    let ring = ring(&["cache-a", "cache-b", "cache-t"]);
    let health = format!("[health]\n{EJECT_FOR_LONG}");
    let p = start_proxy(&config_addrs("connect_timeout = \"100ms\"", &health, &list)).await;
    let key = key_owned_by(&ring, "cache-t");
    let next = serving(&ring, &key, &["cache-t"]);

    // The request was never sent, so even a POST body goes on to the next candidate.
    let started = Instant::now();
    let data = pattern(10 * 1024);
    let hdr = [("x-user-id", key.as_str())];
    let r = p
        .http
        .request(Method::POST, &p.url("/echo"), &hdr, data.clone())
        .await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.backend(), next);
    assert!(r.body == data);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    for _ in 0..2 {
        assert_eq!(p.owner_by_request(&key).await, next);
    }
    let s = p.backend_state("cache-t").await;
    assert_eq!(
        s["state"], "ejected",
        "connect timeouts count as failures: {s}"
    );
    assert_eq!(s["failures"], 3, "{s}");
    // Ejected: skipped without another connect attempt.
    assert_eq!(p.owner_by_request(&key).await, next);
    assert_eq!(p.backend_state("cache-t").await["failures"], 3);
}
