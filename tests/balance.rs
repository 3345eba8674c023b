//! `[balance]` through a real proxy and real backends: bounded loads that spread only the hot
//! key, warm-up ramps that move each key once, and the look-aside fallback during warm-up.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::{Method, Response, StatusCode};
use ringproxy::ring::{Member, Ring};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Sends `rounds` requests from each of `clients` concurrent clients to `/slow/MS`: a share
/// `hot` of them for the key `viral`, the rest for cold keys `user-N`. Answers, per request,
/// the key and the backend that served it.
async fn load(p: &TestProxy, clients: usize, rounds: usize, hot: f64) -> Vec<(String, String)> {
    let mut set = JoinSet::new();
    for c in 0..clients {
        let (http, url) = (p.http.clone(), p.url("/slow/15"));
        set.spawn(async move {
            let mut out = Vec::new();
            for r in 0..rounds {
                let n = c * rounds + r;
                // A fixed pattern, so the run is the same every time.
                let key = if (n * 7919 % 100) as f64 / 100.0 < hot {
                    "viral".to_string()
                } else {
                    format!("user-{}", n % 400)
                };
                let reply = http.get(&url, &[("x-user-id", &key)]).await;
                assert_eq!(reply.status, StatusCode::OK, "{key}: {}", reply.text());
                out.push((key, reply.backend()));
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(done) = set.join_next().await {
        all.extend(done.unwrap());
    }
    all
}

fn max_share(served: &[(String, String)]) -> f64 {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, b) in served {
        *counts.entry(b).or_default() += 1;
    }
    *counts.values().max().unwrap() as f64 / served.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_loads_spread_the_hot_key_and_keep_cold_keys_home() {
    let names = ["a", "b", "c", "d"];
    let backends = start_backends(&names).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let ring = Ring::new(names.iter().map(|n| Member::new(*n, 1)), 1000).unwrap();
    let owner = |key: &str| {
        ring.member(ring.lookup(key.as_bytes()).unwrap())
            .id
            .to_string()
    };

    // Without a bound, the hot key's owner takes its own cold keys and the whole hot key.
    let plain = start_proxy(&config_with("", &refs)).await;
    let served = load(&plain, 24, 40, 0.40).await;
    let unbounded = max_share(&served);
    plain.stop().await;

    let bounded = start_proxy(&config_with(
        "[balance]\nbound = 1.25\nhot_share = 0.05\n",
        &refs,
    ))
    .await;
    let served = load(&bounded, 24, 40, 0.40).await;
    let with_bound = max_share(&served);
    let cold_moved = served
        .iter()
        .filter(|(k, b)| k != "viral" && *b != owner(k))
        .count();
    let hot_backends: std::collections::HashSet<&str> = served
        .iter()
        .filter(|(k, _)| k == "viral")
        .map(|(_, b)| b.as_str())
        .collect();
    let metrics = bounded.admin(Method::GET, "/metrics", "").await.text();
    println!(
        "busiest backend's share: {unbounded:.3} without a bound, {with_bound:.3} with bound 1.25 (hot key on {} backends)",
        hot_backends.len()
    );
    assert_eq!(cold_moved, 0, "cold keys must always reach their owner");
    assert!(
        hot_backends.len() >= 2,
        "the hot key spreads: {hot_backends:?}"
    );
    assert!(
        with_bound < unbounded - 0.05,
        "the bound lowers the busiest share: {with_bound:.3} vs {unbounded:.3}"
    );
    assert!(
        metrics.contains("ringproxy_bounded_spills_total{backend=\""),
        "{metrics}"
    );
    let route = bounded.owner_by_admin("viral").await;
    assert_eq!(route["hot"], true, "{route}");
    let route = bounded.owner_by_admin("user-1").await;
    assert_eq!(route["hot"], false, "{route}");
    bounded.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_any_moves_cold_keys_too() {
    let names = ["a", "b", "c", "d"];
    let backends = start_backends(&names).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let ring = Ring::new(names.iter().map(|n| Member::new(*n, 1)), 1000).unwrap();
    let owner = |key: &str| {
        ring.member(ring.lookup(key.as_bytes()).unwrap())
            .id
            .to_string()
    };
    let p = start_proxy(&config_with(
        "[balance]\nbound = 1.0\nspread = \"any\"\n",
        &refs,
    ))
    .await;
    let served = load(&p, 24, 30, 0.40).await;
    let cold_moved = served
        .iter()
        .filter(|(k, b)| k != "viral" && *b != owner(k))
        .count();
    println!(
        "spread = \"any\": {cold_moved} of {} cold requests left their owner",
        served.len()
    );
    assert!(cold_moved > 0, "with spread = any, cold keys spill too");
    p.stop().await;
}

/// The serving backend of each key, asked of the admin API (no backend traffic).
async fn routes(p: &TestProxy, keys: &[String]) -> Vec<String> {
    let mut out = vec![String::new(); keys.len()];
    for (chunk_no, chunk) in keys.chunks(50).enumerate() {
        let mut set = JoinSet::new();
        for (i, key) in chunk.iter().enumerate() {
            let (http, url) = (
                p.http.clone(),
                p.admin_url(&format!("/route?key={}", encode(key))),
            );
            set.spawn(async move {
                (
                    i,
                    http.get(&url, &[]).await.json()["backend"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            });
        }
        while let Some(done) = set.join_next().await {
            let (i, b) = done.unwrap();
            out[chunk_no * 50 + i] = b;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_moves_each_key_once_and_only_to_the_joiner() {
    let backends = start_backends(&["a", "b", "c", "d", "e"]).await;
    let refs: Vec<&TestBackend> = backends[..4].iter().collect();
    let p = start_proxy(&config_with("[balance]\nwarmup = \"6s\"\n", &refs)).await;
    let keys = keys(2000);
    let before = routes(&p, &keys).await;
    let body = format!("{{\"address\": \"{}\"}}", backends[4].addr);
    let r = p.admin(Method::PUT, "/backends/e", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let mut samples = vec![before.clone()];
    let started = Instant::now();
    loop {
        let ramping = p.backend_state("e").await["ramp"].is_object();
        samples.push(routes(&p, &keys).await);
        if !ramping {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the warm-up never ended"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shares: Vec<f64> = samples
        .iter()
        .map(|s| s.iter().filter(|b| *b == "e").count() as f64 / keys.len() as f64)
        .collect();
    println!("joiner's share while warming up: {shares:.3?}");
    // Gradual: at least one sample caught the joiner part-way (how many depends on how fast
    // this machine sweeps 2,000 keys, so only one is required).
    let full = *shares.last().unwrap();
    assert!(
        shares.iter().any(|&s| s > 0.0 && s < full),
        "no sample caught the ramp part-way: {shares:?}"
    );
    for w in shares.windows(2) {
        assert!(w[1] >= w[0], "the joiner's share never falls: {shares:?}");
    }
    for (k, key) in keys.iter().enumerate() {
        let path: Vec<&str> = samples.iter().map(|s| s[k].as_str()).collect();
        let changes = path.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes <= 1, "{key} moved more than once: {path:?}");
        if changes == 1 {
            assert_eq!(
                *path.last().unwrap(),
                "e",
                "{key} moved elsewhere than the joiner"
            );
        }
    }
    // At the end: exactly the ring with the joiner at full weight.
    let ring = Ring::new(["a", "b", "c", "d", "e"].map(|n| Member::new(n, 1)), 1000).unwrap();
    let want: Vec<String> = keys
        .iter()
        .map(|k| {
            ring.member(ring.lookup(k.as_bytes()).unwrap())
                .id
                .to_string()
        })
        .collect();
    assert_eq!(samples.last().unwrap(), &want);
    p.stop().await;
}

/// A backend that has nothing cached: 404 for every request, counted.
async fn cold_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    // Dropping the handle does not stop the task; it lives as long as the test runtime.
    drop(serve_http(listener, Arc::default(), move |_req| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut res = Response::new(full("miss\n"));
            *res.status_mut() = StatusCode::NOT_FOUND;
            res.headers_mut().insert("x-backend", "e".parse().unwrap());
            res
        }
    }));
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_aside_returns_the_previous_owners_answer_during_warm_up() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let p = start_proxy(&config_with(
        "[balance]\nwarmup = \"3s\"\nwarmup_miss_status = [404]\n",
        &refs,
    ))
    .await;
    let (addr, joiner_hits) = cold_backend().await;
    let r = p
        .admin(
            Method::PUT,
            "/backends/e",
            &format!("{{\"address\": \"{addr}\"}}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // A key that has moved to the joiner already.
    let keys = keys(5000);
    let deadline = Instant::now() + Duration::from_secs(3);
    let key = loop {
        let serving = routes(&p, &keys[..500]).await;
        if let Some(i) = serving.iter().position(|b| b == "e") {
            break keys[i].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no key moved to the joiner in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let previous = {
        let ring = Ring::new(["a", "b", "c"].map(|n| Member::new(n, 1)), 1000).unwrap();
        ring.member(ring.lookup(key.as_bytes()).unwrap())
            .id
            .to_string()
    };
    let reply = p.get_key("/", &key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.backend(), previous, "the previous owner answered");
    assert!(
        joiner_hits.load(Ordering::SeqCst) >= 1,
        "the joiner was asked first"
    );

    // After the warm-up, the joiner's answer stands, miss or not.
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.backend_state("e").await["ramp"].is_object() {
        assert!(Instant::now() < deadline, "the warm-up never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = p.get_key("/", &key).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.backend(), "e");
    p.stop().await;
}

#[tokio::test]
async fn drain_with_a_ramp_ends_drained_without_moving_keys_at_the_end() {
    let backends = start_backends(&["a", "b", "c"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let p = start_proxy(&config_with("", &refs)).await;
    let r = p.admin(Method::POST, "/backends/a/drain?ramp=1s", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["ramp"]["direction"], "down");
    let r = p
        .admin(Method::POST, "/backends/a/drain?ramp=soon", "")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let state = p.wait_state("a", "draining", Duration::from_secs(10)).await;
    assert!(state["ramp"].is_null(), "{state}");
    let keys = keys(500);
    let ring = Ring::new(["b", "c"].map(|n| Member::new(n, 1)), 1000).unwrap();
    let want: Vec<String> = keys
        .iter()
        .map(|k| {
            ring.member(ring.lookup(k.as_bytes()).unwrap())
                .id
                .to_string()
        })
        .collect();
    assert_eq!(routes(&p, &keys).await, want);
    p.stop().await;
}
