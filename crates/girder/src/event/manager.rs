//! The manager process: a [`Server`] holding handlers and isolating their crashes.

use super::{
    DynHandler, EventError, HandlerFlow, HandlerId, HandlerInfo, HandlerRemoved, RemoveReason,
};
use crate::behaviour::guarded;
use crate::server::{Flow, ReplyTo, Server, ServerContext};
use crate::{Addr, ExitReason, Pid};

pub(crate) enum ManagerCall<E> {
    SyncNotify(E),
    Add(Box<dyn DynHandler<E>>, &'static str),
    Remove(HandlerId),
    Which,
    Subscribe(Addr<HandlerRemoved>),
}

pub(crate) enum ManagerReply {
    Done(Result<(), EventError>),
    Added(Result<HandlerId, EventError>),
    Handlers(Vec<HandlerInfo>),
}

struct Installed<E> {
    id: HandlerId,
    name: &'static str,
    handler: Box<dyn DynHandler<E>>,
}

pub(crate) struct ManagerServer<E> {
    handlers: Vec<Installed<E>>,
    subscribers: Vec<Addr<HandlerRemoved>>,
    next_id: u64,
}

impl<E> ManagerServer<E> {
    pub(crate) fn new() -> Self {
        ManagerServer {
            handlers: Vec::new(),
            subscribers: Vec::new(),
            next_id: 1,
        }
    }
}

impl<E: Send + Sync + 'static> ManagerServer<E> {
    fn position(&self, id: HandlerId) -> Option<usize> {
        self.handlers.iter().position(|h| h.id == id)
    }

    /// Hands `event` to each handler in order; removes the ones that finish or panic.
    async fn dispatch(&mut self, event: &E, manager: Pid) {
        let mut i = 0;
        while i < self.handlers.len() {
            let flow = guarded(self.handlers[i].handler.handle_event(event)).await;
            let reason = match flow {
                Ok(HandlerFlow::Continue) => {
                    i += 1;
                    continue;
                }
                Ok(HandlerFlow::Remove) => RemoveReason::Finished,
                Err(ExitReason::Panic(msg)) => RemoveReason::Panicked(msg),
                Err(other) => RemoveReason::Panicked(other.to_string()),
            };
            let removed = self.handlers.remove(i);
            self.retire(removed, reason, manager).await;
        }
    }

    /// Runs a leaving handler's `terminate` and reports its removal.
    async fn retire(&mut self, mut gone: Installed<E>, reason: RemoveReason, manager: Pid) {
        if let RemoveReason::Panicked(msg) = &reason {
            tracing::warn!(%manager, handler = gone.name, id = gone.id.0, panic = %msg, "event handler crashed and was removed");
        }
        if let Err(panic) = guarded(gone.handler.terminate(&reason)).await {
            tracing::warn!(%manager, handler = gone.name, id = gone.id.0, %panic, "event handler terminate crashed");
        }
        self.report(HandlerRemoved {
            manager,
            id: gone.id,
            handler: gone.name,
            reason,
        });
    }

    /// Installs a handler if its `init` agrees; a refusal or a panic is reported like a removal.
    async fn add(
        &mut self,
        mut handler: Box<dyn DynHandler<E>>,
        name: &'static str,
        manager: Pid,
    ) -> Result<HandlerId, EventError> {
        let id = HandlerId(self.next_id);
        self.next_id += 1;
        let reason = match guarded(handler.init()).await {
            Ok(Ok(())) => {
                self.handlers.push(Installed { id, name, handler });
                return Ok(id);
            }
            Ok(Err(refused)) => refused,
            Err(panic) => {
                tracing::warn!(%manager, handler = name, id = id.0, %panic, "event handler init crashed; not added");
                panic.to_string()
            }
        };
        self.report(HandlerRemoved {
            manager,
            id,
            handler: name,
            reason: RemoveReason::InitFailed(reason.clone()),
        });
        Err(EventError::InitFailed {
            handler: name,
            reason,
        })
    }

    /// Sends `report` to every subscriber. One that has exited is dropped; a full one misses it.
    fn report(&mut self, report: HandlerRemoved) {
        self.subscribers
            .retain(|s| !matches!(s.send(report.clone()), Err(crate::SendError::NoProc(_))));
    }
}

impl<E: Send + Sync + 'static> Server for ManagerServer<E> {
    type Call = ManagerCall<E>;
    type Reply = ManagerReply;
    type Cast = E;
    type Info = ();

    async fn handle_call(
        &mut self,
        req: ManagerCall<E>,
        from: ReplyTo<ManagerReply>,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        let reply = match req {
            ManagerCall::SyncNotify(event) => {
                self.dispatch(&event, ctx.pid()).await;
                ManagerReply::Done(Ok(()))
            }
            ManagerCall::Add(handler, name) => {
                ManagerReply::Added(self.add(handler, name, ctx.pid()).await)
            }
            ManagerCall::Remove(id) => match self.position(id) {
                Some(i) => {
                    let gone = self.handlers.remove(i);
                    self.retire(gone, RemoveReason::Removed, ctx.pid()).await;
                    ManagerReply::Done(Ok(()))
                }
                None => ManagerReply::Done(Err(EventError::UnknownHandler(id))),
            },
            ManagerCall::Which => ManagerReply::Handlers(
                self.handlers
                    .iter()
                    .map(|h| HandlerInfo {
                        id: h.id,
                        handler: h.name,
                    })
                    .collect(),
            ),
            ManagerCall::Subscribe(addr) => {
                // Subscribers that exited since the last report go now, so the list stays
                // bounded by the live ones.
                self.subscribers.retain(|s| s.is_alive());
                self.subscribers.push(addr);
                ManagerReply::Done(Ok(()))
            }
        };
        from.reply(reply);
        Flow::Continue
    }

    async fn handle_cast(&mut self, event: E, ctx: &mut ServerContext<Self>) -> Flow {
        self.dispatch(&event, ctx.pid()).await;
        Flow::Continue
    }

    async fn terminate(&mut self, reason: &ExitReason, ctx: &mut ServerContext<Self>) {
        while let Some(gone) = self.handlers.pop() {
            self.retire(
                gone,
                RemoveReason::ManagerStopped(reason.clone()),
                ctx.pid(),
            )
            .await;
        }
    }
}
