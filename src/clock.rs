//! The process clock the health logic and the admin API read: milliseconds since a
//! process-wide epoch, on tokio's clock so paused-time tests control it.

use std::sync::OnceLock;

use tokio::time::Instant;

/// Milliseconds since the first call.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    Instant::now().saturating_duration_since(epoch).as_millis() as u64
}
