use crate::server::CallError;
use crate::Pid;

use super::HandlerId;

/// Why an event manager request failed.
///
/// ```
/// use girder::event::{EventError, EventManager};
///
/// # #[tokio::main] async fn main() {
/// let node = girder::Node::new("docs");
/// let events = EventManager::<String>::start(&node).await.unwrap();
/// events.stop(girder::ExitReason::Normal).await;
/// let err = events.sync_notify("anyone?".into()).await.unwrap_err();
/// assert_eq!(err, EventError::NotRunning(events.pid()));
/// assert!(err.to_string().contains("is not running"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The manager has exited.
    #[error("event manager {0} is not running")]
    NotRunning(Pid),
    /// The manager's bounded mailbox is full; the event was not queued.
    #[error("event manager mailbox is full")]
    Full,
    /// No handler has this id.
    #[error("no handler with id {0} is installed")]
    UnknownHandler(HandlerId),
    /// The handler's `init` refused.
    #[error("handler {handler} refused to start: {reason}")]
    InitFailed {
        /// The handler's type name.
        handler: &'static str,
        /// What its init said.
        reason: String,
    },
    /// The request did not complete.
    #[error("event manager call failed: {0}")]
    Call(CallError),
}
