//! Typed handles for sending to a process.

use std::fmt;
use std::sync::Arc;

use super::core::Core;
use crate::remote::RemoteSink;
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
    pub(crate) target: Target<M>,
}

pub(crate) enum Target<M: Send + 'static> {
    Local(Arc<Core<M>>),
    Remote(Arc<dyn RemoteSink<M>>),
}

impl<M: Send + 'static> Addr<M> {
    pub(crate) fn local(core: Arc<Core<M>>) -> Self {
        Addr {
            target: Target::Local(core),
        }
    }

    /// A handle to a process on another node, sending through `sink`. Distribution layers build
    /// these (see [`crate::remote`]); everything else about the handle works as for a local one.
    pub fn remote(sink: Arc<dyn RemoteSink<M>>) -> Self {
        Addr {
            target: Target::Remote(sink),
        }
    }

    /// The process's pid.
    pub fn pid(&self) -> Pid {
        match &self.target {
            Target::Local(core) => core.header.pid,
            Target::Remote(sink) => sink.pid(),
        }
    }

    /// Queues `msg` without waiting. A bounded mailbox at capacity applies its
    /// [`Overflow`](crate::Overflow) policy: by default it returns [`SendError::Full`] (nothing
    /// is queued and nothing is dropped silently); an exited process returns
    /// [`SendError::NoProc`]. For a remote process, `Full` means the connection's send queue is
    /// full and `NoProc` that its node is unreachable; a message to a remote process that has
    /// exited is dropped on arrival, as in Erlang.
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        match &self.target {
            Target::Local(core) => core.mailbox.send(msg),
            Target::Remote(sink) => sink.send(msg),
        }
    }

    /// Queues `msg`, waiting for room if the mailbox is bounded and full (and its
    /// [`Overflow`](crate::Overflow) policy is `Wait`, the default; the others answer at once,
    /// as [`send`](Self::send) does). Waiting senders are served in order. Fails with [`SendError::NoProc`] if the process exits meanwhile.
    pub async fn send_wait(&self, msg: M) -> Result<(), SendError<M>> {
        match &self.target {
            Target::Local(core) => core.mailbox.send_wait(msg).await,
            Target::Remote(sink) => sink.send_wait(msg).await,
        }
    }

    /// Asks the process to stop gracefully with `reason`. The request travels in the system lane,
    /// so it overtakes queued messages; the process sees [`Event::Stop`](crate::Event::Stop).
    /// False if the process has already exited.
    pub fn stop(&self, reason: ExitReason) -> bool {
        match &self.target {
            Target::Local(core) => core.mailbox.push_sys(crate::mailbox::SysMsg::Stop(reason)),
            Target::Remote(sink) => sink.stop(reason),
        }
    }

    /// True while the process has not exited (for a remote process: while its node is
    /// reachable and no exit has been seen).
    pub fn is_alive(&self) -> bool {
        match &self.target {
            Target::Local(core) => !core.header.meta.lock().has_exited(),
            Target::Remote(sink) => sink.exit_reason().is_none(),
        }
    }

    /// Waits until the process has exited and its exit has reached its links and monitors, and
    /// returns why. Unlike [`Node::wait_exit`](crate::Node::wait_exit) this works after the
    /// process is gone too: the handle remembers the reason.
    pub async fn wait_exit(&self) -> ExitReason {
        match &self.target {
            Target::Local(core) => match core.header.exit_or_waiter() {
                Ok(reason) => reason,
                Err(rx) => rx.await.unwrap_or(ExitReason::NoProc),
            },
            Target::Remote(sink) => sink.wait_exit().await,
        }
    }

    /// For a local process: its exit reason once its exit is fully handled, or a receiver that
    /// gets it then. `None` for a remote process.
    pub(crate) fn exit_waiter(
        &self,
    ) -> Option<Result<ExitReason, tokio::sync::oneshot::Receiver<ExitReason>>> {
        match &self.target {
            Target::Local(core) => Some(core.header.exit_or_waiter()),
            Target::Remote(_) => None,
        }
    }

    /// Messages waiting in the process's mailbox: those queued plus those its receiver has taken
    /// in and not handled yet, read without locking (so a moment old while it runs). 0 for a
    /// remote process.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{ExitReason, Node};
    /// let node = Node::new("docs");
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let p = node.spawn(|mut ctx: girder::Context<u32>| async move {
    ///     let _ = rx.await; // busy elsewhere: messages wait
    ///     ctx.recv().await;
    ///     ExitReason::Normal
    /// });
    /// p.send(1).unwrap();
    /// p.send(2).unwrap();
    /// assert_eq!(p.mailbox_len(), 2);
    /// tx.send(()).unwrap();
    /// # }
    /// ```
    pub fn mailbox_len(&self) -> usize {
        match &self.target {
            Target::Local(core) => {
                core.mailbox.shared_len()
                    + core
                        .header
                        .local_len
                        .load(std::sync::atomic::Ordering::Relaxed)
            }
            Target::Remote(_) => 0,
        }
    }

    /// A bounded mailbox's capacity, [`Overflow`](crate::Overflow) policy and counts of what
    /// the policy dropped or refused; `None` for an unbounded mailbox or a remote process.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{Node, SendError, SpawnOptions};
    /// let node = Node::new("docs");
    /// let p = node.spawn_opts(SpawnOptions::new().capacity(1), |_: girder::Context<u8>| {
    ///     std::future::pending()
    /// });
    /// p.send(1).unwrap();
    /// assert!(matches!(p.send(2), Err(SendError::Full(2))));
    /// let s = p.mailbox_stats().unwrap();
    /// assert_eq!((s.capacity, s.refused, s.dropped), (1, 1, 0));
    /// # }
    /// ```
    pub fn mailbox_stats(&self) -> Option<crate::MailboxStats> {
        match &self.target {
            Target::Local(core) => core.mailbox.stats(),
            Target::Remote(_) => None,
        }
    }

    /// Changes a bounded mailbox's capacity while the process runs (at least 1): what a
    /// regulator turns to tighten or loosen the queue in front of a process. Growing frees
    /// room at once (waiting senders go on); shrinking below what is queued drops nothing, and
    /// new messages find room only once the queue is under the new bound. False for an
    /// unbounded mailbox or a remote process.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{Node, SendError, SpawnOptions};
    /// let node = Node::new("docs");
    /// let p = node.spawn_opts(SpawnOptions::new().capacity(1), |_: girder::Context<u8>| {
    ///     std::future::pending()
    /// });
    /// p.send(1).unwrap();
    /// assert!(p.set_mailbox_capacity(2));
    /// p.send(2).unwrap();
    /// assert!(matches!(p.send(3), Err(SendError::Full(3))));
    /// # }
    /// ```
    pub fn set_mailbox_capacity(&self, n: usize) -> bool {
        match &self.target {
            Target::Local(core) => core.mailbox.set_capacity(n),
            Target::Remote(_) => false,
        }
    }

    /// The reason the process exited, or `None` while it runs.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        match &self.target {
            Target::Local(core) => core.header.exit_reason(),
            Target::Remote(sink) => sink.exit_reason(),
        }
    }
}

impl<M: Send + 'static> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Addr {
            target: match &self.target {
                Target::Local(core) => Target::Local(core.clone()),
                Target::Remote(sink) => Target::Remote(sink.clone()),
            },
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
