//! Active health checks: `GET path` on every backend each `interval`, on fresh connections so
//! a check also proves the backend still accepts them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::state::Transition;
use super::ActiveConfig;
use crate::snapshot::{Backend, Cluster};

type CheckClient = Client<HttpConnector, Empty<Bytes>>;

/// Checks every backend of the current snapshot each interval until `shutdown` fires.
pub async fn run_checks(cluster: Arc<Cluster>, config: ActiveConfig, shutdown: CancellationToken) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.timeout));
    connector.set_nodelay(true);
    let client: CheckClient = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(0)
        .build(connector);
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
            let backend = backend.clone();
            let (client, config) = (client.clone(), config.clone());
            checks.spawn(async move { check(&client, &backend, &config).await });
        }
        drop(snapshot);
        // Every check is bounded by the timeout, so this round ends before the next tick.
        while checks.join_next().await.is_some() {}
    }
}

async fn check(client: &CheckClient, backend: &Backend, config: &ActiveConfig) {
    let passed = probe(client, backend, &config.path, config.timeout).await;
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

/// One check: a 2xx or 3xx within the timeout passes.
async fn probe(client: &CheckClient, backend: &Backend, path: &str, timeout: Duration) -> bool {
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build()
    else {
        return false;
    };
    let Ok(req) = Request::get(uri)
        .header("user-agent", "ringproxy-health")
        .body(Empty::new())
    else {
        return false;
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(res)) => {
            let s = res.status();
            s.is_success() || s.is_redirection()
        }
        Ok(Err(e)) => {
            tracing::debug!(backend = %backend.id, error = %e, "health check failed");
            false
        }
        Err(_) => {
            tracing::debug!(backend = %backend.id, "health check timed out");
            false
        }
    }
}
