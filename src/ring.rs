//! The consistent-hash ring: pure data, no I/O, no clock, no tokio.
//!
//! Every member owns `vnodes × weight` points on a 64-bit circle. Point `i` of member `id` sits
//! at the `i`-th SplitMix64 output seeded with `xxh3_64(id)`; a key sits at `xxh3_64(key)` and belongs to the first point at
//! or after it, wrapping past `u64::MAX` back to the first point.
//!
//! The ring is a function of the member *set*: members are sorted by id before the points are
//! laid out and points that collide are ordered by member id, so the same members in any order
//! build the identical ring. Two proxies with the same backends route every key the same way.
//!
//! Lookups never allocate. A bucket table indexed by the top bits of the key's hash (about one
//! bucket per point) narrows the search to the few points of one bucket, so a lookup costs two
//! table reads and a short scan instead of a full binary search over cold memory. Owners live
//! in a parallel array so the search touches only hashes. [`Ring::candidates`]
//! walks clockwise yielding each distinct member once, which is what failover needs: the
//! caller skips unusable members, the ring itself knows nothing about health. The walk never
//! allocates either, whatever the member count (see [`Candidates`]).
//!
//! The build is a bucket sort: point hashes are uniform, so distributing them by their top bits
//! (the very bits the bucket table indexes) leaves one or two points per bucket, and the
//! per-bucket counts *are* the bucket table. One counting pass, one scatter pass and one nearly
//! free insertion sort replace an O(n log n) comparison sort over (hash, owner) pairs.
//!
//! A second placement, [`Ring::nginx`], lays points out exactly as nginx's `hash ... consistent`
//! does (see [`nginx`](self::nginx)) for migrations that must not move a key. It is the same
//! `Ring`: same lookups, candidates and bucket table, only the points, the key hash
//! ([`Ring::hash`]) and the member order differ; [`Ring::placement`] says which one a ring is.

use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

mod nginx;

pub use nginx::NGINX_VNODES;

/// Upper bound on the points of one ring, so a typo in a weight cannot eat the machine's memory.
pub const MAX_POINTS: u64 = 20_000_000;

/// One ring member: an id (what is hashed) and a weight (how many units of `vnodes` it gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// What is hashed: the member's identity.
    pub id: Arc<str>,
    /// Units of `vnodes` points.
    pub weight: u32,
    /// While warming up or ramping down: how many of its `vnodes × weight` points are on the
    /// ring (always the first ones of its point sequence, so a growing count only adds points
    /// and every key moves at most once). `None`: all of them.
    pub points: Option<u32>,
}

impl Member {
    /// A member with `id` and `weight`.
    pub fn new(id: impl Into<Arc<str>>, weight: u32) -> Self {
        Member {
            id: id.into(),
            weight,
            points: None,
        }
    }

    /// A member with only the first `points` of its points on the ring (a ramp).
    pub fn ramped(id: impl Into<Arc<str>>, weight: u32, points: u32) -> Self {
        Member {
            points: Some(points),
            ..Member::new(id, weight)
        }
    }

    /// The points this member has on a ring of `vnodes`.
    pub fn point_count(&self, vnodes: u32) -> u32 {
        let full = vnodes.saturating_mul(self.weight);
        self.points.map_or(full, |p| p.min(full))
    }
}

/// Why a member set cannot form a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `vnodes` was zero.
    #[error("vnodes must be at least 1")]
    ZeroVnodes,
    /// A member has weight zero.
    #[error("member {0:?} has weight 0; weights must be at least 1")]
    ZeroWeight(String),
    /// A member id is empty.
    #[error("member id must not be empty")]
    EmptyId,
    /// Two members share an id.
    #[error("member {0:?} is listed twice")]
    DuplicateId(String),
    #[error(
        "ring would have {0} points, more than the limit of {MAX_POINTS}; lower vnodes or weights"
    )]
    /// Too many points.
    TooManyPoints(u64),
}

/// How a ring places members' points and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// ringproxy's own ([`Ring::new`]): xxh3 + SplitMix64 points on 64 bits, independent of
    /// member order.
    Ringproxy,
    /// nginx's `hash $key consistent` ([`Ring::nginx`]): CRC-32 points, 160 per unit of weight,
    /// ties to the member listed first.
    Nginx,
}

