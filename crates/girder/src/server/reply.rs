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
    tx: oneshot::Sender<R>,
}

impl<R> ReplyTo<R> {
    /// A reply handle and the receiver its reply arrives on (for tests and custom protocols).
    pub fn pair() -> (Self, oneshot::Receiver<R>) {
        let (tx, rx) = oneshot::channel();
        (ReplyTo { tx }, rx)
    }

    /// Sends the reply. If the caller has given up (timed out), the reply is dropped.
    pub fn reply(self, value: R) {
        let _ = self.tx.send(value);
    }

    /// True if the caller is no longer waiting.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<R> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyTo(..)")
    }
}
