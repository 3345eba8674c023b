//! Ring quality report: how evenly the ring spreads the hash space and real keys, how many keys
//! move when one backend joins or leaves, how long a build takes, how much memory a ring holds
//! and whether a lookup allocates. Prints markdown.
//!
//! Run: `cargo run --release --example ringstats` (about half a minute on 2 cores).
//!
//! - Members are `cache-{i}`, weight 1; keys are `user-{i}` for i in 0..1M; vnodes 40, 160, 640
//!   and the default.
//! - *luck*: the hash-space peak/mean at n = 10 over 500 random id sets and four named ones, for
//!   the vnodes a default could take (the target is ≤ 1.10 with the default).
//! - *space*: the fraction of the 64-bit circle each member owns (`Ring::shares`);
//!   *keys*: how many of the 1M keys each member gets. Peak/mean is the busiest member over the
//!   average; CV is the standard deviation over the mean.
//! - *join*: the fraction of keys whose owner changes when one more member joins (ideal
//!   1/(n+1)), averaged over 10 different joiners, and the worst of them. *leave*: the same when
//!   one member leaves (ideal 1/n), over the first min(n, 10) members. *non-minimal* counts keys
//!   that moved between two members that did not change: consistent hashing promises 0.
//! - Memory is measured with a counting global allocator (live heap bytes after the build, and
//!   the peak during it), so it includes the member ids and every `Vec`'s spare capacity.
//! - `pingora-ketama` (nginx-compatible, fixed 160 points per weight, crc32 keys) is shown on the
//!   same keys for reference.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_ketama::{Bucket, Continuum};
use ringproxy::config::DEFAULT_VNODES;
use ringproxy::ring::{hash_key, Member, Ring};

// ---- counting allocator ---------------------------------------------------------------------

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(live, Relaxed);
}

// The one unsafe block of the project: a counting allocator is the only way to measure the
// ring's memory (bytes allocated per build, none per lookup) without an external profiler.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        grew(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        grew(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        grew(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns what it built, the heap bytes it left live, and the peak above the start.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let value = f();
    let live = LIVE.load(Relaxed).saturating_sub(start);
    let peak = PEAK.load(Relaxed).saturating_sub(start);
    (value, live, peak)
}

/// How many allocations `f` makes.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Relaxed);
    f();
    ALLOCS.load(Relaxed) - before
}

// ---- rings ----------------------------------------------------------------------------------

const KEYS: usize = 1_000_000;
const SIZES: [usize; 3] = [3, 10, 100];
/// `base` and the default vnodes, in order, each once: every table shows the default.
fn with_default(base: &[u32]) -> Vec<u32> {
    let mut v = base.to_vec();
    v.push(DEFAULT_VNODES);
    v.sort_unstable();
    v.dedup();
    v
}
const JOINS: usize = 10;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cache-{i}")).collect()
}

fn ring_of<'a>(ids: impl IntoIterator<Item = &'a String>, vnodes: u32) -> Ring {
    Ring::new(
        ids.into_iter().map(|id| Member::new(id.as_str(), 1)),
        vnodes,
    )
    .expect("valid ring")
}

/// The owner (as an id) of every key.
fn owners(ring: &Ring, hashes: &[u64]) -> Vec<Arc<str>> {
    let ids: Vec<Arc<str>> = ring.members().iter().map(|m| m.id.clone()).collect();
    hashes
        .iter()
        .map(|&h| ids[ring.lookup_hash(h).expect("non-empty ring")].clone())
        .collect()
}

/// Fraction of keys that moved, and how many moved without touching `changed`.
fn moved(before: &[Arc<str>], after: &[Arc<str>], changed: &str) -> (f64, usize) {
    let mut moved = 0usize;
    let mut non_minimal = 0usize;
    for (b, a) in before.iter().zip(after) {
        if b != a {
            moved += 1;
            if &**b != changed && &**a != changed {
                non_minimal += 1;
            }
        }
    }
    (moved as f64 / before.len() as f64, non_minimal)
}

/// (peak/mean, coefficient of variation) of a set of per-member amounts.
fn spread(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let peak = values.iter().copied().fold(f64::MIN, f64::max);
    (peak / mean, var.sqrt() / mean)
}

fn key_counts(owners: &[Arc<str>]) -> Vec<f64> {
    let mut counts: HashMap<&str, f64> = HashMap::new();
    for o in owners {
        *counts.entry(&**o).or_default() += 1.0;
    }
    counts.into_values().collect()
}

/// The median wall time of `runs` calls of `f`.
fn median_time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn pct(x: f64) -> String {
    format!("{:.2}", x * 100.0)
}