impl Placement {
    /// The `[ring] compat` name of this placement: `None` for ringproxy's own.
    pub fn compat(self) -> Option<&'static str> {
        match self {
            Placement::Ringproxy => None,
            Placement::Nginx => Some("nginx"),
        }
    }
}

/// An immutable consistent-hash ring.
#[derive(Clone, PartialEq, Eq)]
pub struct Ring {
    placement: Placement,
    vnodes: u32,
    /// The members; the index into this is the member index used everywhere. Sorted by id for
    /// [`Placement::Ringproxy`], in the given (listing) order for [`Placement::Nginx`].
    members: Vec<Member>,
    /// Member indices sorted by id, for [`Ring::index_of`] when `members` is not itself sorted
    /// by id; empty when it is.
    by_id: Vec<u32>,
    /// Point positions, ascending.
    hashes: Vec<u64>,
    /// `owners[i]` is the member index owning `hashes[i]`.
    owners: Vec<u32>,
    /// `prev_same[i]` is the nearest point before `i` (counterclockwise, wrapping) with the same
    /// owner; `i` itself if the owner has only one point. It lets [`Candidates`] tell in O(1)
    /// and without any seen-set whether a point's owner was already yielded.
    prev_same: Vec<u32>,
    /// `buckets[b]` is the first point whose hash is at or past `b << shift`; one extra entry at
    /// the end holds the number of points.
    buckets: Vec<u32>,
    shift: u32,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("placement", &self.placement)
            .field("vnodes", &self.vnodes)
            .field("members", &self.members)
            .field("points", &self.hashes.len())
            .finish()
    }
}

