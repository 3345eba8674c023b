//! A layer-4 relay for bench/compare.sh's `rt-*` targets: each client connection is paired with
//! one backend connection (round robin) and bytes pass through unparsed, as in `l4relay.c`,
//! with the socket work done by a Rust runtime: `tokio` (epoll, ringproxy's runtime), `monoio`
//! (io_uring) or `monoio-epoll` (monoio's epoll fallback). It answers whether an off-the-shelf
//! io_uring runtime keeps the io_uring lever that `l4-uring` measures.
//!
//!   rtrelay tokio|monoio|monoio-epoll PORT THREADS BACKEND_PORT...
//!
//! One acceptor thread hands connections to the worker threads in turn (each worker one
//! single-threaded runtime). Not a proxy: no parsing, no timeouts. Loopback only.

use std::net::{SocketAddr, TcpListener, TcpStream};

use futures_channel::mpsc::{unbounded, UnboundedReceiver};
use futures_util::StreamExt;

const BUF: usize = 16384;

/// A client connection and the backend to pair it with.
type Job = (TcpStream, SocketAddr);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: rtrelay tokio|monoio|monoio-epoll PORT THREADS BACKEND_PORT...");
        std::process::exit(2);
    }
    let mode = args[1].clone();
    let threads: usize = args[3].parse().expect("THREADS");
    let backends: Vec<SocketAddr> = args[4..]
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().expect("BACKEND_PORT"))
        .collect();
    let listener = TcpListener::bind(format!("127.0.0.1:{}", args[2])).expect("listen");
    let mut lanes = Vec::new();
    for _ in 0..threads.max(1) {
        let (tx, rx) = unbounded::<Job>();
        let mode = mode.clone();
        std::thread::spawn(move || worker(&mode, rx));
        lanes.push(tx);
    }
    for (n, client) in listener.incoming().enumerate() {
        let Ok(client) = client else { continue };
        let _ = client.set_nodelay(true);
        let job = (client, backends[n % backends.len()]);
        lanes[n % lanes.len()]
            .unbounded_send(job)
            .expect("worker running");
    }
}

fn worker(mode: &str, jobs: UnboundedReceiver<Job>) {
    match mode {
        "tokio" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(tokio_worker(jobs)),
        // io_uring answers EAGAIN for a non-blocking socket instead of waiting for it.
        "monoio" => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .build()
            .expect("io_uring runtime")
            .block_on(monoio_worker(jobs, false)),
        "monoio-epoll" => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("epoll runtime")
            .block_on(monoio_worker(jobs, true)),
        m => panic!("unknown mode {m}"),
    }
}

async fn tokio_worker(mut jobs: UnboundedReceiver<Job>) {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
        let mut buf = vec![0u8; BUF];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }
    while let Some((client, backend)) = jobs.next().await {
        tokio::spawn(async move {
            let _ = client.set_nonblocking(true);
            let Ok(client) = tokio::net::TcpStream::from_std(client) else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
                return;
            };
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pump(cr, sw), pump(sr, cw));
        });
    }
}

async fn monoio_worker(mut jobs: UnboundedReceiver<Job>, nonblocking: bool) {
    use monoio::buf::IoBuf;
    use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
    async fn pump(mut from: impl AsyncReadRent, mut to: impl AsyncWriteRent) {
        let mut buf = vec![0u8; BUF];
        loop {
            let (read, b) = from.read(buf).await;
            buf = b;
            let n = match read {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            let (written, b) = to.write_all(buf.slice(0..n)).await;
            buf = b.into_inner();
            if written.is_err() {
                break;
            }
        }
    }
    while let Some((client, backend)) = jobs.next().await {
        monoio::spawn(async move {
            let _ = client.set_nonblocking(nonblocking);
            let Ok(client) = monoio::net::TcpStream::from_std(client) else {
                return;
            };
            let Ok(server) = monoio::net::TcpStream::connect(backend).await else {
                return;
            };
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            monoio::join!(pump(cr, sw), pump(sr, cw));
        });
    }
}
