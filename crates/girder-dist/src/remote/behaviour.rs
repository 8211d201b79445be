//! Behaviours across nodes (servers, state machines, event managers: every handle whose
//! mailbox takes [`Msg`]): the sending side of a remote handle, and the receiving side of an
//! exported behaviour.
//!
//! A call's request crosses with its reply handle's place marked (`girder::call::wire`): the
//! caller's node keeps the request and its handle ([`OutgoingCall`]) under the call's reference
//! until a `Reply` or `CallFailed` packet comes; the callee's node decodes the request with a
//! handle that sends the outcome back ([`RemoteReply`]).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use girder::behaviour::Msg;
use girder::call::wire::{decode_call, OutgoingCall, ReplySink};
use girder::call::{Outcome, Request};
use girder::remote::{BoxFuture, PidTranslation, RemoteSink};
use girder::{Addr, ExitReason, Pid, SendError};

use super::process::{push, unsent};
use super::{Delivery, Inbound, Inbox, Target};
use crate::node::Inner;
use crate::peer::{Completion, Peer, PendingReply};
use crate::wire::{self, Packet, Wire};

/// The sending side of a behaviour handle to a process on another node.
pub(super) struct RemoteBehaviour<C, K, I> {
    target: Target,
    _m: PhantomData<fn(C, K, I)>,
}

impl<C: Wire, K: Wire, I: Send + 'static> RemoteBehaviour<C, K, I> {
    pub(super) fn new(target: Target) -> Self {
        RemoteBehaviour {
            target,
            _m: PhantomData,
        }
    }

    /// Sends a call's request; hands it back if the connection has no room or no connection
    /// can be had.
    fn call(&self, request: Request<C>) -> Result<(), SendError<Msg<C, K, I>>> {
        let inner = &self.target.inner;
        let reff = inner.next_ref();
        let Some(peer) = &self.target.peer else {
            return Err(SendError::NoProc(Msg::Call(request)));
        };
        // The time left travels, not the moment: the nodes' clocks need not agree.
        let left_us = request
            .deadline()
            .filter(|_| peer.has(crate::wire::caps::DEADLINES))
            .map(|at| {
                at.saturating_duration_since(std::time::Instant::now())
                    .as_micros()
                    .min(u64::MAX as u128) as u64
            });
        let to = self.target.wire();
        let p = match left_us {
            Some(left_us) => Packet::CallUntil {
                to,
                reff,
                name: C::NAME,
                left_us,
            },
            None => Packet::Call {
                to,
                reff,
                name: C::NAME,
            },
        };
        let translation = &inner.translation;
        // A request that cannot be encoded fails its call at once (with the reason), as a lost
        // message is logged: nothing to hand back.
        let (bytes, call) = match OutgoingCall::encode(request.into_body(), |req| {
            wire::packet_with(&p, req, translation)
        }) {
            Ok(encoded) => encoded,
            Err(why) => {
                tracing::warn!(to = %self.target.pid, error = %why, "call not sent");
                return Ok(());
            }
        };
        // Registered first: the reply may come before `send` returns.
        peer.waiting.lock().add_call(
            reff,
            Box::new(CallReply {
                call,
                translation: translation.clone(),
            }),
        );
        match self.target.send_msg(bytes) {
            Ok(()) => Ok(()),
            Err(e) => match peer.waiting.lock().calls.remove(&reff) {
                // Handed back, as a local full or dead mailbox does.
                Some(p) => {
                    let request = take_request::<C>(p);
                    Err(unsent(e, Msg::Call(Request::new(request))))
                }
                // The connection failed meanwhile and already ended the call.
                None => Ok(()),
            },
        }
    }
}

