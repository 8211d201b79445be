//! Exit signals, links and monitors: the rules of Erlang, written once.

use super::core::{AnyProcess, Extra, Life, MonitorEnd};
use crate::call::watch::Pending;
use crate::mailbox::SysMsg;
use crate::{Down, ExitReason, MonitorRef, Node, Pid};
use tokio::sync::oneshot;

/// Delivers an exit signal from `from` to `target`.
///
/// * `Kill` sent directly cannot be trapped: the target exits `Killed`.
/// * A trapping target receives the signal as an [`Event::Exit`](crate::Event::Exit) message.
/// * Otherwise `Normal` is ignored and any other reason ends the target with that reason.
pub(crate) fn exit_signal(target: &dyn AnyProcess, from: Pid, reason: ExitReason, via_link: bool) {
    let header = target.header();
    if via_link {
        header.meta.lock().links.remove(&from);
    }
    if reason == ExitReason::Kill && !via_link {
        terminate(target, ExitReason::Killed);
    } else if header.traps_exits() {
        target.push_sys(SysMsg::Exit { from, reason });
    } else if !reason.is_normal() {
        terminate(target, reason);
    }
}

/// Ends `target` with `reason` now, wherever its task is: the task is aborted and its exit
/// handling runs when the future is dropped.
pub(crate) fn terminate(target: &dyn AnyProcess, reason: ExitReason) {
    let mut meta = target.header().meta.lock();
    if !matches!(meta.life, Life::Running) {
        return;
    }
    meta.life = Life::Ending(reason);
    if let Some(abort) = meta.abort.take() {
        drop(meta);
        abort.abort();
    }
    // Without an abort handle the process is still being spawned; `spawn` checks
    // for an `Ending` life right after it stores the handle.
}

/// Runs once when a process ends: records the reason, closes the mailbox, frees the name and
/// tells links and monitors.
pub(crate) fn on_exit(node: &Node, proc_: &dyn AnyProcess, completed: Option<ExitReason>) {
    let header = proc_.header();
    let pid = header.pid;
    let (links, extra, reason) = {
        let mut meta = header.meta.lock();
        if meta.has_exited() {
            return;
        }
        // A future that completed wins over a kill that raced with its completion; a future
        // dropped without completing was killed (or the runtime is shutting down).
        let reason = match completed {
            Some(r) => r,
            None => match &meta.life {
                Life::Ending(r) => r.clone(),
                _ => ExitReason::Shutdown,
            },
        };
        meta.life = Life::Exited(reason.clone());
        meta.abort = None;
        // Freed under the process lock (the order `register` takes too), so nobody sees the
        // process dead while its name still points at it.
        let extra = meta.take_extra();
        if let Some(name) = extra.as_ref().and_then(|e| e.name.as_ref()) {
            node.unregister_if(name, pid);
        }
        (meta.links.take(), extra, reason)
    };
    node.inner
        .counters
        .exited(&reason, proc_.messages_in(), proc_.mailbox_stats());
    // After the reason is recorded, so a caller woken by its dropped reply handle can read it.
    proc_.close_mailbox();
    if !matches!(reason, ExitReason::Normal) {
        tracing::debug!(%pid, %reason, "process exited");
    }
    for (linked, ()) in links {
        if !linked.is_local() {
            if let Some(d) = node.distribution() {
                d.exit(pid, linked, reason.clone(), true);
            }
        } else if let Some(p) = node.lookup_any(linked) {
            exit_signal(&*p, pid, reason.clone(), true);
        }
    }
    // After links and before monitors: once a pid is gone from the table its links have the
    // exit signal, and a `Down` means the pid is gone from the table.
    node.remove_process(pid);
    let (mut waiters, pending_tells) = match extra {
        Some(extra) => end_extra(node, pid, &reason, *extra),
        None => (Vec::new(), Vec::new()),
    };
    // Last: a `wait_exit` that returns sees the whole exit done (links, table, monitors).
    let waiters = {
        let mut meta = header.meta.lock();
        meta.life = Life::Gone(reason.clone());
        // Waiters from before the exit, plus any that came while it was handled.
        if let Some(late) = meta.take_extra().and_then(|e| e.watches) {
            waiters.extend(late.waiters);
        }
        waiters
    };
    for w in waiters {
        let _ = w.send(reason.clone());
    }
    // After the exit is handled, so a told caller that watches this process finds it gone.
    if !pending_tells.is_empty() {
        crate::call::watch::tell_pending(node, pid, pending_tells);
    }
}

