//! The replicated table behind the global registry ([`crate::global`]) and process groups
//! ([`crate::groups`]): entries `(key, pid)` that every node holds a copy of, kept in step the
//! way OTP's `global` and `pg` do it.
//!
//! * Each node runs one service process per table. A node only announces entries for its own
//!   processes, and monitors them: when one exits its entries are removed everywhere.
//! * When two services meet (a connection comes up, or a service starts) they exchange their
//!   own entries (`Hello`), which replaces whatever each held for the other's node; so a table
//!   converges after a partition heals.
//! * When a node goes down, its entries are dropped.
//! * In [`Mode::Unique`] a key has one owner. Two owners found after a partition are resolved the
//!   same way on every node: the older registration wins (then the smaller node name, then the
//!   smaller pid), and the loser's own node unregisters it and ends it with an exit signal.
//!
//! Reads go to the shared copy without touching the service, so lookups are a map read.

use std::collections::HashMap;
use std::sync::Arc;

use girder::supervisor::{ChildSpec, ChildStart, Restart, SupervisorError};
use girder::{Addr, Context, Event, ExitReason, MonitorRef, Pid, StartError};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::{DistNode, NodeEvent, NodeName, Wire};

/// One entry: `key` held by `pid`, registered at `stamp` (µs since the Unix epoch).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) pid: Pid,
    pub(crate) stamp: u64,
}

/// What services (and a node's own handles) tell a service.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum SyncMsg {
    /// A service's own entries, replacing what the receiver held for its node.
    Hello {
        service: Pid,
        entries: Vec<Entry>,
        reply: bool,
    },
    Add(Entry),
    Remove(Entry),
    /// `service` (another node's) was found: send it a `Hello`. Sent by the service to itself,
    /// so every `Hello` and later change leaves from the service, in order.
    Greet {
        service: Pid,
    },
}

impl Wire for SyncMsg {
    const NAME: &'static str = "girder.replica.v1";
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// One pid per key (the global registry).
    Unique,
    /// Any number of pids per key (process groups).
    Set,
}

/// The local copy.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) by_key: HashMap<String, Vec<Entry>>,
}

impl Table {
    fn insert(&mut self, e: Entry) -> bool {
        let v = self.by_key.entry(e.key.clone()).or_default();
        if v.iter().any(|x| x.pid == e.pid) {
            return false;
        }
        v.push(e);
        true
    }

    pub(crate) fn remove(&mut self, key: &str, pid: Pid) -> Option<Entry> {
        let v = self.by_key.get_mut(key)?;
        let i = v.iter().position(|x| x.pid == pid)?;
        let e = v.swap_remove(i);
        if v.is_empty() {
            self.by_key.remove(key);
        }
        Some(e)
    }

    /// Removes every entry whose pid matches.
    fn remove_where(&mut self, mut f: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let mut gone = Vec::new();
        self.by_key.retain(|_, v| {
            v.retain(|e| {
                let hit = f(e);
                if hit {
                    gone.push(e.clone());
                }
                !hit
            });
            !v.is_empty()
        });
        gone
    }

    fn local_entries(&self) -> Vec<Entry> {
        self.by_key
            .values()
            .flatten()
            .filter(|e| e.pid.is_local())
            .cloned()
            .collect()
    }
}

/// Microseconds since the Unix epoch: registration order across nodes (clock skew only changes
/// which of two conflicting registrations wins, not that every node picks the same one).
pub(crate) fn now_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A running table: the shared copy and the local service process.
#[derive(Clone)]
pub(crate) struct Replica {
    pub(crate) dist: DistNode,
    pub(crate) table: Arc<RwLock<Table>>,
    /// The service's current incarnation, set by each one as it starts, so that handles reach
    /// a restarted service.
    service: Arc<parking_lot::Mutex<Option<Addr<SyncMsg>>>>,
    /// Woken whenever the table may have changed (for waits on a key).
    pub(crate) changes: Arc<tokio::sync::Notify>,
}

