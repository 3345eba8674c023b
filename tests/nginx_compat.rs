//! `Ring::nginx` against a real nginx: the same upstream (weights 1–3, a host name, and two
//! servers whose ring points collide) routes thousands of keys through nginx's
//! `hash $arg_k consistent`, and `Ring::nginx` over the same address strings in the same order
//! must name the same backend for every key; then a server joins (nginx reload, listed last)
//! and the comparison runs again.
//!
//! The importer reads the config nginx runs and must give the same ring and key, and keys
//! built from several nginx variables (`$host$uri$is_args$arg_k`) must render to the bytes
//! nginx hashes.
//!
//! Skips, saying so, when no nginx binary is installed (CI installs the Debian package).

mod common;

use std::collections::HashSet;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use ringproxy::affinity_template::{RequestView, Scheme, Template};
use ringproxy::nginx_import;
use ringproxy::ring::{Member, Ring};

/// Pairs of servers (on port 29517) with one ring point in common, found by a search over
/// `127.0.X.Y:29517`. Any address in 127/8 is loopback on Linux, so the pair can be served;
/// several pairs in case another test run holds one.
const TIE_PAIRS: [(&str, &str); 6] = [
    ("127.0.0.218:29517", "127.0.1.3:29517"),
    ("127.0.0.253:29517", "127.0.2.161:29517"),
    ("127.0.1.171:29517", "127.0.2.205:29517"),
    ("127.0.0.187:29517", "127.0.3.27:29517"),
    ("127.0.2.137:29517", "127.0.4.125:29517"),
    ("127.0.2.10:29517", "127.0.5.133:29517"),
];

const KEYS: usize = 2500;

fn ring_of(servers: &[UpstreamServer]) -> Ring {
    Ring::nginx(
        servers
            .iter()
            .map(|s| Member::new(s.address.as_str(), s.weight)),
    )
    .expect("a valid nginx ring")
}

fn owners_by_ring(ring: &Ring, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            ring.member(ring.lookup(k.as_bytes()).unwrap())
                .id
                .to_string()
        })
        .collect()
}

/// Keys whose owner depends on which of `first`/`second` keeps their shared point: the keys of
/// the contested arc. nginx must give them to `first`, the one listed earlier.
fn tie_keys(servers: &[UpstreamServer], first: &str, second: &str) -> Vec<String> {
    // The same servers, weights and all, with the two trading places in the listing.
    let mut swapped = servers.to_vec();
    let at = |name: &str| servers.iter().position(|s| s.address == name).unwrap();
    swapped.swap(at(first), at(second));
    let (ring, other) = (ring_of(servers), ring_of(&swapped));
    (0..2_000_000)
        .map(|i| format!("tie-{i}"))
        // Compare ids: member indices follow the listing, which differs.
        .filter(|k| {
            let id = |r: &Ring| r.member(r.lookup(k.as_bytes()).unwrap()).id.clone();
            id(&ring) != id(&other)
        })
        .take(25)
        .collect()
}

/// The owner `Ring` gives the request `path` + `headers` under `template`, as the proxy will
/// compute it: render the key, hash it the ring's way, look it up.
fn owner_by_template(
    ring: &Ring,
    template: &Template,
    path: &str,
    headers: &[(String, String)],
) -> String {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let view = RequestView {
        target: path.as_bytes(),
        headers: &pairs,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        scheme: Scheme::Http,
    };
    let mut key = Vec::new();
    assert!(template.render(&view, &mut key), "{path}: no key");
    let owner = ring.lookup_hash(ring.hash(&key)).expect("a non-empty ring");
    ring.member(owner).id.to_string()
}

/// Binds the first tie pair whose two addresses are free.
async fn tie_pair() -> Option<(NamedBackend, NamedBackend)> {
    for (a, b) in TIE_PAIRS {
        let pair = Ring::nginx([Member::new(a, 1), Member::new(b, 1)]).unwrap();
        assert_eq!(pair.points(), 319, "{a} and {b} share one point");
        if let (Some(x), Some(y)) = (backend_at(a).await, backend_at(b).await) {
            return Some((x, y));
        }
    }
    None
}

