//! Webhook attempts on two SQS queues behind one port: SQS FIFO keeps order but cannot delay one
//! message, a standard queue delays but keeps no order. Grouped sends (first attempts, in order
//! per webhook) go on the FIFO queue, the rest (delayed retries) on the standard one.
//!
//! A receive that finds both empty waits on both, and returns with what the first one brings. The
//! other poll is not abandoned: it goes on in its task, and what it brings is the next receive's.
//! Given back at once instead (as [`SqsQueue`] does for a poll its caller left), its messages
//! would count one receive more each time, and a busy dispatcher losing that race again and again
//! spent a message's whole redrive allowance (8 receives) without handling it once: the message
//! went to the redrive policy's dead-letter queue, which nobody reads.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, oneshot};

use super::SqsQueue;
use crate::ports::{Delivery, Queue, Receipt, SendOptions};
use crate::{Error, Result};

/// Which of the two queues a receipt came from, kept in front of SQS's receipt handle.
const ORDERED: &str = "ordered:";
const DELAYED: &str = "delayed:";

pub struct OrderedAndDelayed<M> {
    ordered: Arc<SqsQueue<M>>,
    delayed: Arc<SqsQueue<M>>,
    /// The long polls under way (at most one a queue), and what came beyond a receive's `max`.
    waiting: Mutex<Waiting<M>>,
}

type Poll<M> = oneshot::Receiver<Result<Vec<Delivery<M>>>>;

struct Waiting<M> {
    ordered: Option<Poll<M>>,
    delayed: Option<Poll<M>>,
    spare: Vec<Delivery<M>>,
}

impl<M> OrderedAndDelayed<M> {
    /// `ordered` must be a FIFO queue (its sends are always grouped), `delayed` a standard one.
    pub fn new(client: Client, ordered_url: &str, delayed_url: &str) -> Self {
        fn ungrouped<M>(_: &M) -> String {
            "ungrouped".to_owned()
        }
        Self {
            ordered: Arc::new(SqsQueue::fifo(client.clone(), ordered_url, ungrouped::<M>)),
            delayed: Arc::new(SqsQueue::standard(client, delayed_url)),
            waiting: Mutex::new(Waiting { ordered: None, delayed: None, spare: Vec::new() }),
        }
    }

    fn queue_of(&self, receipt: &Receipt) -> Result<(&SqsQueue<M>, Receipt)> {
        if let Some(handle) = receipt.0.strip_prefix(ORDERED) {
            Ok((&self.ordered, Receipt(handle.to_owned())))
        } else if let Some(handle) = receipt.0.strip_prefix(DELAYED) {
            Ok((&self.delayed, Receipt(handle.to_owned())))
        } else {
            Err(Error::storage("a receipt of neither delivery queue"))
        }
    }
}

fn tagged<M>(deliveries: Vec<Delivery<M>>, tag: &str) -> impl Iterator<Item = Delivery<M>> {
    deliveries.into_iter().map(move |mut delivery| {
        delivery.receipt.0.insert_str(0, tag);
        delivery
    })
}

/// A long poll in its own task. Its answer is the next receive's; should the port be gone by then
/// (a process stopping), the task gives back what it brought.
fn long_poll<M>(queue: &Arc<SqsQueue<M>>, max: usize, wait: Duration) -> Poll<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let queue = queue.clone();
    let (answer, answered) = oneshot::channel();
    tokio::spawn(async move {
        if let Err(Ok(unwanted)) = answer.send(queue.receive(max, wait).await) {
            for delivery in unwanted {
                let _ = queue.release(&delivery.receipt).await;
            }
        }
    });
    answered
}

impl<M> Waiting<M> {
    /// Takes what a finished poll brought, without waiting for one still under way. A failed
    /// poll's error comes after what the other brought is kept for the next receive.
    fn finished(&mut self) -> Result<Vec<Delivery<M>>> {
        let mut failure = None;
        for (slot, tag) in [(&mut self.ordered, ORDERED), (&mut self.delayed, DELAYED)] {
            let Some(poll) = slot.as_mut() else { continue };
            let received = match poll.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => continue,
                Err(oneshot::error::TryRecvError::Closed) => Err(Error::storage("a poll ended unanswered")),
                Ok(received) => received,
            };
            *slot = None;
            match received {
                Ok(received) => self.spare.extend(tagged(received, tag)),
                Err(error) => failure = Some(error),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(std::mem::take(&mut self.spare)),
        }
    }

    /// At most `max` of `batch`; the rest waits for the next receive (it stays hidden meanwhile).
    fn at_most(&mut self, mut batch: Vec<Delivery<M>>, max: usize) -> Vec<Delivery<M>> {
        if batch.len() > max {
            self.spare = batch.split_off(max.max(1));
        }
        batch
    }
}

#[async_trait]
impl<M> Queue<M> for OrderedAndDelayed<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn send_with(&self, message: &M, options: SendOptions) -> Result<()> {
        if options.group.is_some() && options.delay.is_zero() {
            self.ordered.send_with(message, options).await
        } else {
            self.delayed.send_with(message, SendOptions { group: None, ..options }).await
        }
    }

    fn max_delay(&self) -> Duration {
        self.delayed.max_delay()
    }

    fn abandoned_receive_window(&self) -> Duration {
        self.delayed.abandoned_receive_window()
    }

    /// What an earlier receive's polls brought first; else a look at both without waiting; only
    /// when both are empty a wait on both, which ends with the first poll that brings something.
    /// Cancel safe: the polls live in the port, not in this call.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<M>>> {
        let mut waiting = self.waiting.lock().await;
        let batch = waiting.finished()?;
        if !batch.is_empty() {
            return Ok(waiting.at_most(batch, max));
        }
        let mut batch = Vec::new();
        if waiting.ordered.is_none() {
            batch.extend(tagged(self.ordered.receive(max, Duration::ZERO).await?, ORDERED));
        }
        if waiting.delayed.is_none() && batch.len() < max {
            batch.extend(tagged(self.delayed.receive(max - batch.len(), Duration::ZERO).await?, DELAYED));
        }
        if !batch.is_empty() || wait.is_zero() {
            return Ok(waiting.at_most(batch, max));
        }
        let deadline = tokio::time::Instant::now() + wait;
        let waiting = &mut *waiting;
        let ordered = waiting.ordered.get_or_insert_with(|| long_poll(&self.ordered, max, wait));
        let delayed = waiting.delayed.get_or_insert_with(|| long_poll(&self.delayed, max, wait));
        // A poll an earlier receive started may have a longer wait left than this one.
        let first = tokio::select! {
            received = &mut *ordered => {
                waiting.ordered = None;
                tagged(received.map_err(Error::storage)??, ORDERED).collect::<Vec<_>>()
            }
            received = &mut *delayed => {
                waiting.delayed = None;
                tagged(received.map_err(Error::storage)??, DELAYED).collect()
            }
            () = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
        };
        waiting.spare.extend(first);
        let batch = waiting.finished()?;
        Ok(waiting.at_most(batch, max))
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        let (queue, receipt) = self.queue_of(receipt)?;
        queue.ack(&receipt).await
    }

    async fn release_after(&self, receipt: &Receipt, after: Duration) -> Result<()> {
        let (queue, receipt) = self.queue_of(receipt)?;
        queue.release_after(&receipt, after).await
    }

    async fn keep_hidden(&self, receipt: &Receipt, hidden_for: Duration) -> Result<()> {
        let (queue, receipt) = self.queue_of(receipt)?;
        queue.keep_hidden(&receipt, hidden_for).await
    }
}
