//! The supervisor itself: a [`Server`] that traps exits and applies OTP's restart rules.
//!
//! A restart that fails is not retried in a loop inside the exit handler: the next attempt is
//! queued as a message to the supervisor itself (as OTP does since OTP-9549), so calls,
//! stop requests and other children's exits are served between attempts, and a child whose
//! restart keeps failing slowly never makes its supervisor unresponsive.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::children::{Children, Key};
use super::spec::{ChildSpec, ChildStart, Restart};
use super::stop::{stop_all, stop_one};
use super::{ChildCounts, ChildInfo, RestartStrategy, SupervisorError};
use crate::lifecycle::Lifecycle;
use crate::server::{Flow, InitError, ReplyTo, Server, ServerContext, StartError};
use crate::sys::StateView;
use crate::{ExitReason, Pid};

type Ctx = ServerContext<SupervisorServer>;

/// Which child a request is about.
#[derive(Debug, Clone)]
pub(crate) enum ChildRef {
    /// By its id.
    Id(String),
    /// By its pid (the only way to name one instance among a dynamic supervisor's).
    Pid(Pid),
}

/// The requests a [`SupervisorRef`](super::SupervisorRef) makes (through its methods), each
/// with its typed reply.
pub struct SupervisorCall(pub(crate) Request);

pub(crate) enum Request {
    StartChild(ChildSpec, ReplyTo<Result<Pid, SupervisorError>>),
    TerminateChild(ChildRef, ReplyTo<Result<(), SupervisorError>>),
    RestartChild(String, ReplyTo<Result<Pid, SupervisorError>>),
    DeleteChild(String, ReplyTo<Result<(), SupervisorError>>),
    WhichChildren(ReplyTo<Vec<ChildInfo>>),
    CountChildren(ReplyTo<ChildCounts>),
}

/// What a supervisor sends itself.
pub struct SupervisorInfo(Retry);

enum Retry {
    /// Try again to restart after a failed attempt at starting child `Key`.
    Retry(Key),
}

/// A supervisor's process state (see [`Supervisor`](super::Supervisor)); its requests are
/// [`SupervisorRef`](super::SupervisorRef)'s methods.
pub struct SupervisorServer {
    strategy: RestartStrategy,
    intensity: u32,
    period: Duration,
    initial: Vec<ChildSpec>,
    children: Children,
    restart_times: VecDeque<Instant>,
    total_restarts: u32,
}

impl SupervisorServer {
    pub(super) fn new(
        strategy: RestartStrategy,
        intensity: u32,
        period: Duration,
        initial: Vec<ChildSpec>,
    ) -> Self {
        SupervisorServer {
            strategy,
            intensity,
            period,
            initial,
            children: Children::new(strategy != RestartStrategy::Dynamic),
            restart_times: VecDeque::new(),
            total_restarts: 0,
        }
    }
}

/// Runs a child's start function (panics caught: a panicking start is a failed start).
async fn start_spec(spec: &ChildSpec, ctx: &Ctx) -> Result<Pid, StartError> {
    spec.start
        .run(ChildStart {
            node: ctx.node().clone(),
            parent: ctx.pid(),
            name: spec.name.clone(),
            trap_exit: spec.trap_exit,
            capacity: spec.capacity,
        })
        .await
}

impl SupervisorServer {
    fn dynamic(&self) -> bool {
        self.strategy == RestartStrategy::Dynamic
    }

    /// Whether a child that is not running stays listed: temporary children and every child of
    /// a dynamic supervisor are forgotten once they stop (as OTP does).
    fn keeps_stopped(&self, restart: Restart) -> bool {
        restart != Restart::Temporary && !self.dynamic()
    }

