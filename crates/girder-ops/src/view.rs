//! What the ops API shows: the core's snapshots as JSON, with every pid written as it prints
//! (`<0.42.1>`), the form the log, the notices, `girder status` and the kill endpoint use.
//!
//! A pid's own `Serialize` is the wire form (`[node, creation, id]`, in another order than it
//! prints); an operator copying a pid from the JSON into `POST /api/processes/<pid>/kill` or a
//! log search needs the printed form. Each view lists its core struct's fields without `..`, so
//! a field added in the core is a compile error here until the API decides how to show it.

use girder::stats::{ExitCounts, NodeStats};
use girder::supervisor::ChildInfo;
use girder::sys::{StateView, SysState, TraceEvent, Traced};
use girder::{Pid, ProcessInfo};
use serde::{Serialize, Serializer};

/// Serializes a pid as its `Display` form.
pub(crate) fn pid_text<S: Serializer>(pid: &Pid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(pid)
}

/// Serializes an optional pid as its `Display` form, or `null`.
pub(crate) fn opt_pid_text<S: Serializer>(pid: &Option<Pid>, s: S) -> Result<S::Ok, S::Error> {
    match pid {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
}

/// [`ProcessInfo`] for the API.
#[derive(Serialize)]
pub(crate) struct ProcessView {
    #[serde(serialize_with = "pid_text")]
    pid: Pid,
    name: Option<String>,
    behaviour: &'static str,
    mailbox_len: usize,
    restarts: u32,
    links: usize,
    monitored_by: usize,
    trap_exit: bool,
    messages_in: u64,
    mailbox: Option<girder::MailboxStats>,
}

impl From<ProcessInfo> for ProcessView {
    fn from(p: ProcessInfo) -> Self {
        let ProcessInfo {
            pid,
            name,
            behaviour,
            mailbox_len,
            restarts,
            links,
            monitored_by,
            trap_exit,
            messages_in,
            mailbox,
        } = p;
        ProcessView {
            pid,
            name,
            behaviour,
            mailbox_len,
            restarts,
            links,
            monitored_by,
            trap_exit,
            messages_in,
            mailbox,
        }
    }
}

/// [`NodeStats`] for the API.
#[derive(Serialize)]
pub(crate) struct StatsView {
    processes: usize,
    spawned: u64,
    exits: ExitCounts,
    messages_in: u64,
    messages_out: u64,
    mailbox_sum: u64,
    mailbox_max: usize,
    #[serde(serialize_with = "opt_pid_text")]
    mailbox_max_pid: Option<Pid>,
    restarts: u64,
    mailbox_dropped: u64,
    mailbox_refused: u64,
    calls_expired: u64,
}

impl From<NodeStats> for StatsView {
    fn from(s: NodeStats) -> Self {
        let NodeStats {
            processes,
            spawned,
            exits,
            messages_in,
            messages_out,
            mailbox_sum,
            mailbox_max,
            mailbox_max_pid,
            restarts,
            mailbox_dropped,
            mailbox_refused,
            calls_expired,
        } = s;
        StatsView {
            processes,
            spawned,
            exits,
            messages_in,
            messages_out,
            mailbox_sum,
            mailbox_max,
            mailbox_max_pid,
            restarts,
            mailbox_dropped,
            mailbox_refused,
            calls_expired,
        }
    }
}

/// [`ChildInfo`] for the API.
#[derive(Serialize)]
pub(crate) struct ChildView {
    id: String,
    #[serde(serialize_with = "opt_pid_text")]
    pub(crate) pid: Option<Pid>,
    restarting: bool,
    kind: girder::supervisor::ChildKind,
    restart: girder::supervisor::Restart,
    restarts: u32,
}

impl From<ChildInfo> for ChildView {
    fn from(c: ChildInfo) -> Self {
        let ChildInfo {
            id,
            pid,
            restarting,
            kind,
            restart,
            restarts,
        } = c;
        ChildView {
            id,
            pid,
            restarting,
            kind,
            restart,
            restarts,
        }
    }
}

/// [`SysState`] for the API (`GET /api/processes/<pid>/state`).
#[derive(Serialize)]
pub(crate) struct SysStateView {
    #[serde(serialize_with = "pid_text")]
    pid: Pid,
    behaviour: &'static str,
    state: Option<String>,
    view: StateView,
    suspended: bool,
    tracers: usize,
}

impl From<SysState> for SysStateView {
    fn from(s: SysState) -> Self {
        let SysState {
            pid,
            behaviour,
            state,
            view,
            suspended,
            tracers,
        } = s;
        SysStateView {
            pid,
            behaviour,
            state,
            view,
            suspended,
            tracers,
        }
    }
}

/// [`TraceEvent`] for the API (`GET /api/processes/<pid>/trace`).
#[derive(Serialize)]
pub(crate) struct TraceEventView {
    #[serde(serialize_with = "pid_text")]
    pid: Pid,
    at_ms: u64,
    event: TracedView,
    detail: Option<String>,
}

impl From<TraceEvent> for TraceEventView {
    fn from(e: TraceEvent) -> Self {
        let TraceEvent {
            pid,
            at_ms,
            event,
            detail,
        } = e;
        TraceEventView {
            pid,
            at_ms,
            event: event.into(),
            detail,
        }
    }
}

/// [`Traced`] for the API: the same tags and fields, pids as they print.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum TracedView {
    Call,
    Cast,
    Info,
    Exit {
        #[serde(serialize_with = "pid_text")]
        from: Pid,
        reason: String,
    },
    Down {
        #[serde(serialize_with = "pid_text")]
        pid: Pid,
        reason: String,
    },
    Timeout,
    StateChange {
        from: String,
        to: String,
    },
    Suspended,
    Resumed,
    Dropped {
        count: u64,
    },
    Stopping {
        reason: String,
    },
}

