//! Queues on SQS. Messages are JSON. On a FIFO queue every message names its group (for commands:
//! the instance, so one instance's commands are handled in order while different instances' run in
//! parallel) and gets its own deduplication id: two identical commands sent on purpose are two.
//!
//! A receive is a long poll of up to 20 s, so a waiting host gets a message as soon as it is sent.
//! The port promises that a dropped receive takes nothing off the queue, and SQS would otherwise
//! break that promise: a long poll abandoned by its caller still hands out the next messages, which
//! then stay invisible for the visibility timeout (for commands, [`COMMAND_VISIBILITY`]). So the
//! poll runs in its own task, and messages that arrive after their caller left are made visible
//! again at once. Only a process that exits mid-poll can still leave some hidden.
//!
//! [`super::OrderedAndDelayed`] puts a FIFO queue and a standard one behind one port, for webhook
//! attempts.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use serde::Serialize;
use serde::de::DeserializeOwned;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

use super::sdk_error;
use crate::ports::{Delivery, Queue, Receipt, SendOptions};
use crate::{Error, Result};

/// How long a session command stays hidden once received, on the shared queue and on every host's
/// channel, unless the hosts' lease timing asks for less ([`crate::domain::LeaseTiming::command_visibility`]:
/// the production 5 s / 15 s gives this). A host killed or frozen holding commands must not hide
/// them (and, on a FIFO queue, every later command of their instances) for the queue's two minutes.
pub const COMMAND_VISIBILITY: Duration = crate::domain::MAX_COMMAND_VISIBILITY;

/// SQS's own limits on one receive.
const MAX_BATCH: usize = 10;
const MAX_WAIT: Duration = Duration::from_secs(20);
/// The longest visibility timeout SQS takes, in seconds (12 hours).
const MAX_VISIBILITY_SECS: f64 = 43_200.0;
/// The longest `DelaySeconds` SQS takes (standard queues only).
const MAX_DELAY: Duration = Duration::from_secs(900);

/// One SQS queue, standard or FIFO.
pub struct SqsQueue<M> {
    client: Client,
    url: Arc<str>,
    /// The message group of each message: `Some` on a FIFO queue.
    group: Option<fn(&M) -> String>,
    /// What a receive asks for instead of the queue's own visibility timeout.
    visibility: Option<Duration>,
    _messages: PhantomData<fn(M) -> M>,
}

impl<M> std::fmt::Debug for SqsQueue<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue").field("url", &self.url).field("fifo", &self.group.is_some()).finish()
    }
}

impl<M> SqsQueue<M> {
    pub fn standard(client: Client, url: &str) -> Self {
        Self { client, url: url.into(), group: None, visibility: None, _messages: PhantomData }
    }

    pub fn fifo(client: Client, url: &str, group: fn(&M) -> String) -> Self {
        Self { client, url: url.into(), group: Some(group), visibility: None, _messages: PhantomData }
    }

    async fn hide_for(&self, receipt: &Receipt, hidden_for: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&*self.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(hidden_for.as_secs_f64().ceil().min(MAX_VISIBILITY_SECS) as i32)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Receives hide messages for `visibility` rather than the queue's own timeout.
    pub fn with_receive_visibility(mut self, visibility: Duration) -> Self {
        self.visibility = Some(visibility);
        self
    }
}

/// Makes messages nobody will handle visible again now.
async fn release(client: &Client, url: &str, messages: Vec<Message>) {
    for receipt in messages.into_iter().filter_map(|m| m.receipt_handle) {
        let released = client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(error) = released {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "message stays hidden until its visibility timeout");
        }
    }
}

#[async_trait]
impl<M> Queue<M> for SqsQueue<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn send_with(&self, message: &M, options: SendOptions) -> Result<()> {
        let body = serde_json::to_string(message).map_err(Error::storage)?;
        let mut request = self.client.send_message().queue_url(&*self.url).message_body(body);
        if let Some(group) = self.group {
            request = request
                .message_group_id(options.group.unwrap_or_else(|| group(message)))
                .message_deduplication_id(uuid::Uuid::new_v4().simple().to_string());
        } else if !options.delay.is_zero() {
            let delay = options.delay.min(MAX_DELAY).as_secs_f64().ceil() as i32;
            request = request.delay_seconds(delay);
        }
        request.send().await.map_err(sdk_error)?;
        Ok(())
    }

    fn max_delay(&self) -> Duration {
        if self.group.is_some() { Duration::ZERO } else { MAX_DELAY }
    }

    /// A long poll runs in its own task until SQS answers (see [`SqsQueue::receive`]).
    fn abandoned_receive_window(&self) -> Duration {
        MAX_WAIT
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<M>>> {
        let wait_secs = wait.min(MAX_WAIT).as_secs_f64().ceil() as i32;
        let poll = self
            .client
            .receive_message()
            .queue_url(&*self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait_secs)
            .set_visibility_timeout(
                self.visibility.map(|v| v.as_secs().clamp(1, MAX_VISIBILITY_SECS as u64) as i32),
            )
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let (client, url) = (self.client.clone(), self.url.clone());
        tokio::spawn(async move {
            if let Err(Ok(unwanted)) = answer.send(poll.send().await) {
                release(&client, &url, unwanted.messages.unwrap_or_default()).await;
            }
        });
        let output = answered.await.map_err(Error::storage)?.map_err(sdk_error)?;
        let mut deliveries = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let receives = system_attribute(&message, MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            let group =
                system_attribute(&message, MessageSystemAttributeName::MessageGroupId).map(str::to_owned);
            let Some(receipt) = message.receipt_handle else { continue };
            match message.body.as_deref().map(serde_json::from_str::<M>) {
                Some(Ok(parsed)) => {
                    deliveries.push(Delivery { message: parsed, receipt: Receipt(receipt), receives, group })
                }
                // A message no version of this code can read would come back forever: it is left
                // to the queue's redrive policy, which moves it to the dead-letter queue.
                _ => {
                    tracing::error!(message_id = ?message.message_id, "unreadable queue message left for the dead-letter queue")
                }
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&*self.url)
            .receipt_handle(&receipt.0)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn release_after(&self, receipt: &Receipt, after: Duration) -> Result<()> {
        self.hide_for(receipt, after).await
    }

    /// On SQS one call, the visibility counted from now; the receipt stays good either way.
    async fn keep_hidden(&self, receipt: &Receipt, hidden_for: Duration) -> Result<()> {
        self.hide_for(receipt, hidden_for).await
    }
}

fn system_attribute(message: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    message.attributes.as_ref()?.get(&name).map(String::as_str)
}
