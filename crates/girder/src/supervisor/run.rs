//! The supervisor itself: a [`Server`] that traps exits and applies OTP's restart rules.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::spec::{ChildSpec, ChildStart, Restart, Shutdown};
use super::{ChildCounts, ChildInfo, RestartStrategy, SupervisorError};
use crate::server::{Flow, ReplyTo, Server, ServerContext};
use crate::{ExitReason, Pid};

pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) pid: Option<Pid>,
    pub(super) restarts: u32,
}

/// Requests a [`SupervisorRef`](super::SupervisorRef) makes.
pub enum SupervisorCall {
    StartChild(ChildSpec),
    TerminateChild(String),
    RestartChild(String),
    DeleteChild(String),
    WhichChildren,
    CountChildren,
}

/// Replies to [`SupervisorCall`]s.
pub enum SupervisorReply {
    Started(Result<Pid, SupervisorError>),
    Done(Result<(), SupervisorError>),
    Children(Vec<ChildInfo>),
    Counts(ChildCounts),
}

pub struct SupervisorServer {
    pub(super) strategy: RestartStrategy,
    pub(super) intensity: u32,
    pub(super) period: Duration,
    pub(super) initial: Vec<ChildSpec>,
    pub(super) children: Vec<Child>,
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
            children: Vec::new(),
            restart_times: VecDeque::new(),
            total_restarts: 0,
        }
    }
}

async fn start_spec(
    spec: &ChildSpec,
    ctx: &ServerContext<SupervisorServer>,
) -> Result<Pid, crate::StartError> {
    (spec.start)(ChildStart {
        node: ctx.node().clone(),
        parent: ctx.pid(),
        name: spec.name.clone(),
    })
    .await
}

/// Stops one child as its spec says and returns the reason it exited with.
async fn stop_child(
    ctx: &mut ServerContext<SupervisorServer>,
    pid: Pid,
    shutdown: Shutdown,
) -> ExitReason {
    // Monitor first, then unlink: the exit is then seen exactly once, as a Down.
    let mref = ctx.monitor(pid);
    ctx.unlink(pid);
    let first = match shutdown {
        Shutdown::BrutalKill => ExitReason::Kill,
        Shutdown::Timeout(_) | Shutdown::Infinity => ExitReason::Shutdown,
    };
    ctx.exit(pid, first);
    let wait = match shutdown {
        Shutdown::Timeout(t) => Some(t),
        _ => None,
    };
    if let Some(down) = ctx.wait_down(mref, wait).await {
        return down.reason;
    }
    tracing::warn!(%pid, "child did not stop within its shutdown time; killing it");
    ctx.exit(pid, ExitReason::Kill);
    ctx.wait_down(mref, None)
        .await
        .map(|d| d.reason)
        .unwrap_or(ExitReason::Killed)
}