impl From<Traced> for TracedView {
    fn from(t: Traced) -> Self {
        match t {
            Traced::Call => TracedView::Call,
            Traced::Cast => TracedView::Cast,
            Traced::Info => TracedView::Info,
            Traced::Exit { from, reason } => TracedView::Exit { from, reason },
            Traced::Down { pid, reason } => TracedView::Down { pid, reason },
            Traced::Timeout => TracedView::Timeout,
            Traced::StateChange { from, to } => TracedView::StateChange { from, to },
            Traced::Suspended => TracedView::Suspended,
            Traced::Resumed => TracedView::Resumed,
            Traced::Dropped { count } => TracedView::Dropped { count },
            Traced::Stopping { reason } => TracedView::Stopping { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_as_they_print() {
        let pid = Pid::new(0, 3, 42);
        let info = ProcessInfo {
            pid,
            name: None,
            behaviour: "process",
            mailbox_len: 0,
            restarts: 0,
            links: 0,
            monitored_by: 0,
            trap_exit: false,
            messages_in: 0,
            mailbox: None,
        };
        let v = serde_json::to_value(ProcessView::from(info)).unwrap();
        assert_eq!(v["pid"], "<0.42.3>");
        assert_eq!(v["pid"], pid.to_string());
        let stats = NodeStats {
            mailbox_max_pid: Some(pid),
            ..NodeStats::default()
        };
        let v = serde_json::to_value(StatsView::from(stats)).unwrap();
        assert_eq!(v["mailbox_max_pid"], "<0.42.3>");
        let v = serde_json::to_value(StatsView::from(NodeStats::default())).unwrap();
        assert!(v["mailbox_max_pid"].is_null());
    }

    #[test]
    fn sys_states_and_trace_events_write_pids_as_they_print() {
        let pid = Pid::new(0, 3, 42);
        let other = Pid::new(0, 3, 7);
        let state = SysState {
            pid,
            behaviour: "statem",
            state: Some("On".into()),
            view: StateView::Text("Switch { flips: 1 }".into()),
            suspended: true,
            tracers: 2,
        };
        let v = serde_json::to_value(SysStateView::from(state)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "pid": "<0.42.3>", "behaviour": "statem", "state": "On",
                "view": {"kind": "text", "value": "Switch { flips: 1 }"},
                "suspended": true, "tracers": 2,
            })
        );
        for (event, expected) in [
            (Traced::Cast, serde_json::json!({"kind": "cast"})),
            (
                Traced::Exit {
                    from: other,
                    reason: "killed".into(),
                },
                serde_json::json!({"kind": "exit", "from": "<0.7.3>", "reason": "killed"}),
            ),
            (
                Traced::Down {
                    pid: other,
                    reason: "normal".into(),
                },
                serde_json::json!({"kind": "down", "pid": "<0.7.3>", "reason": "normal"}),
            ),
            (
                Traced::StateChange {
                    from: "Off".into(),
                    to: "On".into(),
                },
                serde_json::json!({"kind": "state_change", "from": "Off", "to": "On"}),
            ),
        ] {
            // The same tags and fields as the core's own serialization, pids aside.
            let core = serde_json::to_value(&event).unwrap();
            let e = TraceEvent {
                pid,
                at_ms: 1,
                event,
                detail: Some("Cast(1)".into()),
            };
            let v = serde_json::to_value(TraceEventView::from(e)).unwrap();
            assert_eq!(v["pid"], "<0.42.3>");
            assert_eq!(v["at_ms"], 1);
            assert_eq!(v["detail"], "Cast(1)");
            assert_eq!(v["event"], expected);
            let keys =
                |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&v["event"]), keys(&core));
        }
    }
}
