//! ringproxy: a consistent-hashing reverse proxy for stateful backends.
//!
//! The map, in layers from the pure core outwards. A module may import modules of its own layer
//! or of the layers above it in this list, never one below it.
//!
//! 1. Pure core, no I/O:
//!    - [`ring`]: the consistent-hash ring (no I/O, no clock): members → points → owner of a
//!      key, and the distinct candidates clockwise for failover.
//!    - [`affinity`]: which part of a request is the key (header, cookie, query, path, source IP).
//!    - [`hop`]: hop-by-hop header stripping; [`forwarded`]: the `X-Forwarded-*` headers added.
//!    - [`clock`]: the process clock in milliseconds; [`sync`]: poison-tolerant locking.
//! 2. [`config`]: TOML → validated `Config`, section by section, every error naming its field.
//!    [`plan`]: a membership change previewed before it is made: the planned ring, built as the
//!    change would build it, and exactly what moves (`POST /ring/plan`, `ringproxy plan`).
//! 3. [`health`]: per-backend health shared across snapshots (passive ejection, active-check
//!    results, drain); it never rebuilds the ring.
//! 4. [`snapshot`]: the one immutable `Snapshot` (version, ring, backends) behind one `ArcSwap`,
//!    and the serialized membership changes that replace it.
//! 5. [`metrics`]: Prometheus counters and gauges; callers pass labels.
//! 6. [`proxy`]: the per-request path: key → snapshot → first usable candidate → forward, over
//!    the per-worker upstream pool; its error vocabulary maps every failure to a status.
//! 7. [`status_page`]: the status page (embedded HTML) and the JSON views it reads (ring arcs,
//!    stats, plans with the arcs that would move); [`admin`]: the admin API (join, leave, drain,
//!    route, ring, plan, stats, metrics, the page).
//! 8. [`server`]: listeners, proxy worker threads, active health checks, graceful shutdown.
//! 9. Front ends: [`demo`] (`ringproxy demo`), [`node`] (the JSON-lines node protocol of
//!    `ringproxy-node`, over the same ring), [`logging`] (both binaries' log set-up).

#![forbid(unsafe_code)]

pub mod admin;
pub mod affinity;
pub mod clock;
pub mod config;
pub mod demo;
pub mod forwarded;
pub mod health;
pub mod hop;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod plan;
pub mod proxy;
pub mod reload;
pub mod ring;
pub mod server;
pub mod snapshot;
pub mod state_file;
pub mod status_page;
pub mod sync;
