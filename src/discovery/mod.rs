//! DNS discovery: a backend given as a DNS name is expanded into one ring member per address.
//!
//! # What a target turns into
//!
//! A [`Target`] is either a plain name (`name` + `port`: its A and AAAA records, one member per
//! address, all with the target's weight) or an SRV name (`srv`: each SRV record gives a host, a
//! port and a weight; the host is resolved to its A/AAAA addresses, one member per address).
//! Every member is a [`Found`] whose `id` and `address` are both `"<ip>:<port>"` (`"[ip]:port"`
//! for IPv6; an IPv4-mapped `::ffff:a.b.c.d` counts as `a.b.c.d`, so a DNS server that invents
//! those doesn't double a backend). The id comes from the answer alone, never from the order,
//! the time or the replica, so every ringproxy replica that sees the same records builds the
//! identical ring, and a member that stays in the answer keeps its keys when others come or go.
//! Results are sorted by id and deduplicated, so "did the set change?" is plain equality.
//!
//! # A DNS outage must never empty the ring
//!
//! [`resolve`] treats every answer that would shrink the ring to nothing as an error, not as an
//! empty set: NXDOMAIN, NOERROR without records, SRV records that all point at `"."`
//! ([`DiscoveryError::Empty`]); SERVFAIL, REFUSED and network errors ([`DiscoveryError::Failed`]);
//! no answer in time ([`DiscoveryError::Timeout`]). A partial failure fails the whole resolve
//! too: if the A query answers but the AAAA query times out, publishing only the IPv4 members
//! would move the IPv6 members' keys because of one lost packet. [`run`] keeps the last good set
//! of a target across any error and reports a set only when it differs from the last good one,
//! so a flapping or dead DNS server costs log lines, never cache hits.
//!
//! # Resolver choices (hickory-resolver 0.26)
//!
//! - **No cache.** hickory caches answers for their TTL (capped at a day) by default. The
//!   discovery loop already asks once per `interval` and compares with what it holds, so a
//!   second cache only delays changes (by up to the TTL) without saving anything worth having.
//!   [`resolver`] clamps positive and negative TTLs to zero and sizes the cache at zero: every
//!   round asks the name server. The operator's `interval` is the one knob for DNS load.
//! - **Small, bounded retries.** One retry (`attempts = 1`) with the configured per-query
//!   `timeout`, and [`resolve`] as a whole bounded by [`RESOLVE_BUDGET`] × `timeout`, so one round
//!   can't outlive its welcome whatever hickory does inside.
//! - **UDP with TCP fallback** for explicit name servers (TCP is used when an answer comes back
//!   truncated, e.g. a large SRV set); no search domains and no `/etc/hosts` for them, since the
//!   operator named the server that holds the truth. With no name servers configured, the
//!   system's `/etc/resolv.conf` (its search domains and ndots included, which Kubernetes short
//!   names rely on) is used.
//!
//! # Layout
//!
//! - `target`: [`Target`], [`ResolverSettings`] and their validation.
//! - `error`: [`DiscoveryError`].
//! - `resolve`: [`resolver`], [`resolve`], [`Found`]: one round, I/O through hickory.
//! - `members`: the pure part: answers → sorted, deduplicated [`Found`] (unit-tested).
//! - `run`: [`run`], the loop that re-resolves every target each interval and reports changes.

mod error;
mod members;
mod resolve;
mod run;
mod target;

pub use error::DiscoveryError;
pub use members::Found;
pub use resolve::{resolve, resolver, Resolver, RESOLVE_BUDGET};
pub use run::{run, MIN_INTERVAL};
pub use target::{ResolverSettings, Target, DEFAULT_RESOLVER_TIMEOUT};
