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

use manager::Request;
pub use manager::{ManagerCall, ManagerServer};

use crate::server::{self, ServerMsg, StartError};
use crate::{Addr, ExitReason, Node, Pid, ReplyTo, SpawnOptions};

/// What a handler tells its manager after an event.
///
/// ```
/// use girder::event::{EventHandler, HandlerFlow};
///
/// /// Handles the first three events, then asks to be removed.
/// struct FirstThree(u32);
///
/// impl EventHandler<String> for FirstThree {
///     async fn handle_event(&mut self, _: &String) -> HandlerFlow {
///         self.0 += 1;
///         if self.0 < 3 { HandlerFlow::Continue } else { HandlerFlow::Remove }
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerFlow {
    /// Keep the handler installed.
    Continue,
    /// Remove the handler (its `terminate` runs with [`RemoveReason::Finished`]).
    Remove,
}

/// Why a handler was removed (or never installed), as its `terminate` and [`HandlerRemoved`]
/// reports see it.
///
/// ```
/// use girder::event::RemoveReason;
/// use girder::ExitReason;
/// let r = RemoveReason::ManagerStopped(ExitReason::Shutdown);
/// assert!(!matches!(r, RemoveReason::Panicked(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum RemoveReason {
    /// [`EventManager::remove_handler`] removed it.
    Removed,
    /// It returned [`HandlerFlow::Remove`].
    Finished,
    /// It panicked while handling an event; the text is the panic message.
    Panicked(String),
    /// Its `init` refused or panicked, so it was never installed (its `terminate` does not run;
    /// only [`HandlerRemoved`] reports carry this reason).
    InitFailed(String),
    /// The manager stopped with this reason.
    ManagerStopped(ExitReason),
}

/// A report that a handler left a manager (or failed to join it), sent to the processes given
/// to [`EventManager::subscribe_removals`]: OTP's `gen_event_EXIT` message.
///
/// ```
/// use girder::event::{EventHandler, EventManager, HandlerFlow, HandlerRemoved, RemoveReason};
/// use girder::{Context, Event, ExitReason, Node};
///
/// struct Fragile;
/// impl EventHandler<u32> for Fragile {
///     async fn handle_event(&mut self, n: &u32) -> HandlerFlow {
///         assert!(*n < 10, "too big");
///         HandlerFlow::Continue
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let events = EventManager::<u32>::start(&node).await.unwrap();
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// let watcher = node.spawn(|mut ctx: Context<HandlerRemoved>| async move {
///     if let Event::Message(report) = ctx.recv().await {
///         let _ = tx.send(report);
///     }
///     ExitReason::Normal
/// });
/// events.subscribe_removals(watcher).await.unwrap();
/// let id = events.add_handler(Fragile).await.unwrap();
/// events.notify(99).unwrap();
/// let report = rx.await.unwrap();
/// assert_eq!(report.id, id);
/// assert_eq!(report.reason, RemoveReason::Panicked("too big".into()));
/// # }
/// ```
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

/// Identifies one installed handler (two instances of one type have different ids). Ids are
/// never reused within a manager.
///
/// ```
/// use girder::event::{EventHandler, EventManager, HandlerFlow};
///
/// struct Log;
/// impl EventHandler<&'static str> for Log {
///     async fn handle_event(&mut self, _: &&'static str) -> HandlerFlow { HandlerFlow::Continue }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = girder::Node::new("docs");
/// let events = EventManager::<&'static str>::start(&node).await.unwrap();
/// let a = events.add_handler(Log).await.unwrap();
/// let b = events.add_handler(Log).await.unwrap();
/// assert_ne!(a, b);
/// events.remove_handler(a).await.unwrap();
/// assert_eq!(events.which_handlers().await.unwrap()[0].id, b);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct HandlerId(pub(crate) u64);

impl fmt::Display for HandlerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One installed handler, as [`EventManager::which_handlers`] lists it.
///
/// ```
/// use girder::event::{EventHandler, EventManager, HandlerFlow};
///
/// struct Audit;
/// impl EventHandler<u8> for Audit {
///     async fn handle_event(&mut self, _: &u8) -> HandlerFlow { HandlerFlow::Continue }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = girder::Node::new("docs");
/// let events = EventManager::<u8>::start(&node).await.unwrap();
/// let id = events.add_handler(Audit).await.unwrap();
/// let installed = events.which_handlers().await.unwrap();
/// assert_eq!(installed[0].id, id);
/// assert!(installed[0].handler.ends_with("Audit"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HandlerInfo {
    /// Its id.
    pub id: HandlerId,
    /// Its type name.
    pub handler: &'static str,
}

