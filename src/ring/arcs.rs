//! The ring as arcs, for pictures (the status page): each member's stretches of the circle, and
//! the stretches a change moves.
//!
//! A ring of n points has about n·(1 − 1/members) runs of consecutive points with one owner,
//! far too many to draw for a large ring. Up to `max` runs are given exactly; past that the
//! circle is cut into `max` equal sectors and each sector is given the owner of its midpoint,
//! so every run at least a sector wide still shows and no boundary moves by more than half a
//! sector (at 2000 sectors, well under a pixel on a page). Counting what moves is not done here
//! but exactly, by [`super::moved`].

use super::compare::each_arc;
use super::Ring;

/// A stretch of the circle owned by one member: from just past the previous span's `end`
/// (the first span wraps past zero from the last one's) up to `end`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The last position of the span.
    pub end: u64,
    /// The owner's member index.
    pub member: u32,
}

/// A stretch of the circle whose owner a change replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovedSpan {
    /// The position just before the span (exclusive).
    pub start: u64,
    /// The last position of the span (inclusive).
    pub end: u64,
    /// The owner afterwards (member index in the new ring); `None` when the new ring is empty.
    pub to: Option<u32>,
}

/// The ring as at most `max` (at least 1) spans covering the circle in order, and whether they
/// are exact (every run of points with one owner) or sampled per sector.
pub fn layout(ring: &Ring, max: usize) -> (bool, Vec<Span>) {
    let max = max.max(1);
    let runs = runs(ring);
    if runs.len() <= max {
        return (true, runs);
    }
    let mut spans: Vec<Span> = Vec::with_capacity(max);
    for k in 0..max {
        let member = ring.lookup_hash(midpoint(k, max)).unwrap_or(0) as u32;
        push_span(&mut spans, sector_end(k, max), member);
    }
    unwrap_first(&mut spans);
    (false, spans)
}

/// The runs of consecutive points with one owner, each ending at its last point; a run that
/// wraps past zero is one span (the first).
fn runs(ring: &Ring) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for (&end, &member) in ring.hashes.iter().zip(&ring.owners) {
        push_span(&mut spans, end, member);
    }
    unwrap_first(&mut spans);
    spans
}

/// Appends a span, or extends the last one when it has the same owner.
fn push_span(spans: &mut Vec<Span>, end: u64, member: u32) {
    match spans.last_mut() {
        Some(last) if last.member == member => last.end = end,
        _ => spans.push(Span { end, member }),
    }
}

/// The first span starts just past the last one's end; when both have one owner they are one
/// stretch across zero, so the last one goes.
fn unwrap_first(spans: &mut Vec<Span>) {
    if spans.len() > 1 && spans[0].member == spans[spans.len() - 1].member {
        spans.pop();
    }
}

/// The stretches whose owner changes from `old` to `new`, at most `max` (at least 1), adjacent
/// ones with the same new owner merged; and whether they are exact or sampled per sector.
pub fn moved_spans(old: &Ring, new: &Ring, max: usize) -> (bool, Vec<MovedSpan>) {
    let max = max.max(1);
    if old.is_empty() && new.is_empty() {
        return (true, Vec::new());
    }
    if new.is_empty() {
        return (
            true,
            vec![MovedSpan {
                start: u64::MAX,
                end: u64::MAX,
                to: None,
            }],
        );
    }
    // Old member index → new member index, so owners compare as integers.
    let same: Vec<Option<u32>> = old
        .members
        .iter()
        .map(|m| new.index_of(&m.id).map(|i| i as u32))
        .collect();
    if old.is_empty() {
        let (exact, spans) = layout(new, max);
        let moved = spans
            .iter()
            .enumerate()
            .map(|(i, s)| MovedSpan {
                start: spans[if i == 0 { spans.len() - 1 } else { i - 1 }].end,
                end: s.end,
                to: Some(s.member),
            })
            .collect();
        return (exact, moved);
    }

    let mut exact: Vec<MovedSpan> = Vec::new();
    let mut start = 0u64;
    let mut first = true;
    each_arc(old, new, |arc| {
        if first {
            // The first arc wraps: it starts past the largest point of either ring.
            start = arc.end.wrapping_sub(arc.length as u64);
            first = false;
        }
        if same[arc.from as usize] != Some(arc.to) {
            match exact.last_mut() {
                Some(last) if last.end == start && last.to == Some(arc.to) => last.end = arc.end,
                _ => exact.push(MovedSpan {
                    start,
                    end: arc.end,
                    to: Some(arc.to),
                }),
            }
        }
        start = arc.end;
    });
    if exact.len() <= max {
        return (true, exact);
    }
    let mut sampled: Vec<MovedSpan> = Vec::new();
    for k in 0..max {
        let at = midpoint(k, max);
        let (Some(from), Some(to)) = (old.lookup_hash(at), new.lookup_hash(at)) else {
            continue;
        };
        if same[from] == Some(to as u32) {
            continue;
        }
        let start = if k == 0 {
            u64::MAX
        } else {
            sector_end(k - 1, max)
        };
        match sampled.last_mut() {
            Some(last) if last.end == start && last.to == Some(to as u32) => {
                last.end = sector_end(k, max);
            }
            _ => sampled.push(MovedSpan {
                start,
                end: sector_end(k, max),
                to: Some(to as u32),
            }),
        }
    }
    (false, sampled)
}

