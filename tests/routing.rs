//! Routing through real requests: stickiness, spread, join/leave movement, `/route` agreement,
//! key sources, missing keys, and replicas agreeing whatever their backend order.

mod common;

use std::collections::HashSet;

use common::*;
use http::{Method, StatusCode};

async fn four_backends() -> Vec<TestBackend> {
    let mut v = Vec::new();
    for name in ["cache-a", "cache-b", "cache-c", "cache-d"] {
        v.push(start_backend(name).await);
    }
    v
}

fn refs(v: &[TestBackend]) -> Vec<&TestBackend> {
    v.iter().collect()
}

#[tokio::test]
async fn same_key_same_backend() {
    let backends = four_backends().await;
    let p = start_proxy(&config_with("", &refs(&backends))).await;
    let keys = keys(300);
    let first = p.owners_by_request(&keys).await;
    for round in 0..3 {
        let again = p.owners_by_request(&keys).await;
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(first[i], again[i], "key {key} moved in round {round}");
        }
    }
    assert!(
        count(&first).len() > 1,
        "all keys on one backend: {first:?}"
    );
}

#[tokio::test]
async fn keys_spread_over_backends() {
    let backends = four_backends().await;
    let p = start_proxy(&config_with("", &refs(&backends))).await;
    let keys = keys(2000);
    let owners = p.owners_by_request(&keys).await;
    let counts = count(&owners);
    println!("spread of 2000 keys: {counts:?}");
    assert_eq!(counts.len(), 4, "{counts:?}");
    for (backend, n) in &counts {
        assert!((300..=700).contains(n), "{backend} got {n} of 2000 keys");
    }
    // The backends saw exactly the requests routed to them.
    for b in &backends {
        assert_eq!(b.hits(), counts[&b.name], "{}", b.name);
    }
}

