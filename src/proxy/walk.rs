//! The candidate walk both server paths share: from the key's ring position clockwise through
//! health, the load bound, the attempt budget, resends, failover and the warm-up look-aside,
//! to one backend's response or the error the client gets. What one attempt *is* — hyper's
//! client with a `Request`, or the byte relay writing a head — belongs to the [`Attempts`]
//! the path passes in, so routing and failover are one implementation, not two kept in step.

use http::header::{HeaderName, HeaderValue};
use http::Method;

use super::error::ProxyError;
use super::worker::Proxy;
use crate::affinity::{AffinityConfig, OnMissing};
use crate::clock::now_ms;
use crate::config::{BalanceConfig, HealthConfig, ProxyConfig, Spread};
use crate::health::Transition;
use crate::load::LoadGuard;
use crate::ring::Ring;
use crate::snapshot::{Backend, RampDirection, Snapshot};

/// One request's attempts against backends, as one server path makes them.
pub(crate) trait Attempts {
    /// A backend's response (head read, body still to come).
    type Response;

    /// The request method.
    fn method(&self) -> &Method;

    /// Can another attempt start? A streamed body can be sent once.
    fn can_attempt(&self) -> bool;

    /// Could the body be sent again after it has been sent?
    fn replayable(&self) -> bool;

    /// One attempt at `backend`. The walk bounds it by the request timeout
    /// ([`send_within`](Self::send_within)) and logs how it failed.
    async fn send(
        &mut self,
        proxy: &Proxy,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Result<Self::Response, ProxyError>;

    /// [`send`](Self::send) within the request timeout; `None` when the time ran out. A path
    /// with a cheaper timer of its own provides it here.
    async fn send_within(
        &mut self,
        proxy: &Proxy,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Option<Result<Self::Response, ProxyError>> {
        let sending = self.send(proxy, backend, config);
        tokio::time::timeout(config.request_timeout, sending)
            .await
            .ok()
    }

    /// The response's status code.
    fn status(res: &Self::Response) -> u16;

    /// Does the response carry `name: value`?
    fn has_header(res: &Self::Response, name: &HeaderName, value: &HeaderValue) -> bool;
}

/// The response a walk settled on, the backend it came from, and that backend's load count,
/// held until the response body is done.
pub(crate) struct Chosen<'s, R> {
    pub response: R,
    pub backend: &'s Backend,
    pub load: LoadGuard,
}

impl Proxy {
    /// Walks the candidates of `position` on `snapshot`'s ring, attempting as the settings
    /// allow, and answers with the first acceptable response.
    pub(crate) async fn walk<'s, A: Attempts>(
        &self,
        snapshot: &'s Snapshot,
        position: u64,
        keyed: bool,
        request: &mut A,
    ) -> Result<Chosen<'s, A::Response>, ProxyError> {
        if snapshot.backends.is_empty() {
            return Err(ProxyError::NoBackends);
        }
        let settings = &*snapshot.settings;
        let config = &settings.proxy;
        let retry_after_send = config.retry_idempotent && is_idempotent(request.method());
        let now = now_ms();
        let balance = &settings.balance;
        // Usable owners over the load bound that this request passes by.
        let mut spill = match balance.bound {
            Some(bound) if self.may_spread(balance, position, keyed) => {
                snapshot.spills(position, now, bound, self.traffic().total.get())
            }
            _ => 0,
        };
        let (mut attempts, mut skipped) = (0u32, 0usize);
        let mut last_error = None;
        // A miss from a warming backend, kept while its previous owner is asked.
        let mut miss: Option<(A::Response, &Backend)> = None;
        for index in snapshot.ring.candidates_hash(position) {
            let backend = &snapshot.backends[index];
            if !backend.health.usable(now) {
                skipped += 1;
                continue;
            }
            if spill > 0 {
                spill -= 1;
                backend.load.spill();
                self.metrics().spill(&backend.id);
                continue;
            }
            if attempts == config.max_attempts || !request.can_attempt() {
                break;
            }
            if attempts > 0 && miss.is_none() {
                self.metrics().retry(&backend.id);
            }
            attempts += 1;
            let load = LoadGuard::start(&backend.load, &self.traffic().total);
            let mut sent = self.attempt(request, backend, config).await;
            if matches!(sent, Err(ProxyError::Stale { .. }))
                && is_idempotent(request.method())
                && request.replayable()
                && request.can_attempt()
            {
                // Resent once, like a request that never left: the backend closed an idle
                // connection as it went out, which says nothing about the backend's health.
                sent = self.attempt(request, backend, config).await;
            }
            match sent {
                Ok(res) => {
                    let status = A::status(&res);
                    if settings.health.fail_on_5xx && (500..600).contains(&status) {
                        self.failed(backend, &settings.health);
                    } else {
                        backend.health.record_success();
                    }
                    self.metrics().response(&backend.id, status);
                    if miss.is_none() && warming_miss::<A>(balance, backend, request.method(), &res)
                    {
                        // Look-aside: the joiner does not have it yet; the previous owner
                        // (the next candidate) may.
                        miss = Some((res, backend));
                        continue;
                    }
                    return Ok(Chosen {
                        response: res,
                        backend,
                        load,
                    });
                }
                Err(error @ ProxyError::ClientBody(_)) => return Err(error),
                Err(error) => {
                    if let ProxyError::Stale { .. } = error {
                        tracing::warn!(backend = %backend.id, error = %error, "upstream request failed on a reused connection the backend closed");
                    }
                    self.metrics().upstream_error(&backend.id, error.kind());
                    let unsent = error.unsent();
                    if unsent {
                        self.failed(backend, &settings.health);
                    }
                    last_error = Some(error);
                    if miss.is_some() {
                        break;
                    }
                    // A request that reached the backend is only sent again when that is safe.
                    let may_resend = retry_after_send && request.replayable();
                    if !unsent && !may_resend {
                        break;
                    }
                }
            }
        }
        if let Some((response, backend)) = miss {
            // The previous owner could not answer: the joiner's miss is the answer.
            let load = LoadGuard::start(&backend.load, &self.traffic().total);
            return Ok(Chosen {
                response,
                backend,
                load,
            });
        }
        Err(last_error.unwrap_or(ProxyError::AllDown { skipped }))
    }

    /// One attempt, bounded by the request timeout; a failure is logged here, once for both
    /// server paths.
    async fn attempt<A: Attempts>(
        &self,
        request: &mut A,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Result<A::Response, ProxyError> {
        let error = match request.send_within(self, backend, config).await {
            Some(Ok(res)) => return Ok(res),
            Some(Err(error)) => error,
            None => ProxyError::Timeout {
                backend: backend.id.to_string(),
            },
        };
        match &error {
            // Usually resent at once; the walk warns if it is not.
            ProxyError::Stale { .. } => {
                tracing::debug!(backend = %backend.id, address = %backend.address, %error, "reused upstream connection closed under the request");
            }
            // The client's body broke the exchange: the client's error, not the backend's.
            ProxyError::ClientBody(reason) => {
                tracing::info!(backend = %backend.id, error = %reason, "client request body failed");
            }
            ProxyError::Timeout { .. } => {
                tracing::warn!(backend = %backend.id, timeout = ?config.request_timeout, "upstream request timed out");
            }
            _ => {
                tracing::warn!(backend = %backend.id, address = %backend.address, %error, "upstream request failed");
            }
        }
        Err(error)
    }

    /// May this request leave an owner that is over its bound? Any request with
    /// `spread = "any"`; with `"hot"`, only requests for a key that is hot now.
    fn may_spread(&self, balance: &BalanceConfig, position: u64, keyed: bool) -> bool {
        match balance.spread {
            Spread::Any => true,
            Spread::Hot => keyed && self.traffic().observe(position, balance.hot_share),
        }
    }

    fn failed(&self, backend: &Backend, health: &HealthConfig) {
        if let Transition::Ejected(length) = backend.health.record_failure(now_ms(), health) {
            tracing::warn!(
                backend = %backend.id, address = %backend.address, eject_for = ?length,
                "backend ejected after {} consecutive failures", health.fail_threshold
            );
            self.metrics().ejection(&backend.id);
        }
    }
}

