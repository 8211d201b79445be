use std::fmt;

/// Why a message could not be queued. The message is handed back either way.
///
/// ```
/// use girder::SendError;
/// let e: SendError<u32> = SendError::Full(7);
/// assert_eq!(e.to_string(), "mailbox is full");
/// assert_eq!(e.into_inner(), 7);
/// ```
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum SendError<M> {
    /// A bounded mailbox is at capacity. Nothing was queued; retry, wait with `send_wait`, or shed.
    #[error("mailbox is full")]
    Full(M),
    /// The process has exited; its mailbox is closed.
    #[error("process is not alive")]
    NoProc(M),
}

impl<M> SendError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(m) | SendError::NoProc(m) => m,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::NoProc(_) => f.write_str("NoProc(..)"),
        }
    }
}
