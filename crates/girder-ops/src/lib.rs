//! # girder-ops: a node's eyes and voice
//!
//! Metrics, alarms, notifications and an HTTP ops API for a Girder node, as a side effect of the
//! runtime: nothing in user handlers.
//!
//! | module | what it is | OTP anchor |
//! |---|---|---|
//! | [`exporter`] | runtime and (with `dist`) distribution numbers on the `metrics` facade, Prometheus text | `observer`, `recon` |
//! | [`alarm`] | [`AlarmManager`]: raise/clear, no duplicates, history, thresholds with hysteresis | SASL `alarm_handler`, elarm |
//! | `cluster` (feature `dist`) | every node's active alarms, asked for across the cluster | `alarm_handler` on each node |
//! | [`notice`] | [`Notice`]: what subscribers hear (alarms, nodes up and down) | `error_logger` events |
//! | [`webhook`] | [`webhook::Webhook`]: notices POSTed as JSON, retried with back-off, bounded | — |
//! | [`Ops`] | all of it on one node, served over HTTP: probes, metrics, processes, supervision, alarms, live events, and [`girder::sys`] for each behaviour (its state, suspend/resume, a live trace) | `observer`, `sys` |
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use girder::Node;
//! use girder_ops::{Ops, OpsConfig};
//! let node = Node::new("docs");
//! let ops = Ops::start_local(node, OpsConfig::new("127.0.0.1:0".parse().unwrap())).await.unwrap();
//! let url = format!("http://{}/healthz", ops.local_addr());
//! # let _ = url;
//! # }
//! ```
//!
//! ## Features
//!
//! - `dist` (on by default): the cluster, from `girder-dist`. `Ops::start` takes the node's
//!   `DistNode` and membership: node up/down notices and `node_down:<name>` alarms, other
//!   nodes' alarms (`/api/alarms?scope=cluster`), peers and members in `/api/nodes`, traffic
//!   and membership metrics, readiness that waits for peers. Without it the crate depends on
//!   the core alone and serves the single-node ops API ([`Ops::start_local`]): metrics, alarms,
//!   processes (with `sys`: state, suspend/resume, traces), the supervision tree, health
//!   probes, live events and the dashboard.

#![warn(missing_docs)]

pub mod alarm;
#[cfg(feature = "dist")]
pub mod cluster;
pub mod exporter;
mod http;
pub mod notice;
mod view;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use girder::Node;
#[cfg(feature = "dist")]
use girder_dist::{DistNode, Membership, NodeEvent};
use metrics_exporter_prometheus::PrometheusHandle;

pub use alarm::{Alarm, AlarmManager, Severity, Threshold};
pub use notice::Notice;

/// How a node's ops endpoint runs.
#[derive(Clone, Debug)]
pub struct OpsConfig {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// The bearer token for admin actions (clearing alarms, killing, suspending and resuming
    /// processes). Without one, admin actions are refused.
    pub admin_token: Option<String>,
    /// Also require the token for reads.
    pub protect_reads: bool,
    /// Raise `mailbox_long` when a mailbox holds more than this for 5 s (cleared at half).
    pub mailbox_alarm: usize,
    /// Raise `memory_high` when the OS process's resident memory exceeds this many bytes.
    pub memory_alarm: Option<u64>,
    /// Raise `restart_storm` when supervisors restart more than this many children in 10 s.
    pub restart_alarm: u64,
    /// Raise `overload` when the runtime's scheduling lag (how late a 100 ms timer fires) stays
    /// above this for 5 s (cleared below a quarter of it).
    pub overload_lag: Duration,
    /// `/readyz` fails while membership has no other member (with the `dist` feature and a
    /// membership given to `Ops::start`).
    pub expect_peers: bool,
    /// POST every notice to this URL (see [`webhook`]).
    pub webhook: Option<webhook::WebhookConfig>,
}

impl OpsConfig {
    /// Defaults: no admin token, open reads, mailbox alarm at 10,000, restart storm at 20 per
    /// 10 s, no memory alarm.
    pub fn new(listen: SocketAddr) -> Self {
        OpsConfig {
            listen,
            admin_token: None,
            protect_reads: false,
            mailbox_alarm: 10_000,
            memory_alarm: None,
            restart_alarm: 20,
            overload_lag: Duration::from_millis(200),
            expect_peers: false,
            webhook: None,
        }
    }
}

/// What the HTTP handlers share.
pub(crate) struct Shared {
    pub(crate) node: Node,
    // Empty without the `dist` feature.
    #[cfg_attr(not(feature = "dist"), allow(dead_code))]
    pub(crate) cluster: Cluster,
    pub(crate) alarms: AlarmManager,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) admin_token: Option<String>,
    pub(crate) protect_reads: bool,
    #[cfg(feature = "dist")]
    pub(crate) expect_peers: bool,
    /// Silence on `/api/events` before a keep-alive comment.
    pub(crate) events_keep_alive: Duration,
}

/// The node's distribution, when it has one (always none without the `dist` feature).
#[derive(Default)]
pub(crate) struct Cluster {
    #[cfg(feature = "dist")]
    pub(crate) dist: Option<DistNode>,
    #[cfg(feature = "dist")]
    pub(crate) membership: Option<Arc<Membership>>,
}

