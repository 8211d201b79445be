//! The global registry: names that are unique across the cluster (OTP's `global`).
//!
//! Every node keeps a copy, so [`Global::whereis`] is a local map read. A name is registered by
//! the node of the process that holds it, announced to every node running the registry, and
//! dropped when that process exits or its node goes down. The copies are eventually
//! consistent: during a partition both sides may register the same name; when the partition
//! heals the older registration wins on every node and the other holder is ended with an exit
//! signal (OTP's default resolution also ends one of them), so exactly one owner remains.
//!
//! The registry needs a connection to every node that runs it, so it dials the nodes whose
//! addresses the [`DistNode`] knows (from [`DistNode::follow`] or [`DistNode::add_address`]).
//!
//! Each node's registry service ([`SERVICE`]) runs under the node's supervisor of Girder's
//! services ([`DistNode::services`], OTP's `kernel_sup`): if it dies it is started again, the
//! names this node holds are kept (they live in the handles' copy, not in the process), and
//! the new service swaps full states with every connected node's, so what it missed while it
//! was down is made good.

use girder::{Addr, Pid, Server, ServerRef};

use crate::replica::{now_stamp, Entry, Mode, Replica};
use crate::{DistNode, Wire};

/// A local process known to be exiting or gone.
fn dead(node: &girder::Node, pid: Pid) -> bool {
    !node.is_alive(pid) || node.is_exiting(pid)
}

/// The registered name of the registry's service process on every node.
pub const SERVICE: &str = "girder.global";

/// Why a global name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobalError {
    /// Another process holds the name (as far as this node knows).
    #[error("global name {name:?} is held by {owner}")]
    NameTaken {
        /// The name.
        name: String,
        /// Its holder.
        owner: Pid,
    },
    /// Only a process of this node can be registered here (register it on its own node).
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
    /// The process is not alive.
    #[error("{0} is not alive")]
    NoProc(Pid),
}

/// This node's handle to the global registry.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder::{ExitReason, Node};
/// use girder_dist::{global::Global, Cookie, DistConfig, DistNode, NodeName};
///
/// let cfg = DistConfig::new(
///     NodeName::new("a@localhost").unwrap(),
///     Cookie::new("a-cookie-of-decent-length").unwrap(),
///     "127.0.0.1:0".parse().unwrap(),
/// );
/// let dist = DistNode::start(Node::new("a"), cfg).await.unwrap();
/// let global = Global::start(&dist).await.unwrap();
/// let worker = dist.node().spawn(|mut ctx: girder::Context<()>| async move {
///     ctx.recv().await;
///     ExitReason::Normal
/// });
/// global.register("worker", worker.pid()).unwrap();
/// assert_eq!(global.whereis("worker"), Some(worker.pid()));
/// assert!(global.register("worker", worker.pid()).is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct Global {
    replica: Replica,
}

impl Global {
    /// Starts this node's registry service, registered as [`SERVICE`], under the node's
    /// supervisor of Girder's services ([`DistNode::services`]): killed or crashed, it is
    /// started again under its name, and the names survive (this node's, kept in the handles'
    /// copy, and the other nodes', fetched from them again). One per node: a second start
    /// fails with [`SupervisorError::AlreadyStarted`](girder::supervisor::SupervisorError::AlreadyStarted).
    pub async fn start(dist: &DistNode) -> Result<Global, girder::supervisor::SupervisorError> {
        Ok(Global {
            replica: Replica::start(dist, SERVICE, Mode::Unique).await?,
        })
    }

    /// Registers `pid` (a live process of this node) as `name` across the cluster. Fails if the
    /// name is held as far as this node knows; a conflict this node cannot see yet (a
    /// partition) is resolved when the nodes meet.
    ///
    /// A holder of this node known to be exiting is no holder: its entry goes (everywhere,
    /// before the new one is announced) and the name is registered. So a supervised server
    /// that registers its name in `init` restarts cleanly, though its old incarnation's exit
    /// may not have reached the registry yet.
    pub fn register(&self, name: &str, pid: Pid) -> Result<(), GlobalError> {
        let node = self.replica.dist.node();
        if !pid.is_local() {
            return Err(GlobalError::NotLocal(pid));
        }
        if !node.is_alive(pid) {
            return Err(GlobalError::NoProc(pid));
        }
        let entry = Entry {
            key: name.to_string(),
            pid,
            stamp: now_stamp(),
        };
        let stale = {
            let mut t = self.replica.table.write();
            let stale = match t.by_key.get(name).and_then(|v| v.first()) {
                Some(owner) if owner.pid.is_local() && dead(node, owner.pid) => Some(owner.clone()),
                Some(owner) => {
                    return Err(GlobalError::NameTaken {
                        name: name.to_string(),
                        owner: owner.pid,
                    })
                }
                None => None,
            };
            if let Some(old) = &stale {
                t.remove(name, old.pid);
            }
            t.by_key.insert(name.to_string(), vec![entry.clone()]);
            stale
        };
        // In this order from one sender, so every node drops the old holder before it hears of
        // the new one.
        if let Some(old) = stale {
            self.replica.remove_local(old);
        }
        self.replica.add_local(entry);
        self.replica.changed();
        Ok(())
    }

