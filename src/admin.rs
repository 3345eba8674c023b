//! The admin API: JSON over HTTP on its own listener.
//!
//! Reads answer from one snapshot; writes go through [`Cluster`], which validates, builds a new
//! snapshot and swaps it in. Any bad input is a 4xx with `{"error": "..."}` and changes nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::config::Spread;
use crate::metrics::Metrics;
use crate::plan::{plan, Change};
use crate::reload::{ReloadError, Reloader};
use crate::snapshot::{Backend, ChangeError, Cluster, RampDirection, Reloaded, Snapshot, Upsert};
use crate::status_page;
use crate::traffic::Traffic;

/// Admin request bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;

/// The admin API's response body: always a whole buffer.
pub type AdminBody = Full<Bytes>;

/// Why an admin request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Malformed input: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Token missing or wrong: 401.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// No such backend or endpoint: 404.
    #[error("{0}")]
    NotFound(String),
    /// Wrong method for the path: 405 with `Allow`.
    #[error("method {method} not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The path.
        path: String,
        /// The methods the path allows.
        allow: &'static str,
    },
    /// Body over the limit: 413.
    #[error("request body larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The request conflicts with how the proxy runs (a reload without a config file): 409.
    #[error("{0}")]
    Conflict(String),
    /// Nothing can answer right now (an empty ring, an unwritable state file): 503.
    #[error("{0}")]
    Unavailable(String),
}

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn into_response(self) -> Response<AdminBody> {
        let mut res = json_response(self.status(), &json!({ "error": self.to_string() }));
        match self {
            AdminError::MethodNotAllowed { allow, .. } => {
                res.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
            }
            AdminError::Unauthorized => {
                res.headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        res
    }
}

impl From<ChangeError> for AdminError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::NotFound(_) => AdminError::NotFound(e.to_string()),
            // Nothing changed because the state file could not be written: not the caller's
            // fault, and worth retrying.
            ChangeError::State(_) => AdminError::Unavailable(e.to_string()),
            _ => AdminError::BadRequest(e.to_string()),
        }
    }
}

impl From<ReloadError> for AdminError {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::NoFile => AdminError::Conflict(e.to_string()),
            ReloadError::Config(_) => AdminError::BadRequest(e.to_string()),
            ReloadError::Change(c) => c.into(),
        }
    }
}

/// The admin API over one cluster.
pub struct Admin {
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    traffic: Arc<Traffic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBackend {
    address: String,
    #[serde(default = "one")]
    weight: i64,
}

fn one() -> i64 {
    1
}

impl Admin {
    /// An admin API over `cluster`. The token, when the settings have one, is required on
    /// every call but `/healthz`.
    pub fn new(
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
        reloader: Arc<Reloader>,
        traffic: Arc<Traffic>,
    ) -> Admin {
        Admin {
            cluster,
            metrics,
            reloader,
            traffic,
        }
    }

