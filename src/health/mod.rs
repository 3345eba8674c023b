//! Backend health: which ring members may serve right now.
//!
//! Health never rebuilds the ring. Each backend carries one shared [`BackendHealth`] (atomics)
//! that survives snapshot swaps; routing walks `ring.candidates(key)` and takes the first usable
//! backend, so a dead backend's keys go to the next distinct backend clockwise, every other key
//! stays where it is, and the dead backend's keys come back when it recovers.
//!
//! Three inputs mark a backend unusable:
//! - **passive**: `fail_threshold` consecutive failures (connect error, connect timeout, and 5xx
//!   when `fail_on_5xx`) eject it for `eject_for`, doubling on each ejection without a success
//!   in between, up to `max_eject_for`; one success resets.
//! - **active** (optional): `GET path` every `interval`; `unhealthy_threshold` consecutive failed
//!   checks mark it unhealthy and `healthy_threshold` consecutive passes mark it healthy again.
//!   The two thresholds are hysteresis: a flapping server does not bounce keys back and forth.
//! - **drain**: an operator's `POST /backends/{id}/drain`; it stays a member (its points stay), so
//!   undrain returns exactly its keys.

mod active;
mod config;
mod state;

pub use active::run_checks;
pub use config::{ActiveConfig, HealthConfig, RawHealth};
pub use state::{now_ms, BackendHealth, State, Transition};