    /// Makes a local server reachable from other nodes ([`DistNode::export_server`]) and
    /// registers it as `name` across the cluster, in one step: what a server does in its `init`
    /// to become a cluster-wide singleton.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{Flow, Node, ReplyTo, Server, ServerContext};
    /// use girder_dist::{global::Global, Cookie, DistConfig, DistNode, NodeName, Wire};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Now(ReplyTo<u64>);
    /// impl Wire for Now {
    ///     const NAME: &'static str = "clock.now.v1";
    /// }
    ///
    /// struct Clock;
    /// impl Server for Clock {
    ///     type Call = Now; type Cast = (); type Info = ();
    ///     async fn handle_call(&mut self, Now(from): Now, _: &mut ServerContext<Self>) -> Flow {
    ///         from.reply(42);
    ///         Flow::Continue
    ///     }
    /// }
    ///
    /// let cfg = DistConfig::new(
    ///     NodeName::new("a@localhost").unwrap(),
    ///     Cookie::new("a-cookie-of-decent-length").unwrap(),
    ///     "127.0.0.1:0".parse().unwrap(),
    /// );
    /// let dist = DistNode::start(Node::new("a"), cfg).await.unwrap();
    /// let global = Global::start(&dist).await.unwrap();
    /// let clock = girder::server::start(dist.node(), Clock).await.unwrap();
    /// global.register_server("clock", &clock).unwrap();
    /// let found = global.server::<Clock>("clock").unwrap();
    /// assert_eq!(found.call(Now).await, Ok(42));
    /// # }
    /// ```
    pub fn register_server<S>(&self, name: &str, server: &ServerRef<S>) -> Result<(), GlobalError>
    where
        S: Server,
        S::Call: Wire,
        S::Cast: Wire,
    {
        if server.pid().is_local() {
            self.replica.dist.export_server(server);
        }
        self.register(name, server.pid())
    }

    /// Waits up to `timeout` for `name` to have a holder and returns it (at once if it has
    /// one): for a client that starts before the service it needs.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use std::time::Duration;
    /// use girder::Node;
    /// use girder_dist::{global::Global, Cookie, DistConfig, DistNode, NodeName};
    /// let cfg = DistConfig::new(
    ///     NodeName::new("a@localhost").unwrap(),
    ///     Cookie::new("a-cookie-of-decent-length").unwrap(),
    ///     "127.0.0.1:0".parse().unwrap(),
    /// );
    /// let dist = DistNode::start(Node::new("a"), cfg).await.unwrap();
    /// let global = Global::start(&dist).await.unwrap();
    /// assert_eq!(global.wait_for("late", Duration::from_millis(20)).await, None);
    /// let worker = dist.node().spawn(|mut ctx: girder::Context<()>| async move {
    ///     ctx.recv().await;
    ///     girder::ExitReason::Normal
    /// });
    /// let g = global.clone();
    /// let pid = worker.pid();
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_millis(20)).await;
    ///     g.register("late", pid).unwrap();
    /// });
    /// assert_eq!(global.wait_for("late", Duration::from_secs(5)).await, Some(worker.pid()));
    /// # }
    /// ```
    pub async fn wait_for(&self, name: &str, timeout: std::time::Duration) -> Option<Pid> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.replica.changes.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change between the look and the wait wakes it.
            changed.as_mut().enable();
            if let Some(pid) = self.whereis(name) {
                return Some(pid);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.whereis(name);
            }
        }
    }

    /// Removes `name` if a process of this node holds it. True if it did.
    pub fn unregister(&self, name: &str) -> bool {
        let owner = self.whereis(name).filter(|p| p.is_local());
        let removed = owner.and_then(|p| self.replica.table.write().remove(name, p));
        match removed {
            Some(e) => {
                self.replica.remove_local(e);
                true
            }
            None => false,
        }
    }

    /// The holder of `name`, in this node's pid numbering.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.replica
            .table
            .read()
            .by_key
            .get(name)
            .and_then(|v| v.first())
            .map(|e| e.pid)
    }

    /// A handle to the process holding `name`, local or remote.
    pub fn addr<M: Wire>(&self, name: &str) -> Option<Addr<M>> {
        self.whereis(name).map(|pid| self.replica.dist.addr(pid))
    }

    /// A handle to the server holding `name`, local or remote.
    pub fn server<S>(&self, name: &str) -> Option<ServerRef<S>>
    where
        S: Server,
        S::Call: Wire,
        S::Cast: Wire,
    {
        self.whereis(name).map(|pid| self.replica.dist.server(pid))
    }

    /// Every registered name and its holder.
    pub fn registered(&self) -> Vec<(String, Pid)> {
        let mut all: Vec<(String, Pid)> = self
            .replica
            .table
            .read()
            .by_key
            .iter()
            .filter_map(|(k, v)| v.first().map(|e| (k.clone(), e.pid)))
            .collect();
        all.sort();
        all
    }
}
