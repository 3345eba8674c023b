//! The discovery loop: every target resolved now and then once per its interval, changes
//! reported, failures reported without touching the last good set.
//!
//! All targets share one task: each pending round is a future in a `FuturesUnordered`, so the
//! callbacks run one at a time on this task (the caller's build-and-swap is serialized for
//! free) and shutdown drops every round at once. hickory does its socket work in tasks of its
//! own, so rounds of different targets still overlap.

use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{resolve, resolver, DiscoveryError, Found, Resolver, ResolverSettings, Target};

/// Intervals below this are raised to it, so a zero in a config can't spin a core.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Runs discovery until `shutdown` is cancelled.
///
/// - `on_change(i, members)`: target `i` resolved to a set that differs from its last good one
///   (the first success always counts). `members` is never empty and is sorted by id.
/// - `on_error(i, error)`: a round of target `i` produced no set; its last good set stands.
///   An invalid target is reported once and then left alone (it can't start working).
///
/// Callbacks run on this task, one at a time, so keep them short (build and swap a snapshot,
/// bump a counter, log).
pub async fn run(
    targets: Vec<Target>,
    settings: ResolverSettings,
    on_change: impl Fn(usize, Vec<Found>) + Send + 'static,
    on_error: impl Fn(usize, &DiscoveryError) + Send + 'static,
    shutdown: CancellationToken,
) {
    let retry = targets
        .iter()
        .map(|t| t.interval)
        .min()
        .unwrap_or(Duration::from_secs(5))
        .max(MIN_INTERVAL);
    // A resolver that can't be built now (no /etc/resolv.conf yet) may be buildable later:
    // report it against every target and try again, rather than give up for the process's life.
    let resolver = loop {
        match resolver(&settings) {
            Ok(resolver) => break resolver,
            Err(e) => {
                for i in 0..targets.len() {
                    on_error(i, &e);
                }
                if matches!(e, DiscoveryError::Invalid(_)) {
                    shutdown.cancelled().await;
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    };

    let mut last_good: Vec<Option<Vec<Found>>> = vec![None; targets.len()];
    let mut rounds = FuturesUnordered::new();
    let now = Instant::now();
    for (i, target) in targets.iter().enumerate() {
        match target.validate() {
            Ok(()) => rounds.push(round(&resolver, target, i, now)),
            Err(e) => on_error(i, &e),
        }
    }

    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = rounds.next() => next,
        };
        let Some((i, started, result)) = next else {
            // No valid target: nothing to do but wait to be told to stop.
            shutdown.cancelled().await;
            return;
        };
        match result {
            Ok(found) if found.is_empty() => {
                // `resolve` never does this; if it ever did, an empty ring is the one outcome
                // discovery exists to prevent.
                let name = targets[i].dns_name();
                on_error(
                    i,
                    &DiscoveryError::Empty(format!("{name} resolved to nothing")),
                );
            }
            Ok(found) => {
                if last_good[i].as_ref() != Some(&found) {
                    last_good[i] = Some(found.clone());
                    on_change(i, found);
                }
            }
            Err(e) => on_error(i, &e),
        }
        // Fixed rate from the start of the round, so a slow answer doesn't stretch the period;
        // a round that overran its interval is followed straight away.
        let interval = targets[i].interval.max(MIN_INTERVAL);
        rounds.push(round(&resolver, &targets[i], i, started + interval));
    }
}

/// Waits until `at`, then resolves `target` once: `(index, when it started, result)`.
async fn round(
    resolver: &Resolver,
    target: &Target,
    index: usize,
    at: Instant,
) -> (usize, Instant, Result<Vec<Found>, DiscoveryError>) {
    tokio::time::sleep_until(at).await;
    let started = Instant::now();
    (index, started, resolve(resolver, target).await)
}