    /// Answers one admin request; every refusal is a 4xx with `{"error": ...}`.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<AdminBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        match self.route(req).await {
            Ok(res) => res,
            Err(e) => {
                tracing::info!(%method, %path, error = %e, "admin request refused");
                e.into_response()
            }
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<AdminBody>, AdminError> {
        let path = req.uri().path().to_string();
        if path == "/healthz" {
            allow(&req, &[Method::GET, Method::HEAD], "GET, HEAD")?;
            return Ok(text_response(StatusCode::OK, "ok\n"));
        }
        if path == "/" || path == "/status" {
            // The page holds nothing sensitive; its calls carry the token.
            allow(&req, &[Method::GET, Method::HEAD], "GET, HEAD")?;
            return Ok(page_response());
        }
        self.authorize(&req)?;
        // Segments are percent-decoded (an id may hold non-ASCII letters); `%2F` stays inside
        // its segment and then fails id validation.
        let decoded = path
            .trim_start_matches('/')
            .split('/')
            .map(|seg| percent_encoding::percent_decode_str(seg).decode_utf8())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| AdminError::BadRequest("path is not valid UTF-8 once decoded".into()))?;
        let segments: Vec<&str> = decoded.iter().map(AsRef::as_ref).collect();
        match segments.as_slice() {
            ["backends"] => {
                allow(&req, &[Method::GET], "GET")?;
                Ok(json_response(
                    StatusCode::OK,
                    &backends_json(&self.cluster.load()),
                ))
            }
            ["backends", id, action @ ("drain" | "undrain")] if !id.is_empty() => {
                allow(&req, &[Method::POST], "POST")?;
                let draining = *action == "drain";
                let was = self.cluster.load().get(id).map(|b| b.health.is_draining());
                let ramp = query_param(req.uri().query().unwrap_or(""), "ramp");
                if let (true, Some(ramp)) = (draining, ramp) {
                    let duration = humantime::parse_duration(&ramp).map_err(|e| {
                        AdminError::BadRequest(format!("ramp: {ramp:?} is not a duration ({e})"))
                    })?;
                    let b = self.cluster.ramp_down(id, duration)?;
                    tracing::info!(backend = %b.id, ramp = ?duration, "backend ramping down to drained");
                    return Ok(json_response(StatusCode::OK, &backend_json(&b, now_ms())));
                }
                let b = self.cluster.set_draining(id, draining)?;
                if was != Some(draining) {
                    tracing::info!(backend = %b.id, "{}", if draining { "backend draining" } else { "backend undrained" });
                }
                Ok(json_response(StatusCode::OK, &backend_json(&b, now_ms())))
            }
            ["backends", id] if !id.is_empty() => {
                let id = id.to_string();
                match *req.method() {
                    Method::PUT => self.put_backend(&id, req).await,
                    Method::DELETE => {
                        self.cluster.remove(&id)?;
                        tracing::info!(backend = %id, "backend left the ring");
                        Ok(empty_response(StatusCode::NO_CONTENT))
                    }
                    Method::GET => {
                        let snapshot = self.cluster.load();
                        let b = snapshot.get(&id).ok_or_else(|| {
                            AdminError::NotFound(format!("no backend with id {id:?}"))
                        })?;
                        Ok(json_response(StatusCode::OK, &backend_json(b, now_ms())))
                    }
                    _ => Err(not_allowed(&req, "GET, PUT, DELETE")),
                }
            }
            ["reload"] => {
                allow(&req, &[Method::POST], "POST")?;
                let r = self.reloader.reload()?;
                Ok(json_response(StatusCode::OK, &reloaded_json(&r)))
            }
            ["route"] => {
                allow(&req, &[Method::GET], "GET")?;
                self.route_key(req.uri().query().unwrap_or(""))
            }
            ["ring"] => {
                allow(&req, &[Method::GET], "GET")?;
                Ok(json_response(
                    StatusCode::OK,
                    &ring_json(&self.cluster.load()),
                ))
            }
            ["ring", "arcs"] => {
                allow(&req, &[Method::GET], "GET")?;
                let max = status_page::max_arcs(req.uri().query().unwrap_or(""))
                    .map_err(AdminError::BadRequest)?;
                let arcs = status_page::arcs_json(&self.cluster.load(), max);
                Ok(json_response(StatusCode::OK, &arcs))
            }
            ["ring", "plan"] => {
                allow(&req, &[Method::POST], "POST")?;
                let max = status_page::max_arcs(req.uri().query().unwrap_or(""))
                    .map_err(AdminError::BadRequest)?;
                let body: Value = serde_json::from_slice(&read_body(req).await?).map_err(|e| {
                    AdminError::BadRequest(format!(
                        "invalid JSON body: {e}; expected {{\"join\": [{{\"id\", \"address\", \"weight\"}}], \"leave\": [ids], \"weight\": {{id: weight}}}}"
                    ))
                })?;
                let change =
                    Change::from_json(&body).map_err(|e| AdminError::BadRequest(e.to_string()))?;
                // Planned against one snapshot; nothing changes.
                let snapshot = self.cluster.load();
                let planned = plan(&snapshot.ring, &change)
                    .map_err(|e| AdminError::BadRequest(e.to_string()))?;
                Ok(json_response(
                    StatusCode::OK,
                    &status_page::plan_json(&snapshot, &planned, max),
                ))
            }
            ["stats"] => {
                allow(&req, &[Method::GET], "GET")?;
                let stats = status_page::stats_json(&self.cluster.load(), self.metrics.latency());
                Ok(json_response(StatusCode::OK, &stats))
            }
            ["metrics"] => {
                allow(&req, &[Method::GET], "GET")?;
                let mut res = text_response(
                    StatusCode::OK,
                    self.metrics
                        .render(&self.cluster.load(), self.traffic.hot_keys()),
                );
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok(res)
            }
            _ => Err(AdminError::NotFound(format!("no admin endpoint {path}"))),
        }
    }

