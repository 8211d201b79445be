//! The call protocol: a caller learns of its callee's exit whoever holds the reply handle, as
//! `gen:call` does with its monitor.

use std::future::Future;
use std::time::{Duration, Instant};

use girder::statem::{self, StateEvent, StateMachine, StateMachineContext, Transition};
use girder::{
    Addr, CallError, Context, Event, ExitReason, Flow, InitError, Node, ReplyTo, Server,
    ServerContext, ServerRef,
};
use girder_testkit::{eventually, within};
use tokio::sync::oneshot;

/// Where escaped reply handles go: a process that keeps them and never answers (until told).
fn keeper(node: &Node) -> Addr<ReplyTo<u32>> {
    node.spawn(|mut ctx: Context<ReplyTo<u32>>| async move {
        let mut kept = Vec::new();
        loop {
            match ctx.recv().await {
                Event::Message(from) => kept.push(from),
                Event::Stop(r) => return r,
                _ => {}
            }
        }
    })
}

enum Cmd {
    Crash,
    Leave,
}

/// A server that hands every call's reply handle to `keeper` and dies when told.
struct Handover {
    keeper: Addr<ReplyTo<u32>>,
}

impl Server for Handover {
    type Call = ReplyTo<u32>;
    type Cast = Cmd;
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<u32>, _: &mut ServerContext<Self>) -> Flow {
        self.keeper.send(from).unwrap();
        Flow::Continue
    }

    async fn handle_cast(&mut self, cmd: Cmd, _: &mut ServerContext<Self>) -> Flow {
        match cmd {
            Cmd::Crash => Flow::Stop(ExitReason::error("crash")),
            Cmd::Leave => Flow::Stop(ExitReason::Normal),
        }
    }
}

/// Calls `server` with no timeout from inside a process (or, with `outside`, from a plain
/// task) and reports the outcome and how long it took.
fn call_from(
    node: &Node,
    server: ServerRef<Handover>,
    outside: bool,
) -> oneshot::Receiver<(Result<u32, CallError>, Duration)> {
    let (tx, rx) = oneshot::channel();
    let call = async move {
        let t0 = Instant::now();
        let r = server.call_timeout(|r| r, Duration::MAX).await;
        let _ = tx.send((r, t0.elapsed()));
    };
    if outside {
        tokio::spawn(call);
    } else {
        node.spawn(move |_: Context<()>| async move {
            call.await;
            ExitReason::Normal
        });
    }
    rx
}

