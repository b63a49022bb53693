//! An in-process queue: a bounded deque and a wake-up. Delivery is at most once (a process that dies
//! loses what it held anyway), so acknowledging is a no-op. It serves the session hosts' commands,
//! which are worth nothing after a restart; what must survive one goes through [`super::DurableQueue`].
//! Groups are not kept apart: one consumer takes the messages in the order sent.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

use crate::ports::{Delivery, Queue, Receipt, SendOptions};
use crate::{Error, Result};

#[derive(Debug)]
pub struct InProcessQueue<M> {
    messages: Mutex<VecDeque<M>>,
    arrived: Notify,
    capacity: usize,
    next_receipt: AtomicU64,
}

impl<M> InProcessQueue<M> {
    pub fn new(capacity: usize) -> Self {
        Self {
            messages: Mutex::new(VecDeque::new()),
            arrived: Notify::new(),
            capacity,
            next_receipt: AtomicU64::new(0),
        }
    }

    fn take(&self, max: usize) -> Result<Vec<M>> {
        let mut messages = self.messages.lock().map_err(|_| Error::storage("queue poisoned"))?;
        let n = max.min(messages.len());
        Ok(messages.drain(..n).collect())
    }
}

#[async_trait]
impl<M: Clone + Send + Sync + 'static> Queue<M> for InProcessQueue<M> {
    async fn send_with(&self, message: &M, options: SendOptions) -> Result<()> {
        if !options.delay.is_zero() {
            return Err(Error::storage("the in-process queue does not delay messages"));
        }
        {
            let mut messages = self.messages.lock().map_err(|_| Error::storage("queue poisoned"))?;
            if messages.len() >= self.capacity {
                return Err(Error::storage("in-process queue is full"));
            }
            messages.push_back(message.clone());
        }
        self.arrived.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<M>>> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let batch = self.take(max.max(1))?;
            if !batch.is_empty() {
                return Ok(batch
                    .into_iter()
                    .map(|message| Delivery {
                        message,
                        receipt: Receipt(self.next_receipt.fetch_add(1, Ordering::Relaxed).to_string()),
                        // Nothing here is ever handed out twice, nor kept in order by group.
                        receives: 1,
                        group: None,
                    })
                    .collect());
            }
            if timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&self, _receipt: &Receipt) -> Result<()> {
        Ok(())
    }

    async fn release_after(&self, _receipt: &Receipt, _after: Duration) -> Result<()> {
        Ok(())
    }

    /// A received message is off this queue already: nothing hands it out again.
    async fn keep_hidden(&self, _receipt: &Receipt, _hidden_for: Duration) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_arrive_in_order_and_waiters_wake() {
        let queue = std::sync::Arc::new(InProcessQueue::new(10));
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.receive(10, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        queue.send(&1).await.unwrap();
        let first = waiter.await.unwrap().unwrap();
        assert_eq!(first.iter().map(|d| d.message).collect::<Vec<_>>(), vec![1]);
        queue.send(&2).await.unwrap();
        queue.send(&3).await.unwrap();
        let rest = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(rest.iter().map(|d| d.message).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_receive_ends_at_its_deadline() {
        let queue = InProcessQueue::<u8>::new(1);
        assert!(queue.receive(1, Duration::from_secs(20)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_refuses() {
        let queue = InProcessQueue::new(1);
        queue.send(&1).await.unwrap();
        assert!(queue.send(&2).await.is_err());
    }
}