/// The position of a key on a ring of ringproxy's own placement ([`Ring::new`]); for any ring,
/// [`Ring::hash`] gives the position under that ring's placement.
#[inline]
pub fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The position of point `index` of member `id`: the `index`-th output of a SplitMix64 stream
/// seeded with the id's hash. (Seeding xxh3 with the index instead is weak for ids of 1-3 bytes,
/// where seed and last byte mix into the same bits and ids like `n10`/`n11` share points.)
#[inline]
fn point_hash(id_hash: u64, index: u32) -> u64 {
    let mut z = id_hash.wrapping_add(
        u64::from(index)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Ring {
    /// Builds the ring for `members`, each with `vnodes × weight` points.
    pub fn new(members: impl IntoIterator<Item = Member>, vnodes: u32) -> Result<Ring, RingError> {
        if vnodes == 0 {
            return Err(RingError::ZeroVnodes);
        }
        let mut members: Vec<Member> = members.into_iter().collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut total: u64 = 0;
        for (i, m) in members.iter().enumerate() {
            if m.id.is_empty() {
                return Err(RingError::EmptyId);
            }
            if m.weight == 0 {
                return Err(RingError::ZeroWeight(m.id.to_string()));
            }
            if i > 0 && members[i - 1].id == m.id {
                return Err(RingError::DuplicateId(m.id.to_string()));
            }
            total += u64::from(m.point_count(vnodes));
        }
        if total > MAX_POINTS {
            return Err(RingError::TooManyPoints(total));
        }

        let (hashes, owners, buckets, shift) = lay_out(&members, vnodes, total as usize);
        let prev_same = prev_same(&owners, members.len());
        Ok(Ring {
            placement: Placement::Ringproxy,
            vnodes,
            members,
            by_id: Vec::new(),
            hashes,
            owners,
            prev_same,
            buckets,
            shift,
        })
    }

    /// The ring with no members: every lookup answers `None`.
    pub fn empty(vnodes: u32) -> Ring {
        Ring {
            placement: Placement::Ringproxy,
            vnodes: vnodes.max(1),
            members: Vec::new(),
            by_id: Vec::new(),
            hashes: Vec::new(),
            owners: Vec::new(),
            prev_same: Vec::new(),
            buckets: vec![0, 0, 0],
            shift: 63,
        }
    }

    /// Which placement built this ring.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Points per unit of weight ([`NGINX_VNODES`] for an nginx ring).
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The position of `key` on this ring: `xxh3_64(key)` ([`hash_key`]) for ringproxy's
    /// placement, `crc32(key) << 32` for nginx's. Feed it to [`Ring::lookup_hash`] and
    /// [`Ring::candidates_hash`].
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        match self.placement {
            Placement::Ringproxy => hash_key(key),
            Placement::Nginx => nginx::key_position(key),
        }
    }

    /// The members, indexed by member index: sorted by id for ringproxy's placement, in the
    /// given (upstream listing) order for nginx's.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member at `index`.
    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    /// The index of the member with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        if self.by_id.is_empty() {
            return self.members.binary_search_by(|m| (*m.id).cmp(id)).ok();
        }
        let members = &self.members;
        self.by_id
            .binary_search_by(|&i| (*members[i as usize].id).cmp(id))
            .ok()
            .map(|at| self.by_id[at] as usize)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// No members?
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Total number of points on the ring.
    pub fn points(&self) -> usize {
        self.hashes.len()
    }

    /// The index of the first point at or after `hash`, wrapping around.
    #[inline]
    fn point_at(&self, hash: u64) -> usize {
        let b = (hash >> self.shift) as usize;
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        // Every point of this bucket is in lo..hi; if none is at or past `hash`, the answer is
        // the first point of a later bucket, which is `hi`.
        let i = lo + self.hashes[lo..hi].partition_point(|&h| h < hash);
        if i == self.hashes.len() {
            0
        } else {
            i
        }
    }

    /// The member index owning `key`, or `None` on an empty ring.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Option<usize> {
        self.lookup_hash(self.hash(key))
    }

    /// The member index owning the ring position `hash`.
    #[inline]
    pub fn lookup_hash(&self, hash: u64) -> Option<usize> {
        if self.hashes.is_empty() {
            return None;
        }
        Some(self.owners[self.point_at(hash)] as usize)
    }

    /// The distinct members clockwise from `key`: the owner first, then each next member.
    pub fn candidates(&self, key: &[u8]) -> Candidates<'_> {
        self.candidates_hash(self.hash(key))
    }

    /// The distinct members clockwise from the ring position `hash`.
    pub fn candidates_hash(&self, hash: u64) -> Candidates<'_> {
        let start = if self.hashes.is_empty() {
            0
        } else {
            self.point_at(hash)
        };
        Candidates {
            ring: self,
            start,
            walked: 0,
            yielded: 0,
        }
    }

    /// For each member (by index): its number of points and the fraction of the hash space it
    /// owns. A point owns the arc from the previous point (exclusive) up to itself.
    pub fn shares(&self) -> Vec<(usize, f64)> {
        let mut owned = vec![0u128; self.members.len()];
        let mut counts = vec![0usize; self.members.len()];
        let n = self.hashes.len();
        for i in 0..n {
            let prev = if i == 0 {
                self.hashes[n - 1]
            } else {
                self.hashes[i - 1]
            };
            // Wrapping distance handles the arc that crosses zero (and a one-point ring).
            let mut arc = u128::from(self.hashes[i].wrapping_sub(prev));
            if n == 1 {
                arc = 1u128 << 64;
            }
            owned[self.owners[i] as usize] += arc;
            counts[self.owners[i] as usize] += 1;
        }
        let space = (1u128 << 64) as f64;
        counts
            .into_iter()
            .zip(owned)
            .map(|(c, o)| (c, o as f64 / space))
            .collect()
    }
}

/// Iterator over distinct members clockwise from a position; yields member indices.
///
/// It never allocates, whatever the member count: a walked point's owner was yielded before iff
/// the owner's nearest earlier point (`prev_same`) lies on the arc already walked, one array read
/// per step instead of a set of seen members.
pub struct Candidates<'a> {
    ring: &'a Ring,
    /// The owner's point: where the walk starts.
    start: usize,
    /// Points walked so far; the next one is `start + walked`, wrapping.
    walked: usize,
    yielded: usize,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let ring = self.ring;
        let n = ring.hashes.len();
        while self.walked < n && self.yielded < ring.members.len() {
            let at = wrap(self.start + self.walked, n);
            // How far past `start` the owner's previous point is; inside the walked arc
            // (`< walked`) means the owner came up already. A one-point owner has `prev == at`.
            // The first point is always fresh: no need to touch `prev_same` for it.
            let fresh = self.walked == 0
                || wrap(ring.prev_same[at] as usize + n - self.start, n) >= self.walked;
            self.walked += 1;
            if fresh {
                self.yielded += 1;
                return Some(ring.owners[at] as usize);
            }
        }
        None
    }
}

