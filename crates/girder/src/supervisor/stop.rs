//! Stopping children: one at a time (the ordered strategies stop in reverse start order), or
//! all at once (a dynamic supervisor's children have no order).

use std::collections::HashMap;
use std::time::Instant;

use super::run::SupervisorServer;
use super::spec::Shutdown;
use crate::mailbox::SysMsg;
use crate::server::ServerContext;
use crate::{ExitReason, MonitorRef, Pid};

type Ctx = ServerContext<SupervisorServer>;

/// The first exit signal a shutdown policy sends.
fn first_signal(shutdown: Shutdown) -> ExitReason {
    match shutdown {
        Shutdown::BrutalKill => ExitReason::Kill,
        Shutdown::Timeout(_) | Shutdown::Infinity => ExitReason::Shutdown,
    }
}

/// Stops one child as its spec says and returns the reason it exited with.
pub(super) async fn stop_one(ctx: &mut Ctx, pid: Pid, shutdown: Shutdown) -> ExitReason {
    // Monitor first, then unlink: the exit is then seen exactly once, as a Down, even from a
    // child that unlinked itself.
    let mref = ctx.monitor(pid);
    ctx.unlink(pid);
    ctx.exit(pid, first_signal(shutdown));
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

/// Stops every child in `children` at once and waits for all of them, each within its own
/// shutdown time (then killed). The cost is constant per child: a hundred thousand children
/// stop in one pass, their `Down`s taken from the mailbox in batches.
pub(super) async fn stop_all(ctx: &mut Ctx, children: Vec<(Pid, Shutdown)>) {
    if children.is_empty() {
        return;
    }
    let started = Instant::now();
    // pid → its monitor and when to kill it if it has not stopped.
    let mut pending: HashMap<Pid, (MonitorRef, Option<Instant>)> =
        HashMap::with_capacity(children.len());
    for &(pid, shutdown) in &children {
        let mref = ctx.monitor(pid);
        // Unlinked without a scan of the mailbox: an exit signal that already came through the
        // link is dropped below, in one pass.
        ctx.unlink_quiet(pid);
        let kill_at = match shutdown {
            Shutdown::Timeout(t) => Some(started + t),
            _ => None,
        };
        pending.insert(pid, (mref, kill_at));
    }
    for &(pid, shutdown) in &children {
        ctx.exit(pid, first_signal(shutdown));
    }
    let mut batch = Vec::new();
    while !pending.is_empty() {
        let next_kill = pending.values().filter_map(|(_, at)| *at).min();
        let wait = next_kill.map(|at| at.saturating_duration_since(Instant::now()));
        let got = ctx
            .take_sys_batch(
                |m| matches!(m, SysMsg::Down(d) if pending.get(&d.pid).is_some_and(|(r, _)| *r == d.monitor)),
                &mut batch,
                wait,
            )
            .await;
        for m in batch.drain(..) {
            if let SysMsg::Down(d) = m {
                pending.remove(&d.pid);
            }
        }
        if !got {
            let now = Instant::now();
            let mut killed = 0usize;
            for (pid, (_, at)) in pending.iter_mut() {
                if at.is_some_and(|at| at <= now) {
                    *at = None;
                    ctx.exit(*pid, ExitReason::Kill);
                    killed += 1;
                }
            }
            if killed > 0 {
                tracing::warn!(
                    supervisor = %ctx.pid(),
                    killed,
                    "children did not stop within their shutdown time; killed them"
                );
            }
        }
    }
    // Exit signals that came through a link before it was removed.
    let stopped: std::collections::HashSet<Pid> = children.iter().map(|(p, _)| *p).collect();
    ctx.remove_sys(|m| matches!(m, SysMsg::Exit { from, .. } if stopped.contains(from)));
}
