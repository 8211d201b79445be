//! The seam a distribution layer plugs into.
//!
//! The core knows nothing about sockets or wire formats. A distribution layer (`girder-dist`)
//! makes processes on other nodes reachable by filling in two traits:
//!
//! * [`Distribution`]: what the core calls when a local process links to, monitors, or sends an
//!   exit signal to a pid of another node, and when a local process with remote links or
//!   monitors exits. Installed once per node with [`Node::set_distribution`](crate::Node::set_distribution).
//! * [`RemoteSink`]: the sending half behind an [`Addr`](crate::Addr) of a remote process, built where the
//!   message type's wire format is known ([`Addr::remote`](crate::Addr::remote)).
//!
//! In the other direction the layer hands what arrives from peers to the `Node::remote_*`
//! methods, and calls [`Node::node_down`](crate::Node::node_down) when a connection is lost, which fires `NoConnection`
//! for every link and monitor that crossed it.
//!
//! Pids inside messages are translated at the node boundary by a [`PidTranslation`] that the
//! layer installs around encoding and decoding ([`with_pid_translation`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::mailbox::SysMsg;
use crate::process::core::{AnyProcess, MonitorEnd};
use crate::{Down, ExitReason, MonitorRef, Pid, SendError};

/// A boxed future, as the object-safe traits here return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the core asks of a distribution layer. Every method is called with one local and one
/// remote pid and must not block: queue the signal and return.
pub trait Distribution: Send + Sync + 'static {
    /// `local` linked to `remote`. If the link cannot be made (no connection, no such
    /// process) the layer later reports it as an exit signal from `remote`.
    fn link(&self, local: Pid, remote: Pid);
    /// `local` removed its link to `remote`.
    fn unlink(&self, local: Pid, remote: Pid);
    /// An exit signal from `from` (local) to `to` (remote). `via_link` is true when it is a
    /// linked process's exit.
    fn exit(&self, from: Pid, to: Pid, reason: ExitReason, via_link: bool);
    /// `watcher` (local) monitors `target` (remote) under monitor `id`. If the target is gone
    /// or unreachable, the layer reports a `Down` through [`Node::remote_down`](crate::Node::remote_down).
    fn monitor(&self, watcher: Pid, target: Pid, id: u64);
    /// The monitor `id` of `watcher` on `target` is removed (one of the two ends is local).
    fn demonitor(&self, watcher: Pid, target: Pid, id: u64);
    /// `target` (local) exited with `reason`; `watcher` (remote) monitored it under `id`.
    fn down(&self, target: Pid, watcher: Pid, id: u64, reason: ExitReason);
}

/// The sending half of an [`Addr`](crate::Addr) whose process lives on another node.
///
/// Built by a distribution layer that knows how `M` travels; see [`Addr::remote`](crate::Addr::remote).
pub trait RemoteSink<M>: Send + Sync + 'static {
    /// The remote process's pid (its node index as this node numbers it).
    fn pid(&self) -> Pid;
    /// Queues `msg` without waiting; `Full` when the connection's send queue is full, `NoProc`
    /// when the node is unreachable.
    fn send(&self, msg: M) -> Result<(), SendError<M>>;
    /// Queues `msg`, waiting for room in the connection's send queue.
    fn send_wait(&self, msg: M) -> BoxFuture<'_, Result<(), SendError<M>>>;
    /// Asks the process to stop with `reason`; false if the node is unreachable.
    fn stop(&self, reason: ExitReason) -> bool;
    /// `Some(NoConnection)` once the node is known to be unreachable; `None` otherwise (a
    /// remote process's own exit is learnt by monitoring it).
    fn exit_reason(&self) -> Option<ExitReason>;
    /// Waits until the process exits (or its node becomes unreachable) and returns why.
    fn wait_exit(&self) -> BoxFuture<'static, ExitReason>;
}

/// How pids inside messages cross the node boundary. While a translation is installed,
/// [`Pid`]'s serde form is `(node name, creation, id)` instead of the node-local index.
pub trait PidTranslation: Send + Sync {
    /// The name of the node with index `node` (`0` is this node).
    fn node_name(&self, node: u32) -> Option<Arc<str>>;
    /// The index of the node called `name` (this node's own name is `0`), assigning one if the
    /// node is new.
    fn node_index(&self, name: &str) -> u32;
}

thread_local! {
    static TRANSLATION: RefCell<Option<Arc<dyn PidTranslation>>> = const { RefCell::new(None) };
}

/// Runs `f` (an encode or decode) with `t` translating every [`Pid`] serialised or deserialised
/// on this thread.
///
/// ```
/// use std::sync::Arc;
/// use girder::remote::{with_pid_translation, PidTranslation};
/// use girder::Pid;
///
/// struct Names;
/// impl PidTranslation for Names {
///     fn node_name(&self, node: u32) -> Option<Arc<str>> {
///         Some(if node == 0 { "a@h".into() } else { "b@h".into() })
///     }
///     fn node_index(&self, name: &str) -> u32 { if name == "a@h" { 0 } else { 7 } }
/// }
/// let t: Arc<dyn PidTranslation> = Arc::new(Names);
/// let json = with_pid_translation(&t, || serde_json::to_string(&Pid::new(0, 3, 9)).unwrap());
/// assert_eq!(json, r#"["a@h",3,9]"#);
/// // Read back on a node that numbers "a@h" as 7.
/// let pid: Pid = with_pid_translation(&t, || serde_json::from_str(r#"["b@h",3,9]"#).unwrap());
/// assert_eq!(pid, Pid::new(7, 3, 9));
/// ```
pub fn with_pid_translation<T>(t: &Arc<dyn PidTranslation>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<dyn PidTranslation>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            TRANSLATION.with(|slot| *slot.borrow_mut() = prev);
        }
    }
    let prev = TRANSLATION.with(|slot| slot.borrow_mut().replace(t.clone()));
    let _restore = Restore(prev);
    f()
}

