//! Comparing rings: which share of the hash space changes owner between two rings (exact,
//! by interval arithmetic on the circle, not by sampling keys), and a fingerprint that names
//! a ring's layout so replicas can check they route alike.

use std::collections::HashMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::Ring;

/// What a change from one ring to another moves.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// Share of the hash space (= expected share of keys) whose owner changes, 0.0 to 1.0.
    pub share: f64,
    /// Where it goes, largest first.
    pub flows: Vec<Flow>,
}

/// A share of the hash space that changes owner from one member to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// The owner before; `None` when the old ring was empty.
    pub from: Option<Arc<str>>,
    /// The owner after; `None` when the new ring is empty.
    pub to: Option<Arc<str>>,
    /// Share of the hash space.
    pub share: f64,
}

const CIRCLE: f64 = 18_446_744_073_709_551_616.0; // 2^64

/// The exact share of the hash space that changes owner from `old` to `new`, measured over the
/// arcs of the union of both rings' points (see `each_arc`).
pub fn moved(old: &Ring, new: &Ring) -> Moved {
    if old.hashes.is_empty() || new.hashes.is_empty() {
        let share = if old.hashes.is_empty() && new.hashes.is_empty() {
            0.0
        } else {
            1.0
        };
        // With one side empty, each member of the other side is a flow of its own share.
        let side = if old.hashes.is_empty() { new } else { old };
        let flows = side
            .shares()
            .into_iter()
            .enumerate()
            .map(|(i, (_, s))| {
                let id = Some(side.members[i].id.clone());
                let (from, to) = if old.hashes.is_empty() {
                    (None, id)
                } else {
                    (id, None)
                };
                Flow { from, to, share: s }
            })
            .collect();
        return Moved { share, flows };
    }
    // Member indices of `old` translated into `new`'s, so owners compare as integers.
    let same: Vec<Option<u32>> = old
        .members
        .iter()
        .map(|m| new.index_of(&m.id).map(|i| i as u32))
        .collect();
    let mut flows: HashMap<(u32, u32), u128> = HashMap::new();
    let mut moved: u128 = 0;
    each_arc(old, new, |arc| {
        if same[arc.from as usize] != Some(arc.to) {
            moved += arc.length;
            *flows.entry((arc.from, arc.to)).or_default() += arc.length;
        }
    });
    let mut flows: Vec<_> = flows
        .into_iter()
        .map(|((f, t), len)| Flow {
            from: Some(old.members[f as usize].id.clone()),
            to: Some(new.members[t as usize].id.clone()),
            share: len as f64 / CIRCLE,
        })
        .collect();
    flows.sort_by(|x, y| {
        y.share
            .total_cmp(&x.share)
            .then_with(|| x.from.cmp(&y.from))
            .then_with(|| x.to.cmp(&y.to))
    });
    Moved {
        share: (moved as f64 / CIRCLE).min(1.0),
        flows,
    }
}

/// One arc of the union of two rings' points: no point of either ring lies strictly inside it,
/// so each ring gives the whole arc one owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnionArc {
    /// The arc's last position (inclusive); it starts just past the previous arc's `end`.
    pub end: u64,
    /// Its length in positions (the first arc wraps past `u64::MAX`).
    pub length: u128,
    /// The owner's member index in the old ring.
    pub from: u32,
    /// The owner's member index in the new ring.
    pub to: u32,
}

/// Calls `visit` for each arc between consecutive points of the union of both (non-empty)
/// rings' points, in ring order starting with the arc that wraps past zero.
///
/// A key at position k belongs to the first point at or after it. Between two consecutive
/// points of the *union* neither ring has a point, so each ring gives the whole arc one owner:
/// the owner of its first point at or after the arc's end. One merge walk over both sorted
/// point lists therefore measures every arc exactly.
pub(crate) fn each_arc(old: &Ring, new: &Ring, mut visit: impl FnMut(UnionArc)) {
    let (a, b) = (&old.hashes, &new.hashes);
    let (Some(&a_last), Some(&b_last)) = (a.last(), b.last()) else {
        return;
    };
    let (mut i, mut j) = (0usize, 0usize);
    // The first arc wraps: it ends at the smallest point of either ring and starts after the
    // largest one.
    let last = a_last.max(b_last);
    let mut prev = last;
    let mut first = true;
    while i < a.len() || j < b.len() {
        let end = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        // Owners of the arc ending at `end`: each ring's first point at or after it, wrapping.
        let from = old.owners[if i < a.len() { i } else { 0 }];
        let to = new.owners[if j < b.len() { j } else { 0 }];
        let length: u128 = if first {
            // From past `last` round to `end`: (2^64 - last) + end, the whole circle when
            // both rings have a single point position.
            (1u128 << 64) - u128::from(last) + u128::from(end)
        } else {
            u128::from(end - prev)
        };
        visit(UnionArc {
            end,
            length,
            from,
            to,
        });
        first = false;
        prev = end;
        while i < a.len() && a[i] == end {
            i += 1;
        }
        while j < b.len() && b[j] == end {
            j += 1;
        }
    }
}