    /// Stops the running children from `from` on (all with `None`): in reverse start order,
    /// or all at once for `Dynamic`. Temporary children stopped this way are forgotten.
    async fn stop_children(&mut self, ctx: &mut Ctx, from: Option<Key>) {
        let keys = self.children.keys_from(from);
        if self.dynamic() {
            let running: Vec<(Pid, super::Shutdown)> = keys
                .iter()
                .filter_map(|k| self.children.get(*k))
                .filter_map(|c| c.pid().map(|p| (p, c.spec.shutdown)))
                .collect();
            stop_all(ctx, running).await;
            for k in &keys {
                self.children.set_pid(*k, None);
            }
        } else {
            for &k in keys.iter().rev() {
                let Some(child) = self.children.get(k) else {
                    continue;
                };
                if let Some(pid) = child.pid() {
                    let shutdown = child.spec.shutdown;
                    self.children.set_pid(k, None);
                    stop_one(ctx, pid, shutdown).await;
                }
            }
        }
        for k in keys {
            let forget = self.children.get(k).is_some_and(|c| {
                c.pid().is_none() && !c.restarting && !self.keeps_stopped(c.spec.restart)
            });
            if forget {
                self.children.remove(k);
            }
        }
    }

    /// Records a restart; false when the intensity limit is exceeded.
    fn note_restart(&mut self, node: &crate::Node) -> bool {
        node.inner.counters.restarted();
        let now = Instant::now();
        self.restart_times.push_back(now);
        while let Some(first) = self.restart_times.front() {
            if now.duration_since(*first) > self.period {
                self.restart_times.pop_front();
            } else {
                break;
            }
        }
        self.total_restarts += 1;
        self.restart_times.len() as u32 <= self.intensity
    }

    /// Child `key` exited (or a restart of it failed): restarts what the strategy says, counted
    /// against the intensity. A child that fails to start is marked restarting and another
    /// attempt is queued behind whatever the supervisor has to do meanwhile.
    async fn restart(&mut self, ctx: &mut Ctx, key: Key) -> Flow {
        if !self.note_restart(ctx.node()) {
            return self.give_up(ctx);
        }
        let keys = match self.strategy {
            RestartStrategy::OneForOne | RestartStrategy::Dynamic => vec![key],
            RestartStrategy::OneForAll => {
                self.stop_children(ctx, None).await;
                self.children.keys_from(None)
            }
            RestartStrategy::RestForOne => {
                let after = self.children.keys_from(Some(key)).get(1).copied();
                if after.is_some() {
                    self.stop_children(ctx, after).await;
                }
                self.children.keys_from(Some(key))
            }
        };
        for k in keys {
            let Some(child) = self.children.get_mut(k) else {
                continue;
            };
            if child.pid().is_some() {
                continue;
            }
            child.restarting = false;
            let spec = child.spec.clone();
            match start_spec(&spec, ctx).await {
                Ok(pid) => {
                    self.children.set_pid(k, Some(pid));
                    let child = self.children.get_mut(k).expect("the child is listed");
                    child.restarts += 1;
                    ctx.node().set_restarts(pid, child.restarts);
                    ctx.node().set_restarts(ctx.pid(), self.total_restarts);
                }
                Err(StartError::Ignored) => {
                    if !self.keeps_stopped(spec.restart) {
                        self.children.remove(k);
                    }
                }
                Err(e) => {
                    tracing::error!(supervisor = %ctx.pid(), child = %spec.id, error = %e, "child failed to restart; trying again");
                    if let Some(child) = self.children.get_mut(k) {
                        child.restarting = true;
                    }
                    let _ = ctx.me().info(SupervisorInfo(Retry::Retry(k)));
                    return Flow::Continue;
                }
            }
        }
        Flow::Continue
    }

    /// A queued restart attempt, unless the child was terminated, restarted or deleted since.
    async fn retry(&mut self, ctx: &mut Ctx, key: Key) -> Flow {
        match self.children.get(key) {
            Some(c) if c.restarting && c.pid().is_none() => self.restart(ctx, key).await,
            _ => Flow::Continue,
        }
    }

