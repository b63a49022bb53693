//! The dispatcher: turns each published event into webhook deliveries and WebSocket frames, and makes
//! each delivery attempt. One piece of code with two runtimes: a task in `ryze serve` and the
//! `dispatcher` Lambda function on AWS, both calling [`Dispatcher::on_event`] and
//! [`Dispatcher::on_attempt`] for the messages of their queues.
//!
//! Why it is shaped so (API.md "Webhooks"):
//! - Every event becomes one delivery per matching webhook, each with its own record and its own
//!   attempts, so a failing receiver never repeats or delays another's deliveries.
//! - First attempts are queued in a group per webhook: one instance's events reach one webhook in
//!   the order they happened. Retries are queued ungrouped, so a pending retry holds nothing back.
//! - The schedule lives in the delivery record and the attempt message (its number and due time),
//!   not in a process's memory: a restart loses no retry. Waits longer than the queue can delay
//!   (SQS: 15 minutes) are a chain of delayed re-sends, each hop checking the due time; so the
//!   27-hour schedule holds on SQS without a sweeper or a visibility timeout past its 12-hour cap.
//! - An attempt message whose number does not follow the record's count is stale and dropped, and
//!   outcomes are written conditionally on the record's revision, so a redelivered message after a
//!   crash may repeat one POST (same `webhook-id`) but never forks the schedule.
//! - The outcome is written before what follows it is queued. A crash between the two leaves the
//!   attempt's message unacknowledged: handed out again, it finds its outcome recorded and queues
//!   the follow-up (the next attempt, or the dead-letter queue) once more. Only a message received
//!   more than once does so, so a spare follow-up is dropped as stale rather than multiplying.

mod runner;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::Clock;
use crate::domain::{
    DeliveryAttempt, DeliveryRecord, DeliveryStatus, Event, EventKind, Instance, InstanceChange,
    RetrySchedule, WebhookConfig,
};
use crate::ports::{DeliveryLog, DeliveryQueue, InstanceRegistry, SendOptions};
use crate::secrets::{Keyring, Purpose};
use crate::{Error, Result};

pub use runner::CONCURRENT_ATTEMPTS;

/// A 2xx within this bound is success (API.md).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// One POST to a receiver.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// How the dispatcher reaches receivers: the target-guarded outbound client in deployments.
#[async_trait]
pub trait WebhookTransport: Send + Sync {
    /// The answer's status, or why there was none (refused target, timeout, connection failure).
    async fn post(&self, request: WebhookRequest) -> std::result::Result<u16, String>;
}

/// Where WebSocket frames go: the local hub in `ryze serve`, API Gateway connections on AWS.
#[async_trait]
pub trait LiveEvents: Send + Sync {
    /// Sends `frame` (the envelope) to every socket open for the instance.
    async fn publish(&self, instance: &Instance, frame: Arc<str>);
}

/// What the dispatcher needs, built once per process.
pub struct DispatcherConfig {
    pub schedule: RetrySchedule,
    /// `instanceData.baseUrl`: the deployment's public API URL (`RYZE_PUBLIC_URL`).
    pub public_url: String,
}

pub struct Dispatcher {
    registry: Arc<dyn InstanceRegistry>,
    log: Arc<dyn DeliveryLog>,
    deliveries: Arc<DeliveryQueue>,
    dead: Arc<DeliveryQueue>,
    keys: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    transport: Arc<dyn WebhookTransport>,
    live: Option<Arc<dyn LiveEvents>>,
    config: DispatcherConfig,
}

/// How one attempt ended.
enum Outcome {
    Delivered(u16),
    /// 410 Gone: the receiver asks to be forgotten.
    Gone,
    Failed {
        status: Option<u16>,
        error: String,
    },
    /// The webhook is no longer there to deliver to.
    Abandoned(&'static str),
}

impl Dispatcher {
    pub fn new(
        ports: &crate::ports::Ports,
        keys: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        transport: Arc<dyn WebhookTransport>,
        live: Option<Arc<dyn LiveEvents>>,
        config: DispatcherConfig,
    ) -> Self {
        Self {
            registry: ports.registry.clone(),
            log: ports.delivery_log.clone(),
            deliveries: ports.deliveries.clone(),
            dead: ports.dead_deliveries.clone(),
            keys,
            clock,
            transport,
            live,
            config,
        }
    }