impl Replica {
    /// Starts the service `name` under the node's supervisor of Girder's services
    /// ([`DistNode::services`]), registered locally under `name` and restarted (with the table
    /// kept, and resynchronised with the peers) if it exits abnormally.
    pub(crate) async fn start(
        dist: &DistNode,
        name: &str,
        mode: Mode,
    ) -> Result<Replica, SupervisorError> {
        let replica = Replica {
            dist: dist.clone(),
            table: Default::default(),
            service: Default::default(),
            changes: Default::default(),
        };
        let r = replica.clone();
        let spec = ChildSpec::new(name, move |s: ChildStart| r.clone().start_service(s, mode))
            .named(name)
            .restart(Restart::Permanent);
        dist.services().start_child(spec).await?;
        Ok(replica)
    }

    /// Starts one incarnation of the service, linked to the supervisor: registered, exported.
    async fn start_service(self, s: ChildStart, mode: Mode) -> Result<Pid, StartError> {
        let name = s.name.clone().expect("the spec is named");
        let service = {
            let (name, shared) = (name.clone(), self.clone());
            s.node
                .spawn_opts(s.spawn_options(), move |ctx| run(ctx, shared, name, mode))
        };
        if let Err(e) = s.node.register(&name, service.pid()) {
            s.node.exit(service.pid(), ExitReason::Kill);
            service.wait_exit().await;
            return Err(match e {
                girder::RegisterError::NameTaken { owner, .. } => StartError::AlreadyStarted(owner),
                other => StartError::Other(other.to_string()),
            });
        }
        self.dist.export(&service);
        Ok(service.pid())
    }

    /// Wakes the waits on the table after a change made outside the service.
    pub(crate) fn changed(&self) {
        self.changes.notify_waiters();
    }

    /// Adds an entry for a local process (already checked by the caller, and in the table) and
    /// announces it. If the service is down (restarting), the next one finds the entry in the
    /// table and announces it.
    pub(crate) fn add_local(&self, e: Entry) {
        self.tell(SyncMsg::Add(e));
    }

    pub(crate) fn remove_local(&self, e: Entry) {
        self.tell(SyncMsg::Remove(e));
    }

    fn tell(&self, m: SyncMsg) {
        if let Some(service) = &*self.service.lock() {
            let _ = service.send(m);
        }
    }
}

struct Service {
    dist: DistNode,
    table: Arc<RwLock<Table>>,
    name: String,
    mode: Mode,
    me: Pid,
    peers: HashMap<NodeName, Addr<SyncMsg>>,
    monitors: HashMap<Pid, MonitorRef>,
    /// Nodes that could not be reached: when to try next, and the delay after that.
    backoff: HashMap<NodeName, (tokio::time::Instant, std::time::Duration)>,
}

async fn run(mut ctx: Context<SyncMsg>, shared: Replica, name: String, mode: Mode) -> ExitReason {
    // Before the table is read: a change a handle makes from now on is either in the table
    // read below or sent to this incarnation (see `Replica::tell`).
    *shared.service.lock() = Some(ctx.addr());
    let Replica {
        dist,
        table,
        changes,
        ..
    } = shared;
    let mut events = dist.subscribe();
    let mut s = Service {
        me: ctx.pid(),
        dist,
        table,
        name,
        mode,
        peers: HashMap::new(),
        monitors: HashMap::new(),
        backoff: HashMap::new(),
    };
    s.recover(&ctx);
    for node in s.dist.connected() {
        s.greet(node);
    }
    for node in s.dist.known() {
        s.reach(node);
    }
    // Nodes that could not be reached when they were discovered are tried again, less and less
    // often (2 s, doubling up to a minute), so a member that refuses us is not hammered.
    let mut retry = tokio::time::interval(std::time::Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = retry.tick() => s.retry(),
            ev = ctx.recv() => match ev {
                Event::Message(m) => s.handle(&ctx, m),
                Event::Down(d) => s.owner_exited(d.pid),
                Event::Stop(r) => return r,
                _ => {}
            },
            ev = events.recv() => match ev {
                Ok(NodeEvent::Discovered(node)) => s.reach(node),
                Ok(NodeEvent::Up(node)) => {
                    s.backoff.remove(&node);
                    s.greet(node);
                }
                Ok(NodeEvent::Down { node, .. } | NodeEvent::Left { node, .. }) => {
                    s.node_down(&node)
                }
                Ok(
                    NodeEvent::DialFailed { .. }
                    | NodeEvent::Refused { .. }
                    | NodeEvent::Forgotten(_),
                ) => {}
                // Missed events: greet every connected node again; Hello is idempotent.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    for node in s.dist.connected() {
                        s.greet(node);
                    }
                }
                Err(_) => return ExitReason::Shutdown,
            },
        }
        changes.notify_waiters();
    }
}

