//! Webhook deliveries: one per event and matching webhook, each retried on its own schedule.
//!
//! A [`DeliveryRecord`] is the delivery log's row (what `GET /api/events/deliveries` shows and what
//! a redelivery starts from); a [`DeliveryAttempt`] is the queue message that asks for one attempt.
//! The record keeps the queued [`Event`] (which names the instance, never its token) so that the
//! envelope can be rebuilt, with the current token and secrets, at every attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Event, EventKind, InstanceId};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not attempted yet, or being attempted.
    Pending,
    /// The last attempt failed; another is scheduled at `nextAttemptAt`.
    Failed,
    Delivered,
    /// Every attempt of the schedule failed (or the webhook went away): in the dead-letter queue.
    Dead,
}

impl DeliveryStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "failed" => Some(Self::Failed),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

/// Which delivery: an event to one webhook of its instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryKey {
    pub instance: InstanceId,
    pub event_id: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub key: DeliveryKey,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every update: updates are conditional on it, so that two workers handed the same
    /// attempt (a redelivered message) cannot both record an outcome.
    #[serde(default)]
    pub revision: u64,
    pub event: Event,
}

impl DeliveryRecord {
    /// A new delivery of `event` to the webhook `label`, its first attempt due at `due`.
    pub fn new(event: &Event, label: &str, due: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            key: DeliveryKey {
                instance: event.instance.clone(),
                event_id: event.id.clone(),
                label: label.into(),
            },
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            next_attempt_at: Some(due),
            created_at: now,
            updated_at: now,
            revision: 0,
            event: event.clone(),
        }
    }

    pub fn kind(&self) -> EventKind {
        self.event.event
    }

    /// Starts the schedule over (a redelivery): the first attempt is due at `now`.
    pub fn restart(&mut self, now: DateTime<Utc>) {
        self.status = DeliveryStatus::Pending;
        self.attempts = 0;
        self.next_attempt_at = Some(now);
        self.updated_at = now;
    }

    /// The message that asks for this delivery's next attempt.
    pub fn next_attempt(&self) -> DeliveryAttempt {
        DeliveryAttempt {
            key: self.key.clone(),
            attempt: self.attempts + 1,
            due_at: self.next_attempt_at.unwrap_or(self.updated_at),
        }
    }
}

/// The queue message asking for attempt number `attempt` (1-based) of a delivery, not before `due_at`.
/// A message whose number does not follow the record's count is a stale duplicate and is dropped, so
/// that a replay after a crash never starts a second chain of retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    pub key: DeliveryKey,
    pub attempt: u32,
    pub due_at: DateTime<Utc>,
}

/// Which deliveries a log query wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub label: Option<String>,
    pub status: Option<DeliveryStatus>,
}

impl DeliveryFilter {
    pub fn matches(&self, record: &DeliveryRecord) -> bool {
        self.label.as_ref().is_none_or(|label| *label == record.key.label)
            && self.status.is_none_or(|status| status == record.status)
    }
}

/// The waits before each attempt: the first entry before the first attempt (normally 0), and so on;
/// after the last attempt fails the delivery is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    /// API.md's schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27 hours).
    pub const DEFAULT: &'static str = "0,5,300,1800,7200,18000,36000,36000";

    /// Comma-separated seconds, e.g. `0,1,2,4`.
    pub fn parse(text: &str) -> Result<Self> {
        let waits = text
            .split(',')
            .map(|part| part.trim().parse::<u64>().map(Duration::from_secs))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| Error::invalid_because("RYZE_WEBHOOK_RETRY_SCHEDULE", "comma-separated seconds"))?;
        if waits.is_empty() || waits.len() > 100 {
            return Err(Error::invalid_because("RYZE_WEBHOOK_RETRY_SCHEDULE", "1 to 100 attempts"));
        }
        Ok(Self(waits))
    }

    pub fn attempts(&self) -> u32 {
        self.0.len() as u32
    }

    /// The wait before attempt `attempt` (1-based), or `None` past the last one.
    pub fn wait_before(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.0.get(index).copied()
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::parse(Self::DEFAULT).expect("the default schedule parses")
    }
}

impl std::str::FromStr for RetrySchedule {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_runs_about_27_hours() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 8);
        assert_eq!(schedule.wait_before(1), Some(Duration::ZERO));
        assert_eq!(schedule.wait_before(2), Some(Duration::from_secs(5)));
        assert_eq!(schedule.wait_before(9), None);
        assert_eq!(schedule.wait_before(0), None);
        let total: u64 = (1..=8).filter_map(|n| schedule.wait_before(n)).map(|d| d.as_secs()).sum();
        assert_eq!(total / 3600, 27);
    }

    #[test]
    fn schedules_parse_from_seconds() {
        let schedule = RetrySchedule::parse("0, 1,2,4").unwrap();
        assert_eq!(schedule.attempts(), 4);
        assert_eq!(schedule.wait_before(4), Some(Duration::from_secs(4)));
        for bad in ["", "a", "1,,2", "-1"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_match_label_and_status() {
        let event = Event::state(InstanceId::generate(), &super::super::StateChange::Connecting, Utc::now());
        let record = DeliveryRecord::new(&event, "default", Utc::now(), Utc::now());
        assert!(DeliveryFilter::default().matches(&record));
        assert!(
            DeliveryFilter { label: Some("default".into()), status: Some(DeliveryStatus::Pending) }
                .matches(&record)
        );
        assert!(!DeliveryFilter { label: Some("x".into()), status: None }.matches(&record));
        assert!(!DeliveryFilter { label: None, status: Some(DeliveryStatus::Dead) }.matches(&record));
    }
}
