//! What clients send to create and configure instances, and how it is validated into the domain.
//!
//! Every field is optional at the serde level so that validation, not serde, names what is missing;
//! unknown fields are rejected. Secrets are sealed here, the moment they enter the system.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::{
    AccountId, ChatwootConfig, EventKind, Instance, InstanceName, IntegrationStatus, ProxyConfig,
    ProxyProtocol, S3Config, Settings, SettingsPatch, WebsocketConfig,
};
use crate::secrets::{Keyring, Purpose, generate_token};
use crate::service::webhooks::{INLINE_WEBHOOK, WebhookInput};
use crate::{Error, Result};

/// `POST /api/instance/new`: a flat body in which only `name` is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInstance {
    pub name: Option<String>,
    /// The TokenInstance to use; a random one is generated when absent.
    pub token: Option<String>,
    pub proxy_enabled: Option<bool>,
    pub proxy_host: Option<String>,
    pub proxy_port: Option<PortValue>,
    pub proxy_protocol: Option<String>,
    pub proxy_username: Option<String>,
    pub proxy_password: Option<String>,
    pub webhook_enabled: Option<bool>,
    #[serde(rename = "webhookURL")]
    pub webhook_url: Option<String>,
    pub webhook_authorization: Option<String>,
    pub webhook_by_events: Option<bool>,
    pub webhook_events: Option<Vec<EventKind>>,
    pub webhook_media_base64: Option<bool>,
    pub websocket_enabled: Option<bool>,
    pub websocket_events: Option<Vec<EventKind>>,
    pub websocket_media_base64: Option<bool>,
    pub chatwoot_enabled: Option<bool>,
    pub chatwoot_base_url: Option<String>,
    pub chatwoot_account_id: Option<i64>,
    pub chatwoot_api_token: Option<String>,
    pub chatwoot_inbox_name: Option<String>,
    pub chatwoot_sign_messages: Option<bool>,
    pub chatwoot_ignore_groups: Option<bool>,
    pub chatwoot_start_as_pending: Option<bool>,
    pub chatwoot_reopen_resolved: Option<bool>,
    pub auto_reject_calls: Option<bool>,
    pub call_reject_message: Option<String>,
    pub ignore_group_messages: Option<bool>,
    pub keep_online_status: Option<bool>,
    pub auto_read_messages: Option<bool>,
    pub disable_history_sync: Option<bool>,
    pub ignore_status: Option<bool>,
    pub s3_enabled: Option<bool>,
    pub s3_region: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_path_prefix: Option<String>,
}

/// A port, as the string the contract shows (`"1080"`) or as a number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PortValue {
    Text(String),
    Number(u64),
}

