//! Metrics on the [`metrics`] facade, rendered in the Prometheus text format.
//!
//! The runtime's numbers ([`girder::Node::stats`], supervisors' restart counts and, with the
//! `dist` feature, distribution traffic) are read when a scrape comes and published as gauges and counters labelled with the
//! node's name; applications record their own metrics with the `metrics` macros and they appear
//! in the same scrape. One recorder serves the whole OS process.
//!
//! Every metric published here is described (`# HELP` and `# TYPE` in the scrape); an
//! application describes its own with `metrics::describe_counter!` and the like.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use girder::Node;
#[cfg(feature = "dist")]
use girder_dist::{DistNode, Membership};
use metrics::{counter, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Call-latency buckets, in seconds: 1 µs to 10 s.
const CALL_BUCKETS: &[f64] = &[
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5,
    1.0, 5.0, 10.0,
];

/// What kind of metric a name is.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric this module publishes, and the core's call-latency histogram: name, kind, unit,
/// help text. Described once, when the recorder is installed.
const DESCRIBED: &[(&str, Kind, Unit, &str)] = &[
    (
        "girder_processes",
        Kind::Gauge,
        Unit::Count,
        "Processes alive now.",
    ),
    (
        "girder_spawns_total",
        Kind::Counter,
        Unit::Count,
        "Processes ever spawned.",
    ),
    (
        "girder_exits_total",
        Kind::Counter,
        Unit::Count,
        "Processes ever exited, by exit reason.",
    ),
    (
        "girder_messages_in_total",
        Kind::Counter,
        Unit::Count,
        "User messages ever delivered to mailboxes.",
    ),
    (
        "girder_messages_out_total",
        Kind::Counter,
        Unit::Count,
        "User messages taken from mailboxes by their processes.",
    ),
    (
        "girder_mailbox_dropped_total",
        Kind::Counter,
        Unit::Count,
        "Messages dropped by full bounded mailboxes whose overflow policy drops (drop_newest, drop_oldest).",
    ),
    (
        "girder_mailbox_refused_total",
        Kind::Counter,
        Unit::Count,
        "Sends refused with Full by full bounded mailboxes (policies wait and fail_fast).",
    ),
    (
        "girder_breaker_open",
        Kind::Gauge,
        Unit::Count,
        "1 while a circuit breaker followed by Ops::watch_breaker is open, else 0.",
    ),
    (
        "girder_queue_granted_total",
        Kind::Counter,
        Unit::Count,
        "Permits a regulated queue (girder-regulate) granted, by queue.",
    ),
    (
        "girder_queue_rejected_total",
        Kind::Counter,
        Unit::Count,
        "Asks a regulated queue rejected, by queue and reason.",
    ),
    (
        "girder_queue_waiting",
        Kind::Gauge,
        Unit::Count,
        "Asks waiting in a regulated queue now.",
    ),
    (
        "girder_queue_in_use",
        Kind::Gauge,
        Unit::Count,
        "Permits of a regulated queue held now.",
    ),
    (
        "girder_queue_limit",
        Kind::Gauge,
        Unit::Count,
        "A regulated queue's concurrency limit now (it moves under a governor or an adaptive regulator).",
    ),
    (
        "girder_queue_wait_p99_seconds",
        Kind::Gauge,
        Unit::Seconds,
        "A regulated queue's 99th percentile time from ask to grant.",
    ),
    (
        "girder_calls_expired_total",
        Kind::Counter,
        Unit::Count,
        "Calls dropped unhandled by their server because their caller's deadline passed while they waited.",
    ),
    (
        "girder_mailbox_length_max",
        Kind::Gauge,
        Unit::Count,
        "The longest mailbox now, in messages.",
    ),
    (
        "girder_mailbox_length_sum",
        Kind::Gauge,
        Unit::Count,
        "Messages queued in all mailboxes now.",
    ),
    (
        "girder_supervisor_restarts_total",
        Kind::Counter,
        Unit::Count,
        "Children restarted by a supervisor (named, or by pid).",
    ),
    (
        "girder_schedulers",
        Kind::Gauge,
        Unit::Count,
        "Scheduler threads running the node's processes.",
    ),
    (
        "girder_run_queue",
        Kind::Gauge,
        Unit::Count,
        "Processes waiting to run, summed over the schedulers.",
    ),
    (
        "girder_scheduler_runs_total",
        Kind::Counter,
        Unit::Count,
        "Times a scheduler ran a process.",
    ),
    (
        "girder_scheduler_steals_total",
        Kind::Counter,
        Unit::Count,
        "Processes taken from another scheduler's queue by an idle one.",
    ),
    (
        "girder_scheduler_sleeps_total",
        Kind::Counter,
        Unit::Count,
        "Times a scheduler went to sleep with nothing to run.",
    ),
    (
        "girder_scheduler_remote_wakes_total",
        Kind::Counter,
        Unit::Count,
        "Wake-ups handed to another scheduler thread.",
    ),
    (
        "girder_dist_connected_nodes",
        Kind::Gauge,
        Unit::Count,
        "Nodes this node has a connection to now.",
    ),
    (
        "girder_dist_connected",
        Kind::Gauge,
        Unit::Count,
        "1 while the connection to the peer is up, 0 while it is down.",
    ),
    (
        "girder_dist_bytes_out_total",
        Kind::Counter,
        Unit::Bytes,
        "Bytes sent to the peer.",
    ),
    (
        "girder_dist_bytes_in_total",
        Kind::Counter,
        Unit::Bytes,
        "Bytes received from the peer.",
    ),
    (
        "girder_dist_messages_out_total",
        Kind::Counter,
        Unit::Count,
        "Messages sent to the peer.",
    ),
    (
        "girder_dist_messages_in_total",
        Kind::Counter,
        Unit::Count,
        "Messages received from the peer.",
    ),
    (
        "girder_dist_parked",
        Kind::Gauge,
        Unit::Count,
        "Messages from the peer waiting on this node for full bounded mailboxes (their senders are paused).",
    ),
    (
        "girder_dist_pauses_sent_total",
        Kind::Counter,
        Unit::Count,
        "Times this node asked the peer to pause sending to one of its processes (a full mailbox).",
    ),
    (
        "girder_dist_parked_stalls_total",
        Kind::Counter,
        Unit::Count,
        "Times messages parked from the peer passed ConnectionConfig::max_parked and its delivery waited (a peer that ignores pauses).",
    ),
    (
        "girder_dist_listener_accepting",
        Kind::Gauge,
        Unit::Count,
        "1 while the distribution listener accepts connections, 0 while accept fails.",
    ),
    (
        "girder_dist_accept_errors_total",
        Kind::Counter,
        Unit::Count,
        "Failed accept calls of the distribution listener (retried after a pause).",
    ),
    (
        "girder_dist_handshakes_pending",
        Kind::Gauge,
        Unit::Count,
        "Incoming connections authenticating now.",
    ),
    (
        "girder_dist_handshakes_refused_total",
        Kind::Counter,
        Unit::Count,
        "Incoming connections refused: failed TLS or cookie proof, timeout, bad bytes, admission.",
    ),
    (
        "girder_dist_handshakes_turned_away_total",
        Kind::Counter,
        Unit::Count,
        "Incoming connections closed on arrival: too many authenticating, in all or from their address.",
    ),
    (
        "girder_dist_dials_refused_total",
        Kind::Counter,
        Unit::Count,
        "Dials of this node refused for the cookie: the peer closed after this node's proof (another cookie), or its own proof was wrong.",
    ),
    (
        "girder_cluster_members",
        Kind::Gauge,
        Unit::Count,
        "Cluster members this node knows of, itself included.",
    ),
    (
        "girder_membership_datagrams_received_total",
        Kind::Counter,
        Unit::Count,
        "Membership datagrams received.",
    ),
    (
        "girder_membership_datagrams_dropped_total",
        Kind::Counter,
        Unit::Count,
        "Membership datagrams dropped before the protocol, by reason: malformed, unauthenticated, replayed, stale, rate_limited, overloaded.",
    ),
    (
        "girder_alarms_active",
        Kind::Gauge,
        Unit::Count,
        "Alarms active on this node, by severity.",
    ),
    (
        "girder_ops_admin_actions_total",
        Kind::Counter,
        Unit::Count,
        "Admin actions done through the ops API, by action: kill, suspend, resume, clear_alarm.",
    ),
    (
        "girder_ops_requests_unauthorized_total",
        Kind::Counter,
        Unit::Count,
        "Ops API requests refused for a missing or wrong bearer token.",
    ),
    (
        "girder_call_duration_seconds",
        Kind::Histogram,
        Unit::Seconds,
        "How long calls took, from request to reply (one call in 16 is timed).",
    ),
];

/// Gives every metric in [`DESCRIBED`] its help text.
fn describe() {
    for &(name, kind, unit, help) in DESCRIBED {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
    }
}

/// Installs the Prometheus recorder as the process's `metrics` recorder (once) and returns the
/// handle that renders it. If another recorder was installed first, `None`.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("girder_call_duration_seconds".into()),
                    CALL_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            // Histogram samples wait in the recorder until folded in; fold them every 5 s so
            // a node nobody scrapes does not grow. A thread, so this works outside a runtime.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("girder-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// What the ops API was asked to do, counted for `/metrics`.
#[derive(Default)]
pub(crate) struct ApiCounts {
    pub(crate) kills: AtomicU64,
    pub(crate) suspends: AtomicU64,
    pub(crate) resumes: AtomicU64,
    pub(crate) alarm_clears: AtomicU64,
    /// Requests refused for a missing or wrong token.
    pub(crate) unauthorized: AtomicU64,
}

/// Publishes the ops layer's own numbers: active alarms by severity, admin actions, refused
/// requests.
pub(crate) fn collect_ops(node: &Node, alarms: &crate::AlarmManager, api: &ApiCounts) {
    let name = node.name().to_string();
    let active = alarms.active();
    for severity in [
        crate::Severity::Info,
        crate::Severity::Warning,
        crate::Severity::Minor,
        crate::Severity::Major,
        crate::Severity::Critical,
    ] {
        let n = active.iter().filter(|a| a.severity == severity).count();
        let label = format!("{severity:?}").to_lowercase();
        gauge!("girder_alarms_active", "node" => name.clone(), "severity" => label).set(n as f64);
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for (action, n) in [
        ("kill", get(&api.kills)),
        ("suspend", get(&api.suspends)),
        ("resume", get(&api.resumes)),
        ("clear_alarm", get(&api.alarm_clears)),
    ] {
        counter!("girder_ops_admin_actions_total", "node" => name.clone(), "action" => action)
            .absolute(n);
    }
    counter!("girder_ops_requests_unauthorized_total", "node" => name)
        .absolute(get(&api.unauthorized));
}

/// Publishes a node's runtime numbers into the recorder: processes, exits, messages, mailboxes,
/// supervisors' restarts and, on Girder's schedulers, theirs.
pub fn collect_node(node: &Node) {
    let name = node.name().to_string();
    let s = node.stats();
    gauge!("girder_processes", "node" => name.clone()).set(s.processes as f64);
    counter!("girder_spawns_total", "node" => name.clone()).absolute(s.spawned);
    for (reason, n) in s.exits.by_reason() {
        counter!("girder_exits_total", "node" => name.clone(), "reason" => reason).absolute(n);
    }
    counter!("girder_messages_in_total", "node" => name.clone()).absolute(s.messages_in);
    counter!("girder_messages_out_total", "node" => name.clone()).absolute(s.messages_out);
    counter!("girder_mailbox_dropped_total", "node" => name.clone()).absolute(s.mailbox_dropped);
    counter!("girder_mailbox_refused_total", "node" => name.clone()).absolute(s.mailbox_refused);
    counter!("girder_calls_expired_total", "node" => name.clone()).absolute(s.calls_expired);
    gauge!("girder_mailbox_length_max", "node" => name.clone()).set(s.mailbox_max as f64);
    gauge!("girder_mailbox_length_sum", "node" => name.clone()).set(s.mailbox_sum as f64);
    for p in node.processes() {
        if p.behaviour == "supervisor" {
            let sup = p.name.clone().unwrap_or_else(|| p.pid.to_string());
            counter!("girder_supervisor_restarts_total", "node" => name.clone(), "supervisor" => sup)
                .absolute(p.restarts as u64);
        }
    }
    if let Some(sched) = node.scheduler_stats() {
        gauge!("girder_schedulers", "node" => name.clone()).set(sched.threads as f64);
        gauge!("girder_run_queue", "node" => name.clone()).set(sched.queued as f64);
        counter!("girder_scheduler_runs_total", "node" => name.clone()).absolute(sched.runs);
        counter!("girder_scheduler_steals_total", "node" => name.clone()).absolute(sched.steals);
        counter!("girder_scheduler_sleeps_total", "node" => name.clone()).absolute(sched.parks);
        counter!("girder_scheduler_remote_wakes_total", "node" => name)
            .absolute(sched.remote_wakes);
    }
}

/// Publishes a node's runtime numbers ([`collect_node`]) and its distribution's (traffic per
/// peer, membership size), if it has one, into the recorder.
#[cfg(feature = "dist")]
pub fn collect(node: &Node, dist: Option<&DistNode>, membership: Option<&Membership>) {
    collect_node(node);
    let name = node.name().to_string();
    if let Some(dist) = dist {
        let listener = dist.listener_status();
        gauge!("girder_dist_listener_accepting", "node" => name.clone())
            .set(if listener.accepting { 1.0 } else { 0.0 });
        counter!("girder_dist_accept_errors_total", "node" => name.clone())
            .absolute(listener.errors);
        gauge!("girder_dist_handshakes_pending", "node" => name.clone())
            .set(listener.pending_handshakes as f64);
        counter!("girder_dist_handshakes_refused_total", "node" => name.clone())
            .absolute(listener.refused);
        counter!("girder_dist_handshakes_turned_away_total", "node" => name.clone())
            .absolute(listener.turned_away);
        counter!("girder_dist_dials_refused_total", "node" => name.clone())
            .absolute(listener.dials_refused);
        let peers = dist.peers();
        gauge!("girder_dist_connected_nodes", "node" => name.clone())
            .set(peers.iter().filter(|p| p.connected).count() as f64);
        for p in peers {
            let peer = p.name.to_string();
            gauge!("girder_dist_connected", "node" => name.clone(), "peer" => peer.clone())
                .set(if p.connected { 1.0 } else { 0.0 });
            counter!("girder_dist_bytes_out_total", "node" => name.clone(), "peer" => peer.clone())
                .absolute(p.bytes_out);
            counter!("girder_dist_bytes_in_total", "node" => name.clone(), "peer" => peer.clone())
                .absolute(p.bytes_in);
            counter!("girder_dist_messages_out_total", "node" => name.clone(), "peer" => peer.clone()).absolute(p.messages_out);
            counter!("girder_dist_messages_in_total", "node" => name.clone(), "peer" => peer.clone())
                .absolute(p.messages_in);
            gauge!("girder_dist_parked", "node" => name.clone(), "peer" => peer.clone())
                .set(p.parked as f64);
            counter!("girder_dist_pauses_sent_total", "node" => name.clone(), "peer" => peer.clone())
                .absolute(p.pauses_sent);
            counter!("girder_dist_parked_stalls_total", "node" => name.clone(), "peer" => peer)
                .absolute(p.parked_stalls);
        }
    }
    if let Some(m) = membership {
        // The other members plus this node.
        gauge!("girder_cluster_members", "node" => name.clone())
            .set(m.members().len() as f64 + 1.0);
        let d = m.datagram_stats();
        counter!("girder_membership_datagrams_received_total", "node" => name.clone())
            .absolute(d.received);
        for (reason, n) in [
            ("malformed", d.malformed),
            ("unauthenticated", d.unauthenticated),
            ("replayed", d.replayed),
            ("stale", d.stale),
            ("rate_limited", d.rate_limited),
            ("overloaded", d.overloaded),
        ] {
            counter!("girder_membership_datagrams_dropped_total", "node" => name.clone(), "reason" => reason)
                .absolute(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DESCRIBED;

    /// A metric added to `collect` without a description would have no `# HELP` line.
    #[test]
    fn every_metric_published_here_is_described() {
        let source = include_str!("exporter.rs");
        let mut published = Vec::new();
        for macro_call in ["counter!(\"", "gauge!(\""] {
            for (i, _) in source.match_indices(macro_call) {
                let rest = &source[i + macro_call.len()..];
                published.push(&rest[..rest.find('"').unwrap()]);
            }
        }
        assert!(published.len() >= 20, "{published:?}");
        for name in published {
            assert!(
                DESCRIBED.iter().any(|(n, ..)| *n == name),
                "{name} is published without a description"
            );
        }
    }
}
