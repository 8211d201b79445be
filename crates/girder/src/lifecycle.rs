//! Lifecycle events: what supervisors do, for whoever watches a node (the ops layer turns them
//! into notifications). Published only to current subscribers; nothing is kept.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::{ExitReason, Node, Pid};

/// Something a supervisor did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lifecycle {
    /// A child exited and is being restarted.
    ChildRestarting {
        /// The supervisor.
        supervisor: Pid,
        /// Its registered name, if any.
        supervisor_name: Option<String>,
        /// The child's id in the supervisor's spec.
        child: String,
        /// The pid that exited.
        pid: Pid,
        /// Why it exited.
        reason: ExitReason,
    },
    /// Restarts passed the supervisor's intensity: it stops its children and exits, handing the
    /// failure to its own supervisor.
    SupervisorGaveUp {
        /// The supervisor.
        supervisor: Pid,
        /// Its registered name, if any.
        supervisor_name: Option<String>,
    },
}

/// How many events a slow subscriber may fall behind before it misses the oldest.
pub const BUFFER: usize = 256;

impl Node {
    /// Lifecycle events from now on.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{lifecycle::Lifecycle, ChildSpec, Context, ExitReason, Node, Supervisor};
    /// let node = Node::new("docs");
    /// let mut events = node.lifecycle();
    /// let _sup = Supervisor::builder()
    ///     .child(ChildSpec::process("flaky", |_: Context<()>| async {
    ///         tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    ///         ExitReason::error("oops")
    ///     }))
    ///     .intensity(100, std::time::Duration::from_secs(1))
    ///     .start(&node)
    ///     .await
    ///     .unwrap();
    /// match events.recv().await.unwrap() {
    ///     Lifecycle::ChildRestarting { child, reason, .. } => {
    ///         assert_eq!((child.as_str(), reason), ("flaky", ExitReason::error("oops")));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub fn lifecycle(&self) -> broadcast::Receiver<Lifecycle> {
        self.inner.lifecycle.subscribe()
    }

    pub(crate) fn publish_lifecycle(&self, event: Lifecycle) {
        // Nobody listening is the common case and costs nothing but the check.
        if self.inner.lifecycle.receiver_count() > 0 {
            let _ = self.inner.lifecycle.send(event);
        }
    }
}
