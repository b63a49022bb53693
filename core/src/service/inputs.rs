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
use crate::service::fields;
pub(crate) use crate::service::fields::text;
use crate::service::webhooks::{INLINE_WEBHOOK, WebhookInput};
use crate::{Error, Result};

/// `POST /api/instance/new`: a flat body in which only `name` is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInstance {
    #[schema(required = true, nullable = false, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: Option<String>,
    #[schema(schema_with = fields::token_schema)]
    pub token: Option<String>,
    pub proxy_enabled: Option<bool>,
    #[schema(schema_with = fields::host_schema)]
    pub proxy_host: Option<String>,
    #[schema(schema_with = fields::port_schema)]
    pub proxy_port: Option<PortValue>,
    #[schema(schema_with = fields::proxy_protocol_schema)]
    pub proxy_protocol: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub proxy_username: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub proxy_password: Option<String>,
    pub webhook_enabled: Option<bool>,
    #[serde(rename = "webhookURL")]
    #[schema(schema_with = fields::http_url_schema)]
    pub webhook_url: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub webhook_authorization: Option<String>,
    pub webhook_by_events: Option<bool>,
    pub webhook_events: Option<Vec<EventKind>>,
    pub webhook_media_base64: Option<bool>,
    pub websocket_enabled: Option<bool>,
    pub websocket_events: Option<Vec<EventKind>>,
    pub websocket_media_base64: Option<bool>,
    pub chatwoot_enabled: Option<bool>,
    #[schema(schema_with = fields::http_url_schema)]
    pub chatwoot_base_url: Option<String>,
    #[serde(default, deserialize_with = "fields::optional_integer")]
    #[schema(minimum = 1)]
    pub chatwoot_account_id: Option<i64>,
    #[schema(schema_with = fields::text_schema)]
    pub chatwoot_api_token: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub chatwoot_inbox_name: Option<String>,
    pub chatwoot_sign_messages: Option<bool>,
    pub chatwoot_ignore_groups: Option<bool>,
    pub chatwoot_start_as_pending: Option<bool>,
    pub chatwoot_reopen_resolved: Option<bool>,
    pub auto_reject_calls: Option<bool>,
    #[schema(max_length = 4096)]
    pub call_reject_message: Option<String>,
    pub ignore_group_messages: Option<bool>,
    pub keep_online_status: Option<bool>,
    pub auto_read_messages: Option<bool>,
    pub disable_history_sync: Option<bool>,
    pub ignore_status: Option<bool>,
    pub s3_enabled: Option<bool>,
    #[schema(schema_with = fields::text_schema)]
    pub s3_region: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub s3_bucket: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub s3_access_key: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub s3_secret_key: Option<String>,
    #[schema(schema_with = fields::http_url_schema)]
    pub s3_endpoint: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub s3_path_prefix: Option<String>,
}

/// A port, as the string the contract shows (`"1080"`) or as a number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PortValue {
    Text(String),
    Number(u64),
    /// `1080.0`: an integer to JSON Schema, so to the document's clients.
    Float(f64),
}

/// `POST /api/instance/proxy/{instance}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyInput {
    #[schema(required = true, nullable = false)]
    pub enabled: Option<bool>,
    #[schema(schema_with = fields::host_schema)]
    pub host: Option<String>,
    #[schema(schema_with = fields::port_schema)]
    pub port: Option<PortValue>,
    #[schema(schema_with = fields::proxy_protocol_schema)]
    pub protocol: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub username: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub password: Option<String>,
}

/// `POST /api/instance/s3/{instance}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Input {
    #[schema(required = true, nullable = false)]
    pub enabled: Option<bool>,
    #[schema(schema_with = fields::text_schema)]
    pub region: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub bucket: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub access_key: Option<String>,
    #[schema(schema_with = fields::text_schema)]
    pub secret_key: Option<String>,
    /// Empty or absent means AWS.
    #[schema(schema_with = fields::http_url_schema)]
    pub endpoint: Option<String>,
    #[schema(schema_with = fields::text_schema)]
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

const DEFAULT_S3_REGION: &str = "us-east-1";

