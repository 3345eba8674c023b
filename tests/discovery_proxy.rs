//! DNS discovery through a real proxy: backends on several loopback addresses behind one name,
//! a scriptable DNS server on loopback, and the ring following the answers.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_resolver::proto::op::ResponseCode;
use http::StatusCode;
use ringproxy::ring::{Member, Ring};
use tokio::net::TcpListener;

/// Backends named after their address, all on one port, on 127.0.0.2, .3, ... (every
/// 127.0.0.0/8 address is local on Linux).
async fn backends_on_one_port(n: u8) -> (u16, Vec<tokio::task::JoinHandle<()>>) {
    'port: loop {
        let first = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 3..2 + n {
            match TcpListener::bind((Ipv4Addr::new(127, 0, 0, i), port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'port,
            }
        }
        let tasks = listeners
            .into_iter()
            .map(|l| {
                let name = l.local_addr().unwrap().to_string();
                serve_backend(l, &name, Arc::new(AtomicUsize::new(0)), Arc::default())
            })
            .collect();
        return (port, tasks);
    }
}

fn ips(last: &[u8]) -> Vec<Ipv4Addr> {
    last.iter().map(|&i| Ipv4Addr::new(127, 0, 0, i)).collect()
}

/// Waits until `/backends` lists exactly `want` (ids).
async fn wait_members(p: &TestProxy, want: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let b = p.backends().await;
        let mut ids: Vec<String> = b["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        if ids == want {
            return;
        }
        assert!(Instant::now() < deadline, "members {ids:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(port: u16, last: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = last
        .iter()
        .map(|i| SocketAddr::from((Ipv4Addr::new(127, 0, 0, *i), port)).to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ring_follows_dns_and_keeps_the_last_set_through_an_outage() {
    let (port, _backends) = backends_on_one_port(4).await;
    let dns = start_dns().await;
    dns.set_a("cache.test", ips(&[2, 3, 4]));
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[discovery]]\nname = \"cache.test\"\nport = {port}\ninterval = \"200ms\"\n\
         [discovery_resolver]\nnameservers = [\"{}\"]\ntimeout = \"200ms\"\n",
        dns.addr
    );
    let p = start_proxy(&config).await;
    wait_members(&p, &ids(port, &[2, 3, 4]), Duration::from_secs(5)).await;

    // The proxy routes like the library's ring over the discovered ids.
    let keys = keys(300);
    let check = |members: Vec<String>| {
        let ring = Ring::new(members.iter().map(|m| Member::new(m.as_str(), 1)), 1000).unwrap();
        keys.iter()
            .map(|k| {
                ring.member(ring.lookup(k.as_bytes()).unwrap())
                    .id
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        p.owners_by_request(&keys).await,
        check(ids(port, &[2, 3, 4]))
    );

    dns.set_a("cache.test", ips(&[2, 3, 4, 5]));
    wait_members(&p, &ids(port, &[2, 3, 4, 5]), Duration::from_secs(5)).await;
    assert_eq!(
        p.owners_by_request(&keys).await,
        check(ids(port, &[2, 3, 4, 5]))
    );

    dns.set_a("cache.test", ips(&[3, 5]));
    wait_members(&p, &ids(port, &[3, 5]), Duration::from_secs(5)).await;
    assert_eq!(p.owners_by_request(&keys).await, check(ids(port, &[3, 5])));

    // Outages keep the last good set: SERVFAIL, no answer, NXDOMAIN.
    let before = dns.queries();
    dns.fail_with(ResponseCode::ServFail);
    dns.wait_queries(before + 4, Duration::from_secs(5)).await;
    dns.drop_all();
    dns.wait_queries(dns.queries() + 4, Duration::from_secs(5))
        .await;
    dns.answer_normally();
    dns.remove("cache.test");
    dns.wait_queries(dns.queries() + 4, Duration::from_secs(5))
        .await;
    wait_members(&p, &ids(port, &[3, 5]), Duration::from_secs(1)).await;
    let r = p.get_key("/", "user-1").await;
    assert_eq!(r.status, StatusCode::OK);
    let metrics = p.admin(http::Method::GET, "/metrics", "").await.text();
    assert!(
        metrics.contains("ringproxy_discovery_errors_total{target=\"dns:cache.test:"),
        "{metrics}"
    );
    p.stop().await;
}

#[test]
fn discovery_may_stand_alone_and_bad_targets_name_their_field() {
    use ringproxy::config::Config;
    let ok = "[[discovery]]\nname = \"cache.svc\"\nport = 80\n";
    assert!(Config::parse(ok).unwrap().backends.is_empty());
    for (text, want) in [
        ("[[discovery]]\nname = \"cache.svc\"\n", "discovery[0]"),
        (
            "[[discovery]]\nname = \"a\"\nsrv = \"b\"\nport = 1\n",
            "discovery[0]",
        ),
        (
            "[[discovery]]\nname = \"a\"\nport = 0\n",
            "discovery[0].port",
        ),
        (
            "[[discovery]]\nname = \"a\"\nport = 1\ninterval = \"0s\"\n",
            "discovery[0].interval",
        ),
        (
            "[[discovery]]\nname = \"a\"\nport = 1\n[discovery_resolver]\nnameservers = [\"x\"]\n",
            "discovery_resolver.nameservers[0]",
        ),
    ] {
        let e = Config::parse(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}