pub(crate) fn translation() -> Option<Arc<dyn PidTranslation>> {
    TRANSLATION.with(|slot| slot.borrow().clone())
}

/// What arrives from peers. A distribution layer calls these with the remote pid translated
/// into this node's numbering; the local pid must be of this node (others are ignored).
impl crate::Node {
    /// Makes this node reachable from others. Fails (returning the layer back) if one is set.
    pub fn set_distribution(
        &self,
        dist: Arc<dyn Distribution>,
    ) -> Result<(), Arc<dyn Distribution>> {
        self.inner.dist.set(dist)
    }

    /// True once a distribution layer is installed.
    pub fn is_distributed(&self) -> bool {
        self.inner.dist.get().is_some()
    }

    /// `remote` linked to `local`. False if `local` is not alive: the layer answers with an exit
    /// signal `NoProc`, as Erlang does.
    pub fn remote_link(&self, remote: Pid, local: Pid) -> bool {
        let Some(p) = self.lookup_any(local) else {
            return false;
        };
        let mut meta = p.header().meta.lock();
        if meta.has_exited() {
            return false;
        }
        meta.links.insert(remote, ());
        true
    }

    /// `remote` removed its link to `local`.
    pub fn remote_unlink(&self, remote: Pid, local: Pid) {
        if let Some(p) = self.lookup_any(local) {
            p.header().meta.lock().links.remove(&remote);
        }
    }

    /// An exit signal from `remote` to `local`. One that comes through a link that `local` no
    /// longer has (it unlinked meanwhile) is ignored.
    pub fn remote_exit(&self, remote: Pid, local: Pid, reason: ExitReason, via_link: bool) {
        let Some(p) = self.lookup_any(local) else {
            return;
        };
        if via_link && !p.header().meta.lock().links.contains_key(&remote) {
            return;
        }
        crate::process::signal::exit_signal(&*p, remote, reason, via_link);
    }

    /// `watcher` (remote) monitors `target` (local) under `id`. False if `target` is not alive:
    /// the layer answers with a `Down` of `NoProc`.
    pub fn remote_monitor(&self, watcher: Pid, target: Pid, id: u64) -> bool {
        let Some(p) = self.lookup_any(target) else {
            return false;
        };
        let mut meta = p.header().meta.lock();
        if meta.has_exited() {
            return false;
        }
        meta.add_monitor(MonitorEnd {
            id,
            other: watcher,
            watched: true,
        });
        true
    }

    /// The monitor `id` between `watcher` and `target` is gone; whichever end is local forgets it.
    pub fn remote_demonitor(&self, watcher: Pid, target: Pid, id: u64) {
        let (local, other) = if target.is_local() {
            (target, watcher)
        } else {
            (watcher, target)
        };
        if let Some(p) = self.lookup_any(local) {
            p.header().meta.lock().forget_monitor(id, other);
        }
    }

    /// `target` (remote) is down with `reason`; `watcher` (local) gets a `Down` unless it
    /// demonitored meanwhile.
    pub fn remote_down(&self, target: Pid, watcher: Pid, id: u64, reason: ExitReason) {
        let Some(p) = self.lookup_any(watcher) else {
            return;
        };
        if p.header().meta.lock().forget_monitor(id, target) {
            p.push_sys(SysMsg::Down(Down {
                monitor: MonitorRef { id, target },
                pid: target,
                reason,
            }));
        }
    }

    /// A remote request to stop `local` gracefully.
    pub fn remote_stop(&self, local: Pid, reason: ExitReason) -> bool {
        self.lookup_any(local)
            .is_some_and(|p| p.push_sys(SysMsg::Stop(reason)))
    }

    /// The connection to node `node` is lost: every local process linked to one of its processes
    /// gets an exit signal `NoConnection`, every monitor of one of its processes fires with
    /// `NoConnection`, and monitors it held on local processes are dropped.
    ///
    /// This walks the process table once; connection loss is rare and the table is sharded.
    pub fn node_down(&self, node: u32) {
        if node == 0 {
            return;
        }
        let procs: Vec<Arc<dyn AnyProcess>> =
            self.inner.procs.iter().map(|e| e.value().clone()).collect();
        for p in procs {
            let (links, downs) = {
                let mut meta = p.header().meta.lock();
                if meta.has_exited() {
                    continue;
                }
                let links: Vec<Pid> = meta
                    .links
                    .keys()
                    .copied()
                    .filter(|l| l.node() == node)
                    .collect();
                let mut downs = Vec::new();
                if meta.monitors().any(|m| m.other.node() == node) {
                    meta.retain_monitors(|m| {
                        if m.other.node() != node {
                            return true;
                        }
                        if !m.watched {
                            downs.push(m);
                        }
                        false
                    });
                }
                (links, downs)
            };
            for remote in links {
                crate::process::signal::exit_signal(&*p, remote, ExitReason::NoConnection, true);
            }
            for m in downs {
                p.push_sys(SysMsg::Down(Down {
                    monitor: MonitorRef {
                        id: m.id,
                        target: m.other,
                    },
                    pid: m.other,
                    reason: ExitReason::NoConnection,
                }));
            }
        }
    }
}
