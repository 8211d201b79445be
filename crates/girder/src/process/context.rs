//! What a running process sees of itself: its mailbox, links, monitors and node.

use std::future::{poll_fn, Future};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::Duration;

use super::core::{Core, Life};
use super::signal;
use super::spawn::{spawn_process, SpawnOptions};
use crate::mailbox::{Batch, Received, SysMsg};
use crate::sys::{SysError, SysRequest};
use crate::timer::TimerRef;
use crate::{Addr, ExitReason, LinkError, Node, Pid, RegisterError};

/// How many messages a process takes in a row before it lets other tasks on its thread run.
const RECV_BUDGET: u32 = 128;

/// Something a process received: a message, a trapped exit signal or a monitor notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<M> {
    /// A message sent to the process's [`Addr`].
    Message(M),
    /// An exit signal, received as a message because the process traps exits.
    Exit {
        /// The process that exited (or sent the signal).
        from: Pid,
        /// Why.
        reason: ExitReason,
    },
    /// A monitored process exited.
    Down(Down),
    /// A request to stop gracefully with this reason ([`Addr::stop`]). Behaviours run their
    /// `terminate` and exit with it; a plain process decides for itself.
    Stop(ExitReason),
}

/// A reference to a monitor, returned by [`Context::monitor`]; it identifies the `Down` it fires.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct MonitorRef {
    pub(crate) id: u64,
    pub(crate) target: Pid,
}

impl MonitorRef {
    /// The monitored process.
    pub fn target(&self) -> Pid {
        self.target
    }
}

/// The notification a monitor fires, once, when its target exits.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Down {
    /// Which monitor fired.
    pub monitor: MonitorRef,
    /// The process that exited.
    pub pid: Pid,
    /// Why it exited; `NoProc` if it was not alive when the monitor was set.
    pub reason: ExitReason,
}

/// A running process's view of itself, handed to the function given to `spawn`.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder::{Event, ExitReason, Node};
/// let node = Node::new("docs");
/// let echo = node.spawn(|mut ctx| async move {
///     loop {
///         match ctx.recv().await {
///             Event::Message(reply_to) => {
///                 let reply_to: tokio::sync::oneshot::Sender<girder::Pid> = reply_to;
///                 let _ = reply_to.send(ctx.pid());
///             }
///             _ => return ExitReason::Normal,
///         }
///     }
/// });
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// echo.send(tx).unwrap();
/// assert_eq!(rx.await.unwrap(), echo.pid());
/// # }
/// ```
pub struct Context<M: Send + 'static> {
    core: Arc<Core<M>>,
    node: Node,
    batch: Batch<M>,
    budget: u32,
}

