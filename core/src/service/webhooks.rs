//! The events API's rules: webhooks (up to three enabled, by label), the WebSocket configuration,
//! the delivery log and redeliveries.
//!
//! Secrets are sealed the moment they arrive: the webhook's `Authorization`, the `user:password` a
//! URL may carry, and the signing secrets, which are shown in clear only in the answer that issued
//! them. A rotated-out signing secret keeps signing beside the new one for [`ROTATION_OVERLAP`], so
//! receivers can switch without missing a delivery.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::InstanceService;
use super::inputs::{dedup, http_url, text};
use crate::domain::{
    DeliveryFilter, DeliveryRecord, DeliveryStatus, EventKind, InstanceChange, SigningSecret, WebhookConfig,
    WebsocketConfig,
};
use crate::ports::SendOptions;
use crate::secrets::{Keyring, Purpose, generate_signing_secret};
use crate::service::Caller;
use crate::{Error, Result};

/// How long a rotated-out signing secret keeps signing.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

/// The most deliveries the log shows at once.
pub const DELIVERY_PAGE: usize = 100;

/// `POST /api/events/webhook/{instance}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookInput {
    /// 1 to 32 of letters, digits, `-` and `_`; `default` when omitted.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub label: Option<String>,
    #[schema(required = true, nullable = false)]
    pub enabled: Option<bool>,
    #[schema(schema_with = super::fields::http_url_schema)]
    pub url: Option<String>,
    /// Sent as the `Authorization` header of every delivery.
    #[schema(schema_with = super::fields::text_schema)]
    pub authorization: Option<String>,
    pub by_events: Option<bool>,
    pub events: Option<Vec<EventKind>>,
    pub media_base64: Option<bool>,
    /// Issues a new signing secret; the old one keeps signing beside it for 24 hours.
    pub rotate_secret: Option<bool>,
}

/// `POST /api/events/websocket/{instance}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebsocketInput {
    #[schema(required = true, nullable = false)]
    pub enabled: Option<bool>,
    pub events: Option<Vec<EventKind>>,
    pub media_base64: Option<bool>,
}

/// `POST /api/events/redeliver/{instance}`: one event (`id`, optionally one `label`), or every dead
/// delivery (`status: "dead"`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedeliverInput {
    pub id: Option<String>,
    pub label: Option<String>,
    /// Only `dead`.
    pub status: Option<String>,
}

impl WebhookInput {
    /// What an enabled webhook needs, for the OpenAPI document; `into_config` enforces it.
    pub const REQUIRED_WHEN_ENABLED: &[(&str, &[&str])] = &[("enabled", &["url"])];
}

/// A webhook as stored, and its new signing secret in clear when this write issued one.
#[derive(Debug)]
pub struct ConfiguredWebhook {
    pub webhook: WebhookConfig,
    pub new_secret: Option<String>,
    /// Why its URL cannot be reached from here, if it cannot (checked when it is written).
    pub unreachable: Option<String>,
}

/// Names fields as the body that carried them does: `webhookURL` inline on create, `url` on its own.
#[derive(Clone, Copy)]
pub(crate) struct WebhookFields {
    url: &'static str,
    authorization: &'static str,
    /// API.md words the events endpoint's URL error exactly (`Invalid field: url`), with no detail.
    bare_url_error: bool,
}

pub(crate) const INLINE_WEBHOOK: WebhookFields =
    WebhookFields { url: "webhookURL", authorization: "webhookAuthorization", bare_url_error: false };
const STANDALONE_WEBHOOK: WebhookFields =
    WebhookFields { url: "url", authorization: "authorization", bare_url_error: true };

fn label(value: Option<String>) -> Result<String> {
    let label = value.unwrap_or_else(|| WebhookConfig::DEFAULT_LABEL.into());
    let valid = (1..=32).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if valid { Ok(label) } else { Err(Error::invalid_because("label", "1 to 32 of A-Z a-z 0-9 - _")) }
}

/// A URL without its `user:password`, and those credentials.
fn split_credentials(url: &str, field: &'static str) -> Result<(String, Option<String>)> {
    let mut parsed = url::Url::parse(url).map_err(|_| Error::invalid(field))?;
    if parsed.username().is_empty() && parsed.password().is_none() {
        return Ok((url.to_owned(), None));
    }
    let credentials = format!("{}:{}", parsed.username(), parsed.password().unwrap_or_default());
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed.into(), Some(credentials)))
}

