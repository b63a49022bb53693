//! Chatwoot: linking an instance to an inbox of the customer's Chatwoot account.
//!
//! On create, an instance with Chatwoot enabled gets the API-channel inbox named `inbox_name`: the
//! one the account already has (so two instances, or a re-created one, share it), or a new one.
//! Both calls go through the [`OutboundClient`], so a Chatwoot on a private address is refused
//! unless the deployment allows private targets, and the whole linking is bounded by
//! [`LINK_BUDGET`]. A failure is the customer's to fix: its message says what to verify.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::domain::{ChatwootConfig, IntegrationStatus};
use crate::outbound::{OutboundClient, OutboundError, OutboundResponse};
use crate::secrets::{Keyring, Purpose};

/// How long linking may take, both calls together: API.md's "within about 10 s".
pub const LINK_BUDGET: Duration = Duration::from_secs(10);
/// An account's inbox list carries every inbox in full (a few KiB each).
const BODY_LIMIT: usize = 1024 * 1024;
/// `channel_type` of the inboxes the API channel creates.
const API_CHANNEL: &str = "Channel::Api";

/// Why an instance could not be linked to its Chatwoot inbox. The messages are the contract's
/// (API.md, "Chatwoot"): they reach the customer as `integrations.chatwoot.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatwootError {
    #[error("Chatwoot rejected the API token — verify chatwootApiToken")]
    Unauthorized,
    #[error("Chatwoot denied the request — verify the API token has admin scope on account {account_id}")]
    Forbidden { account_id: i64 },
    #[error("Chatwoot account or endpoint not found — verify chatwootBaseUrl and chatwootAccountId")]
    NotFound,
    #[error("Chatwoot did not answer in time")]
    Timeout,
    #[error("Chatwoot answered {status}")]
    Status { status: u16 },
    #[error("Chatwoot answered with an unreadable body")]
    UnreadableBody,
    /// The deployment does not let requests reach the Chatwoot's address.
    #[error("{0}")]
    Refused(OutboundError),
    #[error("Chatwoot could not be reached: {0}")]
    Unreachable(OutboundError),
    #[error("the Chatwoot API token cannot be sent in a header — verify chatwootApiToken")]
    InvalidToken,
    #[error("the stored Chatwoot API token could not be opened")]
    Unseal,
}

