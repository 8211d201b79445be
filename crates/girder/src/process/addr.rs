//! Typed handles for sending to a process.

use std::fmt;
use std::sync::Arc;

use super::core::Core;
use crate::{ExitReason, Pid, SendError};

/// A typed handle to a process's mailbox: what you send with.
///
/// Cloning is cheap. An `Addr` never keeps a process alive; sending to a process that has exited
/// returns [`SendError::NoProc`].
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder::{Event, ExitReason, Node};
/// let node = Node::new("docs");
/// let addr = node.spawn(|mut ctx| async move {
///     if let Event::Message(n) = ctx.recv().await {
///         assert_eq!(n, 42u32);
///     }
///     ExitReason::Normal
/// });
/// addr.send(42).unwrap();
/// assert_eq!(addr.wait_exit().await, ExitReason::Normal);
/// assert!(addr.send(43).is_err());
/// # }
/// ```
pub struct Addr<M: Send + 'static> {
    pub(crate) core: Arc<Core<M>>,
}

impl<M: Send + 'static> Addr<M> {
    /// The process's pid.
    pub fn pid(&self) -> Pid {
        self.core.header.pid
    }

    /// Queues `msg` without waiting. A bounded mailbox at capacity returns [`SendError::Full`]
    /// (nothing is queued and nothing is dropped silently); an exited process returns
    /// [`SendError::NoProc`].
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.core.mailbox.send(msg)
    }

    /// Queues `msg`, waiting for room if the mailbox is bounded and full. Waiting senders are
    /// served in order. Fails with [`SendError::NoProc`] if the process exits meanwhile.
    pub async fn send_wait(&self, msg: M) -> Result<(), SendError<M>> {
        self.core.mailbox.send_wait(msg).await
    }

    /// Asks the process to stop gracefully with `reason`. The request travels in the system lane,
    /// so it overtakes queued messages; the process sees [`Event::Stop`](crate::Event::Stop).
    /// False if the process has already exited.
    pub fn stop(&self, reason: ExitReason) -> bool {
        self.core
            .mailbox
            .push_sys(crate::mailbox::SysMsg::Stop(reason))
    }

    /// True while the process has not exited.
    pub fn is_alive(&self) -> bool {
        !self.core.header.meta.lock().has_exited()
    }

    /// Waits until the process has exited and its exit has reached its links and monitors, and
    /// returns why. Unlike [`Node::wait_exit`](crate::Node::wait_exit) this works after the
    /// process is gone too: the handle remembers the reason.
    pub async fn wait_exit(&self) -> ExitReason {
        match self.core.header.exit_or_waiter() {
            Ok(reason) => reason,
            Err(rx) => rx.await.unwrap_or(ExitReason::NoProc),
        }
    }

    /// The reason the process exited, or `None` while it runs.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.core.header.exit_reason()
    }
}

impl<M: Send + 'static> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Addr {
            core: self.core.clone(),
        }
    }
}

impl<M: Send + 'static> fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({})", self.pid())
    }
}

impl<M: Send + 'static> PartialEq for Addr<M> {
    fn eq(&self, other: &Self) -> bool {
        self.pid() == other.pid()
    }
}

impl<M: Send + 'static> Eq for Addr<M> {}
