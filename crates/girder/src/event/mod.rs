//! Event managers: the `gen_event` behaviour.
//!
//! An [`EventManager`] is a process holding a list of [`EventHandler`]s. Every event it is given
//! is handed to each handler in the order they were added. Handlers are added and removed at run
//! time; a handler that panics is removed and reported (to the log and to subscribers of
//! [`HandlerRemoved`] reports), and the manager and the other handlers carry on.
//!
//! ```
//! use girder::event::{EventHandler, EventManager, HandlerFlow};
//! use girder::Node;
//! use std::sync::{Arc, Mutex};
//!
//! struct Collect(Arc<Mutex<Vec<String>>>);
//!
//! impl EventHandler<String> for Collect {
//!     async fn handle_event(&mut self, event: &String) -> HandlerFlow {
//!         self.0.lock().unwrap().push(event.clone());
//!         HandlerFlow::Continue
//!     }
//! }
//!
//! # #[tokio::main] async fn main() {
//! let node = Node::new("docs");
//! let events = EventManager::<String>::start(&node).await.unwrap();
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! events.add_handler(Collect(seen.clone())).await.unwrap();
//! events.sync_notify("disk almost full".to_string()).await.unwrap();
//! assert_eq!(*seen.lock().unwrap(), ["disk almost full"]);
//! # }
//! ```

mod error;
mod manager;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use error::EventError;

use manager::{ManagerCall, ManagerReply, ManagerServer};

use crate::server::{self, ServerRef, StartError};
use crate::{Addr, ExitReason, LookupError, Node, Pid, SpawnOptions};

/// What a handler tells its manager after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerFlow {
    /// Keep the handler installed.
    Continue,
    /// Remove the handler (its `terminate` runs with [`RemoveReason::Finished`]).
    Remove,
}

/// Why a handler was removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum RemoveReason {
    /// [`EventManager::remove_handler`] removed it.
    Removed,
    /// It returned [`HandlerFlow::Remove`].
    Finished,
    /// It panicked while handling an event; the text is the panic message.
    Panicked(String),
    /// Its `init` failed.
    InitFailed(String),
    /// The manager stopped with this reason.
    ManagerStopped(ExitReason),
}

/// A report that a handler left a manager, sent to subscribers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HandlerRemoved {
    /// The manager.
    pub manager: Pid,
    /// The handler.
    pub id: HandlerId,
    /// The handler's type name.
    pub handler: &'static str,
    /// Why it was removed.
    pub reason: RemoveReason,
}

/// Identifies one installed handler (two instances of one type have different ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct HandlerId(pub(crate) u64);

/// One installed handler, as [`EventManager::which_handlers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HandlerInfo {
    /// Its id.
    pub id: HandlerId,
    /// Its type name.
    pub handler: &'static str,
}

/// An event handler: callbacks run inside its manager's process, one event at a time.
pub trait EventHandler<E>: Send + 'static {
    /// Runs when the handler is added; an error refuses the add.
    fn init(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }

    /// Handles one event.
    fn handle_event(&mut self, event: &E) -> impl Future<Output = HandlerFlow> + Send;

    /// Runs when the handler is removed, for whatever reason.
    fn terminate(&mut self, reason: &RemoveReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe face of an [`EventHandler`], so one manager holds handlers of many types.
pub(crate) trait DynHandler<E>: Send {
    fn init(&mut self) -> BoxFuture<'_, Result<(), String>>;
    fn handle_event<'a>(&'a mut self, event: &'a E) -> BoxFuture<'a, HandlerFlow>;
    fn terminate<'a>(&'a mut self, reason: &'a RemoveReason) -> BoxFuture<'a, ()>;
}

impl<E: Sync + 'static, H: EventHandler<E>> DynHandler<E> for H {
    fn init(&mut self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(EventHandler::init(self))
    }

    fn handle_event<'a>(&'a mut self, event: &'a E) -> BoxFuture<'a, HandlerFlow> {
        Box::pin(EventHandler::handle_event(self, event))
    }

    fn terminate<'a>(&'a mut self, reason: &'a RemoveReason) -> BoxFuture<'a, ()> {
        Box::pin(EventHandler::terminate(self, reason))
    }
}