#[derive(Debug, Deserialize)]
struct Inbox {
    id: i64,
    name: Option<String>,
    channel_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Inboxes {
    payload: Vec<Inbox>,
}

/// The id of the API-channel inbox named `config.inbox_name` in `config.account_id`, found
/// (`GET .../inboxes`) or created (`POST .../inboxes`), within [`LINK_BUDGET`].
pub async fn link_inbox(
    outbound: &OutboundClient,
    keys: &Keyring,
    config: &ChatwootConfig,
) -> Result<i64, ChatwootError> {
    let token = keys.open(Purpose::ChatwootApiToken, &config.api_token).map_err(|_| ChatwootError::Unseal)?;
    let mut token = HeaderValue::try_from(token).map_err(|_| ChatwootError::InvalidToken)?;
    token.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert("api_access_token", token);
    let outbound = outbound.clone().with_body_limit(BODY_LIMIT);
    let url = inboxes_url(&config.base_url, config.account_id);
    let link = async {
        let listed = outbound.get(&url, &headers, LINK_BUDGET).await.map_err(unreachable)?;
        let listed: Inboxes = answer(listed, config.account_id)?;
        if let Some(id) = find_api_inbox(&listed.payload, &config.inbox_name) {
            return Ok(id);
        }
        let body = serde_json::json!({
            "name": config.inbox_name,
            "channel": { "type": "api", "webhook_url": "" },
        });
        let created = outbound.post_json(&url, &headers, body.to_string(), LINK_BUDGET).await;
        let created: Inbox = answer(created.map_err(unreachable)?, config.account_id)?;
        Ok(created.id)
    };
    tokio::time::timeout(LINK_BUDGET, link).await.unwrap_or(Err(ChatwootError::Timeout))
}

/// `config` as the linking left it: its inbox and `ok`, or why not and `error`.
pub fn linked(mut config: ChatwootConfig, outcome: &Result<i64, ChatwootError>) -> ChatwootConfig {
    match outcome {
        Ok(inbox_id) => {
            config.inbox_id = Some(*inbox_id);
            config.last_error = None;
            config.status = IntegrationStatus::Ok;
        }
        Err(error) => {
            config.inbox_id = None;
            config.last_error = Some(error.to_string());
            config.status = IntegrationStatus::Error;
        }
    }
    config
}

/// `{base}/api/v1/accounts/{id}/inboxes`; a base with a path (Chatwoot behind a prefix) keeps it.
fn inboxes_url(base_url: &str, account_id: i64) -> String {
    format!("{}/api/v1/accounts/{account_id}/inboxes", base_url.trim_end_matches('/'))
}

fn find_api_inbox(inboxes: &[Inbox], name: &str) -> Option<i64> {
    inboxes
        .iter()
        .find(|i| i.name.as_deref() == Some(name) && i.channel_type.as_deref() == Some(API_CHANNEL))
        .map(|i| i.id)
}

/// A 2xx answer's JSON, or what the status means for the customer.
fn answer<T: serde::de::DeserializeOwned>(
    response: OutboundResponse,
    account_id: i64,
) -> Result<T, ChatwootError> {
    match response.status {
        200..=299 if response.truncated => Err(ChatwootError::UnreadableBody),
        200..=299 => serde_json::from_slice(&response.body).map_err(|_| ChatwootError::UnreadableBody),
        401 => Err(ChatwootError::Unauthorized),
        403 => Err(ChatwootError::Forbidden { account_id }),
        404 => Err(ChatwootError::NotFound),
        status => Err(ChatwootError::Status { status }),
    }
}

fn unreachable(error: OutboundError) -> ChatwootError {
    match error {
        OutboundError::Timeout(_) => ChatwootError::Timeout,
        OutboundError::Refused { .. } => ChatwootError::Refused(error),
        other => ChatwootError::Unreachable(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> OutboundResponse {
        OutboundResponse {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn statuses_become_the_contract_messages() {
        let message = |status| answer::<Inbox>(response(status, "{}"), 42).unwrap_err().to_string();
        assert_eq!(message(401), "Chatwoot rejected the API token — verify chatwootApiToken");
        assert_eq!(
            message(403),
            "Chatwoot denied the request — verify the API token has admin scope on account 42"
        );
        assert_eq!(
            message(404),
            "Chatwoot account or endpoint not found — verify chatwootBaseUrl and chatwootAccountId"
        );
        assert_eq!(message(500), "Chatwoot answered 500");
        assert_eq!(message(302), "Chatwoot answered 302");
        assert_eq!(ChatwootError::Timeout.to_string(), "Chatwoot did not answer in time");
    }

    #[test]
    fn unreadable_and_truncated_bodies_are_reported() {
        for body in ["<html>", r#"{"payload": "nope"}"#, ""] {
            let error = answer::<Inboxes>(response(200, body), 1).err();
            assert_eq!(error, Some(ChatwootError::UnreadableBody), "{body}");
        }
        let truncated = OutboundResponse { truncated: true, ..response(200, r#"{"id": 1}"#) };
        assert_eq!(answer::<Inbox>(truncated, 1).err(), Some(ChatwootError::UnreadableBody));
        assert_eq!(answer::<Inbox>(response(200, r#"{"id": 7, "name": "x"}"#), 1).unwrap().id, 7);
    }

    #[test]
    fn only_an_api_inbox_with_the_exact_name_is_reused() {
        let listed: Inboxes = serde_json::from_str(
            r#"{"payload": [
                {"id": 1, "name": "sales", "channel_type": "Channel::WebWidget"},
                {"id": 2, "name": "Sales", "channel_type": "Channel::Api"},
                {"id": 3, "name": "sales", "channel_type": "Channel::Api", "extra": {"a": 1}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(find_api_inbox(&listed.payload, "sales"), Some(3));
        assert_eq!(find_api_inbox(&listed.payload, "support"), None);
    }

    #[test]
    fn outbound_failures_keep_their_reason() {
        let refused =
            OutboundError::Refused { address: "10.0.0.1".parse().unwrap(), reason: "private address" };
        assert_eq!(unreachable(refused.clone()).to_string(), refused.to_string());
        assert_eq!(unreachable(OutboundError::Timeout(LINK_BUDGET)), ChatwootError::Timeout);
        let dns = OutboundError::Dns { host: "cw.example".into(), cause: "not found".into() };
        assert_eq!(
            unreachable(dns).to_string(),
            "Chatwoot could not be reached: could not resolve cw.example: not found"
        );
    }

    #[test]
    fn the_inbox_url_keeps_a_base_path() {
        assert_eq!(inboxes_url("https://cw.example/", 3), "https://cw.example/api/v1/accounts/3/inboxes");
        assert_eq!(
            inboxes_url("https://x.example/chat", 3),
            "https://x.example/chat/api/v1/accounts/3/inboxes"
        );
    }
}