/// `POST /api/instance/proxy/{instance}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyInput {
    pub enabled: Option<bool>,
    pub host: Option<String>,
    pub port: Option<PortValue>,
    /// `http`, `https` or `socks5`.
    pub protocol: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `POST /api/instance/s3/{instance}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Input {
    pub enabled: Option<bool>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Empty or absent means AWS.
    pub endpoint: Option<String>,
    pub path_prefix: Option<String>,
}

/// Names fields as the body that carried them does: `proxyHost` inline on create, `host` on its own.
#[derive(Clone, Copy)]
struct Fields(&'static str);

impl Fields {
    fn name(self, field: &'static str) -> &'static str {
        // Both spellings are static so that `MissingField` stays allocation-free.
        const PAIRS: &[(&str, &str, &str)] = &[
            ("proxy", "host", "proxyHost"),
            ("proxy", "port", "proxyPort"),
            ("proxy", "protocol", "proxyProtocol"),
            ("proxy", "username", "proxyUsername"),
            ("proxy", "password", "proxyPassword"),
            ("s3", "region", "s3Region"),
            ("s3", "bucket", "s3Bucket"),
            ("s3", "accessKey", "s3AccessKey"),
            ("s3", "secretKey", "s3SecretKey"),
            ("s3", "endpoint", "s3Endpoint"),
            ("s3", "pathPrefix", "s3PathPrefix"),
        ];
        PAIRS.iter().find(|(p, f, _)| *p == self.0 && *f == field).map_or(field, |(_, _, full)| full)
    }
}

const INLINE_PROXY: Fields = Fields("proxy");
const INLINE_S3: Fields = Fields("s3");
const STANDALONE: Fields = Fields("");

const MAX_TEXT: usize = 2048;
const DEFAULT_S3_REGION: &str = "us-east-1";

/// A non-empty, trimmed, bounded text value.
pub(crate) fn text(value: Option<String>, field: &'static str) -> Result<Option<String>> {
    match value.map(|v| v.trim().to_owned()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > MAX_TEXT || v.chars().any(char::is_control) => Err(Error::invalid(field)),
        Some(v) => Ok(Some(v)),
    }
}

fn required(value: Option<String>, field: &'static str) -> Result<String> {
    text(value, field)?.ok_or(Error::MissingField { field })
}

pub(crate) fn http_url(value: Option<String>, field: &'static str) -> Result<Option<String>> {
    let Some(value) = text(value, field)? else {
        return Ok(None);
    };
    let parsed = url::Url::parse(&value).map_err(|_| Error::invalid_because(field, "not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::invalid_because(field, "must be an http or https URL"));
    }
    Ok(Some(value))
}

fn port(value: Option<PortValue>, field: &'static str) -> Result<u16> {
    let number = match value.ok_or(Error::MissingField { field })? {
        PortValue::Text(text) => text.trim().parse::<u64>().ok(),
        PortValue::Number(number) => Some(number),
    };
    number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| Error::invalid_because(field, "must be a port from 1 to 65535"))
}

fn host(value: Option<String>, field: &'static str) -> Result<String> {
    let host = required(value, field)?;
    let valid = host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'));
    if valid { Ok(host) } else { Err(Error::invalid_because(field, "not a host name or address")) }
}

fn client_token(value: Option<String>) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(token) if (8..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(token))
        }
        Some(_) => Err(Error::invalid_because("token", "8 to 256 visible ASCII characters")),
    }
}

impl ProxyInput {
    /// `Ok(None)` when the proxy is disabled.
    pub fn into_config(self, keys: &Keyring) -> Result<Option<ProxyConfig>> {
        let enabled = self.enabled.ok_or(Error::MissingField { field: "enabled" })?;
        self.validate(enabled, STANDALONE, keys)
    }

    fn validate(self, enabled: bool, fields: Fields, keys: &Keyring) -> Result<Option<ProxyConfig>> {
        if !enabled {
            return Ok(None);
        }
        let protocol_field = fields.name("protocol");
        let protocol = required(self.protocol, protocol_field)?;
        let protocol = ProxyProtocol::parse(&protocol)
            .ok_or_else(|| Error::invalid_because(protocol_field, "one of http, https, socks5"))?;
        let password = text(self.password, fields.name("password"))?;
        Ok(Some(ProxyConfig {
            host: host(self.host, fields.name("host"))?,
            port: port(self.port, fields.name("port"))?,
            protocol,
            username: text(self.username, fields.name("username"))?,
            password: password.map(|p| keys.seal(Purpose::ProxyPassword, &p)),
        }))
    }
}

impl S3Input {
    /// `Ok(None)` when S3 is disabled (which deletes the stored credentials).
    pub fn into_config(self, keys: &Keyring) -> Result<Option<S3Config>> {
        let enabled = self.enabled.ok_or(Error::MissingField { field: "enabled" })?;
        self.validate(enabled, STANDALONE, keys)
    }

    fn validate(self, enabled: bool, fields: Fields, keys: &Keyring) -> Result<Option<S3Config>> {
        if !enabled {
            return Ok(None);
        }
        let secret = required(self.secret_key, fields.name("secretKey"))?;
        Ok(Some(S3Config {
            region: text(self.region, fields.name("region"))?.unwrap_or_else(|| DEFAULT_S3_REGION.into()),
            bucket: required(self.bucket, fields.name("bucket"))?,
            access_key: required(self.access_key, fields.name("accessKey"))?,
            secret_key: keys.seal(Purpose::S3SecretKey, &secret),
            endpoint: http_url(self.endpoint, fields.name("endpoint"))?,
            path_prefix: text(self.path_prefix, fields.name("pathPrefix"))?
                .map(|p| p.trim_matches('/').to_owned())
                .filter(|p| !p.is_empty()),
        }))
    }
}

/// A validated create: the new record and the token in clear, to be shown once.
pub(crate) struct NewInstance {
    pub instance: Instance,
    pub token: String,
    /// The inline webhook's signing secret, shown once.
    pub signing_secret: Option<String>,
}

impl CreateInstance {
    pub(crate) fn validate(
        self,
        account: &AccountId,
        keys: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<NewInstance> {
        let name =
            self.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).ok_or(Error::NameRequired)?;
        let name = InstanceName::parse(name)?;
        let token = client_token(self.token)?.unwrap_or_else(generate_token);

        let settings = SettingsPatch {
            auto_reject_calls: self.auto_reject_calls,
            call_reject_message: self.call_reject_message,
            ignore_group_messages: self.ignore_group_messages,
            keep_online_status: self.keep_online_status,
            auto_read_messages: self.auto_read_messages,
            disable_history_sync: self.disable_history_sync,
            ignore_status: self.ignore_status,
        };
        let settings =
            if settings.is_empty() { Settings::default() } else { settings.apply(Settings::default())? };

        let proxy = ProxyInput {
            enabled: self.proxy_enabled,
            host: self.proxy_host,
            port: self.proxy_port,
            protocol: self.proxy_protocol,
            username: self.proxy_username,
            password: self.proxy_password,
        }
        .validate(self.proxy_enabled == Some(true), INLINE_PROXY, keys)?;

        let s3 = S3Input {
            enabled: self.s3_enabled,
            region: self.s3_region,
            bucket: self.s3_bucket,
            access_key: self.s3_access_key,
            secret_key: self.s3_secret_key,
            endpoint: self.s3_endpoint,
            path_prefix: self.s3_path_prefix,
        }
        .validate(self.s3_enabled == Some(true), INLINE_S3, keys)?;

        let webhook_sent = self.webhook_url.is_some() || self.webhook_enabled.is_some();
        let webhook = WebhookInput {
            label: None,
            enabled: Some(self.webhook_enabled == Some(true)),
            url: self.webhook_url,
            authorization: self.webhook_authorization,
            by_events: self.webhook_by_events,
            events: self.webhook_events,
            media_base64: self.webhook_media_base64,
            rotate_secret: None,
        }
        .into_config(None, INLINE_WEBHOOK, keys, now)?;
        // Validated even when nothing says to store it: a value sent is never silently dropped.
        let (webhooks, signing_secret) = match webhook {
            Some(configured) if webhook_sent => (vec![configured.webhook], configured.new_secret),
            _ => (Vec::new(), None),
        };

        let websocket_sent = self.websocket_enabled.is_some()
            || self.websocket_events.is_some()
            || self.websocket_media_base64.is_some();
        let websocket = websocket_sent.then(|| WebsocketConfig {
            enabled: self.websocket_enabled.unwrap_or(false),
            events: dedup(self.websocket_events.unwrap_or_default()),
            media_base64: self.websocket_media_base64.unwrap_or(false),
        });

        let chatwoot = if self.chatwoot_enabled == Some(true) {
            let base_url = http_url(self.chatwoot_base_url, "chatwootBaseUrl")?
                .ok_or(Error::MissingField { field: "chatwootBaseUrl" })?;
            let account_id =
                self.chatwoot_account_id.ok_or(Error::MissingField { field: "chatwootAccountId" })?;
            if account_id <= 0 {
                return Err(Error::invalid_because("chatwootAccountId", "must be a positive integer"));
            }
            let api_token = required(self.chatwoot_api_token, "chatwootApiToken")?;
            Some(ChatwootConfig {
                enabled: true,
                base_url,
                account_id,
                api_token: keys.seal(Purpose::ChatwootApiToken, &api_token),
                inbox_name: text(self.chatwoot_inbox_name, "chatwootInboxName")?
                    .unwrap_or_else(|| name.to_string()),
                sign_messages: self.chatwoot_sign_messages.unwrap_or(false),
                ignore_groups: self.chatwoot_ignore_groups.unwrap_or(false),
                start_as_pending: self.chatwoot_start_as_pending.unwrap_or(false),
                reopen_resolved: self.chatwoot_reopen_resolved.unwrap_or(false),
                // Until `InstanceService::create` links it to its inbox.
                status: IntegrationStatus::Ok,
                inbox_id: None,
                last_error: None,
            })
        } else {
            None
        };

        let instance = Instance {
            settings,
            proxy,
            s3,
            webhooks,
            websocket,
            chatwoot,
            ..Instance::new(account.clone(), name, &token, keys, now)
        };
        Ok(NewInstance { instance, token, signing_secret })
    }
}

pub(crate) fn dedup(mut events: Vec<EventKind>) -> Vec<EventKind> {
    let mut seen = Vec::with_capacity(events.len());
    events.retain(|e| {
        let new = !seen.contains(e);
        seen.push(*e);
        new
    });
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;

    fn keys() -> Keyring {
        Keyring::new(&MasterKey::generate())
    }

    fn create(body: serde_json::Value) -> Result<NewInstance> {
        let input: CreateInstance = serde_json::from_value(body).expect("body parses");
        input.validate(&AccountId::generate(), &keys(), Utc::now())
    }

    #[test]
    fn only_the_name_is_required() {
        let created = create(serde_json::json!({"name": "sales"})).unwrap();
        assert_eq!(created.instance.name.as_str(), "sales");
        assert_eq!(created.instance.settings, Settings::default());
        assert!(created.instance.proxy.is_none() && created.instance.webhooks.is_empty());
        assert!(matches!(create(serde_json::json!({})), Err(Error::NameRequired)));
        assert!(matches!(create(serde_json::json!({"name": "  "})), Err(Error::NameRequired)));
        assert!(matches!(create(serde_json::json!({"name": "a b"})), Err(Error::InvalidName)));
    }

    #[test]
    fn an_enabled_proxy_needs_host_port_and_protocol() {
        let err = create(serde_json::json!({"name": "a", "proxyEnabled": true, "proxyPort": "1080",
            "proxyProtocol": "socks5"}));
        assert!(matches!(err, Err(Error::MissingField { field: "proxyHost" })));
        let err = create(serde_json::json!({"name": "a", "proxyEnabled": true, "proxyHost": "p",
            "proxyPort": "99999", "proxyProtocol": "socks5"}));
        assert!(matches!(err, Err(Error::InvalidField { ref field, .. }) if field == "proxyPort"));
        let err = create(serde_json::json!({"name": "a", "proxyEnabled": true, "proxyHost": "p",
            "proxyPort": "1080", "proxyProtocol": "ftp"}));
        assert!(matches!(err, Err(Error::InvalidField { ref field, .. }) if field == "proxyProtocol"));
        let ok = create(serde_json::json!({"name": "a", "proxyEnabled": true, "proxyHost": "10.0.0.1",
            "proxyPort": 1080, "proxyProtocol": "SOCKS5", "proxyPassword": "pw"}))
        .unwrap();
        let proxy = ok.instance.proxy.unwrap();
        assert_eq!((proxy.port, proxy.protocol), (1080, ProxyProtocol::Socks5));
        assert!(!proxy.password.unwrap().as_str().contains("pw"));
    }

    #[test]
    fn secrets_are_sealed_on_the_way_in() {
        let created = create(serde_json::json!({"name": "a", "webhookEnabled": true,
            "webhookURL": "https://hooks.example/x", "webhookAuthorization": "Bearer topsecret",
            "chatwootEnabled": true, "chatwootBaseUrl": "https://cw.example", "chatwootAccountId": 3,
            "chatwootApiToken": "cwsecret", "s3Enabled": true, "s3Bucket": "b", "s3AccessKey": "AK",
            "s3SecretKey": "s3secret"}))
        .unwrap();
        let stored = serde_json::to_string(&created.instance).unwrap();
        for secret in ["topsecret", "cwsecret", "s3secret", &created.token] {
            assert!(!stored.contains(secret), "{secret} stored in clear");
        }
    }

    #[test]
    fn webhook_urls_must_be_http() {
        let err = create(serde_json::json!({"name": "a", "webhookEnabled": true, "webhookURL": "ftp://x"}));
        assert!(matches!(err, Err(Error::InvalidField { ref field, .. }) if field == "webhookURL"));
        let err = create(serde_json::json!({"name": "a", "webhookEnabled": true}));
        assert!(matches!(err, Err(Error::MissingField { field: "webhookURL" })));
    }

    #[test]
    fn chosen_tokens_are_kept_and_short_ones_refused() {
        let created = create(serde_json::json!({"name": "a", "token": "my-own-token-123"})).unwrap();
        assert_eq!(created.token, "my-own-token-123");
        let err = create(serde_json::json!({"name": "a", "token": "short"}));
        assert!(matches!(err, Err(Error::InvalidField { ref field, .. }) if field == "token"));
    }
}