/// An `http` or `https` URL of [`fields::HTTP_URL_PATTERN`]; `None` when absent or empty.
pub(crate) fn http_url(value: Option<String>, field: &'static str) -> Result<Option<String>> {
    let Some(value) = text(value, field)? else {
        return Ok(None);
    };
    // The pattern is the rule; the parse only makes sure what is stored can be used as a URL.
    let parses = || url::Url::parse(&value).is_ok_and(|url| url.host_str().is_some());
    if !fields::is_http_url(&value) || !parses() {
        return Err(Error::invalid_because(field, "must be an http or https URL"));
    }
    Ok(Some(value))
}

/// A port as sent, a string or a number; `None` when absent or empty.
fn port(value: Option<PortValue>, field: &'static str) -> Result<Option<u16>> {
    let port = match value {
        None => return Ok(None),
        Some(PortValue::Text(text)) if text.is_empty() => return Ok(None),
        Some(PortValue::Text(text)) => fields::port_text(&text),
        Some(PortValue::Number(number)) => u16::try_from(number).ok().filter(|n| *n != 0),
        Some(PortValue::Float(number)) => {
            fields::integral(number).and_then(|n| u16::try_from(n).ok()).filter(|n| *n != 0)
        }
    };
    port.map(Some).ok_or_else(|| Error::invalid_because(field, "must be a port from 1 to 65535"))
}

fn host(value: Option<String>, field: &'static str) -> Result<Option<String>> {
    match value {
        Some(host) if !fields::is_host(&host) => {
            Err(Error::invalid_because(field, "not a host name or address"))
        }
        host => Ok(host.filter(|h| !h.is_empty())),
    }
}

fn protocol(value: Option<String>, field: &'static str) -> Result<Option<ProxyProtocol>> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => ProxyProtocol::parse(text)
            .map(Some)
            .ok_or_else(|| Error::invalid_because(field, "one of http, https, socks5")),
    }
}

fn client_token(value: Option<String>) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(token) if fields::is_token(&token) => Ok(Some(token)),
        Some(_) => Err(Error::invalid_because("token", "8 to 256 visible ASCII characters")),
    }
}

impl ProxyInput {
    /// What an enabled proxy needs, by its flag, for the OpenAPI document; `validate` enforces it.
    pub const REQUIRED_WHEN_ENABLED: &[(&str, &[&str])] = &[("enabled", &["host", "port", "protocol"])];

    /// `Ok(None)` when the proxy is disabled.
    pub fn into_config(self, keys: &Keyring) -> Result<Option<ProxyConfig>> {
        let enabled = self.enabled.ok_or(Error::MissingField { field: "enabled" })?;
        self.validate(enabled, STANDALONE, keys)
    }

    /// Checks every value sent, enabled or not: none is silently dropped. A disabled proxy is not
    /// stored, though: the record has no such thing (no proxy is `enabled: false`), and `POST /proxy`
    /// with `enabled: false` removes one.
    fn validate(self, enabled: bool, fields: Fields, keys: &Keyring) -> Result<Option<ProxyConfig>> {
        let protocol = protocol(self.protocol, fields.name("protocol"))?;
        let host = host(self.host, fields.name("host"))?;
        let port = port(self.port, fields.name("port"))?;
        let username = text(self.username, fields.name("username"))?;
        let password = text(self.password, fields.name("password"))?;
        if !enabled {
            return Ok(None);
        }
        let missing = |field| Error::MissingField { field: fields.name(field) };
        Ok(Some(ProxyConfig {
            host: host.ok_or_else(|| missing("host"))?,
            port: port.ok_or_else(|| missing("port"))?,
            protocol: protocol.ok_or_else(|| missing("protocol"))?,
            username,
            password: password.map(|p| keys.seal(Purpose::ProxyPassword, &p)),
        }))
    }
}

impl S3Input {
    /// What an enabled S3 configuration needs, for the OpenAPI document; `validate` enforces it.
    pub const REQUIRED_WHEN_ENABLED: &[(&str, &[&str])] =
        &[("enabled", &["bucket", "accessKey", "secretKey"])];

    /// `Ok(None)` when S3 is disabled (which deletes the stored credentials).
    pub fn into_config(self, keys: &Keyring) -> Result<Option<S3Config>> {
        let enabled = self.enabled.ok_or(Error::MissingField { field: "enabled" })?;
        self.validate(enabled, STANDALONE, keys)
    }

