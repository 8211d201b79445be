//! Semantics of the Server (gen_server) behaviour.

use std::time::Duration;

use girder::server::{self, DEFAULT_CALL_TIMEOUT};
use girder::{
    CallError, Down, ExitReason, Flow, Node, Pid, ReplyTo, SendError, Server, ServerContext,
    ServerRef, SpawnOptions, StartError,
};
use girder_testkit::within;
use tokio::sync::mpsc;

enum Req {
    Get,
    Add(i64),
    Sleep(Duration),
    Panic,
    StopWith(ExitReason),
    Defer,
    Drop,
}

#[derive(Default)]
struct Counter {
    n: i64,
    terminated: Option<mpsc::UnboundedSender<ExitReason>>,
    fail_init: bool,
}

impl Server for Counter {
    type Call = (Req, ReplyTo<i64>);
    type Cast = i64;
    type Info = &'static str;

    async fn init(&mut self, _: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        if self.fail_init {
            return Err(ExitReason::error("bad config").into());
        }
        Ok(())
    }

    async fn handle_call(
        &mut self,
        (req, from): (Req, ReplyTo<i64>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        match req {
            Req::Get => from.reply(self.n),
            Req::Add(k) => {
                self.n += k;
                from.reply(self.n)
            }
            Req::Sleep(d) => {
                tokio::time::sleep(d).await;
                from.reply(self.n)
            }
            Req::Panic => panic!("handler exploded"),
            Req::StopWith(r) => {
                from.reply(-1);
                return Flow::Stop(r);
            }
            Req::Defer => {
                let n = self.n;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    from.reply(n * 100);
                });
            }
            Req::Drop => drop(from),
        }
        Flow::Continue
    }

    async fn handle_cast(&mut self, k: i64, _: &mut ServerContext<Self>) -> Flow {
        self.n += k;
        Flow::Continue
    }

    async fn handle_info(&mut self, msg: &'static str, _: &mut ServerContext<Self>) -> Flow {
        if msg == "reset" {
            self.n = 0;
        }
        Flow::Continue
    }

    async fn terminate(&mut self, reason: &ExitReason, _: &mut ServerContext<Self>) {
        if let Some(tx) = &self.terminated {
            let _ = tx.send(reason.clone());
        }
    }
}