#[tokio::test]
async fn join_moves_about_a_fifth_and_only_to_the_joiner() {
    let mut backends = four_backends().await;
    let p = start_proxy(&config_with("", &refs(&backends))).await;
    let keys = keys(2000);
    let before = p.owners_by_request(&keys).await;

    let joiner = start_backend("cache-e").await;
    let body = format!(r#"{{"address": "{}", "weight": 1}}"#, joiner.addr);
    let r = p.admin(Method::PUT, "/backends/cache-e", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    backends.push(joiner);

    let after = p.owners_by_request(&keys).await;
    let moved: Vec<usize> = (0..keys.len()).filter(|&i| before[i] != after[i]).collect();
    for &i in &moved {
        assert_eq!(after[i], "cache-e", "key {} moved to {}", keys[i], after[i]);
    }
    // The joiner really served those keys, and nothing else.
    assert_eq!(backends[4].hits(), moved.len());
    let fraction = moved.len() as f64 / keys.len() as f64;
    println!(
        "join 4→5: {} of 2000 keys moved ({fraction:.3})",
        moved.len()
    );
    assert!((0.13..=0.27).contains(&fraction), "moved {fraction}");
}

#[tokio::test]
async fn leave_moves_only_the_leavers_keys() {
    let backends = four_backends().await;
    let p = start_proxy(&config_with("", &refs(&backends))).await;
    let keys = keys(2000);
    let before = p.owners_by_request(&keys).await;

    let r = p.admin(Method::DELETE, "/backends/cache-b", "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());

    let after = p.owners_by_request(&keys).await;
    let mut moved = 0;
    for i in 0..keys.len() {
        if before[i] == "cache-b" {
            assert_ne!(after[i], "cache-b");
            moved += 1;
        } else {
            assert_eq!(
                before[i], after[i],
                "key {} moved off a staying backend",
                keys[i]
            );
        }
    }
    let fraction = moved as f64 / keys.len() as f64;
    println!("leave 4→3: {moved} of 2000 keys moved ({fraction:.3})");
    assert!((0.15..=0.35).contains(&fraction), "moved {fraction}");
}

#[tokio::test]
async fn admin_route_agrees_with_real_routing() {
    let backends = four_backends().await;
    let p = start_proxy(&config_with("", &refs(&backends))).await;
    let keys = keys(500);
    let owners = p.owners_by_request(&keys).await;
    let by_name: std::collections::HashMap<_, _> = backends
        .iter()
        .map(|b| (b.name.clone(), b.addr.to_string()))
        .collect();
    for (key, owner) in keys.iter().zip(&owners) {
        let route = p.owner_by_admin(key).await;
        assert_eq!(route["key"], key.as_str());
        assert_eq!(route["backend"], owner.as_str(), "key {key}");
        assert_eq!(route["address"], by_name[owner].as_str());
    }
}

const THREE_SOURCES: &str = r#"
[affinity]
key = ["header:x-user-id", "cookie:session", "query:uid"]
on_missing = "reject"
"#;

#[tokio::test]
async fn header_cookie_and_query_values_route_alike() {
    let backends = four_backends().await;
    let p = start_proxy(&config_with(THREE_SOURCES, &refs(&backends))).await;
    let mut values: Vec<String> = keys(60);
    values.push("a b&c=d".to_string());
    let mut seen = HashSet::new();
    for v in &values {
        let by_header = p.get("/", &[("x-user-id", v)]).await.backend();
        let query = format!("/?x=1&uid={}", encode(v));
        let by_query = p.get(&query, &[]).await.backend();
        assert_eq!(by_header, by_query, "value {v:?}: header vs query");
        if !v.contains(' ') {
            let cookie = format!("theme=dark; session={v}; lang=en");
            let by_cookie = p.get("/", &[("cookie", &cookie)]).await.backend();
            assert_eq!(by_header, by_cookie, "value {v:?}: header vs cookie");
        }
        assert_eq!(p.owner_by_admin(v).await["backend"], by_header.as_str());
        seen.insert(by_header);
    }
    assert!(seen.len() > 1, "every value on one backend");

    // The first source present wins.
    let (first, second) = ("user-1", other_owner(&p, "user-1").await);
    let owner = |k: &str| {
        let p = &p;
        let k = k.to_string();
        async move {
            p.owner_by_admin(&k).await["backend"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let cookie = format!("session={second}");
    let r = p
        .get(
            &format!("/?uid={second}"),
            &[("x-user-id", first), ("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.backend(), owner(first).await);
    let cookie = format!("session={first}");
    let r = p
        .get(&format!("/?uid={second}"), &[("cookie", &cookie)])
        .await;
    assert_eq!(r.backend(), owner(first).await);
}

/// A key owned by another backend than `key`'s.
async fn other_owner(p: &TestProxy, key: &str) -> String {
    let mine = p.owner_by_admin(key).await["backend"].clone();
    for k in keys(100) {
        if p.owner_by_admin(&k).await["backend"] != mine {
            return k;
        }
    }
    panic!("100 keys all on {mine}");
}

#[tokio::test]
async fn missing_key_rejected_names_the_sources() {
    let backends = four_backends().await;
    let p = start_proxy(&config_with(THREE_SOURCES, &refs(&backends))).await;
    let r = p.get("/", &[("x-other", "1")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let text = r.text();
    for source in ["header:x-user-id", "cookie:session", "query:uid"] {
        assert!(text.contains(source), "{text:?} does not name {source}");
    }
    // An empty value is no key either.
    let r = p.get("/?uid=", &[("x-user-id", "")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        backends
            .iter()
            .map(common::TestBackend::hits)
            .sum::<usize>(),
        0
    );
}

#[tokio::test]
async fn missing_key_random_spreads() {
    let backends = four_backends().await;
    let extra = "[affinity]\nkey = [\"header:x-user-id\"]\non_missing = \"random\"\n";
    let p = start_proxy(&config_with(extra, &refs(&backends))).await;
    let mut served = Vec::new();
    for _ in 0..40 {
        let r = p.get("/", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        served.push(r.backend());
    }
    let counts = count(&served);
    assert!(
        counts.len() > 1,
        "40 keyless requests all went to {counts:?}"
    );
}

#[tokio::test]
async fn replicas_with_reordered_backends_agree() {
    let backends = four_backends().await;
    let forward = refs(&backends);
    let mut reversed = forward.clone();
    reversed.reverse();
    let shuffled = [forward[2], forward[0], forward[3], forward[1]];
    let a = start_proxy(&config_with("", &forward)).await;
    let b = start_proxy(&config_with("", &reversed)).await;
    // A third replica reaches the same membership through the admin API, in another order.
    let c = start_proxy(&config_with("", &[shuffled[0], shuffled[1]])).await;
    for t in &shuffled[2..] {
        let body = format!(r#"{{"address": "{}"}}"#, t.addr);
        let r = c
            .admin(Method::PUT, &format!("/backends/{}", t.name), &body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let keys = keys(1000);
    let oa = a.owners_by_request(&keys).await;
    let ob = b.owners_by_request(&keys).await;
    let oc = c.owners_by_request(&keys).await;
    for i in 0..keys.len() {
        assert_eq!(oa[i], ob[i], "key {}", keys[i]);
        assert_eq!(oa[i], oc[i], "key {}", keys[i]);
    }
}

/// Each proxy worker thread has its own runtime and connection pool but all read one snapshot:
/// fresh connections, whichever worker accepts them, route a key the same way, before and
/// after a join.
#[tokio::test]
async fn every_worker_routes_by_the_same_ring() {
    let mut backends = four_backends().await;
    let p = start_proxy(&config_proxy("workers = 3", "", &refs(&backends))).await;
    let keys = keys(40);

    let by_fresh_connections = |keys: Vec<String>| {
        let addr = p.proxy;
        async move {
            let mut owners = Vec::new();
            for key in &keys {
                let mut seen = HashSet::new();
                // Several connections per key, so more than one worker takes part.
                for _ in 0..6 {
                    let r = raw_request(
                        addr,
                        &format!("GET / HTTP/1.1\r\nhost: t\r\nx-user-id: {key}\r\nconnection: close\r\n\r\n"),
                    )
                    .await;
                    assert_eq!(r.status, 200);
                    seen.insert(String::from_utf8(r.body).unwrap());
                }
                assert_eq!(seen.len(), 1, "key {key} went to {seen:?}");
                owners.push(seen.into_iter().next().unwrap());
            }
            owners
        }
    };
    let before = by_fresh_connections(keys.clone()).await;
    for (key, owner) in keys.iter().zip(&before) {
        assert_eq!(&p.owner_by_admin(key).await["backend"], owner.as_str());
    }

    let joiner = start_backend("cache-e").await;
    let body = format!(r#"{{"address": "{}"}}"#, joiner.addr);
    let r = p.admin(Method::PUT, "/backends/cache-e", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    backends.push(joiner);

    let after = by_fresh_connections(keys.clone()).await;
    for (key, owner) in keys.iter().zip(&after) {
        assert_eq!(&p.owner_by_admin(key).await["backend"], owner.as_str());
    }
    assert!(
        after.iter().any(|o| o == "cache-e"),
        "no key of 40 moved to the joiner"
    );
}
