//! Processes: lightweight tasks that own their state and a mailbox.
//!
//! A process is a tokio task plus a [`Context`]: its pid, its mailbox, its links and monitors.
//! Others reach it through a typed [`Addr`]. The rules are Erlang's:
//!
//! * messages from one sender arrive in the order sent;
//! * links are two-way: an abnormal exit kills linked processes unless they trap exits, in which
//!   case they get [`Event::Exit`]; `Normal` never kills; `Kill` cannot be trapped;
//! * monitors are one-way and fire one [`Event::Down`], with `NoProc` for a dead target;
//! * a panic ends only its own process, with [`ExitReason::Panic`](crate::ExitReason::Panic).
//!
//! One deliberate difference: trapped exits, `Down` notifications and stop requests
//! ([`Addr::stop`], seen as [`Event::Stop`]) overtake queued messages (they travel in the
//! mailbox's system lane), so a supervisor under load still reacts at once.

pub(crate) mod addr;
mod context;
pub(crate) mod core;
pub(crate) mod local;
pub(crate) mod signal;
mod small_map;
mod spawn;
pub(crate) mod table;

pub use addr::Addr;
pub use context::{Context, Down, Event, MonitorRef};
pub use spawn::SpawnOptions;

/// The pid of the process the calling code runs in, or `None` outside any process (Erlang's
/// `self()`, for code that has no [`Context`] at hand).
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder::{ExitReason, Node};
/// assert_eq!(girder::process::current(), None);
/// let node = Node::new("docs");
/// let addr = node.spawn(|ctx: girder::Context<()>| async move {
///     assert_eq!(girder::process::current(), Some(ctx.pid()));
///     ExitReason::Normal
/// });
/// assert_eq!(addr.wait_exit().await, ExitReason::Normal);
/// # }
/// ```
pub fn current() -> Option<crate::Pid> {
    local::current_pid()
}

pub(crate) use spawn::spawn_process;