impl SupervisorServer {
    fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }

    /// Stops the running children in `range`, last started first (all at once for `Dynamic`).
    async fn stop_children(&mut self, ctx: &mut ServerContext<Self>, from: usize) {
        if self.strategy == RestartStrategy::Dynamic {
            let running: Vec<(Pid, Shutdown)> = self.children[from..]
                .iter()
                .filter_map(|c| c.pid.map(|p| (p, c.spec.shutdown)))
                .collect();
            let mut waits = Vec::new();
            for (pid, shutdown) in &running {
                let mref = ctx.monitor(*pid);
                ctx.unlink(*pid);
                let first = if *shutdown == Shutdown::BrutalKill {
                    ExitReason::Kill
                } else {
                    ExitReason::Shutdown
                };
                ctx.exit(*pid, first);
                waits.push((mref, *pid, *shutdown));
            }
            let started = Instant::now();
            for (mref, pid, shutdown) in waits {
                let left = match shutdown {
                    Shutdown::Timeout(t) => Some(t.saturating_sub(started.elapsed())),
                    _ => None,
                };
                if ctx.wait_down(mref, left).await.is_none() {
                    ctx.exit(pid, ExitReason::Kill);
                    ctx.wait_down(mref, None).await;
                }
            }
            for c in &mut self.children[from..] {
                c.pid = None;
            }
        } else {
            for i in (from..self.children.len()).rev() {
                if let Some(pid) = self.children[i].pid.take() {
                    stop_child(ctx, pid, self.children[i].spec.shutdown).await;
                }
            }
        }
        // Temporary children stopped by their supervisor are forgotten, as in OTP.
        let mut i = from;
        while i < self.children.len() {
            if self.children[i].pid.is_none() && self.children[i].spec.restart == Restart::Temporary
            {
                self.children.remove(i);
            } else {
                i += 1;
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

    /// Starts the stopped children from `from` on, in order; `Err` once the intensity limit is
    /// passed.
    async fn restart_from(&mut self, ctx: &mut ServerContext<Self>, from: usize) -> Result<(), ()> {
        for i in from..self.children.len() {
            if self.children[i].pid.is_none() {
                self.restart_one(ctx, i).await?;
            }
        }
        Ok(())
    }

    async fn child_exited(
        &mut self,
        ctx: &mut ServerContext<Self>,
        pid: Pid,
        reason: ExitReason,
    ) -> Flow {
        let Some(i) = self.children.iter().position(|c| c.pid == Some(pid)) else {
            return Flow::Continue;
        };
        self.children[i].pid = None;
        let restart = match self.children[i].spec.restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean(),
            Restart::Temporary => false,
        };
        if !restart {
            if self.children[i].spec.restart == Restart::Temporary {
                self.children.remove(i);
            }
            return Flow::Continue;
        }
        tracing::info!(supervisor = %ctx.pid(), child = %self.children[i].spec.id, %pid, %reason, "child exited; restarting");
        ctx.node()
            .publish_lifecycle(crate::lifecycle::Lifecycle::ChildRestarting {
                supervisor: ctx.pid(),
                supervisor_name: ctx.node().process_info(ctx.pid()).and_then(|i| i.name),
                child: self.children[i].spec.id.clone(),
                pid,
                reason: reason.clone(),
            });
        if !self.note_restart(ctx.node()) {
            return self.give_up(ctx).await;
        }
        let from = match self.strategy {
            RestartStrategy::OneForOne | RestartStrategy::Dynamic => i,
            RestartStrategy::OneForAll => {
                self.stop_children(ctx, 0).await;
                0
            }
            RestartStrategy::RestForOne => {
                self.stop_children(ctx, i + 1).await;
                i
            }
        };
        let result = if self.strategy == RestartStrategy::OneForOne
            || self.strategy == RestartStrategy::Dynamic
        {
            self.restart_one(ctx, i).await
        } else {
            self.restart_from(ctx, from).await
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(()) => self.give_up(ctx).await,
        }
    }

    /// Starts child `i` again. A start failure counts as another restart and is retried, as
    /// OTP does; `Err` once the intensity limit is passed.
    async fn restart_one(&mut self, ctx: &mut ServerContext<Self>, i: usize) -> Result<(), ()> {
        loop {
            match start_spec(&self.children[i].spec, ctx).await {
                Ok(pid) => {
                    let child = &mut self.children[i];
                    child.pid = Some(pid);
                    child.restarts += 1;
                    ctx.node().set_restarts(pid, child.restarts);
                    ctx.node().set_restarts(ctx.pid(), self.total_restarts);
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(child = %self.children[i].spec.id, error = %e, "child failed to restart");
                    if !self.note_restart(ctx.node()) {
                        return Err(());
                    }
                }
            }
        }
    }

    async fn give_up(&mut self, ctx: &mut ServerContext<Self>) -> Flow {
        tracing::error!(
            supervisor = %ctx.pid(),
            intensity = self.intensity,
            period = ?self.period,
            "restart intensity reached; supervisor shutting down"
        );
        ctx.node()
            .publish_lifecycle(crate::lifecycle::Lifecycle::SupervisorGaveUp {
                supervisor: ctx.pid(),
                supervisor_name: ctx.node().process_info(ctx.pid()).and_then(|i| i.name),
            });
        // `terminate` stops the remaining children.
        Flow::Stop(ExitReason::Shutdown)
    }

    async fn start_child(
        &mut self,
        ctx: &mut ServerContext<Self>,
        mut spec: ChildSpec,
    ) -> Result<Pid, SupervisorError> {
        if self.strategy == RestartStrategy::Dynamic && spec.id.is_empty() {
            spec.id = format!(
                "{}#{}",
                "child",
                self.total_restarts as usize + self.children.len()
            );
        }
        if let Some(c) = self.position(&spec.id).map(|i| &self.children[i]) {
            return Err(match c.pid {
                Some(pid) => SupervisorError::AlreadyStarted { id: spec.id, pid },
                None => SupervisorError::AlreadyPresent(spec.id),
            });
        }
        let pid = start_spec(&spec, ctx)
            .await
            .map_err(|e| SupervisorError::StartFailed {
                id: spec.id.clone(),
                error: e,
            })?;
        self.children.push(Child {
            spec,
            pid: Some(pid),
            restarts: 0,
        });
        Ok(pid)
    }

    async fn call(
        &mut self,
        req: SupervisorCall,
        ctx: &mut ServerContext<Self>,
    ) -> SupervisorReply {
        match req {
            SupervisorCall::StartChild(spec) => {
                SupervisorReply::Started(self.start_child(ctx, spec).await)
            }
            SupervisorCall::TerminateChild(id) => {
                let Some(i) = self.position(&id) else {
                    return SupervisorReply::Done(Err(SupervisorError::NotFound(id)));
                };
                if let Some(pid) = self.children[i].pid.take() {
                    stop_child(ctx, pid, self.children[i].spec.shutdown).await;
                }
                if self.children[i].spec.restart == Restart::Temporary
                    || self.strategy == RestartStrategy::Dynamic
                {
                    self.children.remove(i);
                }
                SupervisorReply::Done(Ok(()))
            }
            SupervisorCall::RestartChild(id) => {
                let Some(i) = self.position(&id) else {
                    return SupervisorReply::Started(Err(SupervisorError::NotFound(id)));
                };
                if let Some(pid) = self.children[i].pid {
                    return SupervisorReply::Started(Err(SupervisorError::AlreadyStarted {
                        id,
                        pid,
                    }));
                }
                let r = start_spec(&self.children[i].spec, ctx)
                    .await
                    .map_err(|error| SupervisorError::StartFailed { id, error });
                if let Ok(pid) = r {
                    self.children[i].pid = Some(pid);
                }
                SupervisorReply::Started(r)
            }
            SupervisorCall::DeleteChild(id) => {
                let Some(i) = self.position(&id) else {
                    return SupervisorReply::Done(Err(SupervisorError::NotFound(id)));
                };
                if let Some(pid) = self.children[i].pid {
                    return SupervisorReply::Done(Err(SupervisorError::Running { id, pid }));
                }
                self.children.remove(i);
                SupervisorReply::Done(Ok(()))
            }
            SupervisorCall::WhichChildren => SupervisorReply::Children(
                self.children
                    .iter()
                    .map(|c| ChildInfo {
                        id: c.spec.id.clone(),
                        pid: c.pid,
                        kind: c.spec.kind,
                        restart: c.spec.restart,
                        restarts: c.restarts,
                    })
                    .collect(),
            ),
            SupervisorCall::CountChildren => {
                let mut counts = ChildCounts::default();
                for c in &self.children {
                    counts.specs += 1;
                    if c.pid.is_some() {
                        counts.active += 1;
                    }
                    match c.spec.kind {
                        super::ChildKind::Worker => counts.workers += 1,
                        super::ChildKind::Supervisor => counts.supervisors += 1,
                    }
                }
                SupervisorReply::Counts(counts)
            }
        }
    }
}

impl Server for SupervisorServer {
    type Call = SupervisorCall;
    type Reply = SupervisorReply;
    type Cast = ();
    type Info = ();

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), ExitReason> {
        ctx.trap_exit(true);
        for spec in std::mem::take(&mut self.initial) {
            match start_spec(&spec, ctx).await {
                Ok(pid) => self.children.push(Child {
                    spec,
                    pid: Some(pid),
                    restarts: 0,
                }),
                Err(e) => {
                    let reason =
                        ExitReason::error(format!("failed to start child {:?}: {e}", spec.id));
                    self.stop_children(ctx, 0).await;
                    return Err(reason);
                }
            }
        }
        Ok(())
    }

    async fn handle_call(
        &mut self,
        req: SupervisorCall,
        from: ReplyTo<SupervisorReply>,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        let reply = self.call(req, ctx).await;
        from.reply(reply);
        Flow::Continue
    }

    async fn handle_exit(
        &mut self,
        from: Pid,
        reason: ExitReason,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        self.child_exited(ctx, from, reason).await
    }

    async fn terminate(&mut self, _reason: &ExitReason, ctx: &mut ServerContext<Self>) {
        self.stop_children(ctx, 0).await;
    }
}
