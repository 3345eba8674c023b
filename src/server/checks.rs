//! Active health checks: `GET path` on every backend each `interval`, each on a fresh
//! connection (opened with the proxy's own upstream code) so a check also proves the backend
//! still accepts connections.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, HOST, USER_AGENT};
use http::{Request, Uri};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ActiveConfig;
use crate::health::Transition;
use crate::proxy::{connect, describe, UpstreamBody};
use crate::snapshot::{Backend, Cluster};

/// Checks every backend of the current snapshot each interval until `shutdown` fires. The
/// `[health.active]` settings are read from the snapshot each round, so a reload can turn
/// checks on, off or change them.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut logged: Option<ActiveConfig> = None;
    loop {
        let started = tokio::time::Instant::now();
        let snapshot = cluster.load();
        let active = snapshot.settings.health.active.clone();
        if active != logged {
            match &active {
                Some(a) => {
                    tracing::info!(path = %a.path, interval = ?a.interval, "active health checks on");
                }
                None if logged.is_some() => tracing::info!("active health checks off"),
                None => {}
            }
            logged.clone_from(&active);
        }
        // Off: look again in a second, in case a reload turns them on.
        let mut next = started + Duration::from_secs(1);
        if let Some(config) = active {
            next = started + config.interval;
            let config = Arc::new(config);
            let mut checks = JoinSet::new();
            for backend in &snapshot.backends {
                let (backend, config) = (backend.clone(), config.clone());
                checks.spawn(async move { check(&backend, &config).await });
            }
            drop(snapshot);
            // Every check is bounded by the timeout (at most the interval), so a round ends
            // before the next one is due.
            while checks.join_next().await.is_some() {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
    }
}

async fn check(backend: &Backend, config: &ActiveConfig) {
    let passed =
        match tokio::time::timeout(config.timeout, probe(backend, &config.path, config.timeout))
            .await
        {
            Ok(Ok(passed)) => passed,
            Ok(Err(e)) => {
                tracing::debug!(backend = %backend.id, error = %e, "health check failed");
                false
            }
            Err(_) => {
                tracing::debug!(backend = %backend.id, "health check timed out");
                false
            }
        };
    let transition =
        backend
            .health
            .record_check(passed, config.unhealthy_threshold, config.healthy_threshold);
    match transition {
        Transition::MarkedUnhealthy => tracing::warn!(
            backend = %backend.id, address = %backend.address,
            "backend failed {} health checks in a row: marked unhealthy", config.unhealthy_threshold
        ),
        Transition::MarkedHealthy => tracing::info!(
            backend = %backend.id, address = %backend.address,
            "backend passed {} health checks in a row: marked healthy", config.healthy_threshold
        ),
        _ => {}
    }
}

/// One check: a 2xx or 3xx passes. The connection is not kept.
async fn probe(backend: &Backend, path: &str, timeout: Duration) -> Result<bool, String> {
    let uri: Uri = path
        .parse()
        .map_err(|e| format!("bad path {path:?}: {e}"))?;
    let mut req = Request::get(uri)
        .header(USER_AGENT, "ringproxy-health")
        .body(UpstreamBody::Empty)
        .map_err(|e| e.to_string())?;
    if let Ok(host) = HeaderValue::from_str(backend.authority.as_str()) {
        req.headers_mut().insert(HOST, host);
    }
    let mut sender = connect(&backend.address, timeout, false)
        .await
        .map_err(|e| describe(&e))?;
    let res = sender.send_request(req).await.map_err(|e| describe(&e))?;
    let s = res.status();
    Ok(s.is_success() || s.is_redirection())
}
