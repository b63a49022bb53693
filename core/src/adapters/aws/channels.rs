//! Host channels on SQS: a FIFO queue per host, named after the deployment's command queue
//! (`{prefix}-commands-host-{id}.fifo`), created when the host starts and deleted once it drained or
//! once the host that took over from it emptied it. The IAM policy of the session hosts allows
//! queue creation under that name prefix only.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use super::{COMMAND_VISIBILITY, SqsQueue, sdk_error};
use crate::domain::{HostId, SessionCommand};
use crate::ports::{CommandChannels, CommandQueue};
use crate::{Error, Result};

/// SQS's limit on a queue name, `.fifo` included.
const MAX_QUEUE_NAME: usize = 80;
/// A channel's messages are for a host that holds the session; one that went unread this long
/// was for a host long gone.
const RETENTION_SECS: &str = "3600";
/// As the shared command queue's; receives ask for the hosts' command visibility instead.
const VISIBILITY_SECS: &str = "120";

pub struct SqsChannels {
    client: Client,
    /// `{prefix}-commands`: the shared command queue's name without `.fifo`.
    stem: String,
    /// How long a receive hides what it took.
    visibility: Duration,
}

impl SqsChannels {
    /// Channels named after the command queue at `command_queue_url`.
    pub fn new(client: Client, command_queue_url: &str) -> Self {
        let name = command_queue_url.rsplit('/').next().unwrap_or(command_queue_url);
        let stem = name.strip_suffix(".fifo").unwrap_or(name).to_owned();
        Self { client, stem, visibility: COMMAND_VISIBILITY }
    }

    /// Receives hide commands for `visibility` (the hosts' [`crate::domain::LeaseTiming::command_visibility`]).
    pub fn with_receive_visibility(mut self, visibility: Duration) -> Self {
        self.visibility = visibility;
        self
    }

    fn queue_name(&self, host: &HostId) -> String {
        let name = format!("{}-host-{host}.fifo", self.stem);
        if name.len() <= MAX_QUEUE_NAME {
            return name;
        }
        // A long id (an ECS task ARN's id is 32 hex digits, so only a custom one) is shortened
        // to a digest that keeps two hosts' channels apart.
        let digest = short_digest(host.as_str());
        format!("{}-host-{digest}.fifo", &self.stem[..self.stem.len().min(MAX_QUEUE_NAME - 27)])
    }
}

/// 16 hex digits of SHA-256: enough to keep hosts' channel names apart.
fn short_digest(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl CommandChannels for SqsChannels {
    async fn open(&self, host: &HostId) -> Result<String> {
        let created = self
            .client
            .create_queue()
            .queue_name(self.queue_name(host))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::MessageRetentionPeriod, RETENTION_SECS)
            .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_SECS)
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
            .send()
            .await
            .map_err(sdk_error)?;
        created.queue_url.ok_or_else(|| Error::storage("SQS created a channel without a URL"))
    }

    fn channel(&self, address: &str) -> Result<Arc<CommandQueue>> {
        if !address.starts_with("http") {
            return Err(Error::storage(format!("not a channel address: {address}")));
        }
        let channel = SqsQueue::fifo(self.client.clone(), address, |command: &SessionCommand| {
            command.instance().to_string()
        });
        Ok(Arc::new(channel.with_receive_visibility(self.visibility)))
    }

    async fn close(&self, address: &str) -> Result<()> {
        match self.client.delete_queue().queue_url(address).send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_queue_does_not_exist()) => Ok(()),
            Err(error) => Err(sdk_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_command_queue_and_fit_sqs() {
        let config = aws_sdk_sqs::Config::builder().behavior_version_latest().build();
        let channels = SqsChannels::new(
            Client::from_conf(config),
            "https://sqs.us-east-1.amazonaws.com/123456789012/ryze-prod-commands.fifo",
        );
        let short = HostId::new("4b1f9c0e2a7d4e0f9b3c2d1e0f9a8b7c").unwrap();
        assert_eq!(
            channels.queue_name(&short),
            "ryze-prod-commands-host-4b1f9c0e2a7d4e0f9b3c2d1e0f9a8b7c.fifo"
        );
        let long = HostId::new("x".repeat(64)).unwrap();
        let name = channels.queue_name(&long);
        assert!(name.len() <= MAX_QUEUE_NAME && name.ends_with(".fifo"), "{name}");
        assert_ne!(name, channels.queue_name(&HostId::new("y".repeat(64)).unwrap()));
    }
}