/// Methods a request may be sent again with (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// The ring position to start from: the key's hash, or a random one when there is no key.
/// Whether there was a key is returned too: a random position is no key to count as hot.
pub(crate) fn position(
    affinity: &AffinityConfig,
    ring: &Ring,
    key: Option<&[u8]>,
) -> Result<(u64, bool), ProxyError> {
    match key {
        Some(key) => Ok((ring.hash(key), true)),
        None => match affinity.on_missing {
            OnMissing::Reject => Err(ProxyError::MissingKey(affinity.describe())),
            // A random point picks a backend in proportion to its share, then fails over.
            OnMissing::Random => Ok((rand::random(), false)),
        },
    }
}

/// Is `res` from a warming-up backend a miss that the key's previous owner may answer?
fn warming_miss<A: Attempts>(
    balance: &BalanceConfig,
    backend: &Backend,
    method: &Method,
    res: &A::Response,
) -> bool {
    if !balance.fallback()
        || !matches!(*method, Method::GET | Method::HEAD)
        || !backend
            .ramp
            .is_some_and(|r| r.direction == RampDirection::Up)
    {
        return false;
    }
    balance.warmup_miss_status.contains(&A::status(res))
        || balance
            .warmup_miss_header
            .as_ref()
            .is_some_and(|(name, value)| A::has_header(res, name, value))
}
