//! Applications: a root supervision tree started and stopped as a unit.
//!
//! An [`Application`] names a root [`SupervisorBuilder`]. Starting it starts the whole tree;
//! stopping it stops the tree from the top, each child by its shutdown policy, in reverse start
//! order. [`RunningApplication::run_until_signal`] is what a node's `main` calls: it returns when
//! the process gets SIGTERM or Ctrl-C (after a graceful stop) or when the root supervisor exits
//! on its own (having reached its restart intensity).

use std::time::Instant;

use crate::server::StartError;
use crate::supervisor::{SupervisorBuilder, SupervisorRef};
use crate::{ExitReason, Node};

/// A named root supervision tree. Its root supervisor is registered on the node as
/// `"<name>_sup"` (OTP's convention for an application's top supervisor), so tools and other
/// processes find it by name: `SupervisorRef::lookup(&node, "shop_sup")`.
///
/// ```
/// use girder::supervisor::{ChildSpec, Supervisor};
/// use girder::{Application, Event, ExitReason, Node};
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let app = Application::new(
///     "shop",
///     Supervisor::builder().child(ChildSpec::process("idle", |mut ctx| async move {
///         loop { let _: Event<()> = ctx.recv().await; }
///     })),
/// );
/// let running = app.start(&node).await.unwrap();
/// assert_eq!(node.process_count(), 2);
/// assert_eq!(node.whereis("shop_sup"), Some(running.root().pid()));
/// assert_eq!(running.stop().await, ExitReason::Shutdown);
/// assert_eq!(node.process_count(), 0);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Application {
    name: String,
    root: SupervisorBuilder,
}

/// Why a running application returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppExit {
    /// A shutdown signal (SIGTERM or Ctrl-C) arrived and the tree was stopped gracefully.
    Signal,
    /// The root supervisor exited by itself with this reason.
    RootExited(ExitReason),
}

impl Application {
    /// An application named `name` whose root is `root`.
    pub fn new(name: impl Into<String>, root: SupervisorBuilder) -> Self {
        Application {
            name: name.into(),
            root,
        }
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the tree, its root registered as `"<name>_sup"`; returns when every child has
    /// started. Fails with [`StartError::AlreadyStarted`] if that name is taken (the
    /// application is running already).
    pub async fn start(self, node: &Node) -> Result<RunningApplication, StartError> {
        let root = self
            .root
            .name(format!("{}_sup", self.name))
            .start(node)
            .await?;
        tracing::info!(app = %self.name, root = %root.pid(), "application started");
        Ok(RunningApplication {
            name: self.name,
            root,
        })
    }
}

/// A started application.
#[derive(Debug)]
pub struct RunningApplication {
    name: String,
    root: SupervisorRef,
}

impl RunningApplication {
    /// The root supervisor.
    pub fn root(&self) -> &SupervisorRef {
        &self.root
    }

    /// Stops the whole tree and returns the root's exit reason.
    pub async fn stop(&self) -> ExitReason {
        let started = Instant::now();
        let reason = self.root.stop(ExitReason::Shutdown).await;
        tracing::info!(app = %self.name, took = ?started.elapsed(), "application stopped");
        reason
    }

    /// Runs until SIGTERM or Ctrl-C (then stops the tree gracefully) or until the root
    /// supervisor exits by itself.
    pub async fn run_until_signal(&self) -> AppExit {
        tokio::select! {
            _ = shutdown_signal() => {
                tracing::info!(app = %self.name, "shutdown signal received; stopping");
                self.stop().await;
                AppExit::Signal
            }
            reason = self.root.wait_exit() => AppExit::RootExited(reason),
        }
    }
}

/// Waits for SIGTERM or Ctrl-C (Ctrl-C only where there is no SIGTERM). What a node's `main`
/// waits on before stopping gracefully.
///
/// The handlers are installed by the call, not when the future is first polled: from then on
/// either signal is caught, so one sent as soon as a program says it is up (as a test or a
/// supervisor does) is a graceful stop, not the default action, which ends the process at
/// once. Call it inside a tokio runtime with its I/O driver enabled.
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// let stop = girder::application::shutdown_signal();
/// println!("up"); // a SIGTERM from here on is caught
/// stop.await;
/// println!("stopping");
/// # }
/// ```
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
