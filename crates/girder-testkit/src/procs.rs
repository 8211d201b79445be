//! The processes and servers tests keep needing: one that forwards its messages to the test
//! ([`forwarder`], [`forward_to`]), one that does nothing until stopped ([`idle`],
//! [`until_stopped`]), one that reports another's exit ([`down_reason`]), a server that
//! answers every call ([`Echo`]) and one that keeps a total ([`Counter`]).

use girder::{Addr, Context, Event, ExitReason, Flow, Node, Pid, ReplyTo, Server, ServerContext};
use tokio::sync::{mpsc, oneshot};

/// A process that sends every message it gets to the returned receiver: the test's window on
/// what reaches a process.
///
/// It exits `Normal` once the receiver is dropped, or with the reason of a stop request
/// ([`Addr::stop`]); other events (exit signals it traps, downs) are ignored.
///
/// ```
/// use std::time::Duration;
/// use girder::{send_after, Node};
/// use girder_testkit::{procs::forwarder, within};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::new("t");
/// let (p, mut rx) = forwarder::<&str>(&node);
/// send_after(&p, "tick", Duration::from_millis(5));
/// assert_eq!(within("the tick", rx.recv()).await, Some("tick"));
/// # }
/// ```
pub fn forwarder<M: Send + 'static>(node: &Node) -> (Addr<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (forward_to(node, tx), rx)
}

/// A [`forwarder`] that sends to a sender the test already has (several processes feeding one
/// receiver, say).
pub fn forward_to<M: Send + 'static>(node: &Node, to: mpsc::UnboundedSender<M>) -> Addr<M> {
    node.spawn(move |mut ctx: Context<M>| async move {
        loop {
            let sent = match ctx.recv().await {
                Event::Message(m) => to.send(m),
                Event::Stop(r) => return r,
                _ => Ok(()),
            };
            if sent.is_err() {
                return ExitReason::Normal;
            }
        }
    })
}

/// A process that does nothing until it is stopped: a target for links, monitors, names and
/// exit signals.
///
/// It ends with the reason of a stop request ([`Addr::stop`]), or as an exit signal ends it;
/// it ignores everything else (see [`until_stopped`]).
///
/// ```
/// use girder::{ExitReason, Node};
/// use girder_testkit::{procs::idle, within};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::new("t");
/// let p = idle(&node);
/// p.stop(ExitReason::error("bye"));
/// assert_eq!(within("the stop", p.wait_exit()).await, ExitReason::error("bye"));
/// # }
/// ```
pub fn idle(node: &Node) -> Addr<()> {
    node.spawn(until_stopped)
}

/// The body of an [`idle`] process, for where a body is wanted rather than a spawned process
/// (`ChildSpec::process("idle", until_stopped)`, `spawn_opts`): waits for a stop request and
/// returns its reason, ignoring every other event.
pub async fn until_stopped<M: Send + 'static>(mut ctx: Context<M>) -> ExitReason {
    loop {
        if let Event::Stop(r) = ctx.recv().await {
            return r;
        }
    }
}

/// Monitors `target` from a new process on `node` and sends the reason of its `Down` (`NoProc`
/// if it is not alive, `NoConnection` if its node is lost). `target` may be remote.
///
/// ```
/// use girder::{ExitReason, Node};
/// use girder_testkit::{procs::{down_reason, idle}, within};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::new("t");
/// let p = idle(&node);
/// node.exit(p.pid(), ExitReason::Kill);
/// p.wait_exit().await;
/// // Set after the exit: the monitor fires at once.
/// let down = down_reason(&node, p.pid());
/// assert_eq!(within("the down", down).await, Ok(ExitReason::NoProc));
/// # }
/// ```
pub fn down_reason(node: &Node, target: Pid) -> oneshot::Receiver<ExitReason> {
    let (tx, rx) = oneshot::channel();
    node.spawn(move |mut ctx: Context<()>| async move {
        let m = ctx.monitor(target);
        if let Some(d) = ctx.wait_down(m, None).await {
            let _ = tx.send(d.reason);
        }
        ExitReason::Normal
    });
    rx
}

/// A server that answers every call with its own pid and the number it was sent (an Erlang
/// echo loop's `{self(), Msg}`): a live server that answers, and says which one did.
///
/// ```
/// use girder::Node;
/// use girder_testkit::procs::Echo;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::new("t");
/// let echo = girder::server::start(&node, Echo).await.unwrap();
/// assert_eq!(echo.call(|r| (7, r)).await, Ok((echo.pid(), 7)));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Server for Echo {
    type Call = (u64, ReplyTo<(Pid, u64)>);
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        (n, from): (u64, ReplyTo<(Pid, u64)>),
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        from.reply((ctx.pid(), n));
        Flow::Continue
    }
}

/// A server that keeps a running total: each call adds the number it carries and is answered
/// with the new total, so a test sees that later calls reach the same server, state and all.
///
/// ```
/// use girder::Node;
/// use girder_testkit::procs::Counter;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::new("t");
/// let counter = girder::server::start(&node, Counter(0)).await.unwrap();
/// assert_eq!(counter.call(|r| (5, r)).await, Ok(5));
/// assert_eq!(counter.call(|r| (1, r)).await, Ok(6));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(pub u64);

impl Server for Counter {
    type Call = (u64, ReplyTo<u64>);
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        (n, from): (u64, ReplyTo<u64>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        self.0 += n;
        from.reply(self.0);
        Flow::Continue
    }
}

/// Processes that hold every worker `node` runs on (this runtime's, or each of its schedulers)
/// in `slice`-long blocking stretches, as CPU-bound handlers would, until the returned
/// [`Hog`] is dropped or [`stopped`](Hog::stop): how a test overloads a node.
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = girder::Node::new("t");
/// let hog = girder_testkit::procs::hog(&node, Duration::from_millis(5));
/// tokio::time::sleep(Duration::from_millis(20)).await;
/// hog.stop();
/// # }
/// ```
pub fn hog(node: &Node, slice: std::time::Duration) -> Hog {
    let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let workers = node.scheduler_stats().map_or(1, |s| s.threads);
    for _ in 0..workers {
        let on = on.clone();
        node.spawn(move |_: Context<()>| async move {
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(slice);
                tokio::task::yield_now().await;
            }
            ExitReason::Normal
        });
    }
    Hog(on)
}

/// The processes [`hog`] started; they end when this is dropped.
pub struct Hog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Hog {
    /// Lets the hogging processes end.
    pub fn stop(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop();
    }
}