impl Service {
    /// What a restarted service does with the table its predecessor left (nothing, on a first
    /// start): the entries of nodes no longer connected go (their loss was not seen), and this
    /// node's holders are watched again (one that exited meanwhile is reported at once and
    /// removed everywhere). Then the greeting of every connected node ([`run`]) swaps full
    /// states with their services, which replaces what either side missed.
    fn recover(&mut self, ctx: &Context<SyncMsg>) {
        let connected = self.dist.connected();
        let dist = &self.dist;
        let local: Vec<Pid> = {
            let mut t = self.table.write();
            t.remove_where(|e| {
                !e.pid.is_local() && !dist.node_of(e.pid).is_some_and(|n| connected.contains(&n))
            });
            t.local_entries().into_iter().map(|e| e.pid).collect()
        };
        for pid in local {
            self.monitors.entry(pid).or_insert_with(|| ctx.monitor(pid));
        }
    }

    /// The services need a connection to every node that runs them.
    fn reach(&self, node: NodeName) {
        let dist = self.dist.clone();
        self.dist.node().spawn_task(async move {
            let _ = dist.connect(&node).await;
        });
    }

    fn retry(&mut self) {
        let connected = self.dist.connected();
        let now = tokio::time::Instant::now();
        for node in self.dist.known() {
            if connected.contains(&node) {
                continue;
            }
            let (next, delay) = self
                .backoff
                .entry(node.clone())
                .or_insert((now, std::time::Duration::from_secs(2)));
            if *next <= now {
                *next = now + *delay;
                *delay = (*delay * 2).min(std::time::Duration::from_secs(60));
                self.reach(node);
            }
        }
    }

    /// Finds `node`'s service; once found, a `Hello` with our entries goes to it and its reply
    /// brings its own.
    fn greet(&self, node: NodeName) {
        let (dist, name, me) = (self.dist.clone(), self.name.clone(), self.me);
        self.dist.node().spawn_task(async move {
            if let Ok(Some(service)) = dist.whereis(&node, &name).await {
                let _ = dist.addr::<SyncMsg>(me).send(SyncMsg::Greet { service });
            }
        });
    }