fn quality_table(hashes: &[u64]) {
    println!("## Ring quality (ringproxy), {KEYS} keys `user-{{i}}`\n");
    println!(
        "| n | vnodes | points | build µs | space peak/mean | space CV % | keys peak/mean \
         | keys CV % | join moved % (ideal) | join worst % | leave moved % (ideal) \
         | leave worst % | non-minimal |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in SIZES {
        for vnodes in with_default(&[40, 160, 640]) {
            let ids = ids(n);
            let ring = ring_of(&ids, vnodes);
            let build = median_time(11, || ring_of(&ids, vnodes));
            let space: Vec<f64> = ring.shares().iter().map(|&(_, s)| s).collect();
            let (space_pm, space_cv) = spread(&space);
            let base = owners(&ring, hashes);
            let (keys_pm, keys_cv) = spread(&key_counts(&base));

            let mut non_minimal = 0;
            let mut joins = Vec::new();
            for j in 0..JOINS {
                let joiner = format!("cache-{}", n + j);
                let after = owners(&ring_of(ids.iter().chain([&joiner]), vnodes), hashes);
                let (f, bad) = moved(&base, &after, &joiner);
                joins.push(f);
                non_minimal += bad;
            }
            let mut leaves = Vec::new();
            for leaver in ids.iter().take(JOINS) {
                let after = owners(
                    &ring_of(ids.iter().filter(|i| *i != leaver), vnodes),
                    hashes,
                );
                let (f, bad) = moved(&base, &after, leaver);
                leaves.push(f);
                non_minimal += bad;
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
            println!(
                "| {n} | {vnodes} | {} | {:.0} | {space_pm:.3} | {:.2} | {keys_pm:.3} | {:.2} \
                 | {} ({}) | {} | {} ({}) | {} | {non_minimal} |",
                ring.points(),
                build.as_secs_f64() * 1e6,
                space_cv * 100.0,
                keys_cv * 100.0,
                pct(mean(&joins)),
                pct(1.0 / (n + 1) as f64),
                pct(worst(&joins)),
                pct(mean(&leaves)),
                pct(1.0 / n as f64),
                pct(worst(&leaves)),
            );
        }
    }
    println!();
}

fn addr(i: usize) -> SocketAddr {
    format!("10.0.{}.{}:11211", i / 256, i % 256)
        .parse()
        .expect("valid address")
}

fn ketama_owners(addrs: &[SocketAddr], keys: &[Vec<u8>]) -> Vec<SocketAddr> {
    let buckets: Vec<Bucket> = addrs.iter().map(|&a| Bucket::new(a, 1)).collect();
    let c = Continuum::new(&buckets);
    keys.iter()
        .map(|k| c.node(k).expect("non-empty ring"))
        .collect()
}

fn ketama_table(keys: &[Vec<u8>]) {
    println!("## Reference: pingora-ketama (160 points per member), same keys\n");
    println!("| n | build µs | keys peak/mean | keys CV % | join moved % (ideal) | leave moved % (ideal) |");
    println!("|---|---|---|---|---|---|");
    for n in SIZES {
        let addrs: Vec<SocketAddr> = (0..n).map(addr).collect();
        let buckets: Vec<Bucket> = addrs.iter().map(|&a| Bucket::new(a, 1)).collect();
        let build = median_time(11, || Continuum::new(&buckets));
        let base = ketama_owners(&addrs, keys);
        let mut counts: HashMap<SocketAddr, f64> = HashMap::new();
        for o in &base {
            *counts.entry(*o).or_default() += 1.0;
        }
        let (pm, cv) = spread(&counts.into_values().collect::<Vec<_>>());
        let frac = |after: &[SocketAddr]| {
            base.iter().zip(after).filter(|(b, a)| b != a).count() as f64 / keys.len() as f64
        };
        let joined: Vec<SocketAddr> = addrs.iter().copied().chain([addr(n)]).collect();
        let join = frac(&ketama_owners(&joined, keys));
        let leave = frac(&ketama_owners(&addrs[1..], keys));
        println!(
            "| {n} | {:.0} | {pm:.3} | {:.2} | {} ({}) | {} ({}) |",
            build.as_secs_f64() * 1e6,
            cv * 100.0,
            pct(join),
            pct(1.0 / (n + 1) as f64),
            pct(leave),
            pct(1.0 / n as f64),
        );
    }
    println!("\nketama's join/leave are single events (joiner 10.0.x.y with the next index, leaver the first member).\n");
}

/// Named 10-member id sets, the kind of ids people configure.
fn named_sets() -> Vec<(&'static str, Vec<String>)> {
    let set = |f: &dyn Fn(usize) -> String| (0..10).map(f).collect::<Vec<String>>();
    vec![
        ("`cache-0..9`", set(&|i| format!("cache-{i}"))),
        (
            "`cache-a..j`",
            set(&|i| format!("cache-{}", (b'a' + i as u8) as char)),
        ),
        (
            "`10.0.0.1..10:8080`",
            set(&|i| format!("10.0.0.{}:8080", i + 1)),
        ),
        (
            "`redis-0..9.cache.svc:6379`",
            set(&|i| format!("redis-{i}.cache.svc.cluster.local:6379")),
        ),
    ]
}

fn space_peak(ids: &[String], vnodes: u32) -> f64 {
    let space: Vec<f64> = ring_of(ids, vnodes)
        .shares()
        .iter()
        .map(|&(_, s)| s)
        .collect();
    spread(&space).0
}

/// How lucky one id set is: the hash-space peak/mean at n = 10 for the named id sets and over
/// many different id sets, for the vnodes values a default could take.
fn luck_table() {
    const SETS: usize = 500;
    let named = named_sets();
    println!("## Hash-space peak/mean at n = 10 over {SETS} different id sets\n");
    println!(
        "Random sets: ids `{{s}}-cache-{{i}}` and `10.{{s/256}}.{{s%256}}.{{i}}:11211` (half each); \
         one set is one sample. Then four named sets.\n"
    );
    print!("| vnodes | median | p90 | max | sets ≤ 1.10 |");
    named.iter().for_each(|(name, _)| print!(" {name} |"));
    println!("\n|---|---|---|---|---|{}", "---|".repeat(named.len()));
    for vnodes in with_default(&[160, 320, 500, 640, 800, 1000]) {
        let mut pms: Vec<f64> = (0..SETS)
            .map(|s| {
                let ids: Vec<String> = (0..10)
                    .map(|i| {
                        if s % 2 == 0 {
                            format!("{s}-cache-{i}")
                        } else {
                            format!("10.{}.{}.{i}:11211", s / 256, s % 256)
                        }
                    })
                    .collect();
                space_peak(&ids, vnodes)
            })
            .collect();
        pms.sort_by(f64::total_cmp);
        let ok = pms.iter().filter(|&&p| p <= 1.10).count();
        print!(
            "| {vnodes} | {:.3} | {:.3} | {:.3} | {ok}/{SETS} |",
            pms[SETS / 2],
            pms[SETS * 9 / 10],
            pms[SETS - 1],
        );
        named
            .iter()
            .for_each(|(_, ids)| print!(" {:.3} |", space_peak(ids, vnodes)));
        println!();
    }
    println!();
}

fn build_and_memory_table() {
    println!("## Build time and memory, 160 vnodes\n");
    println!(
        "| ring | n | points | build ms (median of 11) | live heap KiB | peak during build KiB \
         | bytes/point |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [10, 100, 1000] {
        let ids = ids(n);
        let build = median_time(11, || ring_of(&ids, 160));
        let (ring, live, peak) = measure(|| {
            let members: Vec<Member> = (0..n)
                .map(|i| Member::new(format!("cache-{i}"), 1))
                .collect();
            Ring::new(members, 160).expect("valid ring")
        });
        println!(
            "| ringproxy | {n} | {} | {:.3} | {:.1} | {:.1} | {:.1} |",
            ring.points(),
            build.as_secs_f64() * 1e3,
            live as f64 / 1024.0,
            peak as f64 / 1024.0,
            live as f64 / ring.points() as f64,
        );
        drop(ring);

        let buckets: Vec<Bucket> = (0..n).map(|i| Bucket::new(addr(i), 1)).collect();
        let build = median_time(11, || Continuum::new(&buckets));
        let (cont, live, peak) = measure(|| {
            let buckets: Vec<Bucket> = (0..n).map(|i| Bucket::new(addr(i), 1)).collect();
            Continuum::new(&buckets)
        });
        println!(
            "| ketama | {n} | ~{} | {:.3} | {:.1} | {:.1} | {:.1} |",
            n * 160,
            build.as_secs_f64() * 1e3,
            live as f64 / 1024.0,
            peak as f64 / 1024.0,
            live as f64 / (n * 160) as f64,
        );
        drop(cont);
    }
    println!(
        "\nbytes/point = live heap / points: everything the ring keeps (point hashes and owners, \
         any lookup index, the member list with `Member` = {} B + each id's `Arc<str>`). \
         ketama keeps a u32 hash + u32 node index per point and the addresses.\n",
        std::mem::size_of::<Member>()
    );
}

fn allocation_table(keys: &[Vec<u8>]) {
    println!(
        "## Allocations over {} lookups (counting global allocator)\n",
        keys.len()
    );
    println!("| call | n = 10 | n = 100 | n = 1000 |");
    println!("|---|---|---|---|");
    let rings: Vec<Ring> = [10, 100, 1000]
        .iter()
        .map(|&n| ring_of(&ids(n), 160))
        .collect();
    let conts: Vec<Continuum> = [10, 100, 1000]
        .iter()
        .map(|&n| {
            let b: Vec<Bucket> = (0..n).map(|i| Bucket::new(addr(i), 1)).collect();
            Continuum::new(&b)
        })
        .collect();
    type Row<'a> = (&'a str, Box<dyn Fn(usize, &[u8]) + 'a>);
    let rows: Vec<Row> = vec![
        (
            "ringproxy `lookup`",
            Box::new(|r, k| {
                black_box(rings[r].lookup(k));
            }),
        ),
        (
            "ringproxy `candidates().next()`",
            Box::new(|r, k| {
                black_box(rings[r].candidates(k).next());
            }),
        ),
        (
            "ringproxy `candidates().take(3)`",
            Box::new(|r, k| {
                black_box(rings[r].candidates(k).take(3).count());
            }),
        ),
        (
            "ketama `node_idx`",
            Box::new(|r, k| {
                black_box(conts[r].node_idx(k));
            }),
        ),
    ];
    for (name, f) in &rows {
        let counts: Vec<usize> = (0..3)
            .map(|r| allocations(|| keys.iter().for_each(|k| f(r, k))))
            .collect();
        println!("| {name} | {} | {} | {} |", counts[0], counts[1], counts[2]);
    }
    // Walking to the end visits every member; a few keys are enough to show it allocates nothing.
    const WALKS: usize = 1000;
    let counts: Vec<usize> = rings
        .iter()
        .map(|ring| {
            allocations(|| {
                for k in &keys[..WALKS] {
                    assert_eq!(ring.candidates(k).count(), ring.len());
                }
            })
        })
        .collect();
    println!(
        "| ringproxy `candidates().count()` (every member), first {WALKS} keys | {} | {} | {} |",
        counts[0], counts[1], counts[2]
    );
    println!();
}

/// Lookup cost, ours against ketama, as the fastest of several interleaved passes: on a shared,
/// noisy machine the minimum is the steadiest estimate (criterion's `benches/ring.rs` gives the
/// full distributions).
fn lookup_table(keys: &[Vec<u8>]) {
    const PASSES: usize = 9;
    const LOOKUPS: usize = 1 << 20;
    let keys = &keys[..4096];
    println!(
        "## Lookup ns, fastest of {PASSES} interleaved passes of {LOOKUPS} lookups (4096 keys cycled)\n"
    );
    println!("| n × 160 | ringproxy `lookup` | ketama `node_idx` | ketama / ringproxy |");
    println!("|---|---|---|---|");
    for n in [10, 100, 1000] {
        let ring = ring_of(&ids(n), 160);
        let b: Vec<Bucket> = (0..n).map(|i| Bucket::new(addr(i), 1)).collect();
        let cont = Continuum::new(&b);
        let (mut ours, mut theirs) = (f64::MAX, f64::MAX);
        let per_lookup = |f: &dyn Fn(&[u8]) -> usize| {
            let t = Instant::now();
            let mut acc = 0usize;
            for i in 0..LOOKUPS {
                acc = acc.wrapping_add(f(black_box(&keys[i & 4095])));
            }
            black_box(acc);
            t.elapsed().as_secs_f64() * 1e9 / LOOKUPS as f64
        };
        for _ in 0..PASSES {
            ours = ours.min(per_lookup(&|k| ring.lookup(k).unwrap_or(0)));
            theirs = theirs.min(per_lookup(&|k| cont.node_idx(k)));
        }
        println!("| {n} | {ours:.1} | {theirs:.1} | {:.2}× |", theirs / ours);
    }
    println!();
}

fn main() {
    let started = Instant::now();
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("user-{i}").into_bytes())
        .collect();
    let hashes: Vec<u64> = keys.iter().map(|k| hash_key(k)).collect();

    println!("# ringstats\n");
    quality_table(&hashes);
    luck_table();
    ketama_table(&keys);
    build_and_memory_table();
    lookup_table(&keys);
    allocation_table(&keys);
    println!(
        "_ringstats took {:.1} s; timings include the counting allocator's few atomic adds per allocation._",
        started.elapsed().as_secs_f64()
    );
}
