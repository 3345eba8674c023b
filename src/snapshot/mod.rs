//! The routing state: one immutable [`Snapshot`] behind one `ArcSwap`, and the one path that
//! replaces it.
//!
//! A request loads the snapshot once and routes with it to the end: ring, backends and the
//! reloadable settings (affinity, timeouts, health) all come from that one load, so a request
//! never sees half an update. Every source of change (admin calls, config reload, discovery)
//! goes through [`Cluster`]'s single build-and-swap path: under the writer lock it edits a copy,
//! builds the next snapshot, saves the membership to the state file when one is configured,
//! and only then swaps it in.
//!
//! - `view.rs`: [`Snapshot`], [`Backend`], [`Settings`].
//! - `cluster.rs`: [`Cluster`], the change path and the admin-sized changes.
//! - `reload.rs`: applying a whole new config as one change, and what it reports.

mod cluster;
mod reload;
mod view;

pub use cluster::{ChangeError, Cluster, StartError, Upsert};
pub use reload::Reloaded;
pub use view::{Backend, LastChange, Origin, Ramp, RampDirection, Settings, Snapshot};

#[cfg(test)]
mod last_change_tests;
#[cfg(test)]
mod tests;
