//! The nginx-compatible placement: the ring of nginx's `hash $key consistent`
//! (`ngx_http_upstream_hash_module`, "compatible with Cache::Memcached::Fast"), point for point,
//! so a fleet moving from nginx to ringproxy keeps every key on its cache server.
//!
//! What nginx does (`ngx_http_upstream_update_chash` in
//! `src/http/modules/ngx_http_upstream_hash_module.c`; `ngx_http_upstream_init_chash` in 1.22):
//!
//! - Each server is named by its address string *as written* in the upstream block
//!   (`peer->server` is `us->name = u.url`, `ngx_http_upstream_server` in `ngx_http_upstream.c`):
//!   `cache1:11211` stays a host name, `10.0.0.1` without a port has no port.
//! - The string is split into host and port: a leading `unix:` (any case) makes the rest the
//!   host with no port; otherwise it splits at the last `:` when everything after it is digits
//!   (possibly nothing: `host:` has an empty port), else the whole string is the host.
//! - A base CRC-32 state covers the host bytes, one NUL byte and the port bytes (no final xor).
//! - The server gets `160 × weight` points: point `j` is that base state continued over the 4
//!   little-endian bytes of point `j − 1`'s hash (zero for `j = 0`), then finalized.
//! - All points are sorted by hash with libc `qsort` and a run of equal hashes collapses to its
//!   first point. glibc's `qsort` is a merge sort here (stable), so the first point of a run is
//!   the one generated first: the server listed *earlier* keeps a contested point. We sort by
//!   (hash, listing index) and keep the first, which is the same thing without relying on a
//!   stable sort. (musl's and the BSDs' `qsort` are not stable; an nginx built on them may keep
//!   either point of a tie. A tie needs two servers' 32-bit hashes to collide: about one is
//!   expected once the ring holds 93,000 points, 580 servers at weight 1.)
//! - A key is `crc32(key)`; its owner is the first point with hash ≥ the key's, wrapping past
//!   the last point to the first (`ngx_http_upstream_find_chash_point`, then `% number`).
//!
//! nginx's own failover (skip a down point, try the next *point*, fall back to round robin
//! after 20 tries) is not reproduced: ringproxy walks distinct members clockwise, which visits
//! the same servers in the same order minus the repeats.
//!
//! On the ring, a 32-bit hash `h` sits at `(h as u64) << 32`, for points and keys alike. The
//! map is strictly increasing, so "first point at or after the key" is unchanged, and the top
//! bits the bucket table indexes are the hash's own top bits.

use crc32fast::Hasher;

use super::{bucket_bits, prev_same, Member, Placement, Ring, RingError, MAX_POINTS};

/// Points per unit of weight, fixed by nginx (`peer->weight * 160`).
pub const NGINX_VNODES: u32 = 160;

/// The ring position of a 32-bit nginx hash.
#[inline]
pub(super) fn position(hash: u32) -> u64 {
    u64::from(hash) << 32
}

/// The ring position of `key` under nginx's placement: `crc32(key)`, placed by [`position`].
#[inline]
pub(super) fn key_position(key: &[u8]) -> u64 {
    position(crc32fast::hash(key))
}

/// Splits a server address string into the (host, port) bytes nginx hashes.
pub(super) fn split_server(server: &str) -> (&[u8], &[u8]) {
    let bytes = server.as_bytes();
    if bytes.len() >= 5 && bytes[..5].eq_ignore_ascii_case(b"unix:") {
        return (&bytes[5..], b"");
    }
    // Walk back over digits; a ':' right before them (or at the very end) splits.
    for (i, &c) in bytes.iter().enumerate().rev() {
        if c == b':' {
            return (&bytes[..i], &bytes[i + 1..]);
        }
        if !c.is_ascii_digit() {
            break;
        }
    }
    (bytes, b"")
}

/// The `160 × weight` point hashes of one server, in the order nginx generates them.
pub(super) fn server_points(server: &str, weight: u32) -> impl Iterator<Item = u32> {
    let (host, port) = split_server(server);
    let mut base = Hasher::new();
    base.update(host);
    base.update(&[0]);
    base.update(port);
    let mut prev = 0u32;
    (0..NGINX_VNODES * weight).map(move |_| {
        let mut h = base.clone();
        h.update(&prev.to_le_bytes());
        prev = h.finalize();
        prev
    })
}

impl Ring {
    /// Builds nginx's `hash ... consistent` ring over `members`, given in the upstream block's
    /// listing order (a member joined later goes last). Each id is the server's address string
    /// as written in nginx (`host:port`, `unix:/path`), each gets `160 × weight` points.
    ///
    /// Unlike [`Ring::new`], order matters: it breaks ties between colliding points, and it is
    /// the member order ([`Ring::members`], member indices) of the ring built.
    pub fn nginx(members: impl IntoIterator<Item = Member>) -> Result<Ring, RingError> {
        let members: Vec<Member> = members.into_iter().collect();
        let mut by_id: Vec<u32> = (0..members.len() as u32).collect();
        by_id.sort_by(|&a, &b| members[a as usize].id.cmp(&members[b as usize].id));
        let mut total: u64 = 0;
        for m in &members {
            if m.id.is_empty() {
                return Err(RingError::EmptyId);
            }
            if m.weight == 0 {
                return Err(RingError::ZeroWeight(m.id.to_string()));
            }
            total += u64::from(NGINX_VNODES) * u64::from(m.weight);
        }
        if let Some(w) = by_id
            .windows(2)
            .find(|w| members[w[0] as usize].id == members[w[1] as usize].id)
        {
            return Err(RingError::DuplicateId(
                members[w[0] as usize].id.to_string(),
            ));
        }
        if total > MAX_POINTS {
            return Err(RingError::TooManyPoints(total));
        }

        let mut points: Vec<(u32, u32)> = Vec::with_capacity(total as usize);
        for (idx, m) in members.iter().enumerate() {
            points.extend(server_points(&m.id, m.weight).map(|h| (h, idx as u32)));
        }
        // (hash, listing index) order, then the first of each run of equal hashes: the point of
        // the server listed earliest, as nginx's stable qsort + dedup keeps.
        points.sort_unstable();
        points.dedup_by_key(|p| p.0);

        let hashes: Vec<u64> = points.iter().map(|&(h, _)| position(h)).collect();
        let owners: Vec<u32> = points.iter().map(|&(_, o)| o).collect();
        let (buckets, shift) = bucket_table(&hashes);
        let prev_same = prev_same(&owners, members.len());
        Ok(Ring {
            placement: Placement::Nginx,
            vnodes: NGINX_VNODES,
            members,
            by_id,
            hashes,
            owners,
            prev_same,
            buckets,
            shift,
        })
    }
}

/// The bucket table over sorted `hashes`: `buckets[b]` is the number of points whose top bits
/// are below `b`, the same table the default layout's counting sort leaves behind.
fn bucket_table(hashes: &[u64]) -> (Vec<u32>, u32) {
    let bits = bucket_bits(hashes.len());
    let shift = 64 - bits;
    let mut buckets = vec![0u32; (1usize << bits) + 1];
    for &h in hashes {
        buckets[(h >> shift) as usize + 1] += 1;
    }
    for b in 1..buckets.len() {
        buckets[b] += buckets[b - 1];
    }
    (buckets, shift)
}
