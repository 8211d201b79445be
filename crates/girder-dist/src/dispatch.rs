//! The receiving side of a connection: every packet from a peer, handed to the local process
//! it is for. One task per connection, so packets are handled in the order they arrived.

use std::sync::{Arc, Weak};

use girder::{ExitReason, Pid};
use tokio::sync::mpsc;

use crate::connection::{ConnectionHandle, Received};
use crate::node::Inner;
use crate::peer::{Completion, Peer};
use crate::remote::{Delivery, Inbound};
use crate::wire::{self, Packet, WirePid};

/// Runs until the connection ends, then reports it lost.
pub(crate) async fn run(
    inner: Weak<Inner>,
    peer: Arc<Peer>,
    gen: u64,
    handle: ConnectionHandle,
    mut rx: mpsc::Receiver<Received>,
) {
    let spin = inner.upgrade().map(|i| i.cfg.busy_poll).unwrap_or_default();
    while let Some(msg) = next(&mut rx, spin).await {
        let Some(inner) = inner.upgrade() else {
            handle.close();
            return;
        };
        handle_packet(&inner, &peer, gen, msg.stream, &msg.payload).await;
    }
    let why = handle.lost().await;
    if let Some(inner) = inner.upgrade() {
        inner.lost(&peer, gen, &why);
    }
}

