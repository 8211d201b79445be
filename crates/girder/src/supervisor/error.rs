use crate::server::{CallError, StartError};
use crate::Pid;

/// Why a supervisor request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// A child with this id is running.
    #[error("child {id:?} is already running as {pid}")]
    AlreadyStarted {
        /// The child id.
        id: String,
        /// Its pid.
        pid: Pid,
    },
    /// A stopped child with this id exists; restart or delete it first.
    #[error("child {0:?} already exists (stopped)")]
    AlreadyPresent(String),
    /// No child has this id.
    #[error("no child with id {0:?}")]
    NotFound(String),
    /// The child is running; stop it first.
    #[error("child {id:?} is running as {pid}")]
    Running {
        /// The child id.
        id: String,
        /// Its pid.
        pid: Pid,
    },
    /// The child's start function failed.
    #[error("child {id:?} failed to start: {error}")]
    StartFailed {
        /// The child id.
        id: String,
        /// Why.
        error: StartError,
    },
    /// The child's start declined (its `init` returned [`InitError::Ignore`](crate::InitError::Ignore)).
    #[error("child {0:?} declined to start (ignore)")]
    Ignored(String),
    /// A restart of the child failed and another attempt is queued.
    #[error("child {0:?} is restarting")]
    Restarting(String),
    /// Several children of a dynamic supervisor have this id: name one by its pid.
    #[error("several children have id {0:?}; name one by pid")]
    Ambiguous(String),
    /// The child spec is refused (the builder refuses it too).
    #[error("bad child spec: {0}")]
    BadSpec(String),
    /// The supervisor could not be reached, or did not answer within the handle's timeout.
    #[error("supervisor call failed: {0}")]
    Call(CallError),
}