/// An event handler: callbacks run inside its manager's process, one event at a time, so a slow
/// handler delays the others (long work belongs in another process). A panic in any callback
/// removes only this handler.
///
/// ```
/// use girder::event::{EventHandler, HandlerFlow, RemoveReason};
///
/// /// Counts alarms; refuses to start with a zero limit.
/// struct AlarmCounter { seen: u32, limit: u32 }
///
/// impl EventHandler<String> for AlarmCounter {
///     async fn init(&mut self) -> Result<(), String> {
///         if self.limit == 0 { return Err("limit must be positive".into()); }
///         Ok(())
///     }
///
///     async fn handle_event(&mut self, event: &String) -> HandlerFlow {
///         if event.starts_with("alarm") { self.seen += 1; }
///         if self.seen >= self.limit { HandlerFlow::Remove } else { HandlerFlow::Continue }
///     }
///
///     async fn terminate(&mut self, reason: &RemoveReason) {
///         println!("counted {} alarms, removed: {reason:?}", self.seen);
///     }
/// }
/// ```
pub trait EventHandler<E>: Send + 'static {
    /// Runs when the handler is added; an error (or a panic) refuses the add, and
    /// [`EventManager::add_handler`] returns [`EventError::InitFailed`].
    fn init(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }

    /// Handles one event.
    fn handle_event(&mut self, event: &E) -> impl Future<Output = HandlerFlow> + Send;

    /// Runs when the handler is removed, for whatever reason (not when its `init` failed).
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

/// A handle to a running event manager for events of type `E` (the manager is a process; this
/// handle is cheap to clone). See the [module docs](self) for an example.
///
/// ```
/// use girder::event::{EventError, EventManager};
/// use girder::{ExitReason, Node, SpawnOptions};
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// EventManager::<String>::start_with(&node, SpawnOptions::new(), Some("alarms")).await.unwrap();
/// let alarms = EventManager::<String>::lookup(&node, "alarms").unwrap();
/// alarms.notify("no handlers yet: nobody sees this".into()).unwrap();
/// assert_eq!(alarms.stop(ExitReason::Normal).await, ExitReason::Normal);
/// assert_eq!(alarms.notify("late".into()), Err(EventError::NotRunning(alarms.pid())));
/// # }
/// ```
pub struct EventManager<E: Send + Sync + 'static> {
    addr: Addr<EventManagerMsg<E>>,
}

/// The message type of an event manager's mailbox (what [`EventManager::addr`] addresses): its
/// casts are the events; its requests are [`EventManager`]'s methods.
pub type EventManagerMsg<E> = ServerMsg<ManagerServer<E>>;

crate::behaviour::handle!(
    EventManager [E: Send + Sync + 'static] [E],
    EventManagerMsg<E>
);

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
        Ok(EventManager::from_addr(server.addr().clone()))
    }

    /// Hands `event` to every handler, without waiting. Fails only if the manager is gone or its
    /// bounded mailbox is full.
    pub fn notify(&self, event: E) -> Result<(), EventError> {
        crate::behaviour::cast(&self.addr, event).map_err(|e| match e {
            crate::SendError::Full(_) => EventError::Full,
            crate::SendError::NoProc(_) => EventError::NotRunning(self.pid()),
        })
    }

    /// Hands `event` to every handler and returns once all have handled it.
    pub async fn sync_notify(&self, event: E) -> Result<(), EventError> {
        self.call(|r| ManagerCall(Request::SyncNotify(event, r)))
            .await
    }

    /// Adds a handler after running its `init`; returns its id. The handler sees every event
    /// notified after this returns (and none before). A handler whose `init` refuses or panics is
    /// not added: [`EventError::InitFailed`], and subscribers get a [`HandlerRemoved`] report
    /// with [`RemoveReason::InitFailed`].
    pub async fn add_handler<H: EventHandler<E>>(
        &self,
        handler: H,
    ) -> Result<HandlerId, EventError> {
        let name = std::any::type_name::<H>();
        let handler: Box<dyn DynHandler<E>> = Box::new(handler);
        self.call(|r| ManagerCall(Request::Add(handler, name, r)))
            .await?
    }

    /// Removes a handler, running its `terminate` with [`RemoveReason::Removed`]. An id that is
    /// not installed (never was, or already removed) is [`EventError::UnknownHandler`].
    pub async fn remove_handler(&self, id: HandlerId) -> Result<(), EventError> {
        self.call(|r| ManagerCall(Request::Remove(id, r))).await?
    }

    /// The installed handlers, in the order they receive events.
    pub async fn which_handlers(&self) -> Result<Vec<HandlerInfo>, EventError> {
        self.call(|r| ManagerCall(Request::Which(r))).await
    }

    /// Sends a [`HandlerRemoved`] report to `to` whenever a handler leaves this manager, for any
    /// reason, or fails its `init`. A subscriber that has exited is dropped; one whose bounded
    /// mailbox is full misses that report.
    pub async fn subscribe_removals(&self, to: Addr<HandlerRemoved>) -> Result<(), EventError> {
        self.call(|r| ManagerCall(Request::Subscribe(to, r))).await
    }

    async fn call<R: Send + 'static>(
        &self,
        make: impl FnOnce(ReplyTo<R>) -> ManagerCall<E> + Send,
    ) -> Result<R, EventError> {
        crate::behaviour::call(&self.addr, make, crate::call::DEFAULT_CALL_TIMEOUT)
            .await
            .map_err(|e| match e {
                crate::CallError::Exited(_) => EventError::NotRunning(self.pid()),
                other => EventError::Call(other),
            })
    }
}
