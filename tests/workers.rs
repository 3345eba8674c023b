//! Proxy worker threads: new connections go to the worker with the fewest open ones, and the
//! `ringproxy_worker_connections` gauge shows each worker's count.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `ringproxy_worker_connections` for workers 0..n, from `/metrics`.
async fn worker_connections(p: &TestProxy, n: usize) -> Vec<i64> {
    let text = p.admin(Method::GET, "/metrics", "").await.text();
    (0..n)
        .map(|i| {
            let name = format!("ringproxy_worker_connections{{worker=\"{i}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(name.as_str()))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .parse()
                .unwrap()
        })
        .collect()
}

/// Opens a keep-alive connection and completes one request on it.
async fn open_and_use(p: &TestProxy) -> TcpStream {
    let mut conn = TcpStream::connect(p.proxy).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nx-user-id: 1\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("cache-a") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("response within 5s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    conn
}

#[tokio::test]
async fn connections_are_spread_evenly_over_workers() {
    let backend = start_backend("cache-a").await;
    let p = start_proxy(&config_proxy("workers = 3", "", &[&backend])).await;
    assert_eq!(worker_connections(&p, 3).await, [0, 0, 0]);

    let mut conns = Vec::new();
    for _ in 0..9 {
        conns.push(open_and_use(&p).await);
    }
    assert_eq!(worker_connections(&p, 3).await, [3, 3, 3]);

    // Closing three leaves room on whichever workers held them; the next three fill it.
    conns.truncate(6);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = worker_connections(&p, 3).await;
        if counts.iter().sum::<i64>() == 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections still counted: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        conns.push(open_and_use(&p).await);
    }
    assert_eq!(worker_connections(&p, 3).await, [3, 3, 3]);

    drop(conns);
    p.stop().await;
}

/// `ringproxy_relay_workers{io="<io>"}`, from `/metrics` (0 when absent).
async fn relay_workers(p: &TestProxy, io: &str) -> i64 {
    let text = p.admin(Method::GET, "/metrics", "").await.text();
    let name = format!("ringproxy_relay_workers{{io=\"{io}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(name.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn relay_workers_run_on_the_io_asked_for_or_say_they_fell_back() {
    let backend = start_backend("cache-a").await;
    // io_uring where this kernel (and its seccomp profile) allows it, else epoll.
    let uring = if monoio::utils::detect_uring() {
        "io_uring"
    } else {
        "epoll"
    };
    for (io, runs_on) in [("epoll", "epoll"), ("io_uring", uring)] {
        let lines = format!("workers = 2\nio = \"{io}\"");
        let p = start_proxy(&config_proxy(&lines, "", &[&backend])).await;
        open_and_use(&p).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while relay_workers(&p, runs_on).await != 2 {
            assert!(
                Instant::now() < deadline,
                "io = {io:?}: relay workers on {runs_on}: {} after 5 s",
                relay_workers(&p, runs_on).await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let other = if runs_on == "epoll" {
            "io_uring"
        } else {
            "epoll"
        };
        assert_eq!(relay_workers(&p, other).await, 0, "io = {io:?}");
    }
}