/// The next packet. After traffic, keeps the thread busy for up to `spin` (yielding, so the
/// runtime keeps polling the sockets) before sleeping: the BEAM's scheduler busy-wait, which
/// saves a sleep and a wake-up (tens of microseconds) per message when traffic is steady, as in
/// request and reply.
async fn next(rx: &mut mpsc::Receiver<Received>, spin: std::time::Duration) -> Option<Received> {
    if !spin.is_zero() {
        let until = std::time::Instant::now() + spin;
        loop {
            match rx.try_recv() {
                Ok(m) => return Some(m),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= until {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    rx.recv().await
}

async fn handle_packet(inner: &Arc<Inner>, peer: &Arc<Peer>, gen: u64, stream: u64, bytes: &[u8]) {
    let (packet, body) = match wire::split(bytes) {
        Ok(x) => x,
        Err(e) => {
            // A packet this build does not know (a newer peer) or garbage: refused, logged, and
            // the connection carries on.
            tracing::warn!(peer = %peer.name, error = %e, "undecodable packet dropped");
            return;
        }
    };
    let node = &inner.node;
    let remote = |w: WirePid| Pid::new(peer.idx, w.creation, w.id);
    let local = |w: WirePid| Pid::new(0, w.creation, w.id);
    let limit = inner.cfg.connection.send_queue;
    match packet {
        Packet::Send { to, name } => {
            deliver(inner, peer, local(to), name, body, Inbound::Send).await;
        }
        Packet::SendNamed { to, name } => match node.whereis(to) {
            Some(pid) => deliver(inner, peer, pid, name, body, Inbound::Send).await,
            None => {
                tracing::debug!(peer = %peer.name, to, name, "message to an unregistered name dropped")
            }
        },
        Packet::Call { to, reff, name } => {
            let how = Inbound::Call {
                reff,
                stream,
                deadline: None,
            };
            deliver(inner, peer, local(to), name, body, how).await;
        }
        Packet::CallUntil {
            to,
            reff,
            name,
            left_us,
        } => {
            let how = Inbound::Call {
                reff,
                stream,
                deadline: Some(until(left_us)),
            };
            deliver(inner, peer, local(to), name, body, how).await;
        }
        Packet::CallNamed { to, reff, name } => match node.whereis(to) {
            Some(pid) => {
                let how = Inbound::Call {
                    reff,
                    stream,
                    deadline: None,
                };
                deliver(inner, peer, pid, name, body, how).await
            }
            None => {
                let p = Packet::CallFailed {
                    reff,
                    reason: Some(ExitReason::NoProc),
                };
                peer.send_reliable(stream, wire::packet(&p), limit);
            }
        },
        Packet::Reply { reff, .. } => {
            let call = peer.waiting.lock().calls.remove(&reff);
            if let Some(call) = call {
                call.complete(Completion::Reply { body });
            }
        }
        Packet::CallFailed { reff, reason } => {
            let call = peer.waiting.lock().calls.remove(&reff);
            if let Some(call) = call {
                call.complete(Completion::Failed(reason));
            }
        }
        Packet::CallRefused { reff } => {
            let call = peer.waiting.lock().calls.remove(&reff);
            if let Some(call) = call {
                call.complete(Completion::Refused);
            }
        }
        Packet::Link { from, to } => {
            if !node.remote_link(remote(from), local(to)) {
                let p = Packet::Exit {
                    from: to,
                    to: from,
                    reason: ExitReason::NoProc,
                    via_link: true,
                };
                peer.send_reliable(to.id, wire::packet(&p), limit);
            }
        }
        Packet::Unlink { from, to } => node.remote_unlink(remote(from), local(to)),
        Packet::Exit {
            from,
            to,
            reason,
            via_link,
        } => node.remote_exit(remote(from), local(to), reason, via_link),
        Packet::Monitor {
            watcher,
            target,
            id,
        } => {
            if !node.remote_monitor(remote(watcher), local(target), id) {
                let p = Packet::Down {
                    target,
                    watcher,
                    id,
                    reason: ExitReason::NoProc,
                };
                peer.send_reliable(target.id, wire::packet(&p), limit);
            }
        }
        Packet::Demonitor {
            watcher,
            target,
            id,
        } => node.remote_demonitor(remote(watcher), local(target), id),
        Packet::Down {
            target,
            watcher,
            id,
            reason,
        } => {
            if watcher.id == 0 {
                // A wait for a remote exit from outside any process.
                if let Some(w) = peer.waiting.lock().exits.remove(&id) {
                    let _ = w.send(reason);
                }
            } else {
                node.remote_down(remote(target), local(watcher), id, reason);
            }
        }
        Packet::Stop { to, reason } => {
            node.remote_stop(local(to), reason);
        }
        Packet::WhereIs { reff, name } => {
            let pid = node.whereis(name).map(WirePid::of);
            peer.send_reliable(0, wire::packet(&Packet::WhereIsReply { reff, pid }), limit);
        }
        Packet::WhereIsReply { reff, pid } => {
            if let Some(tx) = peer.waiting.lock().lookups.remove(&reff) {
                let _ = tx.send(pid.map(remote));
            }
        }
        Packet::Goodbye => inner.goodbye(peer, gen),
        Packet::Pause { to } => peer.paused.pause(to),
        Packet::Resume { to } => peer.paused.resume(to),
    }
}

/// The moment a caller that had `left_us` to wait when it sent stops waiting: counted from the
/// call's arrival, so the nodes' clocks need not agree (the time on the way is the caller's
/// loss, not the callee's).
fn until(left_us: u64) -> std::time::Instant {
    let left = std::time::Duration::from_micros(left_us.min(86_400 * 1_000_000));
    std::time::Instant::now() + left
}

/// Hands a message or call to an exported local process.
async fn deliver(
    inner: &Arc<Inner>,
    peer: &Arc<Peer>,
    to: Pid,
    name: &str,
    body: &[u8],
    how: Inbound,
) {
    let alive = to.creation() == inner.node.creation();
    let inbox = alive
        .then(|| inner.exports.get(&to.id()).map(|e| e.value().clone()))
        .flatten();
    let Some(inbox) = inbox else {
        match how {
            // As in Erlang, a message to a process that is gone is dropped.
            Inbound::Send => {
                tracing::debug!(peer = %peer.name, %to, name, "message to a process that is not exported or gone, dropped")
            }
            Inbound::Call { reff, stream, .. } => {
                let p = Packet::CallFailed {
                    reff,
                    reason: Some(ExitReason::NoProc),
                };
                peer.send_reliable(stream, wire::packet(&p), inner.cfg.connection.send_queue);
            }
        }
        return;
    };
    // Behind messages already parked for it, so a process's messages keep their order.
    let behind = peer.parking.is_parked(to.id());
    match inbox.deliver(inner, peer, name, body, how, behind) {
        Ok(Delivery::Done) => {}
        // A full bounded mailbox: the message waits in its destination's queue, the peer is
        // told to pause sending to it, and this connection goes on (decision 014).
        Ok(Delivery::Wait(f)) => {
            let limit = inner.cfg.connection.send_queue;
            peer.parking
                .park(peer, WirePid::of(to), f, body.len(), limit);
            peer.parking
                .under(peer, inner.cfg.connection.max_parked)
                .await;
        }
        Err(why) => {
            tracing::warn!(peer = %peer.name, %to, name, %why, "message refused");
            if let Inbound::Call { reff, stream, .. } = how {
                let p = Packet::CallFailed {
                    reff,
                    reason: Some(ExitReason::error(why)),
                };
                peer.send_reliable(stream, wire::packet(&p), inner.cfg.connection.send_queue);
            }
        }
    }
}