/// Settings an operator has no reason to change, which tests shorten.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    /// See [`http::EVENTS_KEEP_ALIVE`].
    events_keep_alive: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            events_keep_alive: http::EVENTS_KEEP_ALIVE,
        }
    }
}

/// A node's ops endpoint: alarms, notifications and the HTTP API. Stops when dropped.
pub struct Ops {
    alarms: AlarmManager,
    local_addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    webhook: Option<webhook::Webhook>,
}

impl Ops {
    /// Starts the HTTP API on `cfg.listen`, the standard thresholds, a log of notices and, with
    /// a [`DistNode`], node up/down notices and `node_down:<name>` alarms, this node's alarms
    /// served to the others and theirs asked for; with a [`Membership`], the members in
    /// `/api/nodes` and the metrics, and readiness that waits for peers
    /// ([`OpsConfig::expect_peers`]).
    #[cfg(feature = "dist")]
    pub async fn start(
        node: Node,
        dist: Option<DistNode>,
        membership: Option<Arc<Membership>>,
        cfg: OpsConfig,
    ) -> std::io::Result<Ops> {
        let cluster = Cluster { dist, membership };
        Self::launch(node, cluster, cfg, Tuning::default()).await
    }

    /// Starts the single-node ops API on `cfg.listen` (metrics, alarms, processes, supervision
    /// tree, health probes, live events, dashboard), the standard thresholds and a log of
    /// notices. With the `dist` feature, the same as `Ops::start` without a `DistNode`.
    pub async fn start_local(node: Node, cfg: OpsConfig) -> std::io::Result<Ops> {
        Self::launch(node, Cluster::default(), cfg, Tuning::default()).await
    }

    async fn launch(
        node: Node,
        cluster: Cluster,
        cfg: OpsConfig,
        tuning: Tuning,
    ) -> std::io::Result<Ops> {
        let alarms = AlarmManager::new();
        standard_thresholds(&node, &alarms, &cfg);
        log_notices(&alarms);
        follow_lifecycle(&node, &alarms);
        let webhook = cfg
            .webhook
            .clone()
            .map(|w| webhook::Webhook::start(&alarms, w));
        #[cfg(feature = "dist")]
        if let Some(d) = &cluster.dist {
            follow_nodes(d, &alarms);
            crate::cluster::serve(d, &alarms).await;
        }
        let shared = Arc::new(Shared {
            node,
            cluster,
            alarms: alarms.clone(),
            metrics: exporter::install(),
            admin_token: cfg.admin_token.clone(),
            protect_reads: cfg.protect_reads,
            #[cfg(feature = "dist")]
            expect_peers: cfg.expect_peers,
            events_keep_alive: tuning.events_keep_alive,
        });
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let app = http::router(shared);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "ops HTTP server ended");
            }
        });
        Ok(Ops {
            alarms,
            local_addr,
            server,
            webhook,
        })
    }

    /// Where the HTTP API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The webhook sink, if one is configured.
    pub fn webhook(&self) -> Option<&webhook::Webhook> {
        self.webhook.as_ref()
    }

    /// The node's alarm manager (applications raise their own alarms here).
    pub fn alarms(&self) -> &AlarmManager {
        &self.alarms
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Mailbox length, restart storms and memory, checked every second.
fn standard_thresholds(node: &Node, alarms: &AlarmManager, cfg: &OpsConfig) {
    let source = node.name().to_string();
    let n = node.clone();
    let limit = cfg.mailbox_alarm as f64;
    alarms.watch(
        Threshold::new(
            "mailbox_long",
            Severity::Warning,
            format!("a mailbox holds more than {} messages", cfg.mailbox_alarm),
            move || n.stats().mailbox_max as f64,
        )
        .raise_above(limit)
        .clear_below(limit / 2.0)
        .for_at_least(Duration::from_secs(5))
        .source(source.clone()),
        Duration::from_secs(1),
    );
    let n = node.clone();
    let mut window: std::collections::VecDeque<(tokio::time::Instant, u64)> = Default::default();
    alarms.watch(
        Threshold::new(
            "restart_storm",
            Severity::Major,
            format!(
                "supervisors restarted more than {} children in 10 s",
                cfg.restart_alarm
            ),
            move || {
                // Restarts in the last 10 s: the total now minus the total 10 s ago.
                let total = n.restarts();
                let now = tokio::time::Instant::now();
                window.push_back((now, total));
                while window
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(10))
                {
                    window.pop_front();
                }
                total.saturating_sub(window.front().map_or(total, |(_, v)| *v)) as f64
            },
        )
        .raise_above(cfg.restart_alarm as f64)
        .clear_below(0.0)
        .source(source.clone()),
        Duration::from_secs(1),
    );
    let lag = scheduling_lag();
    let limit = cfg.overload_lag.as_secs_f64();
    alarms.watch(
        Threshold::new(
            "overload",
            Severity::Major,
            format!(
                "the runtime is overloaded: timers fire more than {} ms late",
                cfg.overload_lag.as_millis()
            ),
            move || f64::from_bits(lag.load(std::sync::atomic::Ordering::Relaxed)),
        )
        .raise_above(limit)
        .clear_below(limit / 4.0)
        .for_at_least(Duration::from_secs(5))
        .source(source.clone()),
        Duration::from_secs(1),
    );
    if let Some(limit) = cfg.memory_alarm {
        alarms.watch(
            Threshold::new(
                "memory_high",
                Severity::Major,
                format!("resident memory above {} MiB", limit >> 20),
                || resident_bytes() as f64,
            )
            .raise_above(limit as f64)
            .clear_below(limit as f64 * 0.9)
            .for_at_least(Duration::from_secs(5))
            .source(source),
            Duration::from_secs(1),
        );
    }
}