    fn authorize(&self, req: &Request<Incoming>) -> Result<(), AdminError> {
        let snapshot = self.cluster.load();
        let Some(token) = &snapshot.settings.token else {
            return Ok(());
        };
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(AdminError::Unauthorized)
        }
    }

    async fn put_backend(
        &self,
        id: &str,
        req: Request<Incoming>,
    ) -> Result<Response<AdminBody>, AdminError> {
        let body = read_body(req).await?;
        let put: PutBackend = serde_json::from_slice(&body).map_err(|e| {
            AdminError::BadRequest(format!(
                "invalid JSON body: {e}; expected {{\"address\": \"host:port\", \"weight\": 1}}"
            ))
        })?;
        let (outcome, snapshot) = self.cluster.upsert_snapshot(id, &put.address, put.weight)?;
        let status = match outcome {
            Upsert::Created => {
                tracing::info!(backend = %id, address = %put.address, weight = put.weight, "backend joined the ring");
                StatusCode::CREATED
            }
            Upsert::Updated => {
                tracing::info!(backend = %id, address = %put.address, weight = put.weight, "backend updated");
                StatusCode::OK
            }
            Upsert::Unchanged => StatusCode::OK,
        };
        // What this change moved (exactly); nothing when nothing changed.
        let moved = match (outcome, snapshot.last_change) {
            (Upsert::Created | Upsert::Updated, Some(c)) => c.moved,
            _ => 0.0,
        };
        Ok(json_response(
            status,
            &json!({"id": id, "address": put.address, "weight": put.weight, "version": snapshot.version, "moved": moved}),
        ))
    }

    fn route_key(&self, query: &str) -> Result<Response<AdminBody>, AdminError> {
        let key = query_param(query, "key").ok_or_else(|| {
            AdminError::BadRequest("missing query parameter `key` (GET /route?key=K)".into())
        })?;
        if key.is_empty() {
            return Err(AdminError::BadRequest("`key` must not be empty".into()));
        }
        let snapshot = self.cluster.load();
        let now = now_ms();
        let owner = snapshot
            .owner(key.as_bytes())
            .ok_or_else(|| AdminError::Unavailable("no backends in the ring".into()))?;
        // `backend` is what the proxy does right now; `owner` is the key's place on the ring.
        let hash = snapshot.ring.hash(key.as_bytes());
        let hot = self.traffic.is_hot(hash);
        let balance = &snapshot.settings.balance;
        let spill = match (balance.bound, balance.spread) {
            (Some(bound), Spread::Any) => {
                snapshot.spills(hash, now, bound, self.traffic.total.get())
            }
            (Some(bound), Spread::Hot) if hot => {
                snapshot.spills(hash, now, bound, self.traffic.total.get())
            }
            _ => 0,
        };
        let serving = snapshot.serving_after(hash, now, spill).ok_or_else(|| {
            AdminError::Unavailable(format!(
                "no usable backend for this key: every candidate is down or draining (ring owner {} is {})",
                owner.id,
                owner.health.state(now).as_str()
            ))
        })?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "key": key,
                "backend": &*serving.id,
                "address": &*serving.address,
                "owner": &*owner.id,
                "owner_state": owner.health.state(now).as_str(),
                "hot": hot,
            }),
        ))
    }
}

fn backends_json(s: &Snapshot) -> Value {
    let now = now_ms();
    let list: Vec<Value> = s.backends.iter().map(|b| backend_json(b, now)).collect();
    json!({"version": s.version, "fingerprint": s.fingerprint, "backends": list})
}

fn reloaded_json(r: &Reloaded) -> Value {
    json!({
        "version": r.version,
        "fingerprint": r.fingerprint,
        "joined": r.joined,
        "left": r.left,
        "changed": r.changed,
        "moved": r.moved,
        "settings": r.settings,
        "ignored": r.ignored,
    })
}

fn backend_json(b: &Backend, now: u64) -> Value {
    let h = &b.health;
    json!({
        "id": &*b.id,
        "address": &*b.address,
        "weight": b.weight,
        "state": h.state(now).as_str(),
        "consecutive_failures": h.consecutive_failures(),
        "failures": h.total_failures(),
        "ejections": h.total_ejections(),
        "ejected_for_ms": h.ejected_for(now),
        "origin": b.origin.label(),
        "in_flight": b.load.in_flight(),
        "spilled": b.load.spilled(),
        "ramp": b.ramp.map(|r| json!({
            "direction": match r.direction { RampDirection::Up => "up", RampDirection::Down => "down" },
            "progress": r.progress(now),
            "points": r.points,
        })),
    })
}

fn ring_json(s: &Snapshot) -> Value {
    let list: Vec<Value> = s
        .shares()
        .iter()
        .enumerate()
        .map(|(i, &(points, share))| {
            let b = &s.backends[i];
            json!({"id": &*b.id, "weight": b.weight, "points": points, "share": share})
        })
        .collect();
    json!({
        "version": s.version,
        "fingerprint": s.fingerprint,
        "algorithm": s.ring.algorithm(),
        "compat": s.ring.placement().compat(),
        "vnodes": s.ring.vnodes(),
        "points": s.ring.points(),
        "backends": list,
        "last_change": status_page::last_change_json(s),
    })
}

/// Reads a small request body whole.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, AdminError> {
    Ok(Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                AdminError::TooLarge
            } else {
                AdminError::BadRequest(format!("cannot read body: {e}"))
            }
        })?
        .to_bytes())
}

fn page_response() -> Response<AdminBody> {
    let mut res = Response::new(Full::new(Bytes::from_static(status_page::PAGE.as_bytes())));
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(status_page::CONTENT_SECURITY_POLICY),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn allow(
    req: &Request<Incoming>,
    methods: &[Method],
    header: &'static str,
) -> Result<(), AdminError> {
    if methods.contains(req.method()) {
        Ok(())
    } else {
        Err(not_allowed(req, header))
    }
}

fn not_allowed(req: &Request<Incoming>, allow: &'static str) -> AdminError {
    AdminError::MethodNotAllowed {
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        allow,
    }
}

/// The first value of query parameter `name`, decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Compares without an early exit, so response timing does not reveal the token's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: StatusCode, value: &Value) -> Response<AdminBody> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn text_response(status: StatusCode, text: impl Into<Bytes>) -> Response<AdminBody> {
    let mut res = Response::new(Full::new(text.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn empty_response(status: StatusCode) -> Response<AdminBody> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}