/// `i mod n` for `i < 2n`, without a division.
#[inline]
fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}

/// `bits` for a bucket table over `points` points: `floor(log2(points))` (at least 1, at most
/// 24), so there are one to two points per bucket on average.
fn bucket_bits(points: usize) -> u32 {
    (usize::BITS - 1)
        .saturating_sub(points.max(2).leading_zeros())
        .clamp(1, 24)
}

/// Lays out the points of `members` (sorted by id) ordered by (hash, member index), and the
/// bucket table over them: `(hashes, owners, buckets, shift)`.
///
/// A counting sort on the top `bits` of each hash: count the points per bucket, turn the counts
/// into bucket ends, then scatter every point into its bucket walking the bucket's cursor down
/// from its end, which leaves `buckets[b]` at the bucket's start: exactly the lookup table.
/// Ordering within the buckets is left to a final insertion sort.
fn lay_out(members: &[Member], vnodes: u32, total: usize) -> (Vec<u64>, Vec<u32>, Vec<u32>, u32) {
    let bits = bucket_bits(total);
    let shift = 64 - bits;
    let count = 1usize << bits;
    let id_hashes: Vec<u64> = members.iter().map(|m| xxh3_64(m.id.as_bytes())).collect();
    let points = |idx: usize| 0..members[idx].point_count(vnodes);

    let mut buckets = vec![0u32; count + 1];
    for (idx, &id_hash) in id_hashes.iter().enumerate() {
        for i in points(idx) {
            buckets[(point_hash(id_hash, i) >> shift) as usize] += 1;
        }
    }
    let mut end = 0u32;
    for b in &mut buckets {
        end += *b;
        *b = end;
    }

    // Recomputing a point's hash is cheaper than storing all of them for the second pass.
    let mut hashes = vec![0u64; total];
    let mut owners = vec![0u32; total];
    for (idx, &id_hash) in id_hashes.iter().enumerate() {
        for i in points(idx) {
            let h = point_hash(id_hash, i);
            let cursor = &mut buckets[(h >> shift) as usize];
            *cursor -= 1;
            hashes[*cursor as usize] = h;
            owners[*cursor as usize] = idx as u32;
        }
    }

    // Now every point sits in its bucket, a few places from where it belongs, so one insertion
    // sort over the whole array finishes the job in about one comparison a point.
    insertion_sort(&mut hashes, &mut owners);
    (hashes, owners, buckets, shift)
}

/// Sorts points by (hash, owner), cheaply when every point is already near its place.
fn insertion_sort(hashes: &mut [u64], owners: &mut [u32]) {
    for i in 1..hashes.len() {
        let (h, o) = (hashes[i], owners[i]);
        let mut j = i;
        while j > 0 && (hashes[j - 1], owners[j - 1]) > (h, o) {
            hashes[j] = hashes[j - 1];
            owners[j] = owners[j - 1];
            j -= 1;
        }
        hashes[j] = h;
        owners[j] = o;
    }
}

/// For each point, the nearest point before it (wrapping) with the same owner. The first pass
/// finds each member's last point, which is what its first point wraps back to.
fn prev_same(owners: &[u32], members: usize) -> Vec<u32> {
    let mut last = vec![0u32; members];
    for (i, &o) in owners.iter().enumerate() {
        last[o as usize] = i as u32;
    }
    owners
        .iter()
        .enumerate()
        .map(|(i, &o)| std::mem::replace(&mut last[o as usize], i as u32))
        .collect()
}

mod arcs;
mod compare;

pub use arcs::{fraction, layout, moved_spans, MovedSpan, Span};
pub use compare::{moved, Flow, Moved};

#[cfg(test)]
mod nginx_tests;
#[cfg(test)]
mod tests;
