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

/// Checks every backend of the current snapshot each interval until `shutdown` fires.
pub async fn run(cluster: Arc<Cluster>, config: ActiveConfig, shutdown: CancellationToken) {
    let config = Arc::new(config);
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let snapshot = cluster.load();
        let mut checks = JoinSet::new();
        for backend in &snapshot.backends {
            let (backend, config) = (backend.clone(), config.clone());
            checks.spawn(async move { check(&backend, &config).await });
        }
        drop(snapshot);
        // Every check is bounded by the timeout, so this round ends before the next tick.
        while checks.join_next().await.is_some() {}
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
    let mut sender = connect(&backend.address, timeout)
        .await
        .map_err(|e| describe(&e))?;
    let res = sender.send_request(req).await.map_err(|e| describe(&e))?;
    let s = res.status();
    Ok(s.is_success() || s.is_redirection())
}
