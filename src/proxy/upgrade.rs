//! Protocol upgrades (`Connection: upgrade`, e.g. WebSocket) relayed to the backend: the
//! request goes out on a connection of its own with `Upgrade` kept, and when the backend
//! answers `101 Switching Protocols` both sides are joined byte for byte. A backend that
//! declines answers normally; its connection is never pooled.

use std::sync::Mutex;

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::UpstreamBody;
use super::upstream::{connect_upgradable, UpstreamError};
use crate::sync::lock;

/// An upgrade the client asked for: the protocol, and the client's side of the switch.
pub struct Requested {
    protocol: HeaderValue,
    client: Mutex<Option<OnUpgrade>>,
}

/// The upgrade `parts` asks for, if any: an HTTP/1.1 request with `Upgrade` and `upgrade`
/// among the `Connection` options. Read before the hop-by-hop headers are stripped.
pub fn requested(parts: &mut Parts) -> Option<Requested> {
    if parts.version != http::Version::HTTP_11 {
        return None;
    }
    let protocol = parts.headers.get(UPGRADE)?.clone();
    let asks = parts.headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|o| o.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if !asks {
        return None;
    }
    let client = parts.extensions.remove::<OnUpgrade>()?;
    Some(Requested {
        protocol,
        client: Mutex::new(Some(client)),
    })
}

/// Puts the upgrade back into a stripped header map.
pub fn keep(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol.clone());
}

impl Requested {
    /// Sends `req` (upgrade headers kept) to `address` on a fresh connection; on `101`, joins
    /// the client and the backend in a task of their own.
    pub async fn exchange(
        &self,
        address: &str,
        mut req: Request<UpstreamBody>,
        connect_timeout: std::time::Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        keep(req.headers_mut(), &self.protocol);
        let mut sender = connect_upgradable(address, connect_timeout).await?;
        let mut res = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Exchange)?;
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let backend = hyper::upgrade::on(&mut res);
            if let Some(client) = lock(&self.client).take() {
                tokio::spawn(tunnel(client, backend));
            }
        }
        Ok(res)
    }
}

/// Relays bytes both ways once both sides have switched, until either closes.
async fn tunnel(client: OnUpgrade, backend: OnUpgrade) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}
