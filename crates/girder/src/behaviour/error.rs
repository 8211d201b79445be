use crate::{ExitReason, Pid};

/// Why a server did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// `init` returned an error or panicked; the process exited with this reason.
    #[error("init failed: {0}")]
    Init(ExitReason),
    /// The requested name is held by another live process.
    #[error("already started as {0}")]
    AlreadyStarted(Pid),
    /// `init` declined to start, without error (OTP's `ignore`): the process exited `Normal`.
    /// A supervisor keeps such a child listed without a pid (or forgets it, if temporary).
    #[error("init declined to start (ignore)")]
    Ignored,
    /// The start was refused for another reason (for example a name the process cannot take).
    #[error("start failed: {0}")]
    Other(String),
}

/// Why a behaviour's `init` did not start it: it failed (OTP's `{stop, Reason}`), or declined
/// (OTP's `ignore`). An [`ExitReason`] converts into a failure, so `?` works on functions that
/// fail with one.
///
/// ```
/// use girder::{InitError, Node, Server, ServerContext, StartError};
///
/// struct Optional { enabled: bool }
///
/// impl Server for Optional {
///     type Call = (); type Cast = (); type Info = ();
///     async fn init(&mut self, _: &mut ServerContext<Self>) -> Result<(), InitError> {
///         if !self.enabled {
///             return Err(InitError::Ignore);
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let r = girder::server::start(&node, Optional { enabled: false }).await;
/// assert_eq!(r.unwrap_err(), StartError::Ignored);
/// assert_eq!(node.process_count(), 0);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Fail the start: the process exits with this reason and the start returns
    /// [`StartError::Init`].
    #[error("init failed: {0}")]
    Stop(ExitReason),
    /// Decline to start: the process exits `Normal` and the start returns
    /// [`StartError::Ignored`].
    #[error("init declined to start")]
    Ignore,
}

impl From<ExitReason> for InitError {
    fn from(reason: ExitReason) -> Self {
        InitError::Stop(reason)
    }
}
