//! Ring micro-benchmarks: ringproxy's ring against `pingora-ketama` (Cloudflare's port of
//! nginx's `hash ... consistent`), same keys, same sizes, same run.
//!
//! Sizes are made comparable by giving ringproxy 160 vnodes per member at weight 1: ketama's
//! (v1, nginx-compatible) layout is fixed at `DEFAULT_POINT_MULTIPLE` = 160 points per unit of
//! weight, so both rings hold `160 × n` points (ketama drops the rare colliding u32 point).
//! Members are named `cache-{i}` for ringproxy and `10.0.{i / 256}.{i % 256}:11211` for ketama
//! (it only takes a `SocketAddr`).
//!
//! Keys are 4096 realistic affinity keys, `user-` + a pseudo-random 6-digit number, cycled
//! through so the branch predictor cannot learn one path. Every iteration is one lookup.
//!
//! `ringproxy-nginx` is the nginx-compatible placement (`Ring::nginx`) over ketama's very
//! addresses: the same points as ketama, behind ringproxy's bucket table.
//!
//! Run: `cargo bench --bench ring` (add `-- lookup` etc. to filter). Memory of the ring and the
//! allocation count per lookup are measured by `cargo run --release --example ringstats`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use pingora_ketama::{Bucket, Continuum};
use ringproxy::ring::{hash_key, Member, Ring};

const VNODES: u32 = 160;
const SIZES: [usize; 3] = [10, 100, 1000];
const KEYS: usize = 4096;

/// SplitMix64: a deterministic key stream without pulling in an RNG.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn keys() -> Vec<Vec<u8>> {
    let mut s = 42;
    (0..KEYS)
        .map(|_| format!("user-{:06}", splitmix(&mut s) % 1_000_000).into_bytes())
        .collect()
}

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("cache-{i}"), 1))
        .collect()
}

fn ours(n: usize) -> Ring {
    Ring::new(members(n), VNODES).expect("valid ring")
}

fn buckets(n: usize) -> Vec<Bucket> {
    (0..n)
        .map(|i| {
            let addr: SocketAddr = format!("10.0.{}.{}:11211", i / 256, i % 256)
                .parse()
                .expect("valid address");
            Bucket::new(addr, 1)
        })
        .collect()
}

/// ringproxy's nginx-compatible ring over the addresses [`buckets`] gives ketama.
fn ours_nginx(n: usize) -> Ring {
    Ring::nginx((0..n).map(|i| Member::new(format!("10.0.{}.{}:11211", i / 256, i % 256), 1)))
        .expect("valid ring")
}

fn ketama(n: usize) -> Continuum {
    Continuum::new(&buckets(n))
}

fn lookup(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("lookup");
    for n in SIZES {
        let ring = ours(n);
        g.bench_with_input(BenchmarkId::new("ringproxy", n), &ring, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                ring.lookup(black_box(&keys[i]))
            });
        });
        let nginx = ours_nginx(n);
        g.bench_with_input(BenchmarkId::new("ringproxy-nginx", n), &nginx, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                ring.lookup(black_box(&keys[i]))
            });
        });
        let cont = ketama(n);
        g.bench_with_input(BenchmarkId::new("ketama", n), &cont, |b, cont| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                cont.node_idx(black_box(&keys[i]))
            });
        });
    }
    g.finish();
}

/// The search alone (key already hashed), to split `lookup` into hashing and searching.
fn lookup_hash(c: &mut Criterion) {
    let hashes: Vec<u64> = keys().iter().map(|k| hash_key(k)).collect();
    let mut g = c.benchmark_group("lookup_hash");
    for n in SIZES {
        let ring = ours(n);
        g.bench_with_input(BenchmarkId::new("ringproxy", n), &ring, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                ring.lookup_hash(black_box(hashes[i]))
            });
        });
    }
    g.finish();
}

/// What the proxy actually calls: the first candidate of the clockwise walk.
fn first_candidate(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("first_candidate");
    for n in SIZES {
        let ring = ours(n);
        g.bench_with_input(BenchmarkId::new("ringproxy", n), &ring, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                ring.candidates(black_box(&keys[i])).next()
            });
        });
        let nginx = ours_nginx(n);
        g.bench_with_input(BenchmarkId::new("ringproxy-nginx", n), &nginx, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                ring.candidates(black_box(&keys[i])).next()
            });
        });
        let cont = ketama(n);
        g.bench_with_input(BenchmarkId::new("ketama", n), &cont, |b, cont| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                cont.node_iter(black_box(&keys[i])).next().copied()
            });
        });
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let n = 1000;
    let mut g = c.benchmark_group("build");
    g.sample_size(30);
    let m = members(n);
    g.bench_function(BenchmarkId::new("ringproxy", n), |b| {
        // Cloning the members is a refcount bump per id; it stays out of the timing anyway.
        b.iter_batched(
            || m.clone(),
            |m| Ring::new(m, VNODES).expect("valid ring"),
            BatchSize::PerIteration,
        );
    });
    let addrs: Vec<Member> = (0..n)
        .map(|i| Member::new(format!("10.0.{}.{}:11211", i / 256, i % 256), 1))
        .collect();
    g.bench_function(BenchmarkId::new("ringproxy-nginx", n), |b| {
        b.iter_batched(
            || addrs.clone(),
            |m| Ring::nginx(m).expect("valid ring"),
            BatchSize::PerIteration,
        );
    });
    let bk = buckets(n);
    g.bench_function(BenchmarkId::new("ketama", n), |b| {
        b.iter(|| Continuum::new(black_box(&bk)));
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookup, lookup_hash, first_candidate, build
}
criterion_main!(benches);