async fn start(node: &Node) -> (ServerRef<Counter>, mpsc::UnboundedReceiver<ExitReason>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let s = server::start(
        node,
        Counter {
            terminated: Some(tx),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (s, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_cast_and_info() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    assert_eq!(s.call(|r| (Req::Add(2), r)).await, Ok(2));
    s.cast(5).unwrap();
    assert_eq!(
        s.call(|r| (Req::Get, r)).await,
        Ok(7),
        "a cast sent before a call is handled before it"
    );
    s.info("reset").unwrap();
    assert_eq!(s.call(|r| (Req::Get, r)).await, Ok(0));
    assert_eq!(node.process_info(s.pid()).unwrap().behaviour, "server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_call_timeout_is_five_seconds() {
    assert_eq!(DEFAULT_CALL_TIMEOUT, Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_times_out_and_the_late_reply_is_dropped() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    let r = s
        .call_timeout(
            |r| (Req::Sleep(Duration::from_millis(200)), r),
            Duration::from_millis(20),
        )
        .await;
    assert_eq!(r, Err(CallError::Timeout(Duration::from_millis(20))));
    // The server is fine and the late reply went nowhere.
    assert_eq!(s.call(|r| (Req::Add(1), r)).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_dying_mid_call_ends_the_call_at_once_with_the_reason() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    let s2 = s.clone();
    let slow =
        tokio::spawn(async move { s2.call(|r| (Req::Sleep(Duration::from_secs(60)), r)).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    // A second call queued behind the first one.
    let s3 = s.clone();
    let queued = tokio::spawn(async move { s3.call(|r| (Req::Get, r)).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = std::time::Instant::now();
    node.exit(s.pid(), ExitReason::error("pulled the plug"));
    let r = within("the slow call to end", slow).await.unwrap();
    assert_eq!(
        r,
        Err(CallError::Exited(ExitReason::error("pulled the plug")))
    );
    let r = within("the queued call to end", queued).await.unwrap();
    assert_eq!(
        r,
        Err(CallError::Exited(ExitReason::error("pulled the plug")))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the call must not wait for its timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_dead_server_fails_at_once() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    assert_eq!(s.stop(ExitReason::Normal).await, ExitReason::Normal);
    let started = std::time::Instant::now();
    assert_eq!(
        s.call(|r| (Req::Get, r)).await,
        Err(CallError::Exited(ExitReason::Normal))
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(s.cast(1), Err(SendError::NoProc(1))));
    assert!(ServerRef::<Counter>::from_pid(&node, s.pid()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_ends_the_server_with_a_panic_reason_after_terminate() {
    let node = Node::new("t");
    let (s, mut term) = start(&node).await;
    let r = s.call(|r| (Req::Panic, r)).await;
    assert_eq!(
        r,
        Err(CallError::Exited(ExitReason::Panic(
            "handler exploded".into()
        )))
    );
    assert_eq!(
        term.recv().await,
        Some(ExitReason::Panic("handler exploded".into()))
    );
    assert_eq!(
        s.wait_exit().await,
        ExitReason::Panic("handler exploded".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_reply_from_another_task() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    s.call(|r| (Req::Add(3), r)).await.unwrap();
    // While the deferred reply is pending the server keeps serving.
    let s2 = s.clone();
    let deferred = tokio::spawn(async move { s2.call(|r| (Req::Defer, r)).await });
    assert_eq!(s.call(|r| (Req::Get, r)).await, Ok(3));
    assert_eq!(deferred.await.unwrap(), Ok(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_reply_handle_ends_the_call_with_no_reply() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    assert_eq!(s.call(|r| (Req::Drop, r)).await, Err(CallError::NoReply));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_given_before_stopping_always_wins_over_the_exit() {
    // As in Erlang, where the reply is a message sent before the exit signal: the caller gets
    // the reply, never `Exited`, however the two race (before the fix, this failed within a
    // few hundred calls on two schedulers).
    let node = Node::new("t");
    for _ in 0..2_000 {
        let (s, _term) = start(&node).await;
        assert_eq!(
            s.call(|r| (Req::StopWith(ExitReason::error("done")), r))
                .await,
            Ok(-1)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_a_reason_runs_terminate() {
    let node = Node::new("t");
    let (s, mut term) = start(&node).await;
    assert_eq!(
        s.call(|r| (Req::StopWith(ExitReason::error("done")), r))
            .await,
        Ok(-1)
    );
    assert_eq!(term.recv().await, Some(ExitReason::error("done")));
    let (s, mut term) = start(&node).await;
    assert_eq!(s.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
    assert_eq!(term.recv().await, Some(ExitReason::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_is_a_start_error() {
    let node = Node::new("t");
    let r = server::start(
        &node,
        Counter {
            fail_init: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        r.unwrap_err(),
        StartError::Init(ExitReason::error("bad config"))
    );
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_taken_once() {
    let node = Node::new("t");
    let a = server::start_with(
        &node,
        Counter::default(),
        SpawnOptions::new(),
        Some("counter"),
    )
    .await
    .unwrap();
    let b = server::start_with(
        &node,
        Counter::default(),
        SpawnOptions::new(),
        Some("counter"),
    )
    .await;
    assert_eq!(b.unwrap_err(), StartError::AlreadyStarted(a.pid()));
    let found = ServerRef::<Counter>::lookup(&node, "counter").unwrap();
    assert_eq!(found.call(|r| (Req::Add(1), r)).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_linked_to_a_trapping_parent_stops_with_terminate_on_parent_exit() {
    let node = Node::new("t");
    let (tx, mut term) = mpsc::unbounded_channel();
    let (ptx, prx) = tokio::sync::oneshot::channel();
    let parent = node.spawn(move |mut ctx: girder::Context<()>| async move {
        let s = server::start_with(
            ctx.node(),
            Counter {
                terminated: Some(tx),
                ..Default::default()
            },
            SpawnOptions::new().link(ctx.pid()).trap_exit(true),
            None,
        )
        .await
        .unwrap();
        ptx.send(s).unwrap();
        ctx.recv().await;
        ExitReason::error("parent failed")
    });
    let s = prx.await.unwrap();
    parent.send(()).unwrap();
    assert_eq!(
        within("terminate", term.recv()).await,
        Some(ExitReason::error("parent failed"))
    );
    assert_eq!(s.wait_exit().await, ExitReason::error("parent failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sees_monitor_downs() {
    let node = Node::new("t");
    let target = node.spawn(|mut ctx: girder::Context<()>| async move {
        ctx.recv().await;
        ExitReason::error("target done")
    });
    let tp = target.pid();
    struct Watch(Pid, mpsc::UnboundedSender<Down>);
    impl Server for Watch {
        type Call = ReplyTo<()>;
        type Cast = ();
        type Info = ();
        async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
            ctx.monitor(self.0);
            Ok(())
        }
        async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
            from.reply(());
            Flow::Continue
        }
        async fn handle_down(&mut self, down: Down, _: &mut ServerContext<Self>) -> Flow {
            self.1.send(down).unwrap();
            Flow::Continue
        }
    }
    let (wtx, mut wrx) = mpsc::unbounded_channel();
    let w = server::start(&node, Watch(tp, wtx)).await.unwrap();
    target.send(()).unwrap();
    let down = within("a down", wrx.recv()).await.unwrap();
    assert_eq!(down.pid, tp);
    assert_eq!(down.reason, ExitReason::error("target done"));
    w.call(|r| r).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_server_mailbox_refuses_casts_when_full() {
    let node = Node::new("t");
    let s = server::start_with(
        &node,
        Counter::default(),
        SpawnOptions::new().capacity(1),
        None,
    )
    .await
    .unwrap();
    let s2 = s.clone();
    let busy = tokio::spawn(async move {
        s2.call(|r| (Req::Sleep(Duration::from_millis(100)), r))
            .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.cast(1).unwrap();
    assert_eq!(s.cast(2), Err(SendError::Full(2)));
    busy.await.unwrap().unwrap();
    // A call waits for room instead of failing.
    assert_eq!(s.call(|r| (Req::Get, r)).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeouts_from_inside_a_process_reuse_its_timer_correctly() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.spawn(move |_: girder::Context<()>| async move {
        // A long timeout first, then a short one: the reused timer must move its deadline earlier.
        let first = s
            .call_timeout(|r| (Req::Get, r), Duration::from_secs(30))
            .await;
        let t = std::time::Instant::now();
        let second = s
            .call_timeout(
                |r| (Req::Sleep(Duration::from_millis(500)), r),
                Duration::from_millis(30),
            )
            .await;
        let took = t.elapsed();
        // Two calls at once from one process: one reuses the timer, the other gets its own.
        let (a, b) = tokio::join!(s.call(|r| (Req::Add(1), r)), s.call(|r| (Req::Add(1), r)));
        tx.send((first, second, took, a, b)).unwrap();
        ExitReason::Normal
    });
    let (first, second, took, a, b) = within("the calls' results", rx).await.unwrap();
    assert_eq!(first, Ok(0));
    assert_eq!(second, Err(CallError::Timeout(Duration::from_millis(30))));
    assert!(
        took < Duration::from_millis(400),
        "the short timeout fired late: {took:?}"
    );
    let mut got = [a.unwrap(), b.unwrap()];
    got.sort();
    assert_eq!(got, [1, 2]);
}

/// Timeouts of a second or more are computed from the kernel's coarse clock and left alone
/// within a slack: never early, a little late at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_timeout_is_never_early_and_barely_late() {
    let node = Node::new("t");
    let (s, _) = start(&node).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.spawn(move |_: girder::Context<()>| async move {
        let mut took = Vec::new();
        // Back-to-back calls first, so the reused timer is already set near the deadline.
        for _ in 0..3 {
            assert_eq!(
                s.call_timeout(|r| (Req::Get, r), Duration::from_secs(1))
                    .await,
                Ok(0)
            );
        }
        for _ in 0..2 {
            let t = std::time::Instant::now();
            let r = s
                .call_timeout(
                    |r| (Req::Sleep(Duration::from_millis(1500)), r),
                    Duration::from_secs(1),
                )
                .await;
            took.push((r, t.elapsed()));
        }
        tx.send(took).unwrap();
        ExitReason::Normal
    });
    for (r, took) in within("the calls' results", rx).await.unwrap() {
        assert_eq!(r, Err(CallError::Timeout(Duration::from_secs(1))));
        assert!(took >= Duration::from_secs(1), "early: {took:?}");
        // 1/64 slack (16 ms) + coarse padding (10 ms) + the timer wheel's grain, generously.
        assert!(took < Duration::from_millis(1300), "late: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_overtakes_a_long_queue() {
    let node = Node::new("t");
    let (s, mut term) = start(&node).await;
    // Ten seconds of queued work.
    let s2 = s.clone();
    let busy = tokio::spawn(async move {
        s2.call(|r| (Req::Sleep(Duration::from_millis(50)), r))
            .await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    for _ in 0..200 {
        let s3 = s.clone();
        tokio::spawn(async move {
            s3.call_timeout(
                |r| (Req::Sleep(Duration::from_millis(50)), r),
                Duration::from_secs(60),
            )
            .await
        });
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let t = std::time::Instant::now();
    assert_eq!(s.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop waited behind the queue: {:?}",
        t.elapsed()
    );
    assert_eq!(term.recv().await, Some(ExitReason::Shutdown));
    // The call in progress finished; the queued ones fail with the reason.
    assert_eq!(busy.await.unwrap(), Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_init_or_terminate_is_contained() {
    struct Bad {
        panic_in_init: bool,
    }
    impl Server for Bad {
        type Call = ReplyTo<()>;
        type Cast = ();
        type Info = ();
        async fn init(&mut self, _: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
            if self.panic_in_init {
                panic!("init exploded");
            }
            Ok(())
        }
        async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
            from.reply(());
            Flow::Continue
        }
        async fn terminate(&mut self, _: &ExitReason, _: &mut ServerContext<Self>) {
            panic!("terminate exploded");
        }
    }
    let node = Node::new("t");
    let r = server::start(
        &node,
        Bad {
            panic_in_init: true,
        },
    )
    .await;
    assert_eq!(
        r.unwrap_err(),
        StartError::Init(ExitReason::Panic("init exploded".into()))
    );
    assert_eq!(node.process_count(), 0);
    let s = server::start(
        &node,
        Bad {
            panic_in_init: false,
        },
    )
    .await
    .unwrap();
    // A panic in terminate does not change the exit reason or hurt the node.
    assert_eq!(s.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
    assert_eq!(node.process_count(), 0);
}

/// Counts what it handles; at each `handle_idle`, logs how many it had handled by then.
struct Idler {
    handled: u64,
    idles: std::sync::Arc<parking_lot::Mutex<Vec<u64>>>,
    burst: usize,
    stop_after: Option<u64>,
}

impl Server for Idler {
    type Call = ReplyTo<u64>;
    type Cast = ();
    type Info = Option<u64>;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        if self.burst > 0 {
            // Every item ready at once: one busy spell.
            let items = futures_util::stream::iter(0..self.burst as u64);
            ctx.add_source(items, |i| i);
        }
        Ok(())
    }

    async fn handle_call(&mut self, r: ReplyTo<u64>, _: &mut ServerContext<Self>) -> Flow {
        r.reply(self.handled);
        Flow::Continue
    }

    async fn handle_cast(&mut self, (): (), _: &mut ServerContext<Self>) -> Flow {
        self.handled += 1;
        Flow::Continue
    }

    async fn handle_info(&mut self, item: Option<u64>, _: &mut ServerContext<Self>) -> Flow {
        if item.is_some() {
            self.handled += 1;
        }
        Flow::Continue
    }

    async fn handle_idle(&mut self, _: &mut ServerContext<Self>) -> Flow {
        self.idles.lock().push(self.handled);
        match self.stop_after {
            Some(n) if self.handled >= n => Flow::Stop(ExitReason::error("idle said stop")),
            _ => Flow::Continue,
        }
    }
}

fn idler(
    burst: usize,
    stop_after: Option<u64>,
) -> (Idler, std::sync::Arc<parking_lot::Mutex<Vec<u64>>>) {
    let idles = std::sync::Arc::default();
    let s = Idler {
        handled: 0,
        idles: std::sync::Arc::clone(&idles),
        burst,
        stop_after,
    };
    (s, idles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_idle_runs_once_per_busy_spell_not_once_per_message() {
    let node = Node::new("t");
    let (s, idles) = idler(0, None);
    let s = server::start(&node, s).await.unwrap();
    // Nothing handled yet: never idle.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(idles.lock().is_empty(), "{:?}", idles.lock());
    girder::sys::suspend(&node, s.pid()).await.unwrap();
    for _ in 0..100 {
        s.cast(()).unwrap();
    }
    girder::sys::resume(&node, s.pid()).await.unwrap();
    girder_testkit::eventually_async("the burst to be handled", async || {
        idles.lock().last() == Some(&100)
    })
    .await;
    // The hundred queued casts were one spell: no idle in the middle of it.
    let log = idles.lock().clone();
    assert!(log.iter().all(|&n| n == 0 || n == 100), "{log:?}");
    // A call is a spell of its own, and is followed by one idle.
    assert_eq!(s.call(|r| r).await.unwrap(), 100);
    girder_testkit::eventually_async("the idle after the call", async || {
        idles.lock().len() > log.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(idles.lock().len(), log.len() + 1, "{:?}", idles.lock());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_a_source_is_one_spell_and_handle_idle_may_stop_the_server() {
    let node = Node::new("t");
    let (s, idles) = idler(50, None);
    let s = server::start(&node, s).await.unwrap();
    girder_testkit::eventually_async("the source's burst", async || !idles.lock().is_empty()).await;
    assert_eq!(*idles.lock(), [50]);
    assert_eq!(s.call(|r| r).await.unwrap(), 50);

    let (s, _) = idler(0, Some(3));
    let s = server::start(&node, s).await.unwrap();
    let (tx, mut exited) = mpsc::unbounded_channel();
    let watcher = s.pid();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    node.spawn(move |mut ctx: girder::Context<()>| async move {
        ctx.monitor(watcher);
        let _ = ready_tx.send(());
        loop {
            if let girder::Event::Down(d) = ctx.recv().await {
                let _ = tx.send(d.reason);
                return ExitReason::Normal;
            }
        }
    });
    within("the watcher to monitor", ready).await.unwrap();
    for _ in 0..3 {
        let _ = s.cast(());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reason = within("the stop from handle_idle", exited.recv())
        .await
        .unwrap();
    assert_eq!(reason, ExitReason::error("idle said stop"));
}