    /// Expands a published event: a frame for the instance's open sockets, and a delivery (record and
    /// first attempt) per enabled webhook that wants it. Handling an event twice (a redelivered
    /// message) creates nothing twice. An error leaves the event for its queue to deliver again.
    #[tracing::instrument(skip_all, fields(instance = %event.instance, event = event.event.as_str()))]
    pub async fn on_event(&self, event: &Event) -> Result<()> {
        let Some(instance) = self.registry.instance(&event.instance).await? else {
            return Ok(()); // deleted since: nobody to tell
        };
        if let Some(live) = &self.live
            && let Some(websocket) = instance.websocket.as_ref().filter(|w| w.enabled)
            && wants(&websocket.events, event.event)
        {
            let frame = self.envelope(&instance, event)?;
            live.publish(&instance, String::from_utf8_lossy(&frame).into()).await;
        }
        let now = self.clock.now();
        let first_wait = self.config.schedule.wait_before(1).unwrap_or_default();
        for webhook in instance.webhooks.iter().filter(|w| w.wants(event.event)) {
            let record = DeliveryRecord::new(event, &webhook.label, now + first_wait, now);
            // Known already: handled before a crash. Its first attempt is queued again only if
            // nothing came of it, since the crash may have come between the record and the send.
            let schedule = self.log.insert(&record).await?
                || self
                    .log
                    .get(&record.key)
                    .await?
                    .is_some_and(|r| r.status == DeliveryStatus::Pending && r.attempts == 0);
            if schedule {
                let lane = format!("{}/{}", instance.id, webhook.label);
                let options = SendOptions { group: Some(lane), delay: Duration::ZERO };
                self.deliveries.send_with(&record.next_attempt(), options).await?;
            }
        }
        Ok(())
    }

    /// Makes one attempt of a delivery, records its outcome, and schedules what follows: the next
    /// attempt, or the dead-letter queue. `receives` is how many times the queue has handed this
    /// message out. An error leaves the message for its queue to deliver again.
    #[tracing::instrument(skip_all, fields(instance = %attempt.key.instance, label = %attempt.key.label, attempt = attempt.attempt))]
    pub async fn on_attempt(&self, attempt: &DeliveryAttempt, receives: u32) -> Result<()> {
        let Some(mut record) = self.log.get(&attempt.key).await? else { return Ok(()) };
        if receives > 1 && record.attempts == attempt.attempt {
            // Recorded by a receiver that may have stopped before queueing what follows.
            return self.follow_up(&record).await;
        }
        let open = matches!(record.status, DeliveryStatus::Pending | DeliveryStatus::Failed);
        if !open || record.attempts + 1 != attempt.attempt {
            tracing::debug!(
                status = record.status.as_str(),
                attempts = record.attempts,
                "stale attempt dropped"
            );
            return Ok(());
        }
        let now = self.clock.now();
        if let Some(wait) = remaining(attempt.due_at, now) {
            // Not due yet: the queue could not delay it that long. Another hop.
            return self.schedule(attempt.clone(), wait).await;
        }
        let instance = self.registry.instance(&attempt.key.instance).await?;
        let Some(instance) = instance else { return Ok(()) };
        let outcome = match instance.webhooks.iter().find(|w| w.label == attempt.key.label) {
            Some(webhook) if webhook.enabled => self.post(&instance, webhook, &record).await?,
            Some(_) => Outcome::Abandoned("webhook disabled"),
            None => Outcome::Abandoned("webhook removed"),
        };

        let expected = record.revision;
        record.revision += 1;
        record.attempts += 1;
        record.updated_at = self.clock.now();
        record.next_attempt_at = None;
        match outcome {
            Outcome::Delivered(status) => {
                record.status = DeliveryStatus::Delivered;
                record.last_status_code = Some(status);
                record.last_error = None;
            }
            Outcome::Gone => {
                let reason = "receiver answered 410 Gone: webhook disabled".to_owned();
                let change = InstanceChange::DisableWebhook {
                    label: attempt.key.label.clone(),
                    reason: reason.clone(),
                };
                match self.registry.update_instance(&instance.id, change, record.updated_at).await {
                    Ok(_) | Err(Error::InstanceNotFound) => {}
                    Err(error) => return Err(error),
                }
                tracing::warn!("receiver answered 410: webhook disabled");
                record.status = DeliveryStatus::Dead;
                record.last_status_code = Some(410);
                record.last_error = Some(reason);
            }
            Outcome::Abandoned(reason) => {
                record.status = DeliveryStatus::Dead;
                record.last_error = Some(reason.into());
            }
            Outcome::Failed { status, error } => {
                record.last_status_code = status;
                record.last_error = Some(error);
                match self.config.schedule.wait_before(record.attempts + 1) {
                    Some(wait) => {
                        record.status = DeliveryStatus::Failed;
                        record.next_attempt_at = Some(record.updated_at + wait);
                    }
                    None => record.status = DeliveryStatus::Dead,
                }
            }
        }
        if !self.log.update(&record, expected).await? {
            tracing::debug!("another worker recorded this attempt first");
            return Ok(());
        }
        if record.status == DeliveryStatus::Dead {
            tracing::warn!(attempts = record.attempts, error = ?record.last_error, "delivery dead");
        }
        self.follow_up(&record).await
    }