async fn until_queued(keeper: &Addr<ReplyTo<u32>>, node: &Node, n: usize) {
    eventually("the handles to reach the keeper", || {
        node.process_info(keeper.pid()).map_or(0, |i| i.messages_in) >= n as u64
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_learns_of_the_callee_exit_when_another_process_holds_the_reply_handle() {
    for (outside, how, want) in [
        (false, Cmd::Crash, ExitReason::error("crash")),
        (true, Cmd::Crash, ExitReason::error("crash")),
        (false, Cmd::Leave, ExitReason::Normal),
        (true, Cmd::Leave, ExitReason::Normal),
    ] {
        let node = Node::new("t");
        let keeper = keeper(&node);
        let server = girder::server::start(
            &node,
            Handover {
                keeper: keeper.clone(),
            },
        )
        .await
        .unwrap();
        let waiting = call_from(&node, server.clone(), outside);
        until_queued(&keeper, &node, 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        server.cast(how).map_err(|_| ()).unwrap();
        let (result, _) = within(
            format!("the call to end (outside a process: {outside})"),
            waiting,
        )
        .await
        .unwrap();
        assert_eq!(
            result,
            Err(CallError::Exited(want.clone())),
            "outside: {outside}"
        );
        keeper.stop(ExitReason::Normal);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_reply_still_arrives_while_the_callee_lives() {
    let node = Node::new("t");
    // This keeper answers each handle it gets after a while.
    let keeper = node.spawn(|mut ctx: Context<ReplyTo<u32>>| async move {
        while let Event::Message(from) = ctx.recv().await {
            tokio::time::sleep(Duration::from_millis(30)).await;
            from.reply(42);
        }
        ExitReason::Normal
    });
    let server = girder::server::start(&node, Handover { keeper })
        .await
        .unwrap();
    for outside in [false, true] {
        let (r, took) = call_from(&node, server.clone(), outside).await.unwrap();
        assert_eq!(r, Ok(42));
        assert!(took >= Duration::from_millis(25));
    }
    // Many calls in a row from one process, each handed over: the escapes are matched to
    // their own calls.
    let s = server.clone();
    let done = node.spawn(move |_: Context<()>| async move {
        for _ in 0..20 {
            assert_eq!(s.call(|r| r).await, Ok(42));
        }
        ExitReason::Normal
    });
    assert_eq!(done.wait_exit().await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_moved_into_a_task_is_covered_too() {
    struct ToTask;
    impl Server for ToTask {
        type Call = ReplyTo<u32>;
        type Cast = ();
        type Info = ();
        async fn handle_call(&mut self, from: ReplyTo<u32>, _: &mut ServerContext<Self>) -> Flow {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                from.reply(1);
            });
            Flow::Stop(ExitReason::error("gone"))
        }
    }
    let node = Node::new("t");
    let server = girder::server::start(&node, ToTask).await.unwrap();
    let (tx, rx) = oneshot::channel();
    node.spawn(move |_: Context<()>| async move {
        let _ = tx.send(server.call_timeout(|r| r, Duration::MAX).await);
        ExitReason::Normal
    });
    let r = within("the call to end", rx).await.unwrap();
    assert_eq!(r, Err(CallError::Exited(ExitReason::error("gone"))));
}

/// A state machine that postpones calls to a keeper, then crashes.
struct Forwarder {
    keeper: Addr<ReplyTo<u32>>,
}

impl StateMachine for Forwarder {
    type State = ();
    type Call = ((), ReplyTo<u32>);
    type Cast = ();
    type Info = ();
    type Timeout = ();

    async fn init(
        &mut self,
        _: &mut StateMachineContext<Self>,
    ) -> Result<((), Vec<statem::Action<Self>>), InitError> {
        Ok(((), vec![]))
    }

    async fn handle_event(
        &mut self,
        _: &(),
        event: StateEvent<Self>,
        _: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        match event {
            StateEvent::Call(((), from)) => {
                self.keeper.send(from).unwrap();
                Transition::keep()
            }
            StateEvent::Cast(()) => Transition::stop(ExitReason::error("machine crash")),
            _ => Transition::keep(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_caller_learns_of_the_exit_too() {
    let node = Node::new("t");
    let keeper = keeper(&node);
    let machine = statem::start(
        &node,
        Forwarder {
            keeper: keeper.clone(),
        },
    )
    .await
    .unwrap();
    let (tx, rx) = oneshot::channel();
    let m = machine.clone();
    node.spawn(move |_: Context<()>| async move {
        let _ = tx.send(m.call_timeout(|r| ((), r), Duration::MAX).await);
        ExitReason::Normal
    });
    until_queued(&keeper, &node, 1).await;
    machine.cast(()).map_err(|_| ()).unwrap();
    let r = within("the call to end", rx).await.unwrap();
    assert_eq!(
        r,
        Err(CallError::Exited(ExitReason::error("machine crash")))
    );
}

/// A server that hands the handle on and then waits in its handler until killed.
struct HandsOnThenWaits {
    keeper: Addr<ReplyTo<u32>>,
}

impl Server for HandsOnThenWaits {
    type Call = ReplyTo<u32>;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<u32>, _: &mut ServerContext<Self>) -> Flow {
        self.keeper.send(from).unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_killed_inside_its_handler_after_handing_the_handle_on_ends_the_call() {
    let node = Node::new("t");
    let keeper = keeper(&node);
    let server = girder::server::start(
        &node,
        HandsOnThenWaits {
            keeper: keeper.clone(),
        },
    )
    .await
    .unwrap();
    let s = server.clone();
    let (tx, rx) = oneshot::channel();
    node.spawn(move |_: Context<()>| async move {
        let _ = tx.send(s.call_timeout(|r| r, Duration::MAX).await);
        ExitReason::Normal
    });
    until_queued(&keeper, &node, 1).await;
    node.exit(server.pid(), ExitReason::Kill);
    let r = within("the call to end", rx).await.unwrap();
    assert_eq!(r, Err(CallError::Exited(ExitReason::Killed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_call_whose_handle_escapes_at_once_still_learns_of_the_exit() {
    // A fresh process's first call: the escape may be told before the caller ever waited.
    for _ in 0..30 {
        let node = Node::new("t");
        let keeper = keeper(&node);
        let server = girder::server::start(
            &node,
            Handover {
                keeper: keeper.clone(),
            },
        )
        .await
        .unwrap();
        let waiting = call_from(&node, server.clone(), false);
        until_queued(&keeper, &node, 1).await;
        server.cast(Cmd::Crash).map_err(|_| ()).unwrap();
        let (r, _) = within("the call to end", waiting).await.unwrap();
        assert_eq!(r, Err(CallError::Exited(ExitReason::error("crash"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_moved_into_a_combinator_after_its_first_wait_still_learns_of_the_exit() {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let node = Node::new("t");
    let keeper = keeper(&node);
    let server = girder::server::start(
        &node,
        Handover {
            keeper: keeper.clone(),
        },
    )
    .await
    .unwrap();
    let s = server.clone();
    let (tx, rx) = oneshot::channel();
    node.spawn(move |_: Context<()>| async move {
        let mut call = Box::pin(s.call_timeout(|r| r, Duration::MAX));
        // One wait with the process's own waker...
        let once =
            std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx).is_pending()));
        assert!(once.await);
        // ... then the rest inside a combinator, which polls with wakers of its own.
        let mut all = FuturesUnordered::new();
        all.push(call);
        let _ = tx.send(all.next().await.unwrap());
        ExitReason::Normal
    });
    until_queued(&keeper, &node, 1).await;
    server.cast(Cmd::Crash).map_err(|_| ()).unwrap();
    let r = within("the call to end", rx).await.unwrap();
    assert_eq!(r, Err(CallError::Exited(ExitReason::error("crash"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_escaped_calls_than_a_process_keeps_escapes_of_all_learn_of_the_exit() {
    let node = Node::new("t");
    let keeper = keeper(&node);
    let server = girder::server::start(
        &node,
        Handover {
            keeper: keeper.clone(),
        },
    )
    .await
    .unwrap();
    let s = server.clone();
    let (tx, rx) = oneshot::channel();
    node.spawn(move |_: Context<()>| async move {
        let calls = (0..24).map(|_| s.call_timeout(|r| r, Duration::MAX));
        let _ = tx.send(futures_util::future::join_all(calls).await);
        ExitReason::Normal
    });
    until_queued(&keeper, &node, 24).await;
    server.cast(Cmd::Crash).map_err(|_| ()).unwrap();
    let all = within("every call to end", rx).await.unwrap();
    assert_eq!(all.len(), 24);
    for r in all {
        assert_eq!(r, Err(CallError::Exited(ExitReason::error("crash"))));
    }
}
