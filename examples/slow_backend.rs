//! Slow backends and a counting origin for `bench/balance.sh`: HTTP/1.1 servers that take a
//! fixed time per request and count their own concurrency.
//!
//! ```sh
//! cargo run --release --example slow_backend -- --delay-ms 5 --slots 8 \
//!     cache-0=127.0.0.1:18000 cache-1=127.0.0.1:18001      # one process, one listener each
//! cargo run --release --example slow_backend -- --delay-ms 5 \
//!     --cache-control max-age=300 origin=127.0.0.1:18100  # an origin behind caches
//! ```
//!
//! Each `NAME=ADDRESS` is one backend. Every request waits for one of `--slots` service slots
//! (0: no limit), holds it `--delay-ms` milliseconds, and is answered `200` with the body
//! `NAME PATH`, plus `Cache-Control` when `--cache-control` is given. A request counts as in
//! flight from the moment its head is read until its answer is handed to the connection, the
//! wait for a slot included: the concurrency a cache server would see.
//!
//! Control paths, answered at once on any listener and not counted:
//! - `GET /__stats`: one line per backend, `name requests in_flight peak mean seconds`, where
//!   `peak` is the most requests in flight at any instant and `mean` the time-weighted mean in
//!   flight since the last reset (exact: the integral of in-flight over time, not samples).
//! - `GET /__timeline`: requests per 100 ms, all backends together, as `epoch_ms count` lines
//!   (`epoch_ms` is where the 100 ms bucket starts).
//! - `GET /__reset`: starts a new window for both.
//!
//! The process exits after `--lifetime` (default 10 minutes) in case its starter forgets it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http::{header, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// Milliseconds each request takes once it has a slot.
    #[arg(long, default_value_t = 5)]
    delay_ms: u64,
    /// Requests served at once per backend; the rest wait. 0: no limit.
    #[arg(long, default_value_t = 0)]
    slots: usize,
    /// A `Cache-Control` value for every answer (e.g. `max-age=300`).
    #[arg(long)]
    cache_control: Option<String>,
    /// Exit after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    lifetime: Duration,
    /// Backends, as `NAME=ADDRESS`.
    #[arg(required = true)]
    backends: Vec<String>,
}

/// One backend's concurrency, measured exactly: the in-flight count changes only under the
/// lock, and every change first adds `in_flight × elapsed` to the area.
#[derive(Debug)]
struct Gauge {
    in_flight: u64,
    peak: u64,
    requests: u64,
    /// Integral of in-flight over time since `since`, in request-seconds.
    area: f64,
    last: Instant,
    since: Instant,
}

impl Gauge {
    fn new() -> Gauge {
        let now = Instant::now();
        Gauge {
            in_flight: 0,
            peak: 0,
            requests: 0,
            area: 0.0,
            last: now,
            since: now,
        }
    }

    fn advance(&mut self) -> Instant {
        let now = Instant::now();
        self.area += self.in_flight as f64 * now.duration_since(self.last).as_secs_f64();
        self.last = now;
        now
    }

    fn reset(&mut self) {
        self.since = self.advance();
        self.area = 0.0;
        self.peak = self.in_flight;
        self.requests = 0;
    }
}

/// What all listeners share.
struct Shared {
    delay: Duration,
    cache_control: Option<String>,
    gauges: Vec<(String, Mutex<Gauge>)>,
    /// Requests per 100 ms bucket (epoch ms / 100).
    timeline: Mutex<BTreeMap<u64, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One request in flight at backend `index`; dropping it (answered or abandoned) ends it.
struct InFlight<'a> {
    gauge: &'a Mutex<Gauge>,
}

impl<'a> InFlight<'a> {
    fn start(gauge: &'a Mutex<Gauge>) -> InFlight<'a> {
        let mut g = lock(gauge);
        g.advance();
        g.in_flight += 1;
        g.requests += 1;
        g.peak = g.peak.max(g.in_flight);
        InFlight { gauge }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut g = lock(self.gauge);
        g.advance();
        g.in_flight -= 1;
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn text(body: String) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(body)))
}

fn stats(shared: &Shared) -> String {
    let mut out = String::new();
    for (name, gauge) in &shared.gauges {
        let mut g = lock(gauge);
        let now = g.advance();
        let secs = now.duration_since(g.since).as_secs_f64();
        let mean = if secs > 0.0 { g.area / secs } else { 0.0 };
        out += &format!(
            "{name} {} {} {} {mean:.3} {secs:.3}\n",
            g.requests, g.in_flight, g.peak
        );
    }
    out
}

async fn serve(
    shared: Arc<Shared>,
    index: usize,
    slots: Option<Arc<Semaphore>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/__stats" => return Ok(text(stats(&shared))),
        "/__timeline" => {
            let lines: String = lock(&shared.timeline)
                .iter()
                .map(|(bucket, n)| format!("{} {n}\n", bucket * 100))
                .collect();
            return Ok(text(lines));
        }
        "/__reset" => {
            for (_, gauge) in &shared.gauges {
                lock(gauge).reset();
            }
            lock(&shared.timeline).clear();
            return Ok(text("reset\n".to_string()));
        }
        _ => {}
    }
    *lock(&shared.timeline).entry(epoch_ms() / 100).or_default() += 1;
    let (name, gauge) = &shared.gauges[index];
    let _in_flight = InFlight::start(gauge);
    let _slot = match &slots {
        Some(s) => Some(s.acquire().await.expect("the semaphore is never closed")),
        None => None,
    };
    tokio::time::sleep(shared.delay).await;
    let mut res = text(format!("{name} {}\n", req.uri().path()));
    if let Some(cc) = &shared.cache_control {
        if let Ok(v) = header::HeaderValue::from_str(cc) {
            res.headers_mut().insert(header::CACHE_CONTROL, v);
        }
    }
    Ok(res)
}

async fn listen(shared: Arc<Shared>, index: usize, listener: TcpListener, slots: usize) {
    let slots = (slots > 0).then(|| Arc::new(Semaphore::new(slots)));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("slow_backend: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (shared, slots) = (shared.clone(), slots.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| serve(shared.clone(), index, slots.clone(), req));
            // A client closing its connection is no error worth reporting here.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut gauges = Vec::new();
    let mut listeners = Vec::new();
    for spec in &args.backends {
        let (name, address) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected NAME=ADDRESS"))?;
        let address: SocketAddr = address.parse()?;
        listeners.push(TcpListener::bind(address).await?);
        gauges.push((name.to_string(), Mutex::new(Gauge::new())));
    }
    let shared = Arc::new(Shared {
        delay: Duration::from_millis(args.delay_ms),
        cache_control: args.cache_control.clone(),
        gauges,
        timeline: Mutex::new(BTreeMap::new()),
    });
    for (index, listener) in listeners.into_iter().enumerate() {
        tokio::spawn(listen(shared.clone(), index, listener, args.slots));
    }
    tokio::select! {
        () = tokio::time::sleep(args.lifetime) => eprintln!("slow_backend: lifetime over, exiting"),
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
