//! The per-request path: key → snapshot → first usable candidate → forward, failing over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::body::{RequestBody, UpstreamBody};
use super::error::ProxyError;
use super::upstream::{ResponseBody, Timeouts, Upstream};
use super::{target, upgrade};
use super::{ProxyBody, Relayed};
use crate::affinity::{AffinityConfig, OnMissing};
use crate::clock::now_ms;
use crate::config::{BalanceConfig, HealthConfig, ProxyConfig, Spread};
use crate::health::Transition;
use crate::load::LoadGuard;
use crate::metrics::Metrics;
use crate::ring::Ring;
use crate::snapshot::{Backend, Cluster, RampDirection};
use crate::traffic::Traffic;
use crate::{forwarded, hop};

const X_RINGPROXY_BACKEND: HeaderName = HeaderName::from_static("x-ringproxy-backend");

/// Shared by every connection of one proxy worker.
pub struct Proxy {
    cluster: Arc<Cluster>,
    traffic: Arc<Traffic>,
    /// This worker's connections to the backends.
    pool: Upstream,
    metrics: Arc<Metrics>,
}

/// The request as it goes upstream, minus the destination.
struct Head {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    /// A protocol switch the client asked for.
    upgrade: Option<upgrade::Requested>,
}

impl Proxy {
    /// A proxy with its own upstream pool; [`Proxy::with_own_pool`] makes one per worker.
    /// Everything else it needs (settings included) comes from the cluster's snapshot, once
    /// per request.
    pub fn new(cluster: Arc<Cluster>, traffic: Arc<Traffic>, metrics: Arc<Metrics>) -> Proxy {
        Proxy {
            cluster,
            traffic,
            pool: Upstream::new(metrics.upstream_idle()),
            metrics,
        }
    }

    /// The same proxy with a connection pool of its own, for another worker thread: pooled
    /// connections are driven by tasks on the thread that opened them, so sharing a pool would
    /// hand requests across threads.
    pub fn with_own_pool(&self) -> Proxy {
        Proxy::new(
            self.cluster.clone(),
            self.traffic.clone(),
            self.metrics.clone(),
        )
    }

    /// Routes and forwards one request; every failure becomes the client's answer here.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        match self.forward(req, peer).await {
            Ok(res) => res,
            Err(e) => {
                self.metrics.rejected(e.reason());
                e.into_response()
            }
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (parts, body) = req.into_parts();
        target::check(&parts)?;
        let snapshot = self.cluster.load();
        let settings = &*snapshot.settings;
        let (position, keyed) = position(&settings.affinity, &snapshot.ring, &parts, peer)?;
        if snapshot.backends.is_empty() {
            return Err(ProxyError::NoBackends);
        }
        let config = &settings.proxy;
        let retry_after_send = config.retry_idempotent && is_idempotent(&parts.method);
        let body = RequestBody::new(body, retry_after_send)
            .await
            .map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        let head = upstream_head(parts, peer, config.client_idle_timeout);