/// A handle to a running event manager for events of type `E`.
pub struct EventManager<E: Send + Sync + 'static> {
    server: ServerRef<ManagerServer<E>>,
}

impl<E: Send + Sync + 'static> Clone for EventManager<E> {
    fn clone(&self) -> Self {
        EventManager {
            server: self.server.clone(),
        }
    }
}

impl<E: Send + Sync + 'static> fmt::Debug for EventManager<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventManager({})", self.pid())
    }
}

impl<E: Send + Sync + 'static> EventManager<E> {
    /// Starts an event manager with no handlers.
    pub async fn start(node: &Node) -> Result<Self, StartError> {
        Self::start_with(node, SpawnOptions::new(), None).await
    }

    /// Starts an event manager with spawn options (for example a mailbox bound, or a link to a
    /// supervisor) and an optional registered name.
    pub async fn start_with(
        node: &Node,
        opts: SpawnOptions,
        name: Option<&str>,
    ) -> Result<Self, StartError> {
        let opts = opts.behaviour("event_manager");
        let server = server::start_with(node, ManagerServer::new(), opts, name).await?;
        Ok(EventManager { server })
    }

    /// The manager registered under `name`.
    pub fn lookup(node: &Node, name: &str) -> Result<Self, LookupError> {
        ServerRef::lookup(node, name).map(|server| EventManager { server })
    }

    /// The manager's pid.
    pub fn pid(&self) -> Pid {
        self.server.pid()
    }

    /// Hands `event` to every handler, without waiting. Fails only if the manager is gone or its
    /// bounded mailbox is full.
    pub fn notify(&self, event: E) -> Result<(), EventError> {
        self.server.cast(event).map_err(|e| match e {
            crate::SendError::Full(_) => EventError::Full,
            crate::SendError::NoProc(_) => EventError::NotRunning(self.pid()),
        })
    }

    /// Hands `event` to every handler and returns once all have handled it.
    pub async fn sync_notify(&self, event: E) -> Result<(), EventError> {
        match self.call(ManagerCall::SyncNotify(event)).await? {
            ManagerReply::Done(r) => r,
            _ => unreachable!("sync_notify replies Done"),
        }
    }

    /// Adds a handler after running its `init`; returns its id.
    pub async fn add_handler<H: EventHandler<E>>(&self, handler: H) -> Result<HandlerId, EventError>
    where
        E: Sync,
    {
        let name = std::any::type_name::<H>();
        match self.call(ManagerCall::Add(Box::new(handler), name)).await? {
            ManagerReply::Added(r) => r,
            _ => unreachable!("add_handler replies Added"),
        }
    }

    /// Removes a handler, running its `terminate`.
    pub async fn remove_handler(&self, id: HandlerId) -> Result<(), EventError> {
        match self.call(ManagerCall::Remove(id)).await? {
            ManagerReply::Done(r) => r,
            _ => unreachable!("remove_handler replies Done"),
        }
    }

    /// The installed handlers, in the order they receive events.
    pub async fn which_handlers(&self) -> Result<Vec<HandlerInfo>, EventError> {
        match self.call(ManagerCall::Which).await? {
            ManagerReply::Handlers(h) => Ok(h),
            _ => unreachable!("which_handlers replies Handlers"),
        }
    }

    /// Sends a [`HandlerRemoved`] report to `to` whenever a handler leaves this manager. A
    /// subscriber that has exited is dropped.
    pub async fn subscribe_removals(&self, to: Addr<HandlerRemoved>) -> Result<(), EventError> {
        match self.call(ManagerCall::Subscribe(to)).await? {
            ManagerReply::Done(r) => r,
            _ => unreachable!("subscribe replies Done"),
        }
    }

    /// Stops the manager; every handler's `terminate` runs. Returns the exit reason.
    pub async fn stop(&self) -> ExitReason {
        self.server.stop(ExitReason::Normal).await
    }

    async fn call(&self, req: ManagerCall<E>) -> Result<ManagerReply, EventError> {
        self.server.call(req).await.map_err(|e| match e {
            crate::CallError::Exited(_) => EventError::NotRunning(self.pid()),
            other => EventError::Call(other),
        })
    }
}