impl WebhookInput {
    /// Validates a webhook write against the row it replaces. Everything but the signing secrets is
    /// overwritten; a disabled webhook keeps only its label and secrets.
    pub(crate) fn into_config(
        self,
        existing: Option<&WebhookConfig>,
        fields: WebhookFields,
        keys: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<Option<ConfiguredWebhook>> {
        let label = label(self.label)?;
        let Some(enabled) = self.enabled else {
            return Err(Error::MissingField { field: "enabled" });
        };
        // Validated whether enabled or not: a value sent is never silently dropped.
        let url = http_url(self.url, fields.url)
            .map_err(|error| if fields.bare_url_error { Error::invalid(fields.url) } else { error })?;
        let authorization = text(self.authorization, fields.authorization)?;
        let events = dedup(self.events.unwrap_or_default());
        if enabled && url.is_none() {
            return Err(Error::MissingField { field: fields.url });
        }

        let mut secrets = existing.map(|w| w.signing_secrets.clone()).unwrap_or_default();
        secrets.retain(|s| s.retires_at.is_none_or(|at| at > now));
        let mut new_secret = None;
        if secrets.is_empty() || self.rotate_secret == Some(true) {
            for old in secrets.iter_mut().filter(|s| s.retires_at.is_none()) {
                old.retires_at = Some(now + ROTATION_OVERLAP);
            }
            let secret = generate_signing_secret();
            secrets.insert(
                0,
                SigningSecret { secret: keys.seal(Purpose::WebhookSigningSecret, &secret), retires_at: None },
            );
            new_secret = Some(secret);
        }

        let webhook = if enabled {
            let (url, credentials) = split_credentials(&url.unwrap_or_default(), fields.url)?;
            WebhookConfig {
                label,
                enabled,
                url,
                url_credentials: credentials.map(|c| keys.seal(Purpose::WebhookUrlCredentials, &c)),
                authorization: authorization.map(|a| keys.seal(Purpose::WebhookAuthorization, &a)),
                by_events: self.by_events.unwrap_or(false),
                events,
                media_base64: self.media_base64.unwrap_or(false),
                signing_secrets: secrets,
                disabled_reason: None,
            }
        } else {
            WebhookConfig {
                label,
                enabled,
                url: String::new(),
                url_credentials: None,
                authorization: None,
                by_events: self.by_events.unwrap_or(false),
                events: Vec::new(),
                media_base64: self.media_base64.unwrap_or(false),
                signing_secrets: secrets,
                disabled_reason: None,
            }
        };
        Ok(Some(ConfiguredWebhook { webhook, new_secret, unreachable: None }))
    }
}

impl InstanceService {
    /// Writes one webhook (upsert by label), within the three-enabled limit.
    pub async fn configure_webhook(
        &self,
        caller: &Caller,
        name: &str,
        input: WebhookInput,
    ) -> Result<ConfiguredWebhook> {
        let instance = self.target(caller, name).await?;
        let label = label(input.label.clone())?;
        let existing = instance.webhooks.iter().find(|w| w.label == label);
        let Some(configured) =
            input.into_config(existing, STANDALONE_WEBHOOK, &self.keys, self.clock.now())?
        else {
            return Err(Error::MissingField { field: "enabled" });
        };
        let others_enabled = instance.webhooks.iter().filter(|w| w.enabled && w.label != label).count();
        if configured.webhook.enabled && others_enabled >= WebhookConfig::MAX_ENABLED {
            return Err(Error::WebhookLimit);
        }
        let updated = self.change(&instance, InstanceChange::UpsertWebhook(configured.webhook)).await?;
        let webhook =
            updated.webhooks.iter().find(|w| w.label == label).cloned().ok_or(Error::WebhookNotFound)?;
        tracing::info!(instance = %instance.id, label, enabled = webhook.enabled, "webhook configured");
        let unreachable = match webhook.enabled {
            true => self.outbound.check_url(&webhook.url).await.err().map(|e| e.to_string()),
            false => None,
        };
        Ok(ConfiguredWebhook { webhook, new_secret: configured.new_secret, unreachable })
    }

    /// Every webhook row of the instance, sorted by label.
    pub async fn webhooks(&self, caller: &Caller, name: &str) -> Result<Vec<WebhookConfig>> {
        let mut webhooks = self.target(caller, name).await?.webhooks.clone();
        webhooks.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(webhooks)
    }

    pub async fn webhook(&self, caller: &Caller, name: &str, label: &str) -> Result<WebhookConfig> {
        let instance = self.target(caller, name).await?;
        instance.webhooks.iter().find(|w| w.label == label).cloned().ok_or(Error::WebhookNotFound)
    }

