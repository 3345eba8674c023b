//! Per-backend latency histograms and in-flight requests, kept with atomics only.
//!
//! Every proxied request is timed, so this is on the hot path. prometheus-client's `Histogram`
//! locks a mutex per observation and a `Family` hashes its labels per lookup; here each backend
//! has one [`BackendStats`] of plain atomics, looked up once per request ([`Latency::begin`]),
//! and the [`Exchange`] it returns carries it to the end of the response body. Observing is a
//! short search over the bucket bounds and two relaxed atomic adds.
//!
//! Buckets (seconds) fit a cache fleet: 100 µs for a hit on a warm connection up to 10 s for
//! something badly wrong. Exported as
//! - `ringproxy_request_duration_seconds{backend, phase}`: `phase="first_byte"` from sending
//!   the request to the backend's response head, `phase="total"` to the end of its body (only
//!   bodies relayed to their end are counted);
//! - `ringproxy_upstream_connect_duration_seconds{backend}`: opening a connection (TCP connect
//!   and HTTP/1 handshake), for the new connections the pool makes.
//!
//! Requests in flight are counted once, by each backend's load (`crate::load`), which the
//! bound needs anyway; `ringproxy_in_flight_requests` reads it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::sync::{read, write};

/// Upper bounds of the histogram buckets, in seconds; a last `+Inf` bucket follows.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// [`BUCKETS`] in nanoseconds, for the comparison on the request path.
const BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A histogram over [`BUCKETS`] of atomics: safe to observe from every worker at once.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Counts one duration.
    #[inline]
    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// The counts as of now.
    pub fn read(&self) -> Reading {
        let mut buckets = [0u64; BUCKETS.len() + 1];
        for (out, c) in buckets.iter_mut().zip(&self.counts) {
            *out = c.load(Relaxed);
        }
        Reading {
            count: buckets.iter().sum(),
            sum: self.sum_ns.load(Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Observations per bucket of [`BUCKETS`] (not cumulative), then the `+Inf` bucket.
    pub buckets: [u64; BUCKETS.len() + 1],
    /// All observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Reading {
    /// The `q`-quantile (0.0 to 1.0) in seconds, interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations. Past the last bound
    /// it answers the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = BUCKETS.get(i) else {
                    return Some(BUCKETS[BUCKETS.len() - 1]);
                };
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        Some(BUCKETS[BUCKETS.len() - 1])
    }
}

/// One backend's figures.
#[derive(Debug, Default)]
pub struct BackendStats {
    first_byte: Histogram,
    total: Histogram,
    connect: Histogram,
}

/// One backend's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendReading {
    /// Send → response head.
    pub first_byte: Reading,
    /// Send → end of the response body.
    pub total: Reading,
    /// New connections: connect + handshake.
    pub connect: Reading,
}

/// The figures of every backend that has seen traffic.
#[derive(Debug, Default)]
pub struct Latency {
    backends: RwLock<HashMap<Arc<str>, Arc<BackendStats>, foldhash::fast::RandomState>>,
}

impl Latency {
    /// The figures of `backend`, created on first use.
    fn stats(&self, backend: &Arc<str>) -> Arc<BackendStats> {
        if let Some(s) = read(&self.backends).get(backend) {
            return s.clone();
        }
        write(&self.backends)
            .entry(backend.clone())
            .or_default()
            .clone()
    }

    /// A request is being sent to `backend` now: timed until the returned [`Exchange`] ends.
    pub fn begin(&self, backend: &Arc<str>) -> Exchange {
        let stats = self.stats(backend);
        Exchange {
            stats,
            started: Instant::now(),
        }
    }

    /// A new connection to `backend` took `took` to open.
    pub fn connected(&self, backend: &Arc<str>, took: Duration) {
        self.stats(backend).connect.observe(took);
    }

    /// Forgets backends for which `keep` says no (they left the ring). A request still holding
    /// one finishes on the forgotten figures; a backend that comes back starts from zero.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut map = write(&self.backends);
        if map.keys().any(|id| !keep(id)) {
            map.retain(|id, _| keep(id));
        }
    }

    /// Every backend's figures, sorted by id.
    pub fn read(&self) -> Vec<(Arc<str>, BackendReading)> {
        let mut out: Vec<_> = read(&self.backends)
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    BackendReading {
                        first_byte: s.first_byte.read(),
                        total: s.total.read(),
                        connect: s.connect.read(),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// One request to one backend, from sending it to the end of the response body. Dropping it
/// ends the in-flight count, whatever happened; [`Exchange::finish`] also times the whole.
#[derive(Debug)]
pub struct Exchange {
    stats: Arc<BackendStats>,
    started: Instant,
}

impl Exchange {
    /// The backend's response head arrived.
    #[inline]
    pub fn first_byte(&self) {
        self.stats.first_byte.observe(self.started.elapsed());
    }

    /// The response body ended: timed, and no longer in flight.
    #[inline]
    pub fn finish(self) {
        self.stats.total.observe(self.started.elapsed());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    backend: Arc<str>,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: Arc<str>,
}

fn encode_histogram(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    reading: &Reading,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(reading.buckets)
        .collect();
    encoder
        .encode_family(labels)?
        .encode_histogram::<NoLabelSet>(reading.sum, reading.count, &buckets, None)
}

impl Collector for Latency {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.read();
        if all.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor(
            "request_duration",
            "Proxied requests by backend: phase=first_byte until the backend's response head, phase=total until the end of its body",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (backend, r) in &all {
            for (phase, reading) in [("first_byte", &r.first_byte), ("total", &r.total)] {
                let labels = PhaseLabels {
                    backend: backend.clone(),
                    phase,
                };
                encode_histogram(&mut m, &labels, reading)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "upstream_connect_duration",
            "Opening a new connection to a backend (TCP connect and HTTP/1 handshake)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (backend, r) in &all {
            let labels = BackendLabels {
                backend: backend.clone(),
            };
            encode_histogram(&mut m, &labels, &r.connect)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50)); // ≤ 100 µs
        h.observe(Duration::from_micros(100)); // ≤ 100 µs (bounds are inclusive)
        h.observe(Duration::from_micros(101)); // ≤ 250 µs
        h.observe(Duration::from_secs(11)); // +Inf
        let r = h.read();
        assert_eq!(r.count, 4);
        assert_eq!(r.buckets[0], 2);
        assert_eq!(r.buckets[1], 1);
        assert_eq!(r.buckets[BUCKETS.len()], 1);
        assert!((r.sum - 11.000_251).abs() < 1e-9);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Histogram::default();
        assert_eq!(h.read().quantile(0.5), None);
        for _ in 0..100 {
            h.observe(Duration::from_millis(3)); // the 2.5-5 ms bucket
        }
        let r = h.read();
        let p50 = r.quantile(0.5).unwrap();
        assert!((p50 - 0.00375).abs() < 1e-9, "{p50}");
        assert!((r.quantile(1.0).unwrap() - 0.005).abs() < 1e-9);
        h.observe(Duration::from_secs(60));
        assert_eq!(h.read().quantile(1.0), Some(10.0));
    }

    #[test]
    fn exchanges_are_timed_only_when_they_get_that_far() {
        let l = Latency::default();
        let id: Arc<str> = "a".into();
        let e = l.begin(&id);
        let e2 = l.begin(&id);
        e.first_byte();
        e.finish();
        drop(e2);
        let r = &l.read()[0].1;
        assert_eq!(r.first_byte.count, 1);
        assert_eq!(r.total.count, 1);
        l.retain(|id| id != "a");
        assert!(l.read().is_empty());
    }
}
