//! The ramp driver: moves warm-ups and ramp-downs along, a few points at a time, through the
//! cluster's one change path.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::snapshot::Cluster;

/// How often ramps advance: a 60 s ramp takes about 240 steps, each a snapshot swap.
const STEP: Duration = Duration::from_millis(250);

/// Advances ramps every [`STEP`] until `shutdown` fires.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = cluster.advance_ramps(now_ms()) {
            // The last good snapshot stays; the next step tries again.
            tracing::error!(error = %e, "cannot advance warm-up ramps");
        }
    }
}
