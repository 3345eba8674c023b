//! ringproxy: a consistent-hashing reverse proxy for stateful backends.
//!
//! The map, from the pure core outwards:
//!
//! - [`ring`]: the consistent-hash ring (no I/O, no clock): members → points → owner of a key,
//!   and the distinct candidates clockwise for failover.
//! - [`affinity`]: which part of a request is the key (header, cookie, query, path, source IP).
//! - [`affinity_template`]: keys written in nginx's variable syntax (`$host$request_uri`),
//!   rendering the bytes nginx would hash.
//! - [`snapshot`]: the one immutable `Snapshot` (version, ring, backends) behind one `ArcSwap`,
//!   and the serialized membership changes that replace it.
//! - [`health`]: per-backend health shared across snapshots (passive ejection, active checks,
//!   drain); it never rebuilds the ring.
//! - [`hop`]: hop-by-hop header stripping.
//! - [`proxy`]: the per-request path: key → snapshot → first usable candidate → forward.
//! - [`admin`]: the admin API (join, leave, drain, route, ring, metrics).
//! - [`metrics`]: Prometheus counters and gauges.
//! - [`nginx_import`]: `import-nginx`: an nginx upstream with `hash ... consistent` → a
//!   ringproxy config with the nginx-compatible ring (pure; reads files only).
//! - [`config`]: TOML → validated `Config`, every error naming its field.
//! - [`server`]: listeners, proxy worker threads, graceful shutdown.
//! - [`demo`]: `ringproxy demo`, in-process backends to try things with.
//! - [`node`]: the JSON-lines node protocol of `ringproxy-node`, over the same ring.

pub mod admin;
pub mod affinity;
pub mod affinity_template;
pub mod config;
pub mod demo;
pub mod health;
pub mod hop;
pub mod metrics;
pub mod nginx_import;
pub mod node;
pub mod proxy;
pub mod ring;
pub mod server;
pub mod snapshot;
