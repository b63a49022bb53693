//! Event delivery benchmark: one dispatcher, a local receiver, and a burst of state events.
//!
//! For each scenario it creates instances whose webhooks (one, or three) point at a receiver on
//! 127.0.0.1, publishes `EVENTS` `instance.state` events onto the event queue as a session host
//! does, runs the dispatcher until every delivery reached the receiver, and prints a Markdown row:
//! deliveries per second (first publish to last 2xx) and the latency from each event's timestamp
//! (the moment the state was recorded) to the receiver's 2xx.
//!
//! With `RATE` (events per second) the events are paced instead of sent in one burst, which
//! measures latency without a backlog.
//!
//!   ryze-eventbench [embedded|aws]     (aws: the moto server in RYZE_TEST_AWS_ENDPOINT)

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ryze_core::domain::{Event, InstanceId, StateChange};
use ryze_tests::receiver::Receiver;
use ryze_tests::{Backend, TestApp};
use serde_json::json;

#[tokio::main]
async fn main() {
    let backend = match std::env::args().nth(1).as_deref() {
        Some("aws") => Backend::Aws,
        _ => Backend::Embedded,
    };
    let events: usize = std::env::var("EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(5000);
    let instances: usize = std::env::var("INSTANCES").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let rate: f64 = std::env::var("RATE").ok().and_then(|n| n.parse().ok()).unwrap_or(0.0);
    println!("| backend | webhooks per event | events | sent | deliveries/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    for webhooks in [1, 3] {
        let row = scenario(backend, events, instances, webhooks, rate).await;
        println!("{row}");
    }
}

async fn scenario(backend: Backend, events: usize, instances: usize, webhooks: usize, rate: f64) -> String {
    let app = TestApp::on(backend).await;
    let account = app
        .account_with(ryze_core::domain::AccountLimits {
            instance_quota: 100_000,
            requests_per_minute: 100_000_000,
            creates_per_minute: 100_000,
        })
        .await;
    let receiver = Receiver::start().await;
    let mut ids = Vec::new();
    for n in 0..instances {
        let token = app.create(&account.token, json!({"name": format!("b{n}")})).await;
        for label in ["a", "b", "c"].iter().take(webhooks) {
            let body = json!({"label": label, "enabled": true, "url": receiver.url()});
            let response = app.post(&format!("/api/events/webhook/b{n}"), &token, body).await;
            assert!(response.status.is_success(), "{}", response.text);
        }
        let list = app.get(&format!("/api/instance/list?instanceName=b{n}"), &account.token).await;
        ids.push(InstanceId::from_stored(list.json["instances"][0]["id"].as_str().unwrap()));
    }
    let dispatching = app.dispatch("0,5,300");
    let started = Instant::now();
    let mut pace = (rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
    for n in 0..events {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        let change = StateChange::Disconnected { reason: format!("bench {n}") };
        let event = Event::state(ids[n % ids.len()].clone(), &change, chrono::Utc::now());
        app.ports.events.send(&event).await.unwrap();
    }
    let expected = events * webhooks;
    let received = receiver.wait_until(Duration::from_secs(600), |r| r.len() >= expected).await;
    let elapsed = started.elapsed();
    dispatching.stop().await;
    let mut latencies: Vec<f64> = received
        .iter()
        .map(|r| {
            let stamped =
                chrono::DateTime::parse_from_rfc3339(r.json()["timestamp"].as_str().unwrap()).unwrap();
            (r.at - stamped.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0) as f64 / 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "| {backend:?} | {webhooks} | {events} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
        if rate > 0.0 { format!("{rate}/s") } else { "burst".to_owned() },
        expected as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}
