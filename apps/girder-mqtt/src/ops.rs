//! The broker seen from outside: its counters as metrics (on the `metrics` facade, so the
//! Girder ops endpoint's `/metrics` serves them beside the runtime's), alarms for the
//! connection count and for dropped messages, and client connect and disconnect notices
//! (to the log, the webhook and the dashboard's live stream).
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `mqtt_connections` | gauge | clients connected |
//! | `mqtt_sessions` | gauge | sessions held (connected or not) |
//! | `mqtt_subscriptions` | gauge | subscriptions in the routing table |
//! | `mqtt_retained` | gauge | retained messages |
//! | `mqtt_connections_total` | counter | connections accepted |
//! | `mqtt_connections_refused_total` | counter | CONNECTs refused |
//! | `mqtt_protocol_errors_total` | counter | connections closed for a bad packet |
//! | `mqtt_messages_in_total`, `mqtt_messages_out_total` | counter | PUBLISH packets read and written |
//! | `mqtt_bytes_in_total`, `mqtt_bytes_out_total` | counter | bytes read and written |
//! | `mqtt_messages_dropped_total` | counter | messages dropped (full queues, too large for the client) |
//! | `mqtt_messages_expired_total` | counter | messages expired before delivery |
//! | `mqtt_wills_total` | counter | wills published |
//! | `mqtt_delivery_latency_seconds` | histogram | from a PUBLISH read to its copy written to a subscriber (sampled: one copy in 16 per connection) |
//!
//! Alarms: `mqtt_connections_high` (major) above 90% of `max_connections`, cleared below 80%;
//! `mqtt_messages_dropping` (warning) while messages are being dropped, cleared after a
//! period without drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::OwnedTask;
use girder_ops::{AlarmManager, Notice, Severity, Threshold};

use crate::broker::Shared;

/// How often metrics are refreshed and alarms checked.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Publishes the counters as metrics every [`PERIOD`], on the node.
pub fn metrics(shared: &Arc<Shared>) -> OwnedTask {
    let shared = shared.clone();
    shared.node.clone().spawn_owned(async move {
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            let s = &shared.stats;
            metrics::gauge!("mqtt_connections").set(s.connections.get() as f64);
            metrics::gauge!("mqtt_sessions").set(s.sessions.get() as f64);
            metrics::gauge!("mqtt_subscriptions").set(s.subscriptions.get() as f64);
            metrics::gauge!("mqtt_retained").set(s.retained.get() as f64);
            for (name, c) in [
                ("mqtt_connections_total", &s.connections_total),
                ("mqtt_connections_refused_total", &s.connections_refused),
                ("mqtt_protocol_errors_total", &s.protocol_errors),
                ("mqtt_messages_in_total", &s.messages_in),
                ("mqtt_messages_out_total", &s.messages_out),
                ("mqtt_bytes_in_total", &s.bytes_in),
                ("mqtt_bytes_out_total", &s.bytes_out),
                ("mqtt_messages_dropped_total", &s.messages_dropped),
                ("mqtt_messages_expired_total", &s.messages_expired),
                ("mqtt_wills_total", &s.wills_published),
            ] {
                metrics::counter!(name).absolute(c.get());
            }
        }
    })
}

/// Watches the connection count and the drops, raising and clearing alarms on `alarms`.
pub fn alarms(shared: &Arc<Shared>, alarms: &AlarmManager) -> Vec<OwnedTask> {
    let max = shared.config.max_connections as f64;
    let s = shared.clone();
    let connections = Threshold::new(
        "mqtt_connections_high",
        Severity::Major,
        format!("MQTT connections above 90% of max_connections ({max})"),
        move || s.stats.connections.get() as f64,
    )
    .raise_above(max * 0.9)
    .clear_below(max * 0.8)
    .source("girder-mqtt");
    let s = shared.clone();
    let seen = AtomicU64::new(0);
    let dropping = Threshold::new(
        "mqtt_messages_dropping",
        Severity::Warning,
        "MQTT messages are being dropped: a subscriber's queue is full",
        move || {
            let now = s.stats.messages_dropped.get();
            (now - seen.swap(now, Ordering::Relaxed)) as f64
        },
    )
    .raise_above(0.0)
    .clear_below(0.5)
    .source("girder-mqtt");
    vec![
        alarms.watch(&shared.node, connections, PERIOD),
        alarms.watch(&shared.node, dropping, PERIOD),
    ]
}

/// Tells subscribers of `alarms` (the log, a webhook) about a client.
pub fn notice(alarms: &AlarmManager, event: &str, text: String) {
    alarms.publish(Notice::App {
        source: "mqtt".into(),
        event: event.into(),
        text,
    });
}