    fn handle(&mut self, ctx: &Context<SyncMsg>, m: SyncMsg) {
        match m {
            SyncMsg::Hello {
                service,
                entries,
                reply,
            } => {
                let Some(node) = self.dist.node_of(service).filter(|_| !service.is_local()) else {
                    return;
                };
                let peer = self.dist.addr::<SyncMsg>(service);
                // Full state for that node: what it no longer announces is gone.
                self.table.write().remove_where(|e| {
                    !e.pid.is_local()
                        && self.dist.node_of(e.pid).as_ref() == Some(&node)
                        && !entries.contains(e)
                });
                for e in entries {
                    if self.dist.node_of(e.pid).as_ref() == Some(&node) {
                        self.merge(e);
                    }
                }
                if reply {
                    let mine = self.table.read().local_entries();
                    let _ = peer.send(SyncMsg::Hello {
                        service: self.me,
                        entries: mine,
                        reply: false,
                    });
                }
                self.peers.insert(node, peer);
            }
            SyncMsg::Add(e) if e.pid.is_local() => {
                self.monitors
                    .entry(e.pid)
                    .or_insert_with(|| ctx.monitor(e.pid));
                self.broadcast(SyncMsg::Add(e));
            }
            SyncMsg::Add(e) => self.merge(e),
            SyncMsg::Remove(e) if e.pid.is_local() => {
                let still_used = self
                    .table
                    .read()
                    .by_key
                    .values()
                    .flatten()
                    .any(|x| x.pid == e.pid);
                if !still_used {
                    if let Some(m) = self.monitors.remove(&e.pid) {
                        ctx.demonitor(m);
                    }
                }
                self.broadcast(SyncMsg::Remove(e));
            }
            SyncMsg::Remove(e) => {
                self.table.write().remove(&e.key, e.pid);
            }
            SyncMsg::Greet { service } if !service.is_local() => {
                let Some(node) = self.dist.node_of(service) else {
                    return;
                };
                let entries = self.table.read().local_entries();
                let peer = self.dist.addr::<SyncMsg>(service);
                let _ = peer.send(SyncMsg::Hello {
                    service: self.me,
                    entries,
                    reply: true,
                });
                // A peer from now on: a change made here after this `Hello` was written is
                // broadcast to it, behind the `Hello` (waiting for its reply to count it in
                // would lose the changes made in between).
                self.peers.insert(node, peer);
            }
            SyncMsg::Greet { .. } => {}
        }
    }

    /// Takes in a remote entry, resolving a second owner of a unique key.
    fn merge(&mut self, e: Entry) {
        if self.mode == Mode::Set {
            self.table.write().insert(e);
            return;
        }
        let existing = self
            .table
            .read()
            .by_key
            .get(&e.key)
            .and_then(|v| v.first().cloned());
        let Some(existing) = existing else {
            self.table.write().insert(e);
            return;
        };
        if existing.pid == e.pid {
            return;
        }
        // A node speaks for its own processes: a new holder it announces replaces the old one
        // (which it has dropped, whether or not that news came first).
        let same_node = self.dist.node_of(existing.pid) == self.dist.node_of(e.pid);
        if same_node || self.rank(&e) < self.rank(&existing) {
            let mut t = self.table.write();
            t.remove(&existing.key, existing.pid);
            t.insert(e.clone());
            drop(t);
            if existing.pid.is_local() {
                tracing::warn!(name = %e.key, loser = %existing.pid, winner = %e.pid, "global name conflict resolved");
                self.broadcast(SyncMsg::Remove(existing.clone()));
                self.dist.node().exit(
                    existing.pid,
                    ExitReason::error(format!(
                        "global name {:?} was also registered by {} (older)",
                        e.key, e.pid
                    )),
                );
            }
        }
    }

    /// Who wins a conflict, the same on every node: older registration, then node name, then id.
    fn rank(&self, e: &Entry) -> (u64, String, u64) {
        let node = self
            .dist
            .node_of(e.pid)
            .map(|n| n.to_string())
            .unwrap_or_default();
        (e.stamp, node, e.pid.id())
    }

    fn owner_exited(&mut self, pid: Pid) {
        self.monitors.remove(&pid);
        let gone = self.table.write().remove_where(|e| e.pid == pid);
        for e in gone {
            self.broadcast(SyncMsg::Remove(e));
        }
    }

    fn node_down(&mut self, node: &NodeName) {
        self.peers.remove(node);
        let dist = &self.dist;
        self.table
            .write()
            .remove_where(|e| !e.pid.is_local() && dist.node_of(e.pid).as_ref() == Some(node));
    }

    /// Tells every known peer service of an entry added or removed here.
    fn broadcast(&self, m: SyncMsg) {
        for peer in self.peers.values() {
            let _ = peer.send(m.clone());
        }
    }
}