    pub async fn configure_websocket(
        &self,
        caller: &Caller,
        name: &str,
        input: WebsocketInput,
    ) -> Result<WebsocketConfig> {
        let instance = self.target(caller, name).await?;
        let enabled = input.enabled.ok_or(Error::MissingField { field: "enabled" })?;
        let websocket = WebsocketConfig {
            enabled,
            events: if enabled { dedup(input.events.unwrap_or_default()) } else { Vec::new() },
            media_base64: input.media_base64.unwrap_or(false),
        };
        let updated = self.change(&instance, InstanceChange::Websocket(websocket)).await?;
        updated.websocket.clone().ok_or(Error::WebsocketNotConfigured)
    }

    /// The instance whose WebSocket the caller may open: `WebsocketDisabled` unless it is enabled.
    pub async fn open_websocket(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<std::sync::Arc<crate::domain::Instance>> {
        let instance = self.target(caller, name).await?;
        if instance.websocket.as_ref().is_some_and(|w| w.enabled) {
            Ok(instance)
        } else {
            Err(Error::WebsocketDisabled(instance.name.clone()))
        }
    }

    pub async fn websocket(&self, caller: &Caller, name: &str) -> Result<WebsocketConfig> {
        self.target(caller, name).await?.websocket.clone().ok_or(Error::WebsocketNotConfigured)
    }

    /// The latest deliveries (at most [`DELIVERY_PAGE`]), newest first.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        name: &str,
        label: Option<String>,
        status: Option<&str>,
    ) -> Result<Vec<DeliveryRecord>> {
        let instance = self.target(caller, name).await?;
        let status = status
            .map(|s| {
                DeliveryStatus::parse(s)
                    .ok_or_else(|| Error::invalid_because("status", "pending, failed, delivered or dead"))
            })
            .transpose()?;
        let filter = DeliveryFilter { label, status };
        self.ports.delivery_log.list(&instance.id, &filter, DELIVERY_PAGE).await
    }