impl<M: Send + 'static> Context<M> {
    pub(crate) fn new(core: Arc<Core<M>>, node: Node) -> Self {
        Context {
            core,
            node,
            batch: Batch::new(),
            budget: RECV_BUDGET,
        }
    }

    /// This process's pid.
    pub fn pid(&self) -> Pid {
        self.core.header.pid
    }

    /// A handle others can send to this process with.
    pub fn addr(&self) -> Addr<M> {
        Addr::local(self.core.clone())
    }

    /// The node this process runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Whether a system message (exit signal, monitor notification, stop request) is queued.
    #[inline]
    pub(crate) fn has_sys(&self) -> bool {
        self.core.mailbox.has_sys()
    }

    /// The behaviour this process runs (`process` for a plain one), as introspection shows it.
    pub(crate) fn behaviour_name(&self) -> &'static str {
        self.core.header.meta.lock().behaviour
    }

    /// Messages waiting in this process's mailbox, queued or taken in and not handled yet
    /// (what a process checks before taking on more work, say).
    pub fn mailbox_len(&self) -> usize {
        self.core.mailbox.shared_len() + self.batch.len()
    }

    /// Waits for the next event. Trapped exits and monitor notifications come before queued
    /// messages; messages from one sender come in the order sent.
    pub fn recv(&mut self) -> impl Future<Output = Event<M>> + Send + '_ {
        // A plain `poll_fn`, not an `async fn`: one layer less for every message every
        // behaviour takes.
        poll_fn(|cx| self.poll_recv(cx))
    }

    /// Like [`recv`](Self::recv), giving up after `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Event<M>> {
        tokio::time::timeout(timeout, self.recv()).await.ok()
    }

    /// Takes the next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<Event<M>> {
        let mut cx = TaskCx::from_waker(std::task::Waker::noop());
        match self.poll_recv(&mut cx) {
            Poll::Ready(e) => Some(e),
            Poll::Pending => None,
        }
    }

    /// The poll form of [`recv`](Self::recv), for behaviours that select over several sources.
    #[inline]
    pub fn poll_recv(&mut self, cx: &mut TaskCx<'_>) -> Poll<Event<M>> {
        // A plain process has no `sys` loop: it refuses requests and goes on.
        self.poll_with(cx, |pid, req| {
            req.refuse(SysError::NotABehaviour(pid));
            true
        })
    }

    /// Like [`poll_recv`](Self::poll_recv), for a behaviour's loop: a `sys` request is put in
    /// `sys` for the loop to answer, and the poll returns `Pending` at once (without waiting:
    /// the caller looks at `sys` before anything else). Kept out of the returned value so the
    /// common path moves an event, not a wrapper around one.
    #[inline]
    pub(crate) fn poll_event(
        &mut self,
        cx: &mut TaskCx<'_>,
        sys: &mut Option<Box<SysRequest>>,
    ) -> Poll<Event<M>> {
        self.poll_with(cx, |_, req| {
            *sys = Some(req);
            false
        })
    }

    /// The receive, written once: `on_sys` takes a `sys` request and says whether to go on
    /// receiving (true) or return `Pending` at once (false).
    #[inline(always)]
    fn poll_with(
        &mut self,
        cx: &mut TaskCx<'_>,
        mut on_sys: impl FnMut(Pid, Box<SysRequest>) -> bool,
    ) -> Poll<Event<M>> {
        loop {
            if self.budget == 0 {
                self.budget = RECV_BUDGET;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let got = self.core.mailbox.poll_recv(cx, &mut self.batch);
            let Poll::Ready(got) = got else {
                self.budget = RECV_BUDGET;
                return Poll::Pending;
            };
            self.budget -= 1;
            self.core
                .header
                .local_len
                .store(self.batch.len(), Ordering::Relaxed);
            return Poll::Ready(match got {
                Received::User(m) => Event::Message(m),
                Received::Sys(SysMsg::Exit { from, reason }) => Event::Exit { from, reason },
                Received::Sys(SysMsg::Down(d)) => Event::Down(d),
                Received::Sys(SysMsg::Stop(reason)) => Event::Stop(reason),
                Received::Sys(SysMsg::Sys(req)) => {
                    if on_sys(self.core.header.pid, req) {
                        continue;
                    }
                    return Poll::Pending;
                }
            });
        }
    }

    /// What a suspended behaviour waits for: `sys` requests (put in `sys`, as
    /// [`poll_event`](Self::poll_event) does), a stop, and an exit signal from `parent`;
    /// everything else stays queued.
    pub(crate) fn poll_suspended(
        &mut self,
        cx: &mut TaskCx<'_>,
        parent: Option<Pid>,
        sys: &mut Option<Box<SysRequest>>,
    ) -> Poll<Event<M>> {
        let got = self.core.mailbox.poll_sys(cx, |m| match m {
            SysMsg::Sys(_) | SysMsg::Stop(_) => true,
            SysMsg::Exit { from, .. } => Some(*from) == parent,
            SysMsg::Down(_) => false,
        });
        let Poll::Ready(m) = got else {
            return Poll::Pending;
        };
        Poll::Ready(match m {
            SysMsg::Sys(req) => {
                *sys = Some(req);
                return Poll::Pending;
            }
            SysMsg::Stop(reason) => Event::Stop(reason),
            SysMsg::Exit { from, reason } => Event::Exit { from, reason },
            SysMsg::Down(d) => Event::Down(d),
        })
    }

    /// Turns exit trapping on or off. A trapping process receives exit signals as
    /// [`Event::Exit`] instead of dying from them (except `Kill`).
    pub fn trap_exit(&self, on: bool) {
        self.core.header.set_trap_exit(on);
    }

    /// Whether this process traps exits.
    pub fn traps_exits(&self) -> bool {
        self.core.header.traps_exits()
    }

    /// Links this process with `pid` (both ways). Fails with [`LinkError::NoProc`] if `pid` is
    /// not alive.
    pub fn link(&self, pid: Pid) -> Result<(), LinkError> {
        signal::link(&self.node, &*self.core, pid)
    }

    /// Removes the link with `pid`. No exit signal from `pid` is received after this returns,
    /// even one that was already queued.
    pub fn unlink(&self, pid: Pid) {
        signal::unlink(&self.node, &*self.core, pid);
        self.core
            .mailbox
            .remove_sys(|m| matches!(m, SysMsg::Exit { from, .. } if *from == pid));
    }

    /// Removes the link with `pid` without looking for an exit signal from it already queued
    /// (the caller drops those itself, for many pids in one pass).
    pub(crate) fn unlink_quiet(&self, pid: Pid) {
        signal::unlink(&self.node, &*self.core, pid);
    }

    /// Drops every queued system message matching `pred`.
    pub(crate) fn remove_sys(&self, pred: impl Fn(&SysMsg) -> bool) {
        self.core.mailbox.remove_sys(pred);
    }

    /// Waits until at least one queued system message matches `pred` and moves every match
    /// into `out`, leaving the rest queued. False if `timeout` passed first.
    pub(crate) async fn take_sys_batch(
        &mut self,
        pred: impl Fn(&SysMsg) -> bool,
        out: &mut Vec<SysMsg>,
        timeout: Option<Duration>,
    ) -> bool {
        let wait = poll_fn(|cx| self.core.mailbox.poll_sys_batch(cx, &pred, out));
        match timeout {
            Some(t) => tokio::time::timeout(t, wait).await.is_ok(),
            None => {
                wait.await;
                true
            }
        }
    }

    /// Monitors `pid`: one [`Event::Down`] arrives when it exits (`NoProc` at once if it is not
    /// alive).
    pub fn monitor(&self, pid: Pid) -> MonitorRef {
        signal::monitor(&self.node, &*self.core, pid)
    }

    /// Removes a monitor and drops its `Down` if it was already queued.
    pub fn demonitor(&self, mref: MonitorRef) {
        signal::demonitor(&self.node, &*self.core, mref);
        self.core
            .mailbox
            .remove_sys(|m| matches!(m, SysMsg::Down(d) if d.monitor == mref));
    }

    /// Waits for the `Down` of one monitor, leaving every other event queued (a selective
    /// receive). `None` if `timeout` passes first.
    pub async fn wait_down(&mut self, mref: MonitorRef, timeout: Option<Duration>) -> Option<Down> {
        let wait = poll_fn(|cx| {
            self.core
                .mailbox
                .poll_sys(cx, |m| matches!(m, SysMsg::Down(d) if d.monitor == mref))
        });
        let got = match timeout {
            Some(t) => tokio::time::timeout(t, wait).await.ok()?,
            None => wait.await,
        };
        match got {
            SysMsg::Down(d) => Some(d),
            _ => unreachable!("filtered on Down"),
        }
    }

    /// Sends an exit signal with `reason` to `pid` (see [`Node::exit`]).
    pub fn exit(&self, pid: Pid, reason: ExitReason) {
        self.node.send_exit(self.pid(), pid, reason);
    }

    /// Registers this process under `name` on its node.
    pub fn register(&self, name: &str) -> Result<(), RegisterError> {
        self.node.register(name, self.pid())
    }

    /// Sends `msg` to this process after `delay`; cancel with the returned [`TimerRef`].
    pub fn send_after(&self, msg: M, delay: Duration) -> TimerRef {
        crate::timer::send_after(&self.addr(), msg, delay)
    }

    /// Spawns an unlinked process on the same node.
    pub fn spawn<N, F, Fut>(&self, f: F) -> Addr<N>
    where
        N: Send + 'static,
        F: FnOnce(Context<N>) -> Fut + Send + 'static,
        Fut: Future<Output = ExitReason> + Send + 'static,
    {
        spawn_process(&self.node, SpawnOptions::new(), f)
    }

    /// Spawns a process linked to this one (the link exists before the child runs).
    pub fn spawn_link<N, F, Fut>(&self, f: F) -> Addr<N>
    where
        N: Send + 'static,
        F: FnOnce(Context<N>) -> Fut + Send + 'static,
        Fut: Future<Output = ExitReason> + Send + 'static,
    {
        spawn_process(&self.node, SpawnOptions::new().link(self.pid()), f)
    }

    /// Records the exit reason before the process's own state is dropped, so callers woken by a
    /// dropped reply handle can read why.
    pub(crate) fn record_exit_reason(&self, reason: &ExitReason) {
        let mut meta = self.core.header.meta.lock();
        if matches!(meta.life, Life::Running) {
            meta.life = Life::Ending(reason.clone());
        }
    }
}
