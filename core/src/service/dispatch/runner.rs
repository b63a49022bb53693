//! The dispatcher's in-process runtime (`ryze serve`): one loop takes published events in order and
//! expands them (instances at once, each instance's events in order), another makes delivery
//! attempts, many at once. On AWS the `dispatcher` Lambda function is the runtime instead, fed by SQS.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Dispatcher;
use crate::domain::Event;
use crate::ports::{Delivery, DeliveryQueue, EventQueue, Queue};

/// Attempts in flight at once: receivers answer in milliseconds or time out in 15 s, so this many
/// slow ones still leave room for the rest.
pub const CONCURRENT_ATTEMPTS: usize = 256;
const EVENT_BATCH: usize = 100;
const POLL: Duration = Duration::from_secs(1);
/// How long a message whose handling failed waits before it comes again, at first and at most.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MOST: Duration = Duration::from_secs(30);
/// How long a stop waits for attempts in flight (each is bounded at 15 s).
const DRAIN: Duration = Duration::from_secs(16);

impl Dispatcher {
    /// Runs until `stop` resolves, then lets attempts in flight finish (bounded). Whatever is not
    /// acknowledged by then is delivered again after a restart.
    pub async fn run(
        self: Arc<Self>,
        events: Arc<EventQueue>,
        deliveries: Arc<DeliveryQueue>,
        stop: impl std::future::Future<Output = ()> + Send,
    ) {
        let expanding = self.clone().expand_events(events);
        let attempting = self.attempt_deliveries(deliveries);
        tokio::select! {
            () = stop => {}
            () = expanding => {}
        }
        // Expansion is cut at once (it only writes the store); attempts get to finish.
        attempting.drain().await;
    }

    /// One instance's events are handled one after another, so its deliveries are queued in the
    /// order its events happened; different instances' at once, so that their writes share the
    /// store's commits. A batch is done before the next is taken, which keeps that order across
    /// batches too.
    async fn expand_events(self: Arc<Self>, events: Arc<EventQueue>) {
        loop {
            let batch = match events.receive(EVENT_BATCH, POLL).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%error, "event queue unavailable");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let mut expanding = JoinSet::new();
            for of_instance in by_instance(batch) {
                let (dispatcher, events) = (self.clone(), events.clone());
                expanding.spawn(async move {
                    let mut of_instance = of_instance.into_iter();
                    while let Some(delivery) = of_instance.next() {
                        match dispatcher.on_event(&delivery.message).await {
                            Ok(()) => {
                                if let Err(error) = events.ack(&delivery.receipt).await {
                                    tracing::error!(%error, "event handled but not acknowledged: it will come again");
                                }
                            }
                            Err(error) => {
                                tracing::error!(%error, receives = delivery.receives, "event not expanded; it will come again");
                                give_back(&*events, delivery, of_instance).await;
                                break;
                            }
                        }
                    }
                });
            }
            while expanding.join_next().await.is_some() {}
        }
    }

    fn attempt_deliveries(self: Arc<Self>, deliveries: Arc<DeliveryQueue>) -> Attempts {
        let permits = Arc::new(Semaphore::new(CONCURRENT_ATTEMPTS));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut running = JoinSet::new();
            loop {
                let available = permits.available_permits().max(1);
                let batch = tokio::select! {
                    _ = &mut stopped => break,
                    batch = deliveries.receive(available.min(EVENT_BATCH), POLL) => batch,
                };
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::error!(%error, "delivery queue unavailable");
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                };
                for lane in lanes(batch) {
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    let (dispatcher, queue) = (self.clone(), deliveries.clone());
                    running.spawn(async move {
                        // A lane's attempts in order; after a failure the rest of it waits for its
                        // queue to hand it out again, behind the one that failed.
                        let mut lane = lane.into_iter();
                        while let Some(delivery) = lane.next() {
                            match dispatcher.on_attempt(&delivery.message, delivery.receives).await {
                                Ok(()) => {
                                    if let Err(error) = queue.ack(&delivery.receipt).await {
                                        tracing::error!(%error, "attempt recorded but not acknowledged");
                                    }
                                }
                                Err(error) => {
                                    tracing::error!(%error, receives = delivery.receives, "attempt not recorded: it will come again");
                                    give_back(&*queue, delivery, lane).await;
                                    break;
                                }
                            }
                        }
                        drop(permit);
                    });
                }
                while running.try_join_next().is_some() {}
            }
            let _ = tokio::time::timeout(DRAIN, async { while running.join_next().await.is_some() {} }).await;
        });
        Attempts { stop, task }
    }
}

/// After a failure to handle `failed` (the store unreachable, say), gives it and the rest of its
/// lane back to the queue, to come again after a backoff that grows with its receives: a
/// transient failure then costs a second or two, not the queue's visibility timeout (a minute,
/// during which a grouped queue holds the whole group), and a lasting one does not spend the
/// receives its redrive policy allows within seconds. What cannot be given back comes again after
/// its visibility timeout all the same.
async fn give_back<M: Send + Sync + 'static>(
    queue: &dyn Queue<M>,
    failed: Delivery<M>,
    rest: impl Iterator<Item = Delivery<M>>,
) {
    let after = backoff(failed.receives);
    for delivery in std::iter::once(failed).chain(rest) {
        if let Err(error) = queue.release_after(&delivery.receipt, after).await {
            tracing::warn!(%error, "message not given back; it comes again after its visibility timeout");
        }
    }
}

/// One second after a first receive, doubling with each receive after it, up to half a minute.
fn backoff(receives: u32) -> Duration {
    BACKOFF_FIRST.saturating_mul(1 << receives.saturating_sub(1).min(5)).min(BACKOFF_MOST)
}

/// A batch of events by instance, each instance's in the order received.
fn by_instance(batch: Vec<Delivery<Event>>) -> Vec<Vec<Delivery<Event>>> {
    let mut instances: Vec<Vec<Delivery<Event>>> = Vec::new();
    for delivery in batch {
        match instances.iter_mut().find(|events| events[0].message.instance == delivery.message.instance) {
            Some(events) => events.push(delivery),
            None => instances.push(vec![delivery]),
        }
    }
    instances
}

/// A batch as lanes to run at once: the messages of one group together, in the order received;
/// each ungrouped message on its own.
fn lanes<M>(batch: Vec<Delivery<M>>) -> Vec<Vec<Delivery<M>>> {
    let mut lanes: Vec<Vec<Delivery<M>>> = Vec::with_capacity(batch.len());
    for delivery in batch {
        let same_group =
            |lane: &&mut Vec<Delivery<M>>| delivery.group.is_some() && lane[0].group == delivery.group;
        match lanes.iter_mut().find(same_group) {
            Some(lane) => lane.push(delivery),
            None => lanes.push(vec![delivery]),
        }
    }
    lanes
}

/// The attempts loop, stopped by [`Attempts::drain`].
struct Attempts {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Attempts {
    async fn drain(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_message_waits_a_second_doubling_with_each_receive_up_to_half_a_minute() {
        let waits: Vec<u64> = [0, 1, 2, 3, 5, 6, 40].map(|receives| backoff(receives).as_secs()).into();
        assert_eq!(waits, [1, 1, 2, 4, 16, 30, 30]);
    }
}
