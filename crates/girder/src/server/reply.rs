use std::fmt;

use tokio::sync::oneshot;

/// Where the reply to one call goes. Reply at once, or keep it (move it to another task) and
/// reply later: that is a deferred reply. Dropping it without replying ends the call with
/// [`CallError::NoReply`](crate::CallError::NoReply).
///
/// ```
/// # #[tokio::main] async fn main() {
/// let (from, rx) = girder::ReplyTo::<u32>::pair();
/// tokio::spawn(async move { from.reply(7) });
/// assert_eq!(rx.await.unwrap(), 7);
/// # }
/// ```
pub struct ReplyTo<R> {
    tx: Option<Sender<R>>,
}

enum Sender<R> {
    Plain(oneshot::Sender<R>),
    /// A call's reply channel also says why a handle was dropped unanswered.
    Call(oneshot::Sender<Result<R, Unanswered>>),
}

/// Why a reply handle was dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// Dropped by the handler (the server may still be running).
    Dropped,
    /// Dropped while its handler was panicking: the server is about to exit.
    Panicking,
}

impl<R> ReplyTo<R> {
    /// A reply handle and the receiver its reply arrives on (for tests and custom protocols).
    pub fn pair() -> (Self, oneshot::Receiver<R>) {
        let (tx, rx) = oneshot::channel();
        (
            ReplyTo {
                tx: Some(Sender::Plain(tx)),
            },
            rx,
        )
    }

    pub(crate) fn for_call() -> (Self, oneshot::Receiver<Result<R, Unanswered>>) {
        let (tx, rx) = oneshot::channel();
        (
            ReplyTo {
                tx: Some(Sender::Call(tx)),
            },
            rx,
        )
    }

    /// Sends the reply. If the caller has given up (timed out), the reply is dropped.
    pub fn reply(mut self, value: R) {
        match self.tx.take() {
            Some(Sender::Plain(tx)) => {
                let _ = tx.send(value);
            }
            Some(Sender::Call(tx)) => {
                let _ = tx.send(Ok(value));
            }
            None => {}
        }
    }

    /// True if the caller is no longer waiting.
    pub fn is_closed(&self) -> bool {
        match &self.tx {
            Some(Sender::Plain(tx)) => tx.is_closed(),
            Some(Sender::Call(tx)) => tx.is_closed(),
            None => true,
        }
    }
}

impl<R> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        if let Some(Sender::Call(tx)) = self.tx.take() {
            let why = if std::thread::panicking() {
                Unanswered::Panicking
            } else {
                Unanswered::Dropped
            };
            let _ = tx.send(Err(why));
        }
    }
}

impl<R> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyTo(..)")
    }
}
