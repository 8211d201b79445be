//! Test children that report their life to a channel.

#![allow(dead_code)]

use girder::supervisor::ChildSpec;
use girder::{Context, Event, ExitReason, Flow, Node, Pid, Server, ServerContext, ServerRef};
use girder_testkit::eventually;
use tokio::sync::mpsc;

/// What a test child is told to do.
#[derive(Debug)]
pub enum Cmd {
    /// Exit with this reason.
    Exit(ExitReason),
    /// Panic.
    Panic,
}

/// What a test child reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Life {
    Started(&'static str),
    /// Stopped by its supervisor (an exit signal from the parent).
    Stopped(&'static str, ExitReason),
}

pub type Log = mpsc::UnboundedSender<Life>;

/// A server child that traps exits, reports its start (from `init`, so in start order) and a
/// stop ordered by its supervisor, and obeys [`Cmd`] casts.
pub struct TestChild {
    id: &'static str,
    log: Log,
    told_to_exit: bool,
}

impl Server for TestChild {
    type Call = ();
    type Cast = Cmd;
    type Info = ();

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        ctx.trap_exit(true);
        let _ = self.log.send(Life::Started(self.id));
        Ok(())
    }

    async fn handle_cast(&mut self, cmd: Cmd, _: &mut ServerContext<Self>) -> Flow {
        self.told_to_exit = true;
        match cmd {
            Cmd::Exit(r) => Flow::Stop(r),
            Cmd::Panic => panic!("{} panicked", self.id),
        }
    }

    async fn terminate(&mut self, reason: &ExitReason, _: &mut ServerContext<Self>) {
        if !self.told_to_exit {
            let _ = self.log.send(Life::Stopped(self.id, reason.clone()));
        }
    }
}

/// A supervised [`TestChild`] registered as `id`; with `ignore_shutdown`, instead a plain
/// process that ignores its supervisor's exit signals (to test shutdown timeouts).
pub fn child(id: &'static str, log: Log, ignore_shutdown: bool) -> ChildSpec {
    if !ignore_shutdown {
        return ChildSpec::server(id, move || TestChild {
            id,
            log: log.clone(),
            told_to_exit: false,
        })
        .named(id);
    }
    ChildSpec::process(id, move |mut ctx: Context<Cmd>| {
        let log = log.clone();
        async move {
            ctx.trap_exit(true);
            let _ = log.send(Life::Started(id));
            loop {
                match ctx.recv().await {
                    Event::Message(Cmd::Exit(r)) => return r,
                    Event::Message(Cmd::Panic) => panic!("{id} panicked"),
                    _ => {}
                }
            }
        }
    })
    .named(id)
}

/// Sends `cmd` to the test child `pid` (either kind).
pub fn send_cmd(node: &Node, pid: Pid, cmd: Cmd) {
    match ServerRef::<TestChild>::from_pid(node, pid) {
        Ok(s) => s.cast(cmd).map_err(|_| ()).unwrap(),
        Err(_) => node
            .addr::<Cmd>(pid)
            .unwrap()
            .send(cmd)
            .map_err(|_| ())
            .unwrap(),
    }
}

/// Waits for the process `pid` to exit.
pub async fn wait_gone(node: &Node, pid: Pid) {
    eventually(format!("{pid} to exit"), || !node.is_alive(pid)).await;
}

/// The live pid registered as `name`, waiting for it to be (re)started and differ from `not`.
pub async fn pid_of(node: &Node, name: &str, not: Option<Pid>) -> Pid {
    eventually(format!("{name} to be (re)started"), || {
        node.whereis(name).filter(|p| Some(*p) != not)
    })
    .await
}

/// Tells the child registered as `name` to exit with `reason` and waits until it has.
pub async fn make_exit(node: &Node, name: &str, reason: ExitReason) -> Pid {
    let pid = node.whereis(name).expect("child is registered");
    send_cmd(node, pid, Cmd::Exit(reason));
    wait_gone(node, pid).await;
    pid
}

/// Drains what the log has so far.
pub fn drain(rx: &mut mpsc::UnboundedReceiver<Life>) -> Vec<Life> {
    let mut out = Vec::new();
    while let Ok(l) = rx.try_recv() {
        out.push(l);
    }
    out
}

/// Waits until the process `pid` traps exits (a plain process sets that in its body).
pub async fn wait_trapping(node: &Node, pid: Pid) {
    eventually(format!("{pid} to trap exits"), || {
        node.process_info(pid).is_some_and(|i| i.trap_exit)
    })
    .await;
}
