//! Keep-alive connections to backends: reused across requests, replaced when the backend closes
//! them, closed after `proxy.upstream_idle_timeout`, and never a reason for a failed request.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A backend that counts the connections it accepted and those still open.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Counting {
    /// Waits (bounded) until no connection to this backend is open; `what` names the failure.
    async fn wait_all_closed(&self, what: &str) {
        wait_closed(&self.open, what).await;
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn counting_backend(name: &'static str) -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, o) = (accepted.clone(), open.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let service = service_fn(|req| async move {
                    Ok::<_, Infallible>(backend_answer(name, req).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Counting {
        addr,
        accepted,
        open,
        task,
    }
}

/// The connections a [`closing_backend`] accepted, and those it has closed.
struct Closing {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

/// A backend that answers one request per connection, keep-alive in its headers, and then
/// closes the connection after `linger`: the way a backend's idle timeout looks to a proxy.
async fn closing_backend(linger: Duration) -> Closing {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (counter, closer) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let closer = closer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply =
                    "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nx-backend: closer\r\n\r\ncloser\n";
                let _ = stream.write_all(reply.as_bytes()).await;
                tokio::time::sleep(linger).await;
                drop(stream);
                closer.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Closing {
        addr,
        accepted,
        closed,
    }
}

#[tokio::test]
async fn sequential_requests_share_one_backend_connection() {
    let b = counting_backend("cache-a").await;
    let p = start_proxy(&config_addrs("workers = 1", "", &[("cache-a", b.addr)])).await;
    for i in 0..50 {
        let r = p.get_key("/", &format!("user-{i}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "cache-a");
    }
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one connection for 50 requests"
    );

    let metrics = p.admin(http::Method::GET, "/metrics", "").await.text();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
            .to_string()
    };
    assert_eq!(
        line("ringproxy_upstream_connections_opened_total{"),
        "ringproxy_upstream_connections_opened_total{backend=\"cache-a\"} 1"
    );
    assert_eq!(
        line("ringproxy_upstream_idle_connections "),
        "ringproxy_upstream_idle_connections 1"
    );
}

#[tokio::test]
async fn concurrent_requests_reuse_a_bounded_set_of_connections() {
    let b = counting_backend("cache-a").await;
    let p = Arc::new(start_proxy(&config_addrs("", "", &[("cache-a", b.addr)])).await);
    const CLIENTS: usize = 8;
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            // Each client its own connection to the proxy, so the requests really overlap.
            let http = Http::new();
            for i in 0..EACH {
                let key = format!("user-{c}-{i}");
                let r = http.get(&p.url("/"), &[("x-user-id", &key)]).await;
                assert_eq!(r.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = b.accepted.load(Ordering::SeqCst);
    // At most one connection per request in flight, give or take the few returned to the
    // pool a moment after their response; never one per request.
    assert!(
        (1..=2 * CLIENTS).contains(&accepted),
        "{accepted} backend connections for {} requests",
        CLIENTS * EACH
    );
}

#[tokio::test]
async fn connection_closed_by_the_backend_is_replaced_without_an_error() {
    let b = closing_backend(Duration::from_millis(20)).await;
    let p = start_proxy(&config_addrs("workers = 1", "", &[("closer", b.addr)])).await;
    for round in 1..=5 {
        let r = p.get_key("/", "user-1").await;
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert_eq!(r.text(), "closer\n");
        // The next request comes after the backend closed the pooled connection.
        wait_until(
            Duration::from_secs(5),
            "the backend did not close its connection",
            || b.closed.load(Ordering::SeqCst) == round,
        )
        .await;
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn get_on_a_connection_closed_as_it_is_reused_is_resent() {
    // The backend closes right after answering, so the next request usually meets a pooled
    // connection that is closing: either noticed before sending, or failing as it is sent.
    let b = closing_backend(Duration::ZERO).await;
    let p = start_proxy(&config_addrs("workers = 1", "", &[("closer", b.addr)])).await;
    for i in 0..200 {
        let r = p.get_key("/", "user-1").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let state = p.backend_state("closer").await;
    assert_eq!(state["state"], "healthy", "{state}");
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let b = counting_backend("cache-a").await;
    const IDLE: Duration = Duration::from_secs(1);
    let p = start_proxy(&config_addrs(
        &format!("upstream_idle_timeout = \"{}ms\"", IDLE.as_millis()),
        "",
        &[("cache-a", b.addr)],
    ))
    .await;
    let sent = Instant::now();
    assert_eq!(p.get_key("/", "user-1").await.status, 200);

    // Kept alive after the response for the idle timeout and no less: the connection went
    // idle after `sent`, and the poll sees the close only after it happened.
    b.wait_all_closed("idle connection still open after 5 s")
        .await;
    let closed_after = sent.elapsed();
    assert!(
        closed_after >= IDLE,
        "closed {closed_after:?} after the request, before the idle timeout"
    );
    let idle = p.admin(http::Method::GET, "/metrics", "").await.text();
    assert!(
        idle.contains("\nringproxy_upstream_idle_connections 0\n"),
        "{idle}"
    );
    // Closed by the proxy, which no longer counts it; a new request simply opens a new one.
    assert_eq!(p.get_key("/", "user-1").await.status, 200);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn http10_request_without_host_gets_the_backend_as_host() {
    let b = start_backend("cache-a").await;
    let p = start_proxy(&config_with("", &[&b])).await;
    let r = raw_request(
        p.proxy,
        "GET /headers HTTP/1.0\r\nx-user-id: user-1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["host"][0], b.addr.to_string(), "{seen}");
}

#[tokio::test]
async fn response_abandoned_by_the_client_is_not_pooled_half_read() {
    let b = counting_backend("cache-a").await;
    let p = start_proxy(&config_addrs("workers = 1", "", &[("cache-a", b.addr)])).await;
    // Start a 10 MiB download, read a little of it, hang up.
    let mut client = tokio::net::TcpStream::connect(p.proxy).await.unwrap();
    client
        .write_all(b"GET /big/10485760 HTTP/1.1\r\nhost: x\r\nx-user-id: user-1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < 64 * 1024 {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "proxy closed early");
        got += n;
    }
    drop(client);

    // The backend connection carrying the rest of that body must not serve the next request.
    b.wait_all_closed("abandoned upstream connection still open after 5 s")
        .await;
    let r = p.get_key("/", "user-1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "cache-a");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}