/// Routes `keys` through nginx and through `Ring::nginx(servers)`; panics listing the keys
/// that differ. Returns nginx's owners.
async fn compare(
    nginx: &Nginx,
    servers: &[UpstreamServer],
    keys: &[String],
    what: &str,
) -> Vec<String> {
    let got = nginx.owners(keys).await;
    let want = owners_by_ring(&ring_of(servers), keys);
    let diffs: Vec<String> = keys
        .iter()
        .zip(got.iter().zip(&want))
        .filter(|(_, (g, w))| g != w)
        .map(|(k, (g, w))| format!("{k}: nginx {g}, ring {w}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: {} of {} keys differ, e.g. {:?}",
        diffs.len(),
        keys.len(),
        &diffs[..diffs.len().min(10)]
    );
    let used: HashSet<&String> = got.iter().collect();
    assert_eq!(
        used.len(),
        servers.len(),
        "{what}: every server should own some keys"
    );
    eprintln!("{what}: {} keys, 0 differences", keys.len());
    got
}

#[tokio::test]
async fn ring_nginx_routes_every_key_like_real_nginx() {
    let Some(bin) = find_nginx() else {
        eprintln!(
            "SKIPPED nginx_compat: no nginx binary in PATH or /usr/sbin (apt-get install nginx)"
        );
        return;
    };
    let (host_backend, host_addrs) = localhost_backend().await;
    eprintln!("{} listens on {host_addrs:?}", host_backend.name);
    let ip_a = ip_backend().await;
    let ip_b = ip_backend().await;
    let tie = tie_pair().await;
    let mut servers = vec![
        UpstreamServer::new(ip_a.name.clone(), 1),
        UpstreamServer::new(host_backend.name.clone(), 2),
    ];
    if let Some((first, _)) = &tie {
        servers.push(UpstreamServer::new(first.name.clone(), 3));
    }
    servers.push(UpstreamServer::new(ip_b.name.clone(), 1));
    if let Some((_, second)) = &tie {
        servers.push(UpstreamServer::new(second.name.clone(), 2));
    } else {
        eprintln!("no tie pair could be bound; the collision rule is checked by unit tests only");
    }

    let mut keys: Vec<String> = (0..KEYS).map(|i| format!("user-{i}")).collect();
    let ties = match &tie {
        Some((first, second)) => tie_keys(&servers, &first.name, &second.name),
        None => Vec::new(),
    };
    keys.extend(ties.iter().cloned());

    let mut nginx = Nginx::start(&bin, "$arg_k", &servers, "").await;
    let before = compare(&nginx, &servers, &keys, "initial upstream").await;
    if let Some((first, _)) = &tie {
        assert!(
            ties.len() >= 5,
            "only {} keys in the contested arc",
            ties.len()
        );
        for (k, owner) in keys.iter().zip(&before).skip(KEYS) {
            assert_eq!(
                owner, &first.name,
                "tie key {k}: the server listed first keeps the point"
            );
        }
        eprintln!(
            "{} keys in the contested arc went to {}, listed first",
            ties.len(),
            first.name
        );
    }

    // The importer reads the config nginx runs: same servers, same order, same key, so the
    // same owner for every key.
    let t = nginx_import::translate(&nginx.conf_path(), None).expect("import nginx.conf");
    let imported: Vec<(String, u32)> = t
        .backends
        .iter()
        .map(|b| (b.id.clone(), b.weight))
        .collect();
    let listed: Vec<(String, u32)> = servers
        .iter()
        .map(|s| (s.address.clone(), s.weight))
        .collect();
    assert_eq!(imported, listed);
    assert_eq!(t.key.as_deref(), Some("$arg_k"));
    let template: Template = t.key.as_deref().unwrap().parse().unwrap();
    let ring = Ring::nginx(
        t.backends
            .iter()
            .map(|b| Member::new(b.id.as_str(), b.weight)),
    )
    .unwrap();
    for (key, owner) in keys.iter().zip(&before) {
        let path = format!("/?k={key}");
        assert_eq!(
            &owner_by_template(&ring, &template, &path, &[]),
            owner,
            "key {key}"
        );
    }
    eprintln!(
        "import-nginx: {} keys route as nginx routed them",
        keys.len()
    );

    // A real ringproxy in compat mode, through its request path: every key to nginx's server.
    let mut text = String::from(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [ring]\ncompat = \"nginx\"\n[affinity]\nkey = [\"template:$arg_k\"]\n",
    );
    for s in &servers {
        text.push_str(&format!(
            "[[backends]]\nid = \"{0}\"\naddress = \"{0}\"\nweight = {1}\n",
            s.address, s.weight
        ));
    }
    let proxy = start_proxy(&text).await;
    let through = |keys: &[String]| {
        let (http, url) = (proxy.http.clone(), proxy.url("/"));
        let keys = keys.to_vec();
        async move {
            let mut out = Vec::new();
            for k in &keys {
                let r = http.get(&format!("{url}?k={k}"), &[]).await;
                assert_eq!(r.status, http::StatusCode::OK, "{k}: {}", r.text());
                out.push(r.backend());
            }
            out
        }
    };
    let by_proxy = through(&keys).await;
    let differ = by_proxy.iter().zip(&before).filter(|(a, b)| a != b).count();
    assert_eq!(
        differ, 0,
        "ringproxy (compat = nginx) routed {differ} keys differently from nginx"
    );
    assert_eq!(
        proxy.admin(http::Method::GET, "/ring", "").await.json()["compat"],
        "nginx"
    );
    eprintln!(
        "ringproxy compat = nginx: {} keys, 0 differ from nginx",
        keys.len()
    );

    // A server joins: listed last in nginx, as an admin join is in compat mode.
    let joiner = ip_backend().await;
    servers.push(UpstreamServer::new(joiner.name.clone(), 2));
    nginx.reload("$arg_k", &servers, "").await;
    let after = compare(&nginx, &servers, &keys, "after a join").await;
    let r = proxy
        .admin(
            http::Method::PUT,
            &format!("/backends/{}", joiner.name),
            &format!("{{\"address\": \"{}\", \"weight\": 2}}", joiner.name),
        )
        .await;
    assert_eq!(r.status, http::StatusCode::CREATED, "{}", r.text());
    let by_proxy = through(&keys).await;
    let differ = by_proxy.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "after the join, {differ} keys differ from nginx");
    proxy.stop().await;
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    for ((k, b), a) in keys.iter().zip(&before).zip(&after) {
        assert!(
            a == b || *a == joiner.name,
            "key {k} moved from {b} to {a}, not to the joiner"
        );
    }
    assert!(moved > 0, "the joiner took no key");
    eprintln!("{moved} of {} keys moved, all to the joiner", keys.len());
}