/// How late the runtime runs a task that asks to wake every 100 ms, in seconds (the worst of
/// the last second): when every worker is busy, everything waits this long. The BEAM's
/// equivalent is its run-queue length.
fn scheduling_lag() -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    use std::sync::atomic::Ordering::Relaxed;
    let lag = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0f64.to_bits()));
    let weak = std::sync::Arc::downgrade(&lag);
    tokio::spawn(async move {
        let period = Duration::from_millis(100);
        let mut worst = 0f64;
        let mut n = 0;
        loop {
            let asked = tokio::time::Instant::now();
            tokio::time::sleep(period).await;
            let late = (asked.elapsed().saturating_sub(period)).as_secs_f64();
            worst = worst.max(late);
            n += 1;
            if n == 10 {
                let Some(lag) = weak.upgrade() else { return };
                lag.store(worst.to_bits(), Relaxed);
                (worst, n) = (0.0, 0);
            }
        }
    });
    lag
}

/// The OS process's resident memory, from `/proc/self/statm` (0 where there is none).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Every notice goes to the log.
fn log_notices(alarms: &AlarmManager) {
    let mut rx = alarms.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(
                    n @ (Notice::AlarmRaised { .. }
                    | Notice::NodeDown { .. }
                    | Notice::SupervisorGaveUp { .. }),
                ) => tracing::warn!("{}", n.line()),
                Ok(n) => tracing::info!("{}", n.line()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    tracing::warn!("notice log missed {k} notices")
                }
                Err(_) => return,
            }
        }
    });
}

/// Supervisors' restarts and give-ups as notices.
fn follow_lifecycle(node: &Node, alarms: &AlarmManager) {
    use girder::lifecycle::Lifecycle;
    let mut events = node.lifecycle();
    let alarms = alarms.clone();
    tokio::spawn(async move {
        let name = |n: Option<String>, pid: girder::Pid| n.unwrap_or_else(|| pid.to_string());
        loop {
            let notice = match events.recv().await {
                Ok(Lifecycle::ChildRestarting {
                    supervisor,
                    supervisor_name,
                    child,
                    reason,
                    ..
                }) => Notice::ProcessRestarted {
                    supervisor: name(supervisor_name, supervisor),
                    child,
                    reason: reason.to_string(),
                },
                Ok(Lifecycle::SupervisorGaveUp {
                    supervisor,
                    supervisor_name,
                }) => Notice::SupervisorGaveUp {
                    supervisor: name(supervisor_name, supervisor),
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            alarms.publish(notice);
        }
    });
}

/// Node up/down notices, and a `node_down:<name>` alarm while a connection is down.
#[cfg(feature = "dist")]
fn follow_nodes(dist: &DistNode, alarms: &AlarmManager) {
    let mut events = dist.subscribe();
    let alarms = alarms.clone();
    let me = dist.name().to_string();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Up(n)) => {
                    let _ = alarms.clear(&format!("node_down:{n}"));
                    alarms.publish(Notice::NodeUp {
                        node: n.to_string(),
                    });
                }
                Ok(NodeEvent::Down { node, reason }) => {
                    let _ = alarms.raise(Alarm::new(
                        format!("node_down:{node}"),
                        Severity::Major,
                        me.clone(),
                        format!("connection to {node} lost: {reason}"),
                    ));
                    alarms.publish(Notice::NodeDown {
                        node: node.to_string(),
                        reason,
                    });
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_event_stream_gets_keep_alive_comments() {
        let node = Node::new("keep-alive");
        let cfg = OpsConfig::new("127.0.0.1:0".parse().unwrap());
        let tuning = Tuning {
            events_keep_alive: Duration::from_millis(100),
        };
        let ops = Ops::launch(node, Cluster::default(), cfg, tuning)
            .await
            .unwrap();
        let mut stream = reqwest::get(format!("http://{}/api/events", ops.local_addr()))
            .await
            .unwrap();
        // Nothing happens on the node: all the stream carries is keep-alive comments.
        let mut seen = String::new();
        while seen.lines().filter(|l| l.starts_with(':')).count() < 2 {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                .await
                .expect("a keep-alive within 5 s")
                .unwrap()
                .expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            seen.lines().all(|l| l.is_empty() || l.starts_with(':')),
            "{seen:?}"
        );
    }
}