impl<C: Wire, K: Wire, I: Send + 'static> RemoteSink<Msg<C, K, I>> for RemoteBehaviour<C, K, I> {
    fn pid(&self) -> Pid {
        self.target.pid
    }

    fn send(&self, msg: Msg<C, K, I>) -> Result<(), SendError<Msg<C, K, I>>> {
        match msg {
            Msg::Call(request) => self.call(request),
            Msg::Cast(c) => {
                let p = Packet::Send {
                    to: self.target.wire(),
                    name: K::NAME,
                };
                match wire::packet_with(&p, &c, &self.target.inner.translation) {
                    Ok(bytes) => self
                        .target
                        .send_msg(bytes)
                        .map_err(|e| unsent(e, Msg::Cast(c))),
                    Err(e) => {
                        tracing::warn!(to = %self.target.pid, error = %e, "cast not sent");
                        Ok(())
                    }
                }
            }
            // Info messages are the behaviour's own business (timers, monitors): local only.
            info @ Msg::Info(_) => Err(SendError::NoProc(info)),
        }
    }

    fn send_wait(&self, msg: Msg<C, K, I>) -> BoxFuture<'_, Result<(), SendError<Msg<C, K, I>>>> {
        Box::pin(async move {
            let mut msg = msg;
            loop {
                match self.send(msg) {
                    // Full: nothing was queued and the message came back; wait for room.
                    Err(SendError::Full(m)) => match &self.target.peer {
                        Some(_) => {
                            msg = m;
                            self.target.room().await;
                        }
                        None => return Err(SendError::NoProc(m)),
                    },
                    other => return other,
                }
            }
        })
    }

    fn stop(&self, reason: ExitReason) -> bool {
        self.target.stop(reason)
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        self.target.exit_reason()
    }

    fn wait_exit(&self) -> BoxFuture<'static, ExitReason> {
        self.target.wait_exit()
    }
}

/// The caller's end of a remote call: the request and its reply handle, answered when the reply
/// packet comes.
struct CallReply {
    call: OutgoingCall,
    translation: Arc<dyn PidTranslation>,
}

