//! The manager process: a [`Server`] holding handlers and isolating their crashes.

use super::{
    DynHandler, EventError, HandlerFlow, HandlerId, HandlerInfo, HandlerRemoved, RemoveReason,
};
use crate::behaviour::guarded;
use crate::server::{Flow, ReplyTo, Server, ServerContext};
use crate::sys::StateView;
use crate::{Addr, ExitReason, Pid};

/// The requests an [`EventManager`](super::EventManager) makes (through its methods), each with
/// its typed reply.
pub struct ManagerCall<E>(pub(crate) Request<E>);

pub(crate) enum Request<E> {
    SyncNotify(E, ReplyTo<()>),
    Add(
        Box<dyn DynHandler<E>>,
        &'static str,
        ReplyTo<Result<HandlerId, EventError>>,
    ),
    Remove(HandlerId, ReplyTo<Result<(), EventError>>),
    Which(ReplyTo<Vec<HandlerInfo>>),
    Subscribe(Addr<HandlerRemoved>, ReplyTo<()>),
}

/// What crosses nodes of an event manager's requests: a synchronous notify. Handlers (code),
/// subscribers (local addresses) and the rest are managed on the manager's node.
#[derive(serde::Serialize, serde::Deserialize)]
enum WireRequest<E> {
    SyncNotify(E, ReplyTo<()>),
}

impl<E> serde::Serialize for ManagerCall<E>
where
    E: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        // Serialized field by field, in the shape of `WireRequest`: the reply handles must be
        // serialized where they are (see `call::wire`).
        use serde::ser::SerializeTupleVariant;
        match &self.0 {
            Request::SyncNotify(e, r) => {
                let mut v = s.serialize_tuple_variant("WireRequest", 0, "SyncNotify", 2)?;
                v.serialize_field(e)?;
                v.serialize_field(r)?;
                v.end()
            }
            _ => Err(S::Error::custom(
                "only sync_notify crosses nodes: manage an event manager's handlers on its node",
            )),
        }
    }
}

impl<'de, E> serde::Deserialize<'de> for ManagerCall<E>
where
    E: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ManagerCall(match WireRequest::<E>::deserialize(d)? {
            WireRequest::SyncNotify(e, r) => Request::SyncNotify(e, r),
        }))
    }
}

struct Installed<E> {
    id: HandlerId,
    name: &'static str,
    handler: Box<dyn DynHandler<E>>,
}

/// An event manager's process state; its requests are [`EventManager`](super::EventManager)'s
/// methods.
pub struct ManagerServer<E> {
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

    fn which(&self) -> Vec<HandlerInfo> {
        self.handlers
            .iter()
            .map(|h| HandlerInfo {
                id: h.id,
                handler: h.name,
            })
            .collect()
    }

    /// Sends `report` to every subscriber. One that has exited is dropped; a full one misses it.
    fn report(&mut self, report: HandlerRemoved) {
        self.subscribers
            .retain(|s| !matches!(s.send(report.clone()), Err(crate::SendError::NoProc(_))));
    }
}

impl<E: Send + Sync + 'static> Server for ManagerServer<E> {
    type Call = ManagerCall<E>;
    type Cast = E;
    type Info = ();

    /// Its handlers and subscribers.
    fn state_view(&self) -> StateView {
        StateView::Json(serde_json::json!({
            "handlers": self.which(),
            "subscribers": self.subscribers.len(),
        }))
    }

    async fn handle_call(&mut self, req: ManagerCall<E>, ctx: &mut ServerContext<Self>) -> Flow {
        match req.0 {
            Request::SyncNotify(event, from) => {
                self.dispatch(&event, ctx.pid()).await;
                from.reply(());
            }
            Request::Add(handler, name, from) => {
                from.reply(self.add(handler, name, ctx.pid()).await);
            }
            Request::Remove(id, from) => match self.position(id) {
                Some(i) => {
                    let gone = self.handlers.remove(i);
                    self.retire(gone, RemoveReason::Removed, ctx.pid()).await;
                    from.reply(Ok(()));
                }
                None => from.reply(Err(EventError::UnknownHandler(id))),
            },
            Request::Which(from) => from.reply(self.which()),
            Request::Subscribe(addr, from) => {
                // Subscribers that exited since the last report go now, so the list stays
                // bounded by the live ones.
                self.subscribers.retain(|s| s.is_alive());
                self.subscribers.push(addr);
                from.reply(());
            }
        }
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