    async fn child_exited(&mut self, ctx: &mut Ctx, pid: Pid, reason: ExitReason) -> Flow {
        let Some(key) = self.children.by_pid(pid) else {
            return Flow::Continue;
        };
        self.children.set_pid(key, None);
        let spec = &self.children.get(key).expect("found by pid").spec;
        let restart = match spec.restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean(),
            Restart::Temporary => false,
        };
        if !restart {
            if !self.keeps_stopped(spec.restart) {
                self.children.remove(key);
            }
            return Flow::Continue;
        }
        let child = spec.id.clone();
        tracing::info!(supervisor = %ctx.pid(), %child, %pid, %reason, "child exited; restarting");
        ctx.node().publish_lifecycle(Lifecycle::ChildRestarting {
            supervisor: ctx.pid(),
            supervisor_name: ctx.node().process_info(ctx.pid()).and_then(|i| i.name),
            child,
            pid,
            reason,
        });
        self.restart(ctx, key).await
    }

    fn give_up(&mut self, ctx: &mut Ctx) -> Flow {
        tracing::error!(
            supervisor = %ctx.pid(),
            intensity = self.intensity,
            period = ?self.period,
            "restart intensity reached; supervisor shutting down"
        );
        ctx.node().publish_lifecycle(Lifecycle::SupervisorGaveUp {
            supervisor: ctx.pid(),
            supervisor_name: ctx.node().process_info(ctx.pid()).and_then(|i| i.name),
        });
        // `terminate` stops the remaining children.
        Flow::Stop(ExitReason::Shutdown)
    }

    async fn start_child(
        &mut self,
        ctx: &mut Ctx,
        spec: ChildSpec,
    ) -> Result<Pid, SupervisorError> {
        spec.check().map_err(SupervisorError::BadSpec)?;
        if !self.dynamic() {
            if let Ok(k) = self.children.by_id(&spec.id) {
                let c = self.children.get(k).expect("indexed");
                return Err(match c.pid() {
                    Some(pid) => SupervisorError::AlreadyStarted { id: spec.id, pid },
                    None => SupervisorError::AlreadyPresent(spec.id),
                });
            }
        }
        match start_spec(&spec, ctx).await {
            Ok(pid) => {
                self.children.push(spec, Some(pid));
                Ok(pid)
            }
            Err(StartError::Ignored) => {
                let id = spec.id.clone();
                if self.keeps_stopped(spec.restart) {
                    self.children.push(spec, None);
                }
                Err(SupervisorError::Ignored(id))
            }
            Err(error) => Err(SupervisorError::StartFailed { id: spec.id, error }),
        }
    }

    fn find(&self, which: &ChildRef) -> Result<Key, SupervisorError> {
        match which {
            ChildRef::Pid(pid) => self
                .children
                .by_pid(*pid)
                .ok_or_else(|| SupervisorError::NotFound(pid.to_string())),
            ChildRef::Id(id) => self.children.by_id(id).map_err(|n| match n {
                0 => SupervisorError::NotFound(id.clone()),
                _ => SupervisorError::Ambiguous(id.clone()),
            }),
        }
    }

    async fn terminate_child(
        &mut self,
        ctx: &mut Ctx,
        which: ChildRef,
    ) -> Result<(), SupervisorError> {
        let key = self.find(&which)?;
        let child = self.children.get_mut(key).expect("found");
        // A queued restart attempt is dropped: the child was asked to stop.
        child.restarting = false;
        let (pid, shutdown, restart) = (child.pid(), child.spec.shutdown, child.spec.restart);
        if let Some(pid) = pid {
            self.children.set_pid(key, None);
            stop_one(ctx, pid, shutdown).await;
        }
        if !self.keeps_stopped(restart) {
            self.children.remove(key);
        }
        Ok(())
    }

    async fn restart_child(&mut self, ctx: &mut Ctx, id: String) -> Result<Pid, SupervisorError> {
        let key = self.find(&ChildRef::Id(id.clone()))?;
        let child = self.children.get(key).expect("found");
        if let Some(pid) = child.pid() {
            return Err(SupervisorError::AlreadyStarted { id, pid });
        }
        if child.restarting {
            return Err(SupervisorError::Restarting(id));
        }
        let spec = child.spec.clone();
        match start_spec(&spec, ctx).await {
            Ok(pid) => {
                self.children.set_pid(key, Some(pid));
                Ok(pid)
            }
            Err(StartError::Ignored) => Err(SupervisorError::Ignored(id)),
            Err(error) => Err(SupervisorError::StartFailed { id, error }),
        }
    }

    fn delete_child(&mut self, id: String) -> Result<(), SupervisorError> {
        let key = self.find(&ChildRef::Id(id.clone()))?;
        let child = self.children.get(key).expect("found");
        if let Some(pid) = child.pid() {
            return Err(SupervisorError::Running { id, pid });
        }
        if child.restarting {
            return Err(SupervisorError::Restarting(id));
        }
        self.children.remove(key);
        Ok(())
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|(_, c)| ChildInfo {
                id: c.spec.id.clone(),
                pid: c.pid(),
                restarting: c.restarting,
                kind: c.spec.kind,
                restart: c.spec.restart,
                restarts: c.restarts,
            })
            .collect()
    }

    fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts {
            specs: self.children.len(),
            active: self.children.running(),
            ..ChildCounts::default()
        };
        for (_, c) in self.children.iter() {
            match c.spec.kind {
                super::ChildKind::Worker => counts.workers += 1,
                super::ChildKind::Supervisor => counts.supervisors += 1,
            }
        }
        counts
    }

    async fn call(&mut self, req: Request, ctx: &mut Ctx) {
        match req {
            Request::StartChild(spec, r) => r.reply(self.start_child(ctx, spec).await),
            Request::TerminateChild(which, r) => r.reply(self.terminate_child(ctx, which).await),
            Request::RestartChild(id, r) => r.reply(self.restart_child(ctx, id).await),
            Request::DeleteChild(id, r) => r.reply(self.delete_child(id)),
            Request::WhichChildren(r) => r.reply(self.which_children()),
            Request::CountChildren(r) => r.reply(self.count_children()),
        }
    }
}

