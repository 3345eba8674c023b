//! The per-request path: key → snapshot → backend → forward.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rand::Rng;

use super::error::ProxyError;
use super::upstream::{self, Failure, Upstream};
use super::ProxyBody;
use crate::affinity::{AffinityConfig, OnMissing};
use crate::config::ProxyConfig;
use crate::hop;
use crate::metrics::Metrics;
use crate::snapshot::{Backend, Cluster, Snapshot};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_RINGPROXY_BACKEND: HeaderName = HeaderName::from_static("x-ringproxy-backend");

/// Shared by every connection of the proxy listener.
pub struct Proxy {
    cluster: Arc<Cluster>,
    affinity: AffinityConfig,
    config: ProxyConfig,
    client: Upstream,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(
        cluster: Arc<Cluster>,
        affinity: AffinityConfig,
        config: ProxyConfig,
        metrics: Arc<Metrics>,
    ) -> Proxy {
        let client = upstream::client(config.connect_timeout);
        Proxy {
            cluster,
            affinity,
            config,
            client,
            metrics,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let snapshot = self.cluster.load();
        let backend = match self.choose(&snapshot, &parts, peer) {
            Ok(b) => b.clone(),
            Err(e) => {
                self.metrics.rejected(&e);
                return e.into_response();
            }
        };
        drop(snapshot);

        let req = self.upstream_request(parts, body, &backend, peer);
        let result =
            tokio::time::timeout(self.config.request_timeout, self.client.request(req)).await;
        let outcome = match result {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) => {
                let reason = upstream::describe(&e);
                tracing::warn!(backend = %backend.id, address = %backend.address, error = %reason, "upstream request failed");
                Err(match upstream::classify(&e) {
                    Failure::Connect => ProxyError::Connect {
                        backend: backend.id.to_string(),
                        reason,
                    },
                    Failure::ConnectTimeout => ProxyError::Timeout {
                        backend: backend.id.to_string(),
                    },
                    Failure::Protocol => ProxyError::Upstream {
                        backend: backend.id.to_string(),
                        reason,
                    },
                })
            }
            Err(_elapsed) => {
                tracing::warn!(backend = %backend.id, timeout = ?self.config.request_timeout, "upstream request timed out");
                Err(ProxyError::Timeout {
                    backend: backend.id.to_string(),
                })
            }
        };
        match outcome {
            Ok(res) => {
                self.metrics.response(&backend.id, res.status().as_u16());
                self.downstream_response(res, &backend)
            }
            Err(e) => {
                self.metrics.upstream_error(&backend.id, &e);
                e.into_response()
            }
        }
    }

    /// The backend for this request: the key's owner, or per `on_missing` when there is no key.
    fn choose<'s>(
        &self,
        snapshot: &'s Snapshot,
        parts: &Parts,
        peer: SocketAddr,
    ) -> Result<&'s Backend, ProxyError> {
        if snapshot.backends.is_empty() {
            return Err(ProxyError::NoBackends);
        }
        match self.affinity.extract(parts, peer.ip()) {
            Some(key) => snapshot.owner(&key).ok_or(ProxyError::NoBackends),
            None => match self.affinity.on_missing {
                OnMissing::Reject => Err(ProxyError::MissingKey(self.affinity.describe())),
                OnMissing::Random => {
                    let i = rand::thread_rng().gen_range(0..snapshot.backends.len());
                    Ok(&snapshot.backends[i])
                }
            },
        }
    }

    /// Rewrites the client's request for `backend`. The destination is always the backend: the
    /// request's own authority (absolute URI or Host) is never used to pick where to connect.
    fn upstream_request(
        &self,
        mut parts: Parts,
        body: Incoming,
        backend: &Backend,
        peer: SocketAddr,
    ) -> Request<Incoming> {
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
        parts.uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(backend.authority.clone())
            .path_and_query(path)
            .build()
            .expect("scheme, authority and path are each valid");
        // Backends speak HTTP/1.1; the pooled client decides the wire version.
        parts.version = http::Version::HTTP_11;
        Request::from_parts(parts, body)
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

/// Appends the peer to `X-Forwarded-For`, keeping what earlier proxies wrote.
fn append_forwarded_for(headers: &mut http::HeaderMap, peer: SocketAddr) {
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