    /// Checks every value sent, enabled or not; only an enabled configuration is stored (disabled,
    /// the credentials are deleted, as the contract says).
    fn validate(self, enabled: bool, fields: Fields, keys: &Keyring) -> Result<Option<S3Config>> {
        let region = text(self.region, fields.name("region"))?;
        let bucket = text(self.bucket, fields.name("bucket"))?;
        let access_key = text(self.access_key, fields.name("accessKey"))?;
        let secret = text(self.secret_key, fields.name("secretKey"))?;
        let endpoint = http_url(self.endpoint, fields.name("endpoint"))?;
        // As sent, slashes included: the prefix is the client's, and it reads back unchanged.
        let path_prefix = text(self.path_prefix, fields.name("pathPrefix"))?;
        if !enabled {
            return Ok(None);
        }
        let missing = |field| Error::MissingField { field: fields.name(field) };
        let secret = secret.ok_or_else(|| missing("secretKey"))?;
        Ok(Some(S3Config {
            region: region.unwrap_or_else(|| DEFAULT_S3_REGION.into()),
            bucket: bucket.ok_or_else(|| missing("bucket"))?,
            access_key: access_key.ok_or_else(|| missing("accessKey"))?,
            secret_key: keys.seal(Purpose::S3SecretKey, &secret),
            endpoint,
            path_prefix,
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
    /// What each inline integration needs once its flag is `true`, for the OpenAPI document;
    /// `validate` enforces it.
    pub const REQUIRED_WHEN_ENABLED: &[(&str, &[&str])] = &[
        ("proxyEnabled", &["proxyHost", "proxyPort", "proxyProtocol"]),
        ("webhookEnabled", &["webhookURL"]),
        ("chatwootEnabled", &["chatwootBaseUrl", "chatwootAccountId", "chatwootApiToken"]),
        ("s3Enabled", &["s3Bucket", "s3AccessKey", "s3SecretKey"]),
    ];

    pub(crate) fn validate(
        self,
        account: &AccountId,
        keys: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<NewInstance> {
        // Not trimmed: `" abc"` is an invalid name, not `abc`.
        let name = self.name.as_deref().filter(|n| !n.is_empty()).ok_or(Error::NameRequired)?;
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

        // Checked whether enabled or not; stored only when enabled, as before (a disabled Chatwoot
        // would be a token kept for nothing).
        let chatwoot_base_url = http_url(self.chatwoot_base_url, "chatwootBaseUrl")?;
        if self.chatwoot_account_id.is_some_and(|id| id <= 0) {
            return Err(Error::invalid_because("chatwootAccountId", "must be a positive integer"));
        }
        let chatwoot_api_token = text(self.chatwoot_api_token, "chatwootApiToken")?;
        let chatwoot_inbox_name = text(self.chatwoot_inbox_name, "chatwootInboxName")?;
        let chatwoot = if self.chatwoot_enabled == Some(true) {
            let base_url = chatwoot_base_url.ok_or(Error::MissingField { field: "chatwootBaseUrl" })?;
            let account_id =
                self.chatwoot_account_id.ok_or(Error::MissingField { field: "chatwootAccountId" })?;
            let api_token = chatwoot_api_token.ok_or(Error::MissingField { field: "chatwootApiToken" })?;
            Some(ChatwootConfig {
                enabled: true,
                base_url,
                account_id,
                api_token: keys.seal(Purpose::ChatwootApiToken, &api_token),
                inbox_name: chatwoot_inbox_name.unwrap_or_else(|| name.to_string()),
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
        assert!(matches!(create(serde_json::json!({"name": ""})), Err(Error::NameRequired)));
        assert!(matches!(create(serde_json::json!({"name": null})), Err(Error::NameRequired)));
        for name in ["  ", "  abc\t", " abc", "a b"] {
            assert!(
                matches!(create(serde_json::json!({ "name": name })), Err(Error::InvalidName)),
                "{name:?}"
            );
        }
    }

    fn invalid_field(body: serde_json::Value) -> String {
        match create(body.clone()) {
            Err(Error::InvalidField { field, .. }) => field.to_string(),
            other => panic!("{body}: {:?}", other.map(|n| n.instance.name)),
        }
    }

    #[test]
    fn every_field_sent_is_validated_enabled_or_not() {
        let cases = [
            (serde_json::json!({"name": "a", "proxyProtocol": "ftp"}), "proxyProtocol"),
            (serde_json::json!({"name": "a", "proxyEnabled": false, "proxyPort": "99999"}), "proxyPort"),
            (serde_json::json!({"name": "a", "proxyPort": 0}), "proxyPort"),
            (serde_json::json!({"name": "a", "proxyHost": "bad host"}), "proxyHost"),
            (serde_json::json!({"name": "a", "proxyUsername": "a\u{0}b"}), "proxyUsername"),
            (serde_json::json!({"name": "a", "s3Endpoint": "ftp://x"}), "s3Endpoint"),
            (serde_json::json!({"name": "a", "s3Enabled": false, "s3Bucket": "x".repeat(2049)}), "s3Bucket"),
            (serde_json::json!({"name": "a", "chatwootBaseUrl": "not a url"}), "chatwootBaseUrl"),
            (serde_json::json!({"name": "a", "chatwootAccountId": 0}), "chatwootAccountId"),
            (serde_json::json!({"name": "a", "chatwootInboxName": "a\nb"}), "chatwootInboxName"),
            (serde_json::json!({"name": "a", "webhookURL": "gopher://x"}), "webhookURL"),
        ];
        for (body, field) in cases {
            assert_eq!(invalid_field(body), field);
        }
        // Valid but not enabled: checked, not stored.
        let created = create(serde_json::json!({"name": "a", "proxyHost": "p", "proxyPort": "1080",
            "proxyProtocol": "http", "s3Bucket": "b", "chatwootBaseUrl": "https://c.example"}))
        .unwrap();
        assert!(created.instance.proxy.is_none() && created.instance.s3.is_none());
        assert!(created.instance.chatwoot.is_none());
    }

    #[test]
    fn integers_may_be_written_as_floats_without_a_fraction() {
        let created = create(serde_json::json!({"name": "a", "proxyEnabled": true, "proxyHost": "p",
            "proxyPort": 1080.0, "proxyProtocol": "http", "chatwootAccountId": 7.0}))
        .unwrap();
        assert_eq!(created.instance.proxy.unwrap().port, 1080);
        assert_eq!(invalid_field(serde_json::json!({"name": "a", "proxyPort": 1080.5})), "proxyPort");
        let fraction =
            serde_json::from_value::<CreateInstance>(serde_json::json!({"chatwootAccountId": 7.5}));
        assert!(fraction.is_err());
        let huge = serde_json::from_value::<CreateInstance>(serde_json::json!({"chatwootAccountId": 1e19}));
        assert!(huge.is_err());
    }

    #[test]
    fn values_are_stored_as_sent() {
        let created = create(serde_json::json!({"name": "a", "s3Enabled": true, "s3Bucket": " b ",
            "s3AccessKey": "AK", "s3SecretKey": "s", "s3PathPrefix": "/media/x/", "proxyEnabled": true,
            "proxyHost": "p", "proxyPort": "1080", "proxyProtocol": "http", "proxyUsername": " u "}))
        .unwrap();
        let s3 = created.instance.s3.unwrap();
        assert_eq!((s3.bucket.as_str(), s3.path_prefix.as_deref()), (" b ", Some("/media/x/")));
        assert_eq!(created.instance.proxy.unwrap().username.as_deref(), Some(" u "));
        // An empty string is an absent value.
        let created = create(serde_json::json!({"name": "a", "s3Enabled": true, "s3Bucket": "b",
            "s3AccessKey": "AK", "s3SecretKey": "s", "s3Endpoint": "", "s3PathPrefix": ""}))
        .unwrap();
        let s3 = created.instance.s3.unwrap();
        assert_eq!((s3.endpoint, s3.path_prefix), (None, None));
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
        // Spelled as the contract spells it: `SOCKS5` would not read back as sent.
        let err = create(serde_json::json!({"name": "a", "proxyEnabled": true, "proxyHost": "p",
            "proxyPort": "1080", "proxyProtocol": "SOCKS5"}));
        assert!(matches!(err, Err(Error::InvalidField { ref field, .. }) if field == "proxyProtocol"));
        let ok = create(serde_json::json!({"name": "a", "proxyEnabled": true, "proxyHost": "10.0.0.1",
            "proxyPort": 1080, "proxyProtocol": "socks5", "proxyPassword": "pw"}))
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
