//! The hyper path's per-request handling: key → snapshot → the shared walk (`walk.rs`) over
//! hyper's client → the response, rewritten for the client. The worker state it reads is
//! `worker.rs`; the byte relay (`relay/`) is the other path over the same walk.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::Either;
use hyper::body::{Body as _, Incoming};

use super::body::{RequestBody, UpstreamBody};
use super::error::ProxyError;
use super::upstream::{ResponseBody, Timeouts};
use super::walk::{is_idempotent, position, Attempts};
use super::worker::Proxy;
use super::{target, upgrade};
use super::{ProxyBody, Relayed};
use crate::config::ProxyConfig;
use crate::load::LoadGuard;
use crate::snapshot::Backend;
use crate::{forwarded, hop};

const X_RINGPROXY_BACKEND: HeaderName = HeaderName::from_static("x-ringproxy-backend");

/// The request as it goes upstream, minus the destination.
struct Head {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    /// A protocol switch the client asked for.
    upgrade: Option<upgrade::Requested>,
}

impl Proxy {
    /// Routes and forwards one request; every failure becomes the client's answer here.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        match self.forward(req, peer).await {
            Ok(res) => res,
            Err(e) => {
                self.metrics().rejected(e.reason());
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
        let snapshot = self.cluster().load();
        let settings = &*snapshot.settings;
        let key = settings.affinity.extract(&parts, peer.ip());
        let (position, keyed) = position(&settings.affinity, &snapshot.ring, key.as_deref())?;
        drop(key);
        if snapshot.backends.is_empty() {
            return Err(ProxyError::NoBackends);
        }
        let config = &settings.proxy;
        let retry_after_send = config.retry_idempotent && is_idempotent(&parts.method);
        let body = RequestBody::new(body, retry_after_send)
            .await
            .map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        let head = upstream_head(parts, peer, config.client_idle_timeout);
        let mut request = HyperRequest {
            head: &head,
            body: &body,
        };
        let chosen = self.walk(&snapshot, position, keyed, &mut request).await?;
        Ok(downstream_response(
            chosen.response,
            chosen.backend,
            config.debug_headers,
            &head,
            chosen.load,
        ))
    }

    /// One attempt against one backend (the walk bounds it by the request timeout).
    async fn send(
        &self,
        head: &Head,
        body: UpstreamBody,
        client_body: &RequestBody,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        // A body of unknown length goes chunked, whatever the method: hyper's client would
        // otherwise send a GET's (or HEAD's) body as none at all.
        let chunked = body.size_hint().exact().is_none() && !body.is_end_stream();
        let mut req = Request::new(body);
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = Uri::from(head.path.clone());
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        *headers = head.headers.clone();
        if chunked {
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
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
        let exchange = self.metrics().begin(&backend.id);
        let sent = async {
            match &head.upgrade {
                Some(upgrade) => {
                    self.metrics().upstream_opened(&backend.id);
                    let res = upgrade
                        .exchange(&backend.address, req, timeouts.connect)
                        .await?;
                    Ok(res.map(ResponseBody::unpooled))
                }
                None => {
                    self.upstream()
                        .send(&backend.address, req, timeouts, |took| {
                            self.metrics().upstream_opened(&backend.id);
                            self.metrics().upstream_connected(&backend.id, took);
                        })
                        .await
                }
            }
        };
        match sent.await {
            Ok(mut res) => {
                exchange.first_byte();
                res.body_mut().time(exchange);
                Ok(res)
            }
            // The client's body broke the exchange: the client's error, not the backend's.
            Err(e) if client_body.client_failed() => {
                Err(ProxyError::ClientBody(super::upstream::describe(&e)))
            }
            Err(e) => Err(ProxyError::upstream(&backend.id, &e)),
        }
    }
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

/// The hyper path's attempts: the rewritten head and the client's body, sent with the pool.
struct HyperRequest<'r> {
    head: &'r Head,
    body: &'r RequestBody,
}

impl Attempts for HyperRequest<'_> {
    type Response = Response<ResponseBody>;

    fn method(&self) -> &Method {
        &self.head.method
    }

    fn can_attempt(&self) -> bool {
        self.body.can_attempt()
    }

    fn replayable(&self) -> bool {
        self.body.replayable()
    }

    async fn send(
        &mut self,
        proxy: &Proxy,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Result<Self::Response, ProxyError> {
        let Some(body) = self.body.attempt() else {
            return Err(ProxyError::ClientBody(
                "the request body was already sent".into(),
            ));
        };
        proxy
            .send(self.head, body, self.body, backend, config)
            .await
    }

    fn status(res: &Self::Response) -> u16 {
        res.status().as_u16()
    }

    fn has_header(res: &Self::Response, name: &HeaderName, value: &HeaderValue) -> bool {
        res.headers().get(name) == Some(value)
    }
}