impl Ring {
    /// A short stable name of this ring's layout: a hash of the placement algorithm, vnodes
    /// and the members with their weights, in ring order (sorted by id for the default ring,
    /// so the order they were added in does not matter). Same members and weights, same
    /// fingerprint; no version or time goes into it.
    pub fn fingerprint(&self) -> String {
        let mut text = Vec::with_capacity(32 + self.members.len() * 16);
        text.extend_from_slice(self.algorithm().as_bytes());
        text.push(0);
        text.extend_from_slice(&self.vnodes.to_le_bytes());
        for m in &self.members {
            text.extend_from_slice(m.id.as_bytes());
            text.push(0);
            text.extend_from_slice(&m.weight.to_le_bytes());
            // A ramp is a different layout; a finished one is the same as none.
            if m.point_count(self.vnodes) != self.vnodes.saturating_mul(m.weight) {
                text.extend_from_slice(&m.point_count(self.vnodes).to_le_bytes());
            }
        }
        format!("{:016x}", xxh3_64(&text))
    }

    /// The placement algorithm's name, as the fingerprint and `/ring` report it.
    pub fn algorithm(&self) -> &'static str {
        match self.placement {
            super::Placement::Ringproxy => "ringproxy-v1",
            super::Placement::Nginx => "nginx-chash-v1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Member;
    use super::*;

    fn ring(members: &[(&str, u32)], vnodes: u32) -> Ring {
        Ring::new(members.iter().map(|(id, w)| Member::new(*id, *w)), vnodes).unwrap()
    }

    /// The moved share by brute force over many keys, for comparison.
    fn sampled(old: &Ring, new: &Ring, n: u64) -> f64 {
        let mut moved = 0;
        for k in 0..n {
            let pos = k.wrapping_mul(u64::MAX / n);
            let o = old.lookup_hash(pos).map(|i| old.member(i).id.clone());
            let w = new.lookup_hash(pos).map(|i| new.member(i).id.clone());
            moved += u64::from(o != w);
        }
        moved as f64 / n as f64
    }

    #[test]
    fn a_join_moves_the_joiners_share_and_only_to_it() {
        let old = ring(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)], 160);
        let new = ring(&[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)], 160);
        let m = moved(&old, &new);
        let e_share = new.shares()[new.index_of("e").unwrap()].1;
        assert!(
            (m.share - e_share).abs() < 1e-12,
            "{} vs {e_share}",
            m.share
        );
        assert!(m.flows.iter().all(|f| f.to.as_deref() == Some("e")));
        let total: f64 = m.flows.iter().map(|f| f.share).sum();
        assert!((total - m.share).abs() < 1e-12);
        assert!((m.share - sampled(&old, &new, 200_000)).abs() < 0.01);
    }

    #[test]
    fn reweighting_and_leaving_match_sampling() {
        let old = ring(&[("a", 1), ("b", 2), ("c", 1)], 100);
        for new in [
            ring(&[("a", 1), ("b", 1), ("c", 1)], 100),
            ring(&[("a", 1), ("c", 1)], 100),
            ring(&[("a", 3), ("b", 2), ("c", 1), ("z", 2)], 100),
        ] {
            let m = moved(&old, &new);
            let s = sampled(&old, &new, 200_000);
            assert!((m.share - s).abs() < 0.01, "{} vs sampled {s}", m.share);
            let back = moved(&new, &old);
            assert!((back.share - m.share).abs() < 1e-12, "symmetric");
        }
    }

    #[test]
    fn identical_rings_move_nothing_and_empty_ones_everything() {
        let r = ring(&[("a", 1), ("b", 1)], 50);
        assert_eq!(moved(&r, &r.clone()).share, 0.0);
        assert_eq!(moved(&Ring::empty(50), &Ring::empty(50)).share, 0.0);
        let m = moved(&Ring::empty(50), &r);
        assert_eq!(m.share, 1.0);
        assert_eq!(m.flows.len(), 2);
        assert!(m.flows.iter().all(|f| f.from.is_none()));
        let single = ring(&[("a", 1)], 1);
        let other = ring(&[("b", 1)], 1);
        assert_eq!(moved(&single, &other).share, 1.0);
    }

    #[test]
    fn fingerprint_is_the_member_set_and_weights() {
        let a = ring(&[("a", 1), ("b", 2)], 100);
        let b = ring(&[("b", 2), ("a", 1)], 100);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        assert_ne!(
            a.fingerprint(),
            ring(&[("a", 1), ("b", 1)], 100).fingerprint()
        );
        assert_ne!(
            a.fingerprint(),
            ring(&[("a", 1), ("b", 2)], 101).fingerprint()
        );
        assert_ne!(
            a.fingerprint(),
            ring(&[("a", 1), ("b", 2), ("c", 1)], 100).fingerprint()
        );
    }
}
