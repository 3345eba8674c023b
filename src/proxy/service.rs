//! The per-request path: key → snapshot → first usable candidate → forward, failing over.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{RequestBody, UpstreamBody};
use super::error::ProxyError;
use super::upstream::{self, Failure, Upstream};
use super::ProxyBody;
use crate::affinity::{AffinityConfig, OnMissing};
use crate::config::ProxyConfig;
use crate::health::{now_ms, HealthConfig};
use crate::hop;
use crate::metrics::Metrics;
use crate::ring::hash_key;
use crate::snapshot::{Backend, Cluster};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_RINGPROXY_BACKEND: HeaderName = HeaderName::from_static("x-ringproxy-backend");

/// Shared by every connection of the proxy listener.
pub struct Proxy {
    cluster: Arc<Cluster>,
    affinity: AffinityConfig,
    config: ProxyConfig,
    health: HealthConfig,
    client: Upstream,
    metrics: Arc<Metrics>,
}

/// The request as it goes upstream, minus the destination.
struct Head {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
}

impl Proxy {
    pub fn new(
        cluster: Arc<Cluster>,
        affinity: AffinityConfig,
        config: ProxyConfig,
        health: HealthConfig,
        metrics: Arc<Metrics>,
    ) -> Proxy {
        let client = upstream::client(config.connect_timeout);
        Proxy {
            cluster,
            affinity,
            config,
            health,
            client,
            metrics,
        }
    }

    /// The same proxy with a connection pool of its own, for another worker thread: pooled
    /// connections are driven by tasks on the thread that opened them, so sharing a pool would
    /// hand requests across threads.
    pub fn with_own_pool(&self) -> Proxy {
        Proxy {
            cluster: self.cluster.clone(),
            affinity: self.affinity.clone(),
            config: self.config.clone(),
            health: self.health.clone(),
            client: upstream::client(self.config.connect_timeout),
            metrics: self.metrics.clone(),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        match self.forward(req, peer).await {
            Ok(res) => res,
            Err(e) => {
                self.metrics.rejected(&e);
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
        let position = self.position(&parts, peer)?;
        let snapshot = self.cluster.load();
        if snapshot.backends.is_empty() {
            return Err(ProxyError::NoBackends);
        }
        let retry_after_send = self.config.retry_idempotent && is_idempotent(&parts.method);
        let body = RequestBody::new(body, retry_after_send)
            .await
            .map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        let head = upstream_head(parts, peer);

        let now = now_ms();
        let (mut attempts, mut skipped) = (0u32, 0usize);
        let mut last_error = None;
        for index in snapshot.ring.candidates_hash(position) {
            let backend = &snapshot.backends[index];
            if !backend.health.usable(now) {
                skipped += 1;
                continue;
            }
            if attempts == self.config.max_attempts {
                break;
            }
            let Some(attempt_body) = body.attempt() else {
                break;
            };
            if attempts > 0 {
                self.metrics.retry(&backend.id);
            }
            attempts += 1;
            match self.send(&head, attempt_body, backend).await {
                Ok(res) => {
                    if self.health.fail_on_5xx && res.status().is_server_error() {
                        self.failed(backend);
                    } else {
                        backend.health.record_success();
                    }
                    self.metrics.response(&backend.id, res.status().as_u16());
                    return Ok(self.downstream_response(res, backend));
                }
                Err((failure, error)) => {
                    self.metrics.upstream_error(&backend.id, &error);
                    let unsent = matches!(failure, Failure::Connect | Failure::ConnectTimeout);
                    if unsent {
                        self.failed(backend);
                    }
                    last_error = Some(error);
                    // A request that reached the backend is only sent again when that is safe.
                    let may_resend = retry_after_send && body.replayable();
                    if !unsent && !may_resend {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or(ProxyError::AllDown { skipped }))
    }

    /// The ring position to start from: the key's hash, or a random one when there is no key.
    fn position(&self, parts: &Parts, peer: SocketAddr) -> Result<u64, ProxyError> {
        match self.affinity.extract(parts, peer.ip()) {
            Some(key) => Ok(hash_key(&key)),
            None => match self.affinity.on_missing {
                OnMissing::Reject => Err(ProxyError::MissingKey(self.affinity.describe())),
                // A random point picks a backend in proportion to its share, then fails over.
                OnMissing::Random => Ok(rand::random()),
            },
        }
    }

    /// One attempt against one backend, bounded by the request timeout.
    async fn send(
        &self,
        head: &Head,
        body: UpstreamBody,
        backend: &Backend,
    ) -> Result<Response<Incoming>, (Failure, ProxyError)> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(backend.authority.clone())
            .path_and_query(head.path.clone())
            .build()
            .expect("scheme, authority and path are each valid");
        let mut req = Request::new(body);
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = head.headers.clone();

        let id = || backend.id.to_string();
        match tokio::time::timeout(self.config.request_timeout, self.client.request(req)).await {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) => {
                let reason = upstream::describe(&e);
                tracing::warn!(backend = %backend.id, address = %backend.address, error = %reason, "upstream request failed");
                let failure = upstream::classify(&e);
                Err((
                    failure,
                    match failure {
                        Failure::Connect => ProxyError::Connect {
                            backend: id(),
                            reason,
                        },
                        Failure::ConnectTimeout => ProxyError::Timeout { backend: id() },
                        Failure::Protocol => ProxyError::Upstream {
                            backend: id(),
                            reason,
                        },
                    },
                ))
            }
            Err(_elapsed) => {
                tracing::warn!(backend = %backend.id, timeout = ?self.config.request_timeout, "upstream request timed out");
                Err((Failure::Protocol, ProxyError::Timeout { backend: id() }))
            }
        }
    }

    fn failed(&self, backend: &Backend) {
        if let crate::health::Transition::Ejected(length) =
            backend.health.record_failure(now_ms(), &self.health)
        {
            tracing::warn!(
                backend = %backend.id, address = %backend.address, eject_for = ?length,
                "backend ejected after {} consecutive failures", self.health.fail_threshold
            );
            self.metrics.ejection(&backend.id);
        }
    }

    fn downstream_response(
        &self,
        res: Response<Incoming>,
        backend: &Backend,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = res.into_parts();
        hop::strip(&mut parts.headers);
        if self.config.debug_headers {
            if let Ok(v) = HeaderValue::from_str(&backend.id) {
                parts.headers.insert(X_RINGPROXY_BACKEND, v);
            }
        }
        Response::from_parts(parts, body.boxed_unsync())
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
fn upstream_head(mut parts: Parts, peer: SocketAddr) -> Head {
    // HTTP/2 clients send :authority instead of Host; keep it as Host for the backend.
    if !parts.headers.contains_key(HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(HOST, v);
        }
    }
    hop::strip(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, peer);
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Head {
        method: parts.method,
        path,
        headers: parts.headers,
    }
}

/// Appends the peer to `X-Forwarded-For`, keeping what earlier proxies wrote.
fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let mut value = String::new();
    for prior in headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        if !prior.trim().is_empty() {
            value.push_str(prior.trim());
            value.push_str(", ");
        }
    }
    value.push_str(&peer.ip().to_string());
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}
