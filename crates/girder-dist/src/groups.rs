//! Process groups across the cluster (OTP's `pg`): named groups of processes, any number per
//! group, joined and left at run time, in scopes that are independent of each other.
//!
//! Each node keeps a copy of a scope, so [`Groups::members`] is a local read. A process is
//! announced by its own node and leaves every group when it exits or its node goes down. The
//! copies are eventually consistent and converge after partitions heal.
//! [`Groups::pick`] prefers members on this node (no network hop), as `pg:get_local_members`
//! users do by hand.
//!
//! Each scope's service runs under the node's supervisor of Girder's services
//! ([`DistNode::services`]) and comes back, with its groups, if it dies (see
//! [`crate::global`], which works the same way).

use std::sync::atomic::{AtomicUsize, Ordering};

use girder::Pid;

use crate::replica::{now_stamp, Entry, Mode, Replica};
use crate::DistNode;

/// Why a process could not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Only a process of this node can join here (join on its own node).
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
    /// The process is not alive.
    #[error("{0} is not alive")]
    NoProc(Pid),
}

/// This node's handle to one scope of process groups.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder::{ExitReason, Node};
/// use girder_dist::{groups::Groups, Cookie, DistConfig, DistNode, NodeName};
///
/// let cfg = DistConfig::new(
///     NodeName::new("a@localhost").unwrap(),
///     Cookie::new("a-cookie-of-decent-length").unwrap(),
///     "127.0.0.1:0".parse().unwrap(),
/// );
/// let dist = DistNode::start(Node::new("a"), cfg).await.unwrap();
/// let groups = Groups::start(&dist, "workers").await.unwrap();
/// let w = dist.node().spawn(|mut ctx: girder::Context<()>| async move {
///     ctx.recv().await;
///     ExitReason::Normal
/// });
/// groups.join("pool", w.pid()).unwrap();
/// assert_eq!(groups.members("pool"), vec![w.pid()]);
/// assert_eq!(groups.pick("pool"), Some(w.pid()));
/// groups.leave("pool", w.pid());
/// assert!(groups.members("pool").is_empty());
/// # }
/// ```
#[derive(Clone)]
pub struct Groups {
    replica: Replica,
    next: std::sync::Arc<AtomicUsize>,
}

impl Groups {
    /// Starts this node's service for `scope`, registered as `girder.pg.<scope>`, under the
    /// node's supervisor of Girder's services ([`DistNode::services`]): killed or crashed, it
    /// is started again under its name with the groups intact (this node's members are kept
    /// in the handles' copy; the other nodes' are fetched from them again). One per scope per
    /// node (a second start fails with
    /// [`SupervisorError::AlreadyStarted`](girder::supervisor::SupervisorError::AlreadyStarted));
    /// nodes share a scope by its name.
    pub async fn start(
        dist: &DistNode,
        scope: &str,
    ) -> Result<Groups, girder::supervisor::SupervisorError> {
        Ok(Groups {
            replica: Replica::start(dist, &format!("girder.pg.{scope}"), Mode::Set).await?,
            next: Default::default(),
        })
    }

    /// Adds `pid` (a live process of this node) to `group`. Joining twice is a no-op.
    pub fn join(&self, group: &str, pid: Pid) -> Result<(), GroupError> {
        if !pid.is_local() {
            return Err(GroupError::NotLocal(pid));
        }
        if !self.replica.dist.node().is_alive(pid) {
            return Err(GroupError::NoProc(pid));
        }
        let entry = Entry {
            key: group.to_string(),
            pid,
            stamp: now_stamp(),
        };
        {
            let mut t = self.replica.table.write();
            let v = t.by_key.entry(group.to_string()).or_default();
            if v.iter().any(|e| e.pid == pid) {
                return Ok(());
            }
            v.push(entry.clone());
        }
        self.replica.add_local(entry);
        Ok(())
    }

    /// Removes `pid` (of this node) from `group`. True if it was a member.
    pub fn leave(&self, group: &str, pid: Pid) -> bool {
        if !pid.is_local() {
            return false;
        }
        let removed = self.replica.table.write().remove(group, pid);
        match removed {
            Some(e) => {
                self.replica.remove_local(e);
                true
            }
            None => false,
        }
    }

    /// Every member of `group`, this node's first.
    pub fn members(&self, group: &str) -> Vec<Pid> {
        let mut v: Vec<Pid> = self
            .replica
            .table
            .read()
            .by_key
            .get(group)
            .map(|v| v.iter().map(|e| e.pid).collect())
            .unwrap_or_default();
        v.sort_by_key(|p| (!p.is_local(), *p));
        v
    }

    /// The members of `group` on this node.
    pub fn local_members(&self, group: &str) -> Vec<Pid> {
        let mut v = self.members(group);
        v.retain(|p| p.is_local());
        v
    }

    /// One member of `group`, taking turns: among this node's members if there are any,
    /// otherwise among the others.
    pub fn pick(&self, group: &str) -> Option<Pid> {
        let all = self.members(group);
        let local = all.iter().take_while(|p| p.is_local()).count();
        let pool = if local > 0 { &all[..local] } else { &all[..] };
        if pool.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(pool[i % pool.len()])
    }

    /// The groups with at least one member.
    pub fn groups(&self) -> Vec<String> {
        let mut v: Vec<String> = self.replica.table.read().by_key.keys().cloned().collect();
        v.sort();
        v
    }
}
