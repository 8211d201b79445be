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

use girder::{Addr, Pid, Server, ServerRef};

use crate::replica::{now_stamp, Entry, Mode, Replica};
use crate::{DistNode, Wire};

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
/// let global = Global::start(&dist).unwrap();
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
    /// Starts this node's registry service. One per node.
    pub fn start(dist: &DistNode) -> Result<Global, girder::RegisterError> {
        Ok(Global {
            replica: Replica::start(dist, SERVICE, Mode::Unique)?,
        })
    }

    /// Registers `pid` (a live process of this node) as `name` across the cluster. Fails if the
    /// name is held as far as this node knows; a conflict this node cannot see yet (a
    /// partition) is resolved when the nodes meet.
    pub fn register(&self, name: &str, pid: Pid) -> Result<(), GlobalError> {
        if !pid.is_local() {
            return Err(GlobalError::NotLocal(pid));
        }
        if !self.replica.dist.node().is_alive(pid) {
            return Err(GlobalError::NoProc(pid));
        }
        let entry = Entry {
            key: name.to_string(),
            pid,
            stamp: now_stamp(),
        };
        {
            let mut t = self.replica.table.write();
            if let Some(owner) = t.by_key.get(name).and_then(|v| v.first()) {
                return Err(GlobalError::NameTaken {
                    name: name.to_string(),
                    owner: owner.pid,
                });
            }
            t.by_key.insert(name.to_string(), vec![entry.clone()]);
        }
        self.replica.add_local(entry);
        Ok(())
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
        S::Reply: Wire,
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