/// Keys nginx builds from several variables: host (case, port and trailing dot stripped), the
/// decoded and normalized path, and a query argument found case-insensitively.
#[tokio::test]
async fn template_keys_render_what_nginx_hashes() {
    let Some(bin) = find_nginx() else {
        eprintln!(
            "SKIPPED nginx_compat: no nginx binary in PATH or /usr/sbin (apt-get install nginx)"
        );
        return;
    };
    let mut backends = Vec::new();
    for _ in 0..4 {
        backends.push(ip_backend().await);
    }
    let servers: Vec<UpstreamServer> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| UpstreamServer::new(b.name.clone(), 1 + (i % 3) as u32))
        .collect();
    let expr = "$host$uri$is_args$arg_k";
    let nginx = Nginx::start(&bin, expr, &servers, "").await;

    let hosts = [
        "Cache.Example.COM:8080",
        "cache.example.com.",
        "[::1]:80",
        "h-1.example",
    ];
    let mut probes = Vec::new();
    for i in 0..200 {
        let host = [("host", hosts[i % hosts.len()])];
        probes.push(Probe::get(
            format!("/a{i}//b/./c%41/../d?k=v{i}&x=1"),
            &host,
        ));
        probes.push(Probe::get(format!("/img/%7Euser{i}/photo.jpg"), &host));
        probes.push(Probe::get(format!("/p{i}?x=1&K=Mixed{i}"), &host));
        probes.push(Probe::get(format!("/q/{i}/%2e/x%2Fy?k="), &host));
    }
    let got = nginx.owners_of(&probes).await;
    let ring = ring_of(&servers);
    let template: Template = expr.parse().unwrap();
    let mut diffs = Vec::new();
    for (probe, owner) in probes.iter().zip(&got) {
        let want = owner_by_template(&ring, &template, &probe.path, &probe.headers);
        if &want != owner {
            diffs.push(format!("{probe:?}: nginx {owner}, template {want}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} requests differ, e.g. {:?}",
        diffs.len(),
        probes.len(),
        &diffs[..diffs.len().min(10)]
    );
    let used: HashSet<&String> = got.iter().collect();
    assert_eq!(
        used.len(),
        servers.len(),
        "every server should own some keys"
    );
    eprintln!("{expr}: {} requests, 0 differences", probes.len());
}
