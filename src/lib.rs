//! ringproxy: a consistent-hashing reverse proxy for stateful backends.
//!
//! The map, in layers from the pure core outwards. A module may import modules of its own layer
//! or of the layers above it in this list, never one below it.
//!
//! 1. Pure core, no I/O:
//!    - [`ring`]: the consistent-hash ring (no I/O, no clock): members → points → owner of a
//!      key, the distinct candidates clockwise for failover, the exact share a change moves,
//!      and the ring's fingerprint.
//!    - [`affinity`]: which part of a request is the key (header, cookie, query, path, source IP);
//!      [`affinity_template`]: keys in nginx's variable syntax (`$host$request_uri`), rendering
//!      the bytes nginx would hash.
//!    - [`nginx_import`]: `import-nginx`: an nginx upstream with `hash ... consistent` → a
//!      ringproxy config with the nginx-compatible ring (reads files only).
//!    - [`hop`]: hop-by-hop header stripping; [`forwarded`]: the `X-Forwarded-*` headers added.
//!    - [`http1`]: the strict zero-copy HTTP/1.1 head parser and chunked-body scanner.
//!    - [`hot`]: the heavy-hitter sketch that marks hot keys.
//!    - [`clock`]: the process clock in milliseconds; [`sync`]: poison-tolerant locking.
//!    - [`discovery`]: DNS discovery of backends (its own I/O through hickory; imports nothing
//!      of this crate).
//! 2. [`config`]: TOML → validated `Config`, section by section, every error naming its field.
//!    [`plan`]: a membership change previewed before it is made: the planned ring, built as the
//!    change would build it, and exactly what moves (`POST /ring/plan`, `ringproxy plan`).
//! 3. Per-backend and process state shared across snapshots: [`health`] (passive ejection,
//!    active-check results, drain; it never rebuilds the ring), [`load`] (requests in flight,
//!    the bounded-load rule), [`traffic`] (total in flight, the hot-key sketch), and
//!    [`state_file`] (membership saved across restarts).
//! 4. [`snapshot`]: the one immutable `Snapshot` (version, ring, backends, settings) behind one
//!    `ArcSwap`, and the one serialized change path every membership source goes through
//!    (admin, reload, discovery, warm-up ramps).
//! 5. [`metrics`]: Prometheus counters and gauges; callers pass labels.
//! 6. [`proxy`]: the per-request path: key → snapshot → first usable candidate (within the
//!    load bound) → forward, over the per-worker upstream pool; its error vocabulary maps every
//!    failure to a status. Its HTTP/1 relay runs on monoio (io_uring, else epoll); everything
//!    else on tokio. [`reload`]: re-reading the config file into the cluster.
//! 7. [`status_page`]: the status page (embedded HTML) and the JSON views it reads (ring arcs,
//!    stats, plans with the arcs that would move); [`admin`]: the admin API (join, leave, drain,
//!    reload, route, ring, plan, stats, metrics, the page).
//! 8. [`server`]: listeners, proxy worker threads (a relay thread and a hyper thread each) and
//!    the client-connection watchdog, active health checks, warm-up ramps, discovery, graceful
//!    shutdown.
//! 9. Front ends: [`demo`] (`ringproxy demo`), [`node`] (the JSON-lines node protocol of
//!    `ringproxy-node`, over the same ring), [`logging`] (both binaries' log set-up).

#![forbid(unsafe_code)]

pub mod admin;
pub mod affinity;
pub mod affinity_template;
pub mod clock;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod forwarded;
pub mod health;
pub mod hop;
pub mod hot;
pub mod http1;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod nginx_import;
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
pub mod traffic;
