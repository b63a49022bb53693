//! What a host tells about itself: how many sessions it holds (watchable: scale-in protection
//! follows it), each session's last recorded state, and the CloudWatch embedded-metric line that
//! carries both (`Ryze/SessionHost`: `SessionsHeld`, which scales the service, and one count per
//! state, which says how many of them are really up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ryze_core::domain::{InstanceId, InstanceState};
use tokio::sync::watch;

/// How many sessions a host holds, readable while it runs (health checks, scaling metrics) and
/// watchable (scale-in protection follows it).
#[derive(Debug, Clone)]
pub struct SessionsGauge(Arc<watch::Sender<usize>>);

impl Default for SessionsGauge {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl SessionsGauge {
    pub fn get(&self) -> usize {
        *self.0.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }

    pub(crate) fn set(&self, sessions: usize) {
        self.0.send_if_modified(|held| std::mem::replace(held, sessions) != sessions);
    }
}

/// Each session's state as it last recorded it.
#[derive(Debug, Clone, Default)]
pub struct SessionStates(Arc<Mutex<HashMap<InstanceId, InstanceState>>>);

/// The per-state metrics, in the order they are published.
const STATE_METRICS: [(InstanceState, &str); 5] = [
    (InstanceState::Connected, "SessionsConnected"),
    (InstanceState::Connecting, "SessionsConnecting"),
    (InstanceState::Disconnected, "SessionsDisconnected"),
    (InstanceState::LoggedOut, "SessionsLoggedOut"),
    (InstanceState::Banned, "SessionsBanned"),
];

impl SessionStates {
    pub(crate) fn record(&self, instance: &InstanceId, state: InstanceState) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(instance.clone(), state);
    }

    pub(crate) fn forget(&self, instance: &InstanceId) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(instance);
    }

    /// How many sessions are in each state, every state named (zeros included).
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let states = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        STATE_METRICS
            .iter()
            .map(|(state, name)| (*name, states.values().filter(|s| *s == state).count()))
            .collect()
    }
}

/// The host's metrics as one CloudWatch embedded-metric-format line: CloudWatch Logs turns it into
/// `Ryze/SessionHost` metrics by `ServiceName`.
pub fn sessions_metric(
    service: &str,
    sessions: usize,
    states: &[(&'static str, usize)],
    at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let mut metrics = vec![serde_json::json!({ "Name": "SessionsHeld", "Unit": "Count" })];
    metrics.extend(states.iter().map(|(name, _)| serde_json::json!({ "Name": name, "Unit": "Count" })));
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "Ryze/SessionHost",
                "Dimensions": [["ServiceName"]],
                "Metrics": metrics,
            }],
        },
        "ServiceName": service,
        "SessionsHeld": sessions,
    });
    for (name, count) in states {
        line[*name] = (*count).into();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sessions_metric_is_an_embedded_metric_line_with_a_count_per_state() {
        let states = SessionStates::default();
        let (a, b, c) = (InstanceId::generate(), InstanceId::generate(), InstanceId::generate());
        states.record(&a, InstanceState::Connected);
        states.record(&b, InstanceState::Connecting);
        states.record(&c, InstanceState::Connected);
        states.record(&b, InstanceState::Connected);
        states.forget(&c);
        let at = chrono::DateTime::from_timestamp(1_795_262_400, 0).unwrap();
        let line = sessions_metric("ryze-prod-session-host", 2, &states.counts(), at);
        assert_eq!(line["SessionsHeld"], 2);
        assert_eq!(line["SessionsConnected"], 2);
        assert_eq!(line["SessionsConnecting"], 0);
        assert_eq!(line["SessionsBanned"], 0);
        assert_eq!(line["ServiceName"], "ryze-prod-session-host");
        assert_eq!(line["_aws"]["Timestamp"], 1_795_262_400_000_i64);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Ryze/SessionHost");
        assert_eq!(directive["Dimensions"], serde_json::json!([["ServiceName"]]));
        let names: Vec<&str> =
            directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "SessionsHeld",
                "SessionsConnected",
                "SessionsConnecting",
                "SessionsDisconnected",
                "SessionsLoggedOut",
                "SessionsBanned"
            ]
        );
    }
}