    /// Queues what follows a recorded outcome: the next attempt of a failed delivery (at its due
    /// time), the dead-letter queue for a dead one, nothing for a delivered one.
    async fn follow_up(&self, record: &DeliveryRecord) -> Result<()> {
        match record.status {
            DeliveryStatus::Failed => {
                let due = record.next_attempt_at.unwrap_or(record.updated_at);
                let wait = remaining(due, self.clock.now()).unwrap_or_default();
                self.schedule(record.next_attempt(), wait).await
            }
            DeliveryStatus::Dead => self.dead.send(&record.next_attempt()).await,
            DeliveryStatus::Pending | DeliveryStatus::Delivered => Ok(()),
        }
    }

    async fn schedule(&self, attempt: DeliveryAttempt, wait: Duration) -> Result<()> {
        let delay = wait.min(self.deliveries.max_delay());
        self.deliveries.send_with(&attempt, SendOptions { group: None, delay }).await
    }

    async fn post(
        &self,
        instance: &Instance,
        webhook: &WebhookConfig,
        record: &DeliveryRecord,
    ) -> Result<Outcome> {
        let body = self.envelope(instance, &record.event)?;
        let timestamp = self.clock.now().timestamp().to_string();
        let mut signatures = Vec::new();
        for sealed in webhook.live_secrets(self.clock.now()) {
            let secret = self.keys.open(Purpose::WebhookSigningSecret, sealed)?;
            signatures.push(sign(&secret, &record.key.event_id, &timestamp, &body)?);
        }
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("webhook-id", record.key.event_id.clone()),
            ("webhook-timestamp", timestamp),
        ];
        if !signatures.is_empty() {
            headers.push(("webhook-signature", signatures.join(" ")));
        }
        if let Some(authorization) = &webhook.authorization {
            headers.push(("authorization", self.keys.open(Purpose::WebhookAuthorization, authorization)?));
        }
        let request = WebhookRequest {
            url: self.target_url(webhook, record.kind())?,
            headers,
            body,
            timeout: ATTEMPT_TIMEOUT,
        };
        Ok(match self.transport.post(request).await {
            Ok(status) if (200..300).contains(&status) => Outcome::Delivered(status),
            Ok(410) => Outcome::Gone,
            Ok(status) => {
                Outcome::Failed { status: Some(status), error: format!("receiver answered {status}") }
            }
            Err(error) => Outcome::Failed { status: None, error },
        })
    }

    /// The webhook's URL, with its credentials put back and `/<event>` appended for `byEvents`.
    fn target_url(&self, webhook: &WebhookConfig, kind: EventKind) -> Result<String> {
        let mut url = url::Url::parse(&webhook.url).map_err(Error::storage)?;
        if let Some(sealed) = &webhook.url_credentials {
            let credentials = self.keys.open(Purpose::WebhookUrlCredentials, sealed)?;
            let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
            let _ = url.set_username(user);
            let _ = url.set_password((!password.is_empty()).then_some(password));
        }
        if webhook.by_events {
            let path = format!("{}/{}", url.path().trim_end_matches('/'), kind.as_str());
            url.set_path(&path);
        }
        Ok(url.into())
    }

    /// The envelope as sent: the event with `instanceData` (name and token) filled in now.
    fn envelope(&self, instance: &Instance, event: &Event) -> Result<Vec<u8>> {
        let envelope = serde_json::json!({
            "id": event.id,
            "event": event.event,
            "timestamp": event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": event.data,
            "instanceData": {
                "baseUrl": self.config.public_url,
                "instance": instance.name,
                "token": self.keys.open(Purpose::InstanceToken, &instance.token)?,
            },
        });
        serde_json::to_vec(&envelope).map_err(Error::storage)
    }
}

#[async_trait]
impl WebhookTransport for crate::outbound::OutboundClient {
    async fn post(&self, request: WebhookRequest) -> std::result::Result<u16, String> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in request.headers {
            let value =
                http::HeaderValue::from_str(&value).map_err(|_| format!("header {name} is not valid"))?;
            headers.insert(http::HeaderName::from_static(name), value);
        }
        match self.post_json(&request.url, &headers, request.body, request.timeout).await {
            Ok(response) => Ok(response.status),
            Err(error) => Err(error.to_string()),
        }
    }
}

fn wants(events: &[EventKind], kind: EventKind) -> bool {
    events.is_empty() || events.contains(&kind)
}

/// How long until `due`, if it is more than a moment away.
fn remaining(due: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    let wait = (due - now).to_std().ok()?;
    (wait > Duration::from_millis(500)).then_some(wait)
}

/// A Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`,
/// keyed with the base64-decoded part of the secret after `whsec_`.
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Result<String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| Error::storage("a signing secret is not base64"))?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(Error::storage)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The worked example of the Standard Webhooks specification.
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn near_due_times_count_as_due() {
        let now = Utc::now();
        assert_eq!(remaining(now, now), None);
        assert_eq!(remaining(now - chrono::Duration::seconds(5), now), None);
        assert_eq!(remaining(now + chrono::Duration::seconds(60), now), Some(Duration::from_secs(60)));
    }
}
