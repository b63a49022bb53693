//! WebSocket delivery in `ryze serve`: `GET /ws/{instance}` (or `/ws?instance=`) upgrades to a
//! socket that receives one text frame per event, the envelope webhooks get ([`socket`]).
//!
//! The [`LiveHub`] is the dispatcher's [`LiveEvents`] in this process: it keeps, per instance, a
//! bounded queue per open socket. A socket that does not keep up (its queue full) is dropped rather
//! than holding up the others or growing without bound. Delivery is live only: an event with no
//! socket open is not kept. On AWS, API Gateway's WebSocket API plays this part instead ([`aws`]:
//! its `$connect` and `$disconnect`). Both open a socket only past [`admit`], the API's checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::response::{IntoResponse, Response};
use ryze_core::domain::{Instance, InstanceId};
use ryze_core::service::dispatch::LiveEvents;
use ryze_core::service::{Bucket, RateDecision, Services};
use tokio::sync::mpsc;

use crate::error::ApiError;

pub mod aws;
/// The upgrade routes; only `ryze serve` serves them (feature `websocket`), so the Lambda
/// bootstraps carry no WebSocket code.
#[cfg(feature = "websocket")]
pub mod socket;

/// Frames a socket may have waiting before it counts as too slow and is dropped.
pub const SOCKET_BACKLOG: usize = 256;
/// How often the server pings each socket (API.md: every 30 s).
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// A caller allowed to open a socket: the instance, and the count the rate limiter took.
pub struct Admitted {
    pub instance: Arc<Instance>,
    pub decision: RateDecision,
}

/// The API's checks before a socket opens, in its order: the token, the rate limit (an upgrade
/// counts against it), the instance, then its WebSocket configuration (400 unless enabled). A
/// refusal is the answer to give, with the rate-limit headers once the caller was counted.
pub async fn admit(services: &Services, token: Option<&str>, instance: &str) -> Result<Admitted, Response> {
    let caller = services.auth.resolve(token).await.map_err(|e| ApiError::from(e).into_response())?;
    let decision = services
        .limiter
        .check(&caller, Bucket::Requests)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let refusal = if decision.allowed {
        match services.instances.open_websocket(&caller, instance).await {
            Ok(instance) => return Ok(Admitted { instance, decision }),
            Err(error) => ApiError::from(error),
        }
    } else {
        ApiError::rate_limited()
    };
    let mut refusal = refusal.into_response();
    crate::auth::stamp_rate_headers(refusal.headers_mut(), &decision);
    Err(refusal)
}

struct Subscriber {
    id: u64,
    frames: mpsc::Sender<Arc<str>>,
}

/// The sockets open in this process, by instance.
#[derive(Default)]
pub struct LiveHub {
    sockets: Mutex<HashMap<InstanceId, Vec<Subscriber>>>,
    next_id: AtomicU64,
}

impl LiveHub {
    /// A new socket's queue of frames for `instance`, and its id for [`LiveHub::unsubscribe`].
    pub fn subscribe(&self, instance: &InstanceId) -> (u64, mpsc::Receiver<Arc<str>>) {
        let (frames, receiver) = mpsc::channel(SOCKET_BACKLOG);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut sockets) = self.sockets.lock() {
            sockets.entry(instance.clone()).or_default().push(Subscriber { id, frames });
        }
        (id, receiver)
    }

    pub fn unsubscribe(&self, instance: &InstanceId, id: u64) {
        if let Ok(mut sockets) = self.sockets.lock()
            && let Some(subscribers) = sockets.get_mut(instance)
        {
            subscribers.retain(|s| s.id != id);
            if subscribers.is_empty() {
                sockets.remove(instance);
            }
        }
    }

    /// Sockets open for `instance`.
    pub fn open_sockets(&self, instance: &InstanceId) -> usize {
        self.sockets.lock().map(|s| s.get(instance).map_or(0, Vec::len)).unwrap_or(0)
    }
}

#[async_trait]
impl LiveEvents for LiveHub {
    async fn publish(&self, instance: &Instance, frame: Arc<str>) {
        let Ok(mut sockets) = self.sockets.lock() else { return };
        let Some(subscribers) = sockets.get_mut(&instance.id) else { return };
        // A full queue is a socket that stopped reading: dropping its sender closes it.
        subscribers.retain(|s| match s.frames.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(instance = %instance.id, "websocket too slow: dropped");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ryze_core::domain::{AccountId, InstanceName};
    use ryze_core::secrets::{Keyring, MasterKey};

    fn instance() -> Instance {
        let keys = Keyring::new(&MasterKey::generate());
        Instance::new(
            AccountId::generate(),
            InstanceName::parse("i").unwrap(),
            "token-123456",
            &keys,
            chrono::Utc::now(),
        )
    }

    #[tokio::test]
    async fn a_socket_that_stops_reading_is_dropped_and_the_others_keep_theirs() {
        let hub = LiveHub::default();
        let instance = instance();
        let (_, mut reading) = hub.subscribe(&instance.id);
        let (_, mut stalled) = hub.subscribe(&instance.id);
        for n in 0..=SOCKET_BACKLOG {
            hub.publish(&instance, format!("{n}").into()).await;
            assert_eq!(reading.recv().await.as_deref(), Some(format!("{n}").as_str()));
        }
        assert_eq!(hub.open_sockets(&instance.id), 1, "the stalled socket was dropped");
        for _ in 0..SOCKET_BACKLOG {
            assert!(stalled.recv().await.is_some(), "it keeps what it had queued");
        }
        assert!(stalled.recv().await.is_none(), "then its stream ends, which closes the socket");
        hub.publish(&instance, "more".into()).await;
        assert_eq!(reading.recv().await.as_deref(), Some("more"));
    }
}
