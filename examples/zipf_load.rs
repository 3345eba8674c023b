//! Load generator for `bench/balance.sh`: keys drawn from a Zipf distribution plus one hot key,
//! over a fixed number of keep-alive HTTP/1.1 connections, bounded by request count and time.
//!
//! ```sh
//! cargo run --release --example zipf_load -- --url 127.0.0.1:8080 --conns 32 \
//!     --requests 30000 --duration 60s --ring cache-0,cache-1,cache-2,cache-3 --out run.tsv
//! ```
//!
//! - Keys: with probability `--hot` (0.3) the key `hot`, otherwise rank `r` in 1..=`--keys`
//!   (100k) with probability ∝ r^-`--zipf` (1.1). The request is `GET /k/<key>`; with
//!   `[affinity] key = ["path"]` the proxy hashes the path `/k/<key>`. Each connection draws
//!   from its own generator seeded from `--seed` and its index, so a run is reproducible.
//!   `--sweep` sends every key once instead, to fill caches.
//! - Closed loop by default (each connection sends its next request when the answer is in);
//!   `--rate R` paces the connections to R requests per second in total instead.
//! - Stops at `--requests` requests or after `--duration`, whichever comes first.
//! - Per request it records when it started, the key, the backend that answered
//!   (`x-ringproxy-backend`, with `[proxy] debug_headers = true`), the latency, the status and,
//!   behind Varnish, hit or miss (`X-Varnish` carries two ids on a hit). `--out` writes them as
//!   TSV.
//! - With `--ring` (the backend ids), each key's owner is computed with [`Ring`] at `--vnodes`
//!   (the proxy's default), and the summary says which share of requests were answered by a
//!   backend other than their key's owner, for three classes of keys: the hot key; the *head*,
//!   Zipf ranks whose expected share of all requests is at least `--hot-share` / 2 (they may
//!   legitimately be judged hot); and *cold*, every other key. `hot_ranks` counts the ranks
//!   expected at or above `--hot-share`, `max_rank_off_owner` is the largest rank that was
//!   answered off its owner at least once.
//!
//! The summary goes to stdout as `metric<TAB>value` lines.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringproxy::config::DEFAULT_VNODES;
use ringproxy::ring::{Member, Ring};
use tokio::net::TcpStream;

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// Where to send: `host:port` (an `http://` prefix is allowed).
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 30_000)]
    requests: u64,
    /// Stop after this long at the latest.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests per second over all connections; 0: closed loop, as fast as answers come.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Zipf keys (ranks 1..=keys).
    #[arg(long, default_value_t = 100_000)]
    keys: u32,
    /// Zipf exponent.
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Share of requests for the one hot key.
    #[arg(long, default_value_t = 0.3)]
    hot: f64,
    /// Seed of the key sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Backend ids (comma-separated) to compute each key's owner with.
    #[arg(long)]
    ring: Option<String>,
    /// Ring points per backend, as the proxy's `ring.vnodes`.
    #[arg(long, default_value_t = DEFAULT_VNODES)]
    vnodes: u32,
    /// The proxy's `balance.hot_share`: Zipf ranks above half of it are the "head".
    #[arg(long, default_value_t = 0.01)]
    hot_share: f64,
    /// Instead of drawing keys, send each key once in order (`hot`, then ranks 1, 2, ...):
    /// fills caches. Use with `--requests` = keys + 1.
    #[arg(long)]
    sweep: bool,
    /// Write every request as a TSV line here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Key 0 is the hot key; 1..=keys are Zipf ranks.
type Key = u32;

fn path_of(key: Key) -> String {
    if key == 0 {
        "/k/hot".to_string()
    } else {
        format!("/k/{key}")
    }
}

/// The key distribution: the hot key with probability `hot`, else a Zipf rank by inverse CDF.
struct Keys {
    hot: f64,
    /// Cumulative weights r^-s for r = 1..=keys.
    cumulative: Vec<f64>,
}

impl Keys {
    fn new(keys: u32, s: f64, hot: f64) -> Keys {
        let mut total = 0.0;
        let cumulative = (1..=keys)
            .map(|r| {
                total += f64::from(r).powf(-s);
                total
            })
            .collect();
        Keys { hot, cumulative }
    }

