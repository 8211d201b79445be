//! Looking at live processes without stopping them.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::process::core::AnyProcess;
use crate::{Node, Pid};

/// A snapshot of one live process, for operators and dashboards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// The process.
    pub pid: Pid,
    /// Its registered name, if any.
    pub name: Option<String>,
    /// What kind of process it is: `"process"`, `"server"`, `"supervisor"`, ...
    pub behaviour: &'static str,
    /// Messages waiting in its mailbox (approximate while it runs).
    pub mailbox_len: usize,
    /// For a supervised child: how many times its supervisor had restarted it when it started.
    /// For a supervisor: how many restarts it has made.
    pub restarts: u32,
    /// How many processes it is linked to.
    pub links: usize,
    /// How many monitors watch it.
    pub monitored_by: usize,
    /// Whether it traps exits.
    pub trap_exit: bool,
    /// Messages ever delivered to its mailbox.
    pub messages_in: u64,
    /// A bounded mailbox's capacity, overflow policy and what the policy dropped or refused.
    pub mailbox: Option<crate::MailboxStats>,
}

impl Node {
    /// Every live process, in pid order. Takes each process's lock briefly; never stops them.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{Event, ExitReason, Node};
    /// let node = Node::new("docs");
    /// let a = node.spawn(|mut ctx| async move {
    ///     let _: Event<u8> = ctx.recv().await;
    ///     ExitReason::Normal
    /// });
    /// let infos = node.processes();
    /// assert_eq!(infos.len(), 1);
    /// assert_eq!(infos[0].pid, a.pid());
    /// assert_eq!(infos[0].behaviour, "process");
    /// # }
    /// ```
    pub fn processes(&self) -> Vec<ProcessInfo> {
        // Collected first so no table shard is locked while process locks are taken.
        let procs: Vec<_> = self.inner.procs.iter().map(|e| e.value().clone()).collect();
        let mut out: Vec<ProcessInfo> = procs.iter().filter_map(|p| snapshot(&**p)).collect();
        out.sort_by_key(|i| i.pid);
        out
    }

    /// A snapshot of one process, if it is alive.
    pub fn process_info(&self, pid: Pid) -> Option<ProcessInfo> {
        snapshot(&*self.lookup_any(pid)?)
    }

    /// Records on `pid` how many restarts it stands for (used by supervisors).
    pub(crate) fn set_restarts(&self, pid: Pid, n: u32) {
        if let Some(p) = self.lookup_any(pid) {
            p.header().restarts.store(n, Ordering::Relaxed);
        }
    }
}

fn snapshot(p: &dyn AnyProcess) -> Option<ProcessInfo> {
    let h = p.header();
    let mut info = {
        let meta = h.meta.lock();
        if meta.has_exited() {
            return None;
        }
        ProcessInfo {
            pid: h.pid,
            name: meta.name().map(|n| n.to_string()),
            behaviour: meta.behaviour,
            mailbox_len: 0,
            restarts: h.restarts.load(Ordering::Relaxed),
            links: meta.links.len(),
            monitored_by: meta.monitors().filter(|m| m.watched).count(),
            trap_exit: h.traps_exits(),
            messages_in: 0,
            mailbox: None,
        }
    };
    // Read outside the process lock: it takes the mailbox lock.
    info.mailbox_len = p.mailbox_len();
    info.messages_in = p.messages_in();
    info.mailbox = p.mailbox_stats();
    Some(info)
}
