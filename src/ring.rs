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
//! caller skips unusable members, the ring itself knows nothing about health.

use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

/// Upper bound on the points of one ring, so a typo in a weight cannot eat the machine's memory.
pub const MAX_POINTS: u64 = 20_000_000;

/// One ring member: an id (what is hashed) and a weight (how many units of `vnodes` it gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: Arc<str>,
    pub weight: u32,
}

impl Member {
    pub fn new(id: impl Into<Arc<str>>, weight: u32) -> Self {
        Member {
            id: id.into(),
            weight,
        }
    }
}

/// Why a member set cannot form a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("vnodes must be at least 1")]
    ZeroVnodes,
    #[error("member {0:?} has weight 0; weights must be at least 1")]
    ZeroWeight(String),
    #[error("member id must not be empty")]
    EmptyId,
    #[error("member {0:?} is listed twice")]
    DuplicateId(String),
    #[error(
        "ring would have {0} points, more than the limit of {MAX_POINTS}; lower vnodes or weights"
    )]
    TooManyPoints(u64),
}

/// An immutable consistent-hash ring.
#[derive(Clone, PartialEq, Eq)]
pub struct Ring {
    vnodes: u32,
    /// Members sorted by id; the index into this is the member index used everywhere.
    members: Vec<Member>,
    /// Point positions, ascending.
    hashes: Vec<u64>,
    /// `owners[i]` is the member index owning `hashes[i]`.
    owners: Vec<u32>,
    /// `buckets[b]` is the first point whose hash is at or past `b << shift`; one extra entry at
    /// the end holds the number of points.
    buckets: Vec<u32>,
    shift: u32,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("vnodes", &self.vnodes)
            .field("members", &self.members)
            .field("points", &self.hashes.len())
            .finish()
    }
}

/// The position of a key on the ring.
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
            total += u64::from(vnodes) * u64::from(m.weight);
        }
        if total > MAX_POINTS {
            return Err(RingError::TooManyPoints(total));
        }

        let mut points: Vec<(u64, u32)> = Vec::with_capacity(total as usize);
        for (idx, m) in members.iter().enumerate() {
            let n = vnodes * m.weight;
            let id_hash = xxh3_64(m.id.as_bytes());
            points.extend((0..n).map(|i| (point_hash(id_hash, i), idx as u32)));
        }
        // Members are sorted by id, so ordering ties by member index orders them by id.
        points.sort_unstable();
        let (hashes, owners): (Vec<u64>, Vec<u32>) = points.into_iter().unzip();
        let (buckets, shift) = bucket_table(&hashes);
        Ok(Ring {
            vnodes,
            members,
            hashes,
            owners,
            buckets,
            shift,
        })
    }

    /// The ring with no members: every lookup answers `None`.
    pub fn empty(vnodes: u32) -> Ring {
        Ring {
            vnodes: vnodes.max(1),
            members: Vec::new(),
            hashes: Vec::new(),
            owners: Vec::new(),
            buckets: vec![0, 0, 0],
            shift: 63,
        }
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Members sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    /// The index of the member with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.members.binary_search_by(|m| (*m.id).cmp(id)).ok()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

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
        self.lookup_hash(hash_key(key))
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
        self.candidates_hash(hash_key(key))
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
            next: start,
            walked: 0,
            seen: Seen::new(self.members.len()),
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
pub struct Candidates<'a> {
    ring: &'a Ring,
    next: usize,
    walked: usize,
    seen: Seen,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let n = self.ring.hashes.len();
        while self.walked < n && self.seen.count < self.ring.members.len() {
            let owner = self.ring.owners[self.next] as usize;
            self.next = if self.next + 1 == n { 0 } else { self.next + 1 };
            self.walked += 1;
            if self.seen.insert(owner) {
                return Some(owner);
            }
        }
        None
    }
}

/// Which members a [`Candidates`] walk has yielded. Rings of up to 128 members (the usual case)
/// use an inline bitmask, so a walk never allocates; larger rings fall back to a heap bitmap.
struct Seen {
    count: usize,
    bits: SeenBits,
}

enum SeenBits {
    Inline(u128),
    Heap(Vec<u64>),
}

impl Seen {
    fn new(members: usize) -> Seen {
        let bits = if members <= 128 {
            SeenBits::Inline(0)
        } else {
            SeenBits::Heap(Vec::new())
        };
        Seen { count: 0, bits }
    }

    /// Marks `i` seen; true if it was not seen before.
    fn insert(&mut self, i: usize) -> bool {
        let fresh = match &mut self.bits {
            SeenBits::Inline(b) => {
                let mask = 1u128 << i;
                let fresh = *b & mask == 0;
                *b |= mask;
                fresh
            }
            SeenBits::Heap(v) => {
                let (word, bit) = (i / 64, 1u64 << (i % 64));
                if v.len() <= word {
                    v.resize(word + 1, 0);
                }
                let fresh = v[word] & bit == 0;
                v[word] |= bit;
                fresh
            }
        };
        self.count += usize::from(fresh);
        fresh
    }
}

/// The bucket table over sorted `hashes`: `2^bits` buckets, `bits = floor(log2(points))`
/// (at least 1), so there are one to two points per bucket on average.
fn bucket_table(hashes: &[u64]) -> (Vec<u32>, u32) {
    let bits = (usize::BITS - 1)
        .saturating_sub(hashes.len().max(2).leading_zeros())
        .clamp(1, 24);
    let shift = 64 - bits;
    let count = 1usize << bits;
    let mut buckets = Vec::with_capacity(count + 1);
    let mut i = 0usize;
    for b in 0..count as u64 {
        let start = b << shift;
        while i < hashes.len() && hashes[i] < start {
            i += 1;
        }
        buckets.push(i as u32);
    }
    buckets.push(hashes.len() as u32);
    (buckets, shift)
}

#[cfg(test)]
mod tests;