impl PendingReply for CallReply {
    fn complete(self: Box<Self>, outcome: Completion<'_>) {
        match outcome {
            Completion::Reply { body, .. } => {
                let CallReply { call, translation } = *self;
                let decoded = girder::remote::with_pid_translation(&translation, || {
                    let mut de = postcard::Deserializer::from_bytes(body);
                    call.reply(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
                });
                if let Err(why) = decoded {
                    tracing::warn!(error = %why, "a reply that does not decode");
                }
            }
            Completion::Failed(Some(reason)) => self.call.fail(reason),
            Completion::Refused => self.call.overloaded(),
            // Dropped without a reply: the local handle's drop says so to the caller.
            Completion::Failed(None) => drop(self),
        }
    }

    fn abandoned(&self) -> bool {
        self.call.is_closed()
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// The request back from a pending call that was never sent.
fn take_request<C: Wire>(p: Box<dyn PendingReply>) -> C {
    match p.into_any().downcast::<CallReply>() {
        Ok(c) => c
            .call
            .into_request::<C>()
            .expect("a call's request is of its handle's type"),
        Err(_) => unreachable!("a behaviour's pending calls are CallReplys"),
    }
}

/// An exported behaviour.
pub(super) struct ExportedBehaviour<C: Send + 'static, K: Send + 'static, I: Send + 'static> {
    pub(super) addr: Addr<Msg<C, K, I>>,
    /// Calls from other nodes not answered yet: when the behaviour exits, the ones whose reply
    /// handle is held elsewhere (handed to a worker, say) fail with its exit reason, as a
    /// local caller's would (a remote caller's own node cannot watch the callee's exit).
    pub(super) inflight: Arc<Inflight>,
    /// The connection's send queue limit, for the failures sent at exit.
    pub(super) limit: usize,
}

/// Remote calls under way, by (peer, connection generation, reference): where each one's
/// outcome goes.
pub(super) type Inflight = parking_lot::Mutex<HashMap<(usize, u64, u64), (Arc<Peer>, u64)>>;

impl<C: Wire, K: Wire, I: Send + 'static> Inbox for ExportedBehaviour<C, K, I> {
    fn deliver(
        &self,
        inner: &Arc<Inner>,
        peer: &Arc<Peer>,
        name: &str,
        body: &[u8],
        how: Inbound,
        behind: bool,
    ) -> Result<Delivery, String> {
        match how {
            Inbound::Send => {
                let cast = wire::decode::<K>(name, body, &inner.translation)?;
                Ok(push(&self.addr, Msg::Cast(cast), behind, || {}))
            }
            Inbound::Call {
                reff,
                stream,
                deadline,
            } => {
                let gen = peer.connection_gen().unwrap_or(0);
                let key = (Arc::as_ptr(peer) as usize, gen, reff);
                let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let sink = RemoteReply {
                    refused: refused.clone(),
                    peer: peer.clone(),
                    key,
                    stream,
                    translation: inner.translation.clone(),
                    limit: inner.cfg.connection.send_queue,
                    callee: self.addr.pid(),
                    exit: {
                        let addr = self.addr.clone();
                        Box::new(move || addr.exit_reason())
                    },
                    wait_exit: {
                        let addr = self.addr.clone();
                        Box::new(move || Box::pin(async move { addr.wait_exit().await }))
                    },
                    inflight: Arc::downgrade(&self.inflight),
                };
                self.inflight.lock().insert(key, (peer.clone(), stream));
                match decode_call(Box::new(sink), deadline, || {
                    wire::decode::<C>(name, body, &inner.translation)
                }) {
                    Ok(req) => {
                        let request = match deadline {
                            Some(at) => Request::new(req).with_deadline(at),
                            None => Request::new(req),
                        };
                        let refuse = move || refused.store(true, Ordering::Relaxed);
                        Ok(push(&self.addr, Msg::Call(request), behind, refuse))
                    }
                    Err(e) => {
                        self.inflight.lock().remove(&key);
                        Err(e)
                    }
                }
            }
        }
    }

    fn exited(&self, reason: &ExitReason) {
        let left: Vec<_> = self.inflight.lock().drain().collect();
        for ((_, gen, reff), (peer, stream)) in left {
            if peer.connection_gen() != Some(gen) {
                continue;
            }
            let failed = wire::packet(&Packet::CallFailed {
                reff,
                reason: Some(reason.clone()),
            });
            peer.send_reliable(stream, failed, self.limit);
        }
    }
}

/// What tells a remote caller its call was refused: `CallRefused`, or for a peer that does not
/// know it, the `CallFailed` of a dropped request.
fn refused(peer: &Peer, reff: u64) -> bytes::Bytes {
    let p = if peer.has(crate::wire::caps::REFUSED) {
        Packet::CallRefused { reff }
    } else {
        Packet::CallFailed { reff, reason: None }
    };
    wire::packet(&p)
}

/// The callee's end of a remote call: sends its outcome back, once, on the connection the call
/// came on.
struct RemoteReply {
    /// Set when the callee's mailbox refused the request: its drop then says so.
    refused: Arc<std::sync::atomic::AtomicBool>,
    peer: Arc<Peer>,
    key: (usize, u64, u64),
    stream: u64,
    translation: Arc<dyn PidTranslation>,
    limit: usize,
    callee: Pid,
    exit: Box<dyn Fn() -> Option<ExitReason> + Send + Sync>,
    wait_exit: Box<dyn FnOnce() -> BoxFuture<'static, ExitReason> + Send + Sync>,
    inflight: Weak<Inflight>,
}

impl ReplySink for RemoteReply {
    fn send(self: Box<Self>, outcome: Outcome<&dyn erased_serde::Serialize>) {
        // Already failed when the callee exited (or the export is gone): nothing to send. Nor
        // on a newer connection than the call's: the peer restarted and reuses references.
        let pending = self
            .inflight
            .upgrade()
            .and_then(|f| f.lock().remove(&self.key));
        let (_, gen, reff) = self.key;
        if pending.is_none() || self.peer.connection_gen() != Some(gen) {
            return;
        }
        let failed =
            move |reason: Option<ExitReason>| wire::packet(&Packet::CallFailed { reff, reason });
        let bytes = match outcome {
            Outcome::Replied(r) => {
                let p = Packet::Reply {
                    reff,
                    name: "reply",
                };
                match wire::packet_with_named(&p, r, "reply", &self.translation) {
                    Ok(b) => b,
                    Err(e) => failed(Some(ExitReason::error(e.to_string()))),
                }
            }
            Outcome::Failed(reason) => failed(Some(reason)),
            Outcome::Overloaded => refused(&self.peer, reff),
            Outcome::Dropped if self.refused.load(Ordering::Relaxed) => refused(&self.peer, reff),
            Outcome::Dropped => failed((self.exit)()),
            // The handler panicked; the callee's exit reason is known once it has exited.
            Outcome::Panicking => {
                let (peer, stream, limit) = (self.peer.clone(), self.stream, self.limit);
                let exited = (self.wait_exit)();
                let callee = self.callee;
                self.peer.node().spawn_task(async move {
                    let reason = exited.await;
                    tracing::debug!(%callee, %reason, "remote call's callee panicked");
                    peer.send_reliable(stream, failed(Some(reason)), limit);
                });
                return;
            }
        };
        self.peer.send_reliable(self.stream, bytes, self.limit);
    }
}