impl Server for SupervisorServer {
    type Call = SupervisorCall;
    type Cast = ();
    type Info = SupervisorInfo;

    async fn init(&mut self, ctx: &mut Ctx) -> Result<(), InitError> {
        ctx.trap_exit(true);
        for spec in std::mem::take(&mut self.initial) {
            match start_spec(&spec, ctx).await {
                Ok(pid) => {
                    self.children.push(spec, Some(pid));
                }
                Err(StartError::Ignored) => {
                    if self.keeps_stopped(spec.restart) {
                        self.children.push(spec, None);
                    }
                }
                Err(e) => {
                    let reason =
                        ExitReason::error(format!("failed to start child {:?}: {e}", spec.id));
                    self.stop_children(ctx, None).await;
                    return Err(reason.into());
                }
            }
        }
        Ok(())
    }

    /// Its strategy, restart intensity and children (the first thousand: a dynamic supervisor
    /// may have a million).
    fn state_view(&self) -> StateView {
        const SHOWN: usize = 1_000;
        // Pids as they print (`<0.12.1>`), as a person reading the state knows them.
        let children: Vec<serde_json::Value> = self
            .which_children()
            .into_iter()
            .take(SHOWN)
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "pid": c.pid.map(|p| p.to_string()),
                    "restarting": c.restarting,
                    "kind": c.kind,
                    "restart": c.restart,
                    "restarts": c.restarts,
                })
            })
            .collect();
        StateView::Json(serde_json::json!({
            "strategy": self.strategy,
            "intensity": self.intensity,
            "period_ms": self.period.as_millis() as u64,
            "restarts_in_period": self.restart_times.len(),
            "total_restarts": self.total_restarts,
            "counts": self.count_children(),
            "children": children,
        }))
    }

    async fn handle_call(&mut self, req: SupervisorCall, ctx: &mut Ctx) -> Flow {
        self.call(req.0, ctx).await;
        Flow::Continue
    }

    async fn handle_info(&mut self, msg: SupervisorInfo, ctx: &mut Ctx) -> Flow {
        match msg.0 {
            Retry::Retry(key) => self.retry(ctx, key).await,
        }
    }

    async fn handle_exit(&mut self, from: Pid, reason: ExitReason, ctx: &mut Ctx) -> Flow {
        self.child_exited(ctx, from, reason).await
    }

    async fn terminate(&mut self, _reason: &ExitReason, ctx: &mut Ctx) {
        self.stop_children(ctx, None).await;
    }
}
