//! The status page and the JSON views it reads, served by the admin listener.
//!
//! `GET /` and `GET /status` answer one self-contained HTML page (`assets/status.html`,
//! embedded at build time: no CDN, no build step, vanilla JS). The page itself holds nothing
//! sensitive and is served without the token; everything it shows comes from token-protected
//! calls, and when one answers 401 the page asks for the token once and keeps it in memory.
//! It polls [`stats_json`] (`GET /stats`), draws the ring from [`arcs_json`]
//! (`GET /ring/arcs?max=N`) whenever the ring version changes, asks `GET /route` where a key
//! goes, and previews changes with `POST /ring/plan` ([`plan_json`]), drawing the arcs that
//! would move.

use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::metrics::{Latency, Reading, BUCKETS};
use crate::plan::Plan;
use crate::ring::{fraction, layout, moved_spans};
use crate::snapshot::Snapshot;

/// The page, embedded in the binary.
pub const PAGE: &str = include_str!("../assets/status.html");

/// What the page may load and run: only itself and calls to this listener.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// Arcs drawn when the caller does not say: about a pixel each on a page-sized circle.
pub const DEFAULT_MAX_ARCS: usize = 2000;
/// The most arcs one answer may hold.
pub const MAX_ARCS: usize = 100_000;

/// Reads `max` from a query string: absent → [`DEFAULT_MAX_ARCS`]; otherwise 1 to
/// [`MAX_ARCS`], or an error naming the parameter.
pub fn max_arcs(query: &str) -> Result<usize, String> {
    let Some((_, v)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "max") else {
        return Ok(DEFAULT_MAX_ARCS);
    };
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_ARCS).contains(&n) => Ok(n),
        _ => Err(format!(
            "max: {v:?} is not a whole number from 1 to {MAX_ARCS}"
        )),
    }
}

/// A position on the circle for the page: a fraction rounded to 1e-7 (a page cannot show
/// finer), which keeps the answer small.
fn at(position: u64) -> f64 {
    (fraction(position) * 1e7).round() / 1e7
}

/// `GET /ring/arcs`: the ring as at most `max` arcs, `[end, backend index]` each, in ring
/// order; an arc starts where the one before it ends (the first where the last ends, across
/// zero). `exact` says whether every run of points is there or the circle was sampled in `max`
/// sectors.
pub fn arcs_json(s: &Snapshot, max: usize) -> Value {
    let (exact, spans) = layout(&s.ring, max);
    let ids: Vec<&str> = s.backends.iter().map(|b| &*b.id).collect();
    let arcs: Vec<Value> = spans
        .iter()
        .map(|span| json!([at(span.end), span.member]))
        .collect();
    json!({
        "version": s.version,
        "fingerprint": s.fingerprint,
        "exact": exact,
        "backends": ids,
        "arcs": arcs,
    })
}

/// `POST /ring/plan`: the plan, the version it was planned against, and the arcs that would
/// move as `[start, end, index into "backends" of the new owner]` (at most `max`; `exact` as
/// for [`arcs_json`]).
pub fn plan_json(s: &Snapshot, plan: &Plan, max: usize) -> Value {
    let mut out = plan.to_json();
    let (exact, spans) = moved_spans(&s.ring, &plan.after, max);
    let index = |member: u32| {
        let id = &plan.after.member(member as usize).id;
        plan.backends.iter().position(|b| b.id == *id)
    };
    let arcs: Vec<Value> = spans
        .iter()
        .map(|span| json!([at(span.start), at(span.end), span.to.and_then(index)]))
        .collect();
    if let Value::Object(map) = &mut out {
        map.insert("version".into(), json!(s.version));
        map.insert("moved_arcs".into(), json!({"exact": exact, "arcs": arcs}));
    }
    out
}

fn reading_json(r: &Reading) -> Value {
    json!({"count": r.count, "sum": r.sum, "buckets": r.buckets.as_slice()})
}

/// `GET /stats`: everything the page shows per backend, in one call: state, weight, share,
/// requests in flight and the latency histograms (cumulative since start, so a reader takes
/// differences between two calls for rates and recent percentiles; `p50`/`p99` are since
/// start, of `first_byte`).
pub fn stats_json(s: &Snapshot, latency: &Latency) -> Value {
    let now = now_ms();
    let readings = latency.read();
    let backends: Vec<Value> = s
        .backends
        .iter()
        .zip(s.shares())
        .map(|(b, &(_, share))| {
            let r = readings
                .binary_search_by(|(id, _)| id.cmp(&b.id))
                .ok()
                .map(|i| &readings[i].1);
            let empty = Reading::default();
            let (first_byte, total) = match r {
                Some(r) => (&r.first_byte, &r.total),
                None => (&empty, &empty),
            };
            json!({
                "id": &*b.id,
                "address": &*b.address,
                "weight": b.weight,
                "state": b.health.state(now).as_str(),
                "share": share,
                "in_flight": b.load.in_flight(),
                "requests": first_byte.count,
                "p50": first_byte.quantile(0.5),
                "p99": first_byte.quantile(0.99),
                "first_byte": reading_json(first_byte),
                "total": reading_json(total),
            })
        })
        .collect();
    json!({
        "version": s.version,
        "fingerprint": s.fingerprint,
        "last_change": last_change_json(s),
        "buckets": BUCKETS.as_slice(),
        "backends": backends,
    })
}

/// The latest membership change, as `GET /ring` and `GET /stats` report it.
pub fn last_change_json(s: &Snapshot) -> Value {
    match s.last_change {
        Some(c) => json!({"version": c.version, "moved": c.moved}),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_arcs_from_the_query() {
        assert_eq!(max_arcs(""), Ok(DEFAULT_MAX_ARCS));
        assert_eq!(max_arcs("max=10"), Ok(10));
        assert_eq!(max_arcs("a=1&max=100000"), Ok(MAX_ARCS));
        for bad in ["max=0", "max=-1", "max=x", "max=100001", "max="] {
            assert!(max_arcs(bad).unwrap_err().starts_with("max:"), "{bad}");
        }
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        // Nothing loaded from elsewhere (the SVG namespace is a name, not a load).
        let page = PAGE.replace("\"http://www.w3.org/2000/svg\"", "");
        for needle in [
            "http://",
            "https://",
            "src=\"//",
            "href=\"//",
            "@import",
            "<link",
        ] {
            assert!(!page.contains(needle), "the page refers to {needle}");
        }
    }
}