        let now = now_ms();
        let balance = &settings.balance;
        // Usable owners over the load bound that this request passes by.
        let mut spill = match balance.bound {
            Some(bound) if self.may_spread(balance, position, keyed) => {
                snapshot.spills(position, now, bound, self.traffic.total.get())
            }
            _ => 0,
        };
        let (mut attempts, mut skipped) = (0u32, 0usize);
        let mut last_error = None;
        // A miss from a warming backend, kept while its previous owner is asked.
        let mut miss: Option<(Response<ResponseBody>, &Backend)> = None;
        for index in snapshot.ring.candidates_hash(position) {
            let backend = &snapshot.backends[index];
            if !backend.health.usable(now) {
                skipped += 1;
                continue;
            }
            if spill > 0 {
                spill -= 1;
                backend.load.spill();
                self.metrics.spill(&backend.id);
                continue;
            }
            if attempts == config.max_attempts {
                break;
            }
            let Some(attempt_body) = body.attempt() else {
                break;
            };
            if attempts > 0 && miss.is_none() {
                self.metrics.retry(&backend.id);
            }
            attempts += 1;
            let load = LoadGuard::start(&backend.load, &self.traffic.total);
            let mut sent = self.send(&head, attempt_body, &body, backend, config).await;
            if matches!(sent, Err(ProxyError::Stale { .. }))
                && is_idempotent(&head.method)
                && body.replayable()
            {
                // Resent once, like a request that never left: the backend closed an idle
                // connection as it went out, which says nothing about the backend's health.
                if let Some(again) = body.attempt() {
                    sent = self.send(&head, again, &body, backend, config).await;
                }
            }
            match sent {
                Ok(res) => {
                    if settings.health.fail_on_5xx && res.status().is_server_error() {
                        self.failed(backend, &settings.health);
                    } else {
                        backend.health.record_success();
                    }
                    self.metrics.response(&backend.id, res.status().as_u16());
                    if miss.is_none() && warming_miss(balance, backend, &head.method, &res) {
                        // Look-aside: the joiner does not have it yet; the previous owner
                        // (the next candidate) may.
                        miss = Some((res, backend));
                        continue;
                    }
                    return Ok(downstream_response(
                        res,
                        backend,
                        config.debug_headers,
                        &head,
                        load,
                    ));
                }
                Err(error @ ProxyError::ClientBody(_)) => return Err(error),
                Err(error) => {
                    if let ProxyError::Stale { .. } = error {
                        tracing::warn!(backend = %backend.id, error = %error, "upstream request failed on a reused connection the backend closed");
                    }
                    self.metrics.upstream_error(&backend.id, error.kind());
                    let unsent = error.unsent();
                    if unsent {
                        self.failed(backend, &settings.health);
                    }
                    last_error = Some(error);
                    if miss.is_some() {
                        break;
                    }
                    // A request that reached the backend is only sent again when that is safe.
                    let may_resend = retry_after_send && body.replayable();
                    if !unsent && !may_resend {
                        break;
                    }
                }
            }
        }
        if let Some((res, backend)) = miss {
            // The previous owner could not answer: the joiner's miss is the answer.
            let load = LoadGuard::start(&backend.load, &self.traffic.total);
            return Ok(downstream_response(
                res,
                backend,
                config.debug_headers,
                &head,
                load,
            ));
        }
        Err(last_error.unwrap_or(ProxyError::AllDown { skipped }))
    }

    /// May this request leave an owner that is over its bound? Any request with
    /// `spread = "any"`; with `"hot"`, only requests for a key that is hot now.
    fn may_spread(&self, balance: &BalanceConfig, position: u64, keyed: bool) -> bool {
        match balance.spread {
            Spread::Any => true,
            Spread::Hot => keyed && self.traffic.observe(position, balance.hot_share),
        }
    }

    /// One attempt against one backend, bounded by the request timeout.
    async fn send(
        &self,
        head: &Head,
        body: UpstreamBody,
        client_body: &RequestBody,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let mut req = Request::new(body);
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = Uri::from(head.path.clone());
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        *headers = head.headers.clone();
        // HTTP/1.0 clients may send no Host; HTTP/1.1 requires one upstream.
        if !headers.contains_key(HOST) {
            if let Ok(v) = HeaderValue::from_str(backend.authority.as_str()) {
                headers.insert(HOST, v);
            }
        }

        let timeouts = Timeouts {
            connect: config.connect_timeout,
            idle: config.upstream_idle_timeout,
        };
        // In flight and timed from here to the end of the response body.
        let exchange = self.metrics.begin(&backend.id);
        let sent = async {
            match &head.upgrade {
                Some(upgrade) => {
                    self.metrics.upstream_opened(&backend.id);
                    let res = upgrade
                        .exchange(&backend.address, req, timeouts.connect)
                        .await?;
                    Ok(res.map(ResponseBody::unpooled))
                }
                None => {
                    self.pool
                        .send(&backend.address, req, timeouts, |took| {
                            self.metrics.upstream_opened(&backend.id);
                            self.metrics.upstream_connected(&backend.id, took);
                        })
                        .await
                }
            }
        };
        match tokio::time::timeout(config.request_timeout, sent).await {
            Ok(Ok(mut res)) => {
                exchange.first_byte();
                res.body_mut().time(exchange);
                Ok(res)
            }
            Ok(Err(e)) if client_body.client_failed() => {
                // The client's body broke the exchange: the client's error, not the backend's.
                let reason = super::upstream::describe(&e);
                tracing::info!(backend = %backend.id, error = %reason, "client request body failed");
                Err(ProxyError::ClientBody(reason))
            }
            Ok(Err(e)) => {
                let error = ProxyError::upstream(&backend.id, &e);
                if let ProxyError::Stale { .. } = error {
                    // Usually resent at once; `forward` warns if it is not.
                    tracing::debug!(backend = %backend.id, address = %backend.address, %error, "reused upstream connection closed under the request");
                } else {
                    tracing::warn!(backend = %backend.id, address = %backend.address, %error, "upstream request failed");
                }
                Err(error)
            }
            Err(_elapsed) => {
                tracing::warn!(backend = %backend.id, timeout = ?config.request_timeout, "upstream request timed out");
                Err(ProxyError::Timeout {
                    backend: backend.id.to_string(),
                })
            }
        }
    }

    fn failed(&self, backend: &Backend, health: &HealthConfig) {
        if let Transition::Ejected(length) = backend.health.record_failure(now_ms(), health) {
            tracing::warn!(
                backend = %backend.id, address = %backend.address, eject_for = ?length,
                "backend ejected after {} consecutive failures", health.fail_threshold
            );
            self.metrics.ejection(&backend.id);
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Rewrites the client's request head for the upstream. The destination is always a ring
/// backend: the request's own authority (absolute URI or Host) never picks where to connect.
fn upstream_head(mut parts: Parts, peer: SocketAddr, tunnel_idle: Duration) -> Head {
    let upgrade = upgrade::requested(&mut parts, tunnel_idle);
    // Absolute-form targets and HTTP/2's :authority name the host.
    target::set_host(&mut parts);
    hop::strip(&mut parts.headers);
    forwarded::add(&mut parts.headers, peer);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Head {
        method: parts.method,
        path,
        headers: parts.headers,
        upgrade,
    }
}

/// The ring position to start from: the key's hash, or a random one when there is no key.
/// Whether there was a key is returned too: a random position is no key to count as hot.
fn position(
    affinity: &AffinityConfig,
    ring: &Ring,
    parts: &Parts,
    peer: SocketAddr,
) -> Result<(u64, bool), ProxyError> {
    match affinity.extract(parts, peer.ip()) {
        Some(key) => Ok((ring.hash(&key), true)),
        None => match affinity.on_missing {
            OnMissing::Reject => Err(ProxyError::MissingKey(affinity.describe())),
            // A random point picks a backend in proportion to its share, then fails over.
            OnMissing::Random => Ok((rand::random(), false)),
        },
    }
}

/// Is `res` from a warming-up backend a miss that the key's previous owner may answer?
fn warming_miss(
    balance: &BalanceConfig,
    backend: &Backend,
    method: &Method,
    res: &Response<ResponseBody>,
) -> bool {
    if !balance.fallback()
        || !matches!(*method, Method::GET | Method::HEAD)
        || !backend
            .ramp
            .is_some_and(|r| r.direction == RampDirection::Up)
    {
        return false;
    }
    balance.warmup_miss_status.contains(&res.status().as_u16())
        || balance
            .warmup_miss_header
            .as_ref()
            .is_some_and(|(name, value)| res.headers().get(name) == Some(value))
}

fn downstream_response(
    res: Response<ResponseBody>,
    backend: &Backend,
    debug_headers: bool,
    head: &Head,
    load: LoadGuard,
) -> Response<ProxyBody> {
    let (mut parts, body) = res.into_parts();
    let switched = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let protocol = parts.headers.get(http::header::UPGRADE).cloned();
    hop::strip(&mut parts.headers);
    if let (true, Some(_), Some(protocol)) = (switched, &head.upgrade, protocol) {
        upgrade::keep(&mut parts.headers, &protocol);
    }
    if debug_headers {
        if let Ok(v) = HeaderValue::from_str(&backend.id) {
            parts.headers.insert(X_RINGPROXY_BACKEND, v);
        }
    }
    Response::from_parts(parts, Either::Left(Relayed::new(body, load)))
}