    fn draw(&self, rng: &mut StdRng) -> Key {
        if rng.gen::<f64>() < self.hot {
            return 0;
        }
        let total = *self.cumulative.last().expect("at least one key");
        let u = rng.gen::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= u);
        i.min(self.cumulative.len() - 1) as Key + 1
    }

    /// Expected share of all requests that go to `key`.
    fn share(&self, key: Key) -> f64 {
        if key == 0 {
            return self.hot;
        }
        let total = *self.cumulative.last().expect("at least one key");
        (1.0 - self.hot) * self.weight(key) / total
    }

    fn weight(&self, key: Key) -> f64 {
        let i = key as usize - 1;
        self.cumulative[i] - if i == 0 { 0.0 } else { self.cumulative[i - 1] }
    }
}

/// One request's outcome.
struct Record {
    start_ms: u64,
    key: Key,
    backend: Option<Box<str>>,
    latency_us: u32,
    /// 0: no answer.
    status: u16,
    /// From `X-Varnish`: Some(true) hit, Some(false) miss, None no such header.
    hit: Option<bool>,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(address: &str) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the connection closes; an error then shows in the next request.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One connection's loop: draws keys, sends, records, until the shared budget or the deadline
/// runs out.
async fn connection(
    index: usize,
    args: Arc<Args>,
    address: Arc<str>,
    keys: Arc<Keys>,
    budget: Arc<AtomicU64>,
    deadline: Instant,
) -> Vec<Record> {
    let mut rng =
        StdRng::seed_from_u64(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let mut records = Vec::new();
    let mut pace = (args.rate > 0.0).then(|| {
        let period = Duration::from_secs_f64(args.conns as f64 / args.rate);
        // Connections start spread over one period, so the rate is smooth.
        let offset = period.mul_f64(index as f64 / args.conns as f64);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut sender: Option<Sender> = None;
    loop {
        if let Some(p) = &mut pace {
            if tokio::time::timeout_at(deadline.into(), p.tick())
                .await
                .is_err()
            {
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        // Requests still to send, this one included; none left: done.
        let Ok(left) = budget.fetch_update(Relaxed, Relaxed, |b| b.checked_sub(1)) else {
            break;
        };
        let key = if args.sweep {
            // The n-th request of the run (0-based) asks for key n.
            Key::try_from(args.requests - left).unwrap_or(Key::MAX) % (args.keys + 1)
        } else {
            keys.draw(&mut rng)
        };
        let start_ms = epoch_ms();
        let started = Instant::now();
        let mut record = Record {
            start_ms,
            key,
            backend: None,
            latency_us: 0,
            status: 0,
            hit: None,
        };
        if sender
            .as_ref()
            .is_none_or(hyper::client::conn::http1::SendRequest::is_closed)
        {
            sender = connect(&address).await.ok();
        }
        if let Some(s) = &mut sender {
            let req = Request::get(path_of(key))
                .header(header::HOST, &*address)
                .body(Empty::new())
                .expect("a valid request");
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = tokio::time::timeout(left.max(Duration::from_secs(1)), async {
                let res = s.send_request(req).await?;
                let (parts, body) = res.into_parts();
                body.collect().await?;
                Ok::<_, hyper::Error>(parts)
            })
            .await;
            match answer {
                Ok(Ok(parts)) => {
                    record.status = parts.status.as_u16();
                    record.backend = parts
                        .headers
                        .get("x-ringproxy-backend")
                        .and_then(|v| v.to_str().ok())
                        .map(Into::into);
                    record.hit = parts
                        .headers
                        .get("x-varnish")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().contains(' '));
                }
                _ => sender = None,
            }
        }
        record.latency_us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        if record.status == 0 {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        records.push(record);
    }
    records
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Arc::new(Args::parse());
    if args.conns == 0 || args.keys == 0 || !(0.0..1.0).contains(&args.hot) {
        return Err("need --conns >= 1, --keys >= 1 and 0 <= --hot < 1".into());
    }
    let address: Arc<str> = args
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .into();
    let keys = Arc::new(Keys::new(args.keys, args.zipf, args.hot));
    let budget = Arc::new(AtomicU64::new(args.requests));
    let started = Instant::now();
    let deadline = started + args.duration;
    let tasks: Vec<_> = (0..args.conns)
        .map(|i| {
            tokio::spawn(connection(
                i,
                args.clone(),
                address.clone(),
                keys.clone(),
                budget.clone(),
                deadline,
            ))
        })
        .collect();
    let mut records = Vec::new();
    for t in tasks {
        records.extend(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    records.sort_by_key(|r| r.start_ms);

    let ring = match &args.ring {
        Some(ids) => Some(Ring::new(
            ids.split(',').map(|id| Member::new(id.trim(), 1)),
            args.vnodes,
        )?),
        None => None,
    };
    let owner = |key: Key| -> Option<&str> {
        let ring = ring.as_ref()?;
        let i = ring.lookup(path_of(key).as_bytes())?;
        Some(&ring.member(i).id)
    };

    if let Some(path) = &args.out {
        let mut out = String::from("start_ms\tkey\tbackend\towner\tlatency_us\tstatus\tcache\n");
        for r in &records {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r.start_ms,
                if r.key == 0 {
                    "hot".to_string()
                } else {
                    r.key.to_string()
                },
                r.backend.as_deref().unwrap_or("-"),
                owner(r.key).unwrap_or("-"),
                r.latency_us,
                r.status,
                match r.hit {
                    Some(true) => "hit",
                    Some(false) => "miss",
                    None => "-",
                },
            );
        }
        std::fs::write(path, out)?;
    }

    let ok: Vec<&Record> = records.iter().filter(|r| r.status == 200).collect();
    let mut latencies: Vec<u32> = ok.iter().map(|r| r.latency_us).collect();
    latencies.sort_unstable();
    let mut summary = String::new();
    let mut put = |name: &str, value: String| {
        let _ = writeln!(summary, "{name}\t{value}");
    };
    put("requests", records.len().to_string());
    put("errors", (records.len() - ok.len()).to_string());
    put("seconds", format!("{secs:.2}"));
    put("rps", format!("{:.0}", records.len() as f64 / secs));
    put("p50_ms", format!("{:.2}", percentile(&latencies, 0.50)));
    put("p99_ms", format!("{:.2}", percentile(&latencies, 0.99)));
    let hits = ok.iter().filter(|r| r.hit == Some(true)).count();
    if ok.iter().any(|r| r.hit.is_some()) {
        put(
            "varnish_hit_pct",
            format!("{:.1}", 100.0 * hits as f64 / ok.len() as f64),
        );
    }
    if let Some(ring) = &ring {
        // Per class: requests, and those answered by a backend other than the key's owner.
        let head = args.hot_share / 2.0;
        let mut classes = [("hot", 0u64, 0u64), ("head", 0, 0), ("cold", 0, 0)];
        let ranks_above = |share: f64| {
            let mut n = 0;
            while n < args.keys && keys.share(n + 1) >= share {
                n += 1;
            }
            n
        };
        let head_keys = ranks_above(head);
        // The largest Zipf rank answered off its owner at least once.
        let mut max_rank_off = 0;
        for r in &ok {
            let class = match r.key {
                0 => 0,
                k if k <= head_keys => 1,
                _ => 2,
            };
            classes[class].1 += 1;
            if r.backend.as_deref() != owner(r.key) {
                classes[class].2 += 1;
                max_rank_off = max_rank_off.max(r.key);
            }
        }
        put("head_ranks", head_keys.to_string());
        put("hot_ranks", ranks_above(args.hot_share).to_string());
        put("max_rank_off_owner", max_rank_off.to_string());
        put("hot_owner", owner(0).unwrap_or("-").to_string());
        for (name, n, left) in classes {
            put(
                &format!("{name}_share_pct"),
                format!("{:.2}", 100.0 * n as f64 / ok.len().max(1) as f64),
            );
            put(
                &format!("{name}_left_pct"),
                format!("{:.3}", 100.0 * left as f64 / n.max(1) as f64),
            );
        }
        for m in ring.members() {
            let n = ok
                .iter()
                .filter(|r| r.backend.as_deref() == Some(&*m.id))
                .count();
            put(
                &format!("answered_pct_{}", m.id),
                format!("{:.1}", 100.0 * n as f64 / ok.len().max(1) as f64),
            );
        }
    }
    print!("{summary}");
    Ok(())
}