/// The last position of sector `k` of `n` equal sectors.
fn sector_end(k: usize, n: usize) -> u64 {
    let end = ((k as u128 + 1) << 64) / n as u128;
    (end - 1) as u64
}

/// The middle position of sector `k` of `n`.
fn midpoint(k: usize, n: usize) -> u64 {
    let start = ((k as u128) << 64) / n as u128;
    let end = ((k as u128 + 1) << 64) / n as u128;
    ((start + end) / 2) as u64
}

/// A position as a fraction of the circle, 0.0 to 1.0.
pub fn fraction(position: u64) -> f64 {
    position as f64 / 18_446_744_073_709_551_616.0
}

#[cfg(test)]
mod tests {
    use super::super::Member;
    use super::*;

    fn ring(members: &[(&str, u32)], vnodes: u32) -> Ring {
        Ring::new(members.iter().map(|(id, w)| Member::new(*id, *w)), vnodes).unwrap()
    }

    /// The share each member gets from a list of spans.
    fn shares_of(spans: &[Span], members: usize) -> Vec<f64> {
        let mut out = vec![0.0; members];
        for (i, s) in spans.iter().enumerate() {
            let prev = spans[if i == 0 { spans.len() - 1 } else { i - 1 }].end;
            let len = s.end.wrapping_sub(prev);
            let len = if spans.len() == 1 { 1.0 } else { fraction(len) };
            out[s.member as usize] += len;
        }
        out
    }

    #[test]
    fn exact_layout_gives_each_member_its_share() {
        let r = ring(&[("a", 1), ("b", 2), ("c", 1)], 50);
        let (exact, spans) = layout(&r, 10_000);
        assert!(exact);
        assert!(spans.len() < r.points());
        for w in spans.windows(2) {
            assert_ne!(w[0].member, w[1].member, "adjacent runs merged");
            assert!(w[0].end < w[1].end, "in ring order");
        }
        assert_ne!(spans[0].member, spans[spans.len() - 1].member);
        let shares = shares_of(&spans, 3);
        for (i, (_, share)) in r.shares().into_iter().enumerate() {
            assert!(
                (shares[i] - share).abs() < 1e-12,
                "{i}: {} vs {share}",
                shares[i]
            );
        }
    }

    #[test]
    fn sampled_layout_stays_within_max_and_near_the_shares() {
        let r = ring(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)], 1000);
        let (exact, spans) = layout(&r, 2000);
        assert!(!exact);
        assert!(spans.len() <= 2000, "{}", spans.len());
        let shares = shares_of(&spans, 4);
        for (i, (_, share)) in r.shares().into_iter().enumerate() {
            assert!(
                (shares[i] - share).abs() < 0.02,
                "{i}: {} vs {share}",
                shares[i]
            );
        }
    }

    #[test]
    fn single_member_and_empty_rings() {
        let one = ring(&[("a", 1)], 10);
        assert_eq!(
            layout(&one, 5),
            (
                true,
                vec![Span {
                    end: one.hashes[9],
                    member: 0
                }]
            )
        );
        assert_eq!(layout(&Ring::empty(10), 5), (true, vec![]));
    }

    #[test]
    fn moved_spans_add_up_to_the_moved_share() {
        let old = ring(&[("a", 1), ("b", 1), ("c", 1)], 100);
        let new = ring(&[("a", 2), ("c", 1), ("d", 1)], 100);
        let share = super::super::moved(&old, &new).share;
        let (exact, spans) = moved_spans(&old, &new, 100_000);
        assert!(exact);
        let total: f64 = spans
            .iter()
            .map(|s| fraction(s.end.wrapping_sub(s.start)))
            .sum();
        assert!((total - share).abs() < 1e-9, "{total} vs {share}");
        for s in &spans {
            let to = s.to.unwrap() as usize;
            assert_eq!(new.lookup_hash(s.end), Some(to));
            let was = &old.member(old.lookup_hash(s.end).unwrap()).id;
            assert_ne!(was, &new.member(to).id);
        }
        let max = spans.len() / 2;
        let (exact, sampled) = moved_spans(&old, &new, max);
        assert!(!exact);
        assert!(sampled.len() <= max);
        let total: f64 = sampled
            .iter()
            .map(|s| fraction(s.end.wrapping_sub(s.start)))
            .sum();
        assert!((total - share).abs() < 0.1, "{total} vs {share}");
    }

    #[test]
    fn moved_spans_of_a_join_all_go_to_the_joiner() {
        let old = ring(&[("a", 1), ("b", 1)], 100);
        let new = ring(&[("a", 1), ("b", 1), ("c", 1)], 100);
        let (_, spans) = moved_spans(&old, &new, 10_000);
        let c = new.index_of("c").unwrap() as u32;
        assert!(spans.iter().all(|s| s.to == Some(c)));
        assert!(moved_spans(&old, &old, 10).1.is_empty());
        assert_eq!(moved_spans(&old, &Ring::empty(1), 10).1.len(), 1);
        assert!(!moved_spans(&Ring::empty(1), &new, 10).1.is_empty());
    }
}
