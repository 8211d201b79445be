//! What the ops layer watches on a node, as tasks of the node: the standard thresholds that
//! raise and clear alarms (mailboxes, restart storms, overload, memory, scheduling lag), the
//! supervisors' lifecycle and the cluster's nodes as notices and alarms, and the notices
//! written to the log.

use std::time::Duration;

use girder::{Node, OwnedTask};
#[cfg(feature = "dist")]
use girder_dist::{DistNode, NodeEvent};

#[cfg(feature = "dist")]
use crate::alarm::Alarm;
use crate::alarm::{AlarmManager, Severity, Threshold};
use crate::notice::Notice;
use crate::OpsConfig;

/// Mailbox length, restart storms, overload and memory, checked every second. Overload and
/// memory read the node's load sampler ([`Node::load`]), as regulators do.
pub(crate) fn standard_thresholds(
    node: &Node,
    alarms: &AlarmManager,
    cfg: &OpsConfig,
) -> Vec<OwnedTask> {
    let mut tasks = Vec::new();
    let source = node.name().to_string();
    let n = node.clone();
    let limit = cfg.mailbox_alarm as f64;
    tasks.push(
        alarms.watch(
            node,
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
        ),
    );
    let n = node.clone();
    let mut window: std::collections::VecDeque<(tokio::time::Instant, u64)> = Default::default();
    tasks.push(
        alarms.watch(
            node,
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
        ),
    );
    // The node's own sampler: lag measured on its schedulers, where its processes run.
    let n = node.clone();
    let limit = cfg.overload_lag.as_secs_f64();
    tasks.push(
        alarms.watch(
            node,
            Threshold::new(
                "overload",
                Severity::Major,
                format!(
                    "the runtime is overloaded: timers fire more than {} ms late",
                    cfg.overload_lag.as_millis()
                ),
                move || n.load().lag.as_secs_f64(),
            )
            .raise_above(limit)
            .clear_below(limit / 4.0)
            .for_at_least(Duration::from_secs(5))
            .source(source.clone()),
            Duration::from_secs(1),
        ),
    );
    if let Some(limit) = cfg.memory_alarm {
        let n = node.clone();
        tasks.push(
            alarms.watch(
                node,
                Threshold::new(
                    "memory_high",
                    Severity::Major,
                    format!("resident memory above {} MiB", limit >> 20),
                    move || n.load().memory_bytes as f64,
                )
                .raise_above(limit as f64)
                .clear_below(limit as f64 * 0.9)
                .for_at_least(Duration::from_secs(5))
                .source(source),
                Duration::from_secs(1),
            ),
        );
    }
    tasks
}

/// The OS process's resident memory, from `/proc/self/statm` (0 where there is none): what the
/// node's load sampler reports ([`girder::sampler::resident_bytes`]).
pub fn resident_bytes() -> u64 {
    girder::sampler::resident_bytes()
}

/// Every notice goes to the log.
pub(crate) fn log_notices(node: &Node, alarms: &AlarmManager) -> OwnedTask {
    let mut rx = alarms.subscribe();
    node.spawn_owned(async move {
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
    })
}

/// Supervisors' restarts and give-ups as notices.
pub(crate) fn follow_lifecycle(node: &Node, alarms: &AlarmManager) -> OwnedTask {
    use girder::lifecycle::Lifecycle;
    let mut events = node.lifecycle();
    let alarms = alarms.clone();
    node.spawn_owned(async move {
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
    })
}

/// Node up, down, left and forgotten notices, and a `node_down:<name>` alarm from a connection
/// lost without a goodbye ([`NodeEvent::Down`]) until the node is back ([`NodeEvent::Up`]) or
/// forgotten ([`NodeEvent::Forgotten`]: membership gave up on it, or an operator forgot it). A
/// node that leaves gracefully ([`NodeEvent::Left`]) is a notice only.
#[cfg(feature = "dist")]
pub(crate) fn follow_nodes(dist: &DistNode, alarms: &AlarmManager) -> OwnedTask {
    let mut events = dist.subscribe();
    let alarms = alarms.clone();
    let me = dist.name().to_string();
    dist.node().spawn_owned(async move {
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
                Ok(NodeEvent::Left { node, reason }) => alarms.publish(Notice::NodeLeft {
                    node: node.to_string(),
                    reason,
                }),
                Ok(NodeEvent::Forgotten(node)) => {
                    let _ = alarms.clear(&format!("node_down:{node}"));
                    alarms.publish(Notice::NodeForgotten {
                        node: node.to_string(),
                    });
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    })
}
