//! The per-request path: key → snapshot → first usable candidate → forward, failing over.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::body::{RequestBody, UpstreamBody};
use super::error::ProxyError;
use super::upstream::{self, Failure, ResponseBody, Upstream};
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
        let client = Upstream::new(
            config.connect_timeout,
            config.upstream_idle_timeout,
            metrics.upstream_idle(),
        );
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
            client: Upstream::new(
                self.config.connect_timeout,
                self.config.upstream_idle_timeout,
                self.metrics.upstream_idle(),
            ),
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
            let mut sent = self.send(&head, attempt_body, backend).await;
            if matches!(sent, Err((Failure::Stale, _)))
                && is_idempotent(&head.method)
                && body.replayable()
            {
                // Resent once, like a request that never left: the backend closed an idle
                // connection as it went out, which says nothing about the backend's health.
                if let Some(again) = body.attempt() {
                    sent = self.send(&head, again, backend).await;
                }
            }
            match sent {
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
                    if failure == Failure::Stale {
                        tracing::warn!(backend = %backend.id, error = %error, "upstream request failed on a reused connection the backend closed");
                    }
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
    ) -> Result<Response<ResponseBody>, (Failure, ProxyError)> {
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

        let id = || backend.id.to_string();
        match tokio::time::timeout(
            self.config.request_timeout,
            self.client.send(&backend.address, req, || {
                self.metrics.upstream_opened(&backend.id)
            }),
        )
        .await
        {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) => {
                let reason = upstream::describe(&e);
                let failure = e.failure();
                if failure == Failure::Stale {
                    // Usually resent at once; `forward` warns if it is not.
                    tracing::debug!(backend = %backend.id, address = %backend.address, error = %reason, "reused upstream connection closed under the request");
                } else {
                    tracing::warn!(backend = %backend.id, address = %backend.address, error = %reason, "upstream request failed");
                }
                Err((
                    failure,
                    match failure {
                        Failure::Connect => ProxyError::Connect {
                            backend: id(),
                            reason,
                        },
                        Failure::ConnectTimeout => ProxyError::Timeout { backend: id() },
                        Failure::Protocol | Failure::Stale => ProxyError::Upstream {
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
        res: Response<ResponseBody>,
        backend: &Backend,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = res.into_parts();
        hop::strip(&mut parts.headers);
        if self.config.debug_headers {
            if let Ok(v) = HeaderValue::from_str(&backend.id) {
                parts.headers.insert(X_RINGPROXY_BACKEND, v);
            }
        }
        Response::from_parts(parts, Either::Left(body))
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
    let mut buf = [0u8; 48];
    let ip = format_ip(peer.ip().to_canonical(), &mut buf);

    let mut value = Vec::new();
    for prior in headers.get_all(X_FORWARDED_FOR).iter() {
        let prior = prior.as_bytes().trim_ascii();
        if !prior.is_empty() {
            value.extend_from_slice(prior);
            value.extend_from_slice(b", ");
        }
    }
    let value = if value.is_empty() {
        HeaderValue::from_bytes(ip)
    } else {
        value.extend_from_slice(ip);
        HeaderValue::from_bytes(&value)
    };
    if let Ok(v) = value {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// Writes `ip` into `buf` and returns the text. IPv4 is formatted by hand: `Display` through
/// `core::fmt` cost about 1,000 instructions per request, more than the rest of the rewrite.
fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            &buf[..n]
        }
        IpAddr::V6(v6) => {
            let mut cursor = &mut buf[..];
            // At most 45 bytes ("ffff:...:255.255.255.255"), so this cannot run out of room.
            let _ = write!(cursor, "{v6}");
            let unused = cursor.len();
            &buf[..48 - unused]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_addresses_like_display() {
        let cases = [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.99.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for text in cases {
            let ip: IpAddr = text.parse().unwrap();
            let mut buf = [0u8; 48];
            assert_eq!(format_ip(ip, &mut buf), ip.to_string().as_bytes(), "{text}");
        }
    }

    #[test]
    fn forwarded_for_appends_to_what_earlier_proxies_wrote() {
        let peer: SocketAddr = "[::ffff:10.0.0.7]:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, peer);
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.7");

        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(" 1.1.1.1 "));
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("2.2.2.2, 3.3.3.3"),
        );
        append_forwarded_for(&mut h, "127.0.0.1:1".parse().unwrap());
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1");
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
    }
}