/// The exit's work on the part of a process most never use: its timers cancelled, its
/// monitors told or forgotten. Returns what waits for the end of the exit: the exit's waiters
/// and the tells its interrupted handlers left.
fn end_extra(
    node: &Node,
    pid: Pid,
    reason: &ExitReason,
    extra: Extra,
) -> (Vec<oneshot::Sender<ExitReason>>, Vec<Pending>) {
    let ends: Vec<MonitorEnd> = extra.monitor_ends().collect();
    let watches = extra.watches.map(|w| *w).unwrap_or_default();
    let (waiters, pending_tells) = (watches.waiters, watches.pending_tells);
    let Extra { timers, .. } = extra;
    timers.cancel_all();
    for end in ends {
        if !end.other.is_local() {
            if let Some(d) = node.distribution() {
                if end.watched {
                    d.down(pid, end.other, end.id, reason.clone());
                } else {
                    d.demonitor(pid, end.other, end.id);
                }
            }
            continue;
        }
        let Some(other) = node.lookup_any(end.other) else {
            continue;
        };
        // Either way the other end forgets this monitor, so neither side's list grows.
        other.header().meta.lock().forget_monitor(end.id, pid);
        if end.watched {
            other.push_sys(SysMsg::Down(Down {
                monitor: MonitorRef {
                    id: end.id,
                    target: pid,
                },
                pid,
                reason: reason.clone(),
            }));
        }
    }
    (waiters, pending_tells)
}

/// Links `me` and `other` both ways. Fails with `NoProc` if `other` is not alive.
pub(crate) fn link(node: &Node, me: &dyn AnyProcess, other: Pid) -> Result<(), crate::LinkError> {
    let my_pid = me.header().pid;
    if other == my_pid {
        return Ok(());
    }
    if !other.is_local() {
        let d = node.distribution().ok_or(crate::LinkError::NoProc(other))?;
        let added = me.header().meta.lock().links.insert(other, ());
        if added {
            d.link(my_pid, other);
        }
        return Ok(());
    }
    let target = node
        .lookup_any(other)
        .ok_or(crate::LinkError::NoProc(other))?;
    {
        let mut meta = target.header().meta.lock();
        if meta.has_exited() {
            return Err(crate::LinkError::NoProc(other));
        }
        meta.links.insert(my_pid, ());
    }
    me.header().meta.lock().links.insert(other, ());
    Ok(())
}

/// Removes a link both ways. The caller drops an exit message from `other` that is already
/// queued, so no exit from `other` is seen after `unlink` returns.
pub(crate) fn unlink(node: &Node, me: &dyn AnyProcess, other: Pid) {
    let my_pid = me.header().pid;
    me.header().meta.lock().links.remove(&other);
    if !other.is_local() {
        if let Some(d) = node.distribution() {
            d.unlink(my_pid, other);
        }
    } else if let Some(target) = node.lookup_any(other) {
        target.header().meta.lock().links.remove(&my_pid);
    }
}

/// Sets up a monitor of `target` for `watcher`. A target that is not alive produces an
/// immediate `Down` with `NoProc`. Both ends record the monitor, so whichever exits first
/// removes it from the other and nothing accumulates.
pub(crate) fn monitor(node: &Node, watcher: &dyn AnyProcess, target: Pid) -> MonitorRef {
    let mref = MonitorRef {
        id: node.next_ref(),
        target,
    };
    let me = watcher.header().pid;
    // The watcher's end first: a target exiting from now on finds it and cleans it up.
    watcher.header().meta.lock().add_monitor(MonitorEnd {
        id: mref.id,
        other: target,
        watched: false,
    });
    if !target.is_local() {
        if let Some(d) = node.distribution() {
            d.monitor(me, target, mref.id);
            return mref;
        }
    } else if let Some(t) = node.lookup_any(target) {
        let mut meta = t.header().meta.lock();
        if !meta.has_exited() {
            meta.add_monitor(MonitorEnd {
                id: mref.id,
                other: me,
                watched: true,
            });
            return mref;
        }
    }
    watcher.header().meta.lock().forget_monitor(mref.id, target);
    let reason = if target.is_local() {
        ExitReason::NoProc
    } else {
        ExitReason::NoConnection
    };
    watcher.push_sys(SysMsg::Down(Down {
        monitor: mref,
        pid: target,
        reason,
    }));
    mref
}

/// Removes a monitor from both ends; a `Down` for it that is already queued is dropped by the
/// caller.
pub(crate) fn demonitor(node: &Node, watcher: &dyn AnyProcess, mref: MonitorRef) {
    let me = watcher.header().pid;
    watcher
        .header()
        .meta
        .lock()
        .forget_monitor(mref.id, mref.target);
    if !mref.target.is_local() {
        if let Some(d) = node.distribution() {
            d.demonitor(me, mref.target, mref.id);
        }
    } else if let Some(t) = node.lookup_any(mref.target) {
        t.header().meta.lock().forget_monitor(mref.id, me);
    }
}