    /// Starts deliveries over: those of one event, or every dead one. Returns how many.
    pub async fn redeliver(&self, caller: &Caller, name: &str, input: RedeliverInput) -> Result<usize> {
        let instance = self.target(caller, name).await?;
        let records = match (input.id, input.status.as_deref()) {
            (Some(id), None) => {
                let mut records = self.ports.delivery_log.of_event(&instance.id, &id).await?;
                records.retain(|r| input.label.as_ref().is_none_or(|label| *label == r.key.label));
                if records.is_empty() {
                    return Err(Error::DeliveryNotFound);
                }
                records
            }
            (None, Some("dead")) => {
                let filter = DeliveryFilter { label: input.label, status: Some(DeliveryStatus::Dead) };
                self.ports.delivery_log.list(&instance.id, &filter, usize::MAX).await?
            }
            (None, Some(_)) => return Err(Error::invalid_because("status", "only dead")),
            (Some(_), Some(_)) => return Err(Error::invalid_because("status", "give either id or status")),
            (None, None) => return Err(Error::MissingField { field: "id" }),
        };
        let mut count = 0;
        for record in records {
            if restart_delivery(&self.ports, record, self.clock.now()).await? {
                count += 1;
            }
        }
        tracing::info!(instance = %instance.id, count, "redelivery scheduled");
        Ok(count)
    }
}

/// Starts a delivery's schedule over: recorded as pending with no attempts, its first attempt queued
/// now. `false` when another writer changed the record meanwhile.
pub async fn restart_delivery(
    ports: &crate::ports::Ports,
    mut record: DeliveryRecord,
    now: DateTime<Utc>,
) -> Result<bool> {
    let expected = record.revision;
    record.revision += 1;
    record.restart(now);
    if !ports.delivery_log.update(&record, expected).await? {
        return Ok(false);
    }
    let options = SendOptions { group: None, delay: Duration::ZERO };
    ports.deliveries.send_with(&record.next_attempt(), options).await?;
    Ok(true)
}

/// Moves dead deliveries back from the dead-letter queue: each starts its schedule over. With
/// `instance` (an instance's id or name), only that instance's; the others stay in the queue.
/// Returns how many were started over. Letters whose delivery is no longer dead (redelivered
/// through the API meanwhile) are dropped.
pub async fn redrive(
    ports: &crate::ports::Ports,
    instance: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut count = 0;
    let mut kept = Vec::new();
    let mut empty_polls = 0;
    // SQS may answer a short poll empty while messages remain: stop after two empty polls.
    while empty_polls < 2 {
        let letters = ports.dead_deliveries.receive(10, Duration::from_millis(500)).await?;
        if letters.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        for letter in letters {
            let key = &letter.message.key;
            if let Some(wanted) = instance {
                let owner = ports.registry.instance(&key.instance).await?;
                let matches =
                    key.instance.as_str() == wanted || owner.is_some_and(|i| i.name.as_str() == wanted);
                if !matches {
                    kept.push(letter.receipt);
                    continue;
                }
            }
            let restarted = match ports.delivery_log.get(key).await? {
                Some(record) if record.status == DeliveryStatus::Dead => {
                    restart_delivery(ports, record, now).await?
                }
                // Restarted by a redrive that stopped before queueing the first attempt (its letter
                // came back unacknowledged): queued now. A spare first attempt is dropped as stale.
                Some(record)
                    if letter.receives > 1
                        && record.status == DeliveryStatus::Pending
                        && record.attempts == 0 =>
                {
                    ports.deliveries.send(&record.next_attempt()).await?;
                    true
                }
                _ => false,
            };
            count += usize::from(restarted);
            ports.dead_deliveries.ack(&letter.receipt).await?;
        }
    }
    for receipt in kept {
        ports.dead_deliveries.release(&receipt).await?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;

    fn input(body: serde_json::Value) -> WebhookInput {
        serde_json::from_value(body).expect("body parses")
    }

    #[test]
    fn labels_are_checked_and_default_to_default() {
        assert_eq!(label(None).unwrap(), "default");
        assert_eq!(label(Some("a-b_9".into())).unwrap(), "a-b_9");
        for bad in ["", "a b", "x".repeat(33).as_str(), "é"] {
            assert!(label(Some(bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_credentials_are_taken_out_and_sealed() {
        let keys = Keyring::new(&MasterKey::generate());
        let now = Utc::now();
        let configured =
            input(serde_json::json!({"enabled": true, "url": "https://user:pass@hooks.example/x"}))
                .into_config(None, STANDALONE_WEBHOOK, &keys, now)
                .unwrap()
                .unwrap();
        assert_eq!(configured.webhook.url, "https://hooks.example/x");
        let sealed = configured.webhook.url_credentials.unwrap();
        assert_eq!(keys.open(Purpose::WebhookUrlCredentials, &sealed).unwrap(), "user:pass");
        assert!(!serde_json::to_string(&configured.webhook.signing_secrets).unwrap().contains("whsec_"));
        assert!(configured.new_secret.unwrap().starts_with("whsec_"));
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_a_day() {
        let keys = Keyring::new(&MasterKey::generate());
        let now = Utc::now();
        let first = input(serde_json::json!({"enabled": true, "url": "https://h.example"}))
            .into_config(None, STANDALONE_WEBHOOK, &keys, now)
            .unwrap()
            .unwrap();
        let same = input(serde_json::json!({"enabled": true, "url": "https://h.example"}))
            .into_config(Some(&first.webhook), STANDALONE_WEBHOOK, &keys, now)
            .unwrap()
            .unwrap();
        assert!(same.new_secret.is_none(), "an overwrite keeps the secret");
        let rotated =
            input(serde_json::json!({"enabled": true, "url": "https://h.example", "rotateSecret": true}))
                .into_config(Some(&same.webhook), STANDALONE_WEBHOOK, &keys, now)
                .unwrap()
                .unwrap();
        assert!(rotated.new_secret.is_some());
        assert_eq!(rotated.webhook.live_secrets(now).count(), 2);
        assert_eq!(
            rotated.webhook.live_secrets(now + ROTATION_OVERLAP + chrono::Duration::seconds(1)).count(),
            1
        );
    }

    #[test]
    fn enabled_is_required_and_an_enabled_webhook_needs_a_url() {
        let keys = Keyring::new(&MasterKey::generate());
        let now = Utc::now();
        let missing = input(serde_json::json!({"url": "https://h.example"})).into_config(
            None,
            STANDALONE_WEBHOOK,
            &keys,
            now,
        );
        assert!(matches!(missing, Err(Error::MissingField { field: "enabled" })));
        let no_url =
            input(serde_json::json!({"enabled": true})).into_config(None, STANDALONE_WEBHOOK, &keys, now);
        assert!(matches!(no_url, Err(Error::MissingField { field: "url" })));
        let bad = input(serde_json::json!({"enabled": false, "url": "ftp://x"})).into_config(
            None,
            STANDALONE_WEBHOOK,
            &keys,
            now,
        );
        assert!(matches!(bad, Err(Error::InvalidField { ref field, detail: None }) if field == "url"));
    }
}
