//! The edges OTP's supervisor suite tries and a first cut missed: restarts that keep failing,
//! start functions that panic, many instances of one spec, `ignore`, timeouts on every request,
//! and supervisors of tens of thousands of children.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child, drain, wait_gone, Life};
use girder::supervisor::{ChildSpec, Restart, RestartStrategy, Supervisor, SupervisorError};
use girder::{
    CallError, ExitReason, Flow, InitError, Node, ReplyTo, Server, ServerContext, StartError,
};
use girder_testkit::procs::{idle, until_stopped, Echo};
use girder_testkit::{eventually, eventually_async, within};
use tokio::sync::mpsc;

/// A start function that works while `fail` is false and otherwise fails after `delay`,
/// counting its attempts.
fn flaky(fail: Arc<AtomicBool>, attempts: Arc<AtomicU32>, delay: Duration) -> ChildSpec {
    ChildSpec::new("flaky", move |s| {
        let (fail, attempts) = (fail.clone(), attempts.clone());
        async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            if fail.load(Ordering::SeqCst) {
                tokio::time::sleep(delay).await;
                return Err(StartError::Other("the database is down".into()));
            }
            let addr = s.node.spawn_opts(s.spawn_options(), until_stopped::<()>);
            Ok(addr.pid())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_retrying_a_failing_restart_keeps_answering() {
    let node = Node::new("t");
    let (fail, attempts) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let sup = Supervisor::builder()
        .intensity(10_000, Duration::from_secs(60))
        .child(flaky(
            fail.clone(),
            attempts.clone(),
            Duration::from_millis(50),
        ))
        .start(&node)
        .await
        .unwrap();
    let first = sup.which_children().await.unwrap()[0].pid.unwrap();
    fail.store(true, Ordering::SeqCst);
    node.exit(first, ExitReason::Kill);
    // The restart keeps failing, 50 ms an attempt; the supervisor answers between attempts.
    let c = eventually_async("the child to be seen restarting", async || {
        let c = within("which_children", sup.which_children())
            .await
            .unwrap();
        c[0].restarting.then_some(c)
    })
    .await;
    assert_eq!(c[0].pid, None);
    assert_eq!(
        within("count_children", sup.count_children())
            .await
            .unwrap()
            .active,
        0
    );
    // Asked to stop the child, it drops the queued retry.
    within("terminate_child", sup.terminate_child("flaky"))
        .await
        .unwrap();
    let after = attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        attempts.load(Ordering::SeqCst) <= after + 1,
        "retries went on after terminate_child"
    );
    let c = sup.which_children().await.unwrap();
    assert!(!c[0].restarting && c[0].pid.is_none(), "{c:?}");
    // Once the cause is fixed, the child restarts on request.
    fail.store(false, Ordering::SeqCst);
    assert!(sup.restart_child("flaky").await.is_ok());
    assert_eq!(
        within("stop", sup.stop(ExitReason::Shutdown)).await,
        ExitReason::Shutdown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_retrying_stops_when_asked() {
    let node = Node::new("t");
    let (fail, attempts) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let sup = Supervisor::builder()
        .intensity(10_000, Duration::from_secs(60))
        .child(flaky(
            fail.clone(),
            attempts.clone(),
            Duration::from_millis(50),
        ))
        .start(&node)
        .await
        .unwrap();
    let first = sup.which_children().await.unwrap()[0].pid.unwrap();
    fail.store(true, Ordering::SeqCst);
    node.exit(first, ExitReason::Kill);
    eventually("three attempts", || attempts.load(Ordering::SeqCst) >= 3).await;
    assert_eq!(
        within("stop", sup.stop(ExitReason::Shutdown)).await,
        ExitReason::Shutdown
    );
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_against_the_intensity_and_escalate() {
    let node = Node::new("t");
    let (fail, attempts) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let sup = Supervisor::builder()
        .intensity(3, Duration::from_secs(60))
        .child(flaky(fail.clone(), attempts.clone(), Duration::ZERO))
        .start(&node)
        .await
        .unwrap();
    let first = sup.which_children().await.unwrap()[0].pid.unwrap();
    fail.store(true, Ordering::SeqCst);
    node.exit(first, ExitReason::Kill);
    assert_eq!(
        within("escalation", sup.wait_exit()).await,
        ExitReason::Shutdown
    );
    // The start at boot, then the restart and every retry until the fourth restart in the
    // period passed the intensity of three.
    assert_eq!(attempts.load(Ordering::SeqCst), 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supervisor_request_has_a_timeout() {
    let node = Node::new("t");
    let sup = Supervisor::builder()
        .strategy(RestartStrategy::Dynamic)
        .start(&node)
        .await
        .unwrap();
    // A child whose start never returns keeps the supervisor busy (as in OTP: starts are
    // synchronous); a request meanwhile gives up after the handle's timeout.
    let stuck = ChildSpec::new("stuck", |_| std::future::pending());
    let busy = sup.clone();
    tokio::spawn(async move {
        let _ = busy.start_child(stuck).await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let quick = sup.clone().with_timeout(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(
        within("which_children", quick.which_children()).await,
        Err(SupervisorError::Call(CallError::Timeout(
            Duration::from_millis(100)
        )))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        within("count_children", quick.count_children()).await,
        Err(SupervisorError::Call(CallError::Timeout(_)))
    ));
    node.exit(sup.pid(), ExitReason::Kill);
}

/// A start function that panics (before or after it returns its future).
fn bomb(id: &'static str, early: bool) -> ChildSpec {
    ChildSpec::new(id, move |_| {
        if early {
            panic!("{id} exploded before starting");
        }
        async move {
            tokio::task::yield_now().await;
            panic!("{id} exploded while starting")
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_function_that_panics_is_a_failed_start() {
    for early in [false, true] {
        let node = Node::new("t");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = Supervisor::builder()
            .child(child("first", tx, false))
            .child(bomb("bomb", early))
            .start(&node)
            .await;
        let err = r.expect_err("the start fails").to_string();
        assert!(err.contains("bomb") && err.contains("exploded"), "{err}");
        assert_eq!(
            drain(&mut rx),
            vec![
                Life::Started("first"),
                Life::Stopped("first", ExitReason::Shutdown)
            ]
        );
        assert_eq!(node.process_count(), 0);

        // Through start_child: an error naming the child, and the supervisor carries on.
        let sup = Supervisor::builder().start(&node).await.unwrap();
        match sup.start_child(bomb("late", early)).await {
            Err(SupervisorError::StartFailed { id, error }) => {
                assert_eq!(id, "late");
                assert!(error.to_string().contains("exploded"), "{error}");
            }
            other => panic!("expected StartFailed, got {other:?}"),
        }
        assert!(sup.which_children().await.unwrap().is_empty());
        sup.stop(ExitReason::Shutdown).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_function_that_panics_at_restart_is_retried_and_escalates() {
    let node = Node::new("t");
    let explode = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(AtomicU32::new(0));
    let (e, n) = (explode.clone(), starts.clone());
    let spec = ChildSpec::new("fragile", move |s| {
        let (e, n) = (e.clone(), n.clone());
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            assert!(!e.load(Ordering::SeqCst), "fragile exploded");
            Ok(s.node
                .spawn_opts(s.spawn_options(), until_stopped::<()>)
                .pid())
        }
    });
    let top = Supervisor::builder()
        .intensity(2, Duration::from_secs(60))
        .child(spec)
        .start(&node)
        .await
        .unwrap();
    let bystander = idle(&node);
    let pid = top.which_children().await.unwrap()[0].pid.unwrap();
    explode.store(true, Ordering::SeqCst);
    node.exit(pid, ExitReason::error("crash"));
    assert_eq!(
        within("escalation", top.wait_exit()).await,
        ExitReason::Shutdown
    );
    assert_eq!(starts.load(Ordering::SeqCst), 1 + 2);
    assert!(bystander.is_alive(), "a panicking start harms nothing else");
}

async fn dynamic(node: &Node) -> girder::SupervisorRef {
    Supervisor::builder()
        .strategy(RestartStrategy::Dynamic)
        .intensity(1_000, Duration::from_secs(1))
        .start(node)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_supervisor_runs_many_instances_of_one_spec() {
    let node = Node::new("t");
    let sup = dynamic(&node).await;
    let spec = ChildSpec::server("worker", || Echo).restart(Restart::Temporary);
    let mut pids = Vec::new();
    for _ in 0..50 {
        pids.push(sup.start_child(spec.clone()).await.unwrap());
    }
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 50);
    assert_eq!(sup.count_children().await.unwrap().active, 50);
    for (n, pid) in (0..).zip(&pids) {
        let w = girder::ServerRef::<Echo>::from_pid(&node, *pid).unwrap();
        assert_eq!(w.call(|r| (n, r)).await.unwrap(), (*pid, n));
    }
    // Ids are shared: naming one instance takes its pid.
    assert_eq!(
        sup.terminate_child("worker").await,
        Err(SupervisorError::Ambiguous("worker".into()))
    );
    sup.terminate_pid(pids[0]).await.unwrap();
    node.exit(pids[1], ExitReason::error("crash"));
    wait_gone(&node, pids[1]).await;
    // More instances after some exited: nothing collides.
    for _ in 0..10 {
        sup.start_child(spec.clone()).await.unwrap();
    }
    let c = sup.which_children().await.unwrap();
    assert_eq!(c.len(), 58, "the two stopped temporaries are forgotten");
    assert!(c.iter().all(|c| c.id == "worker" && c.pid.is_some()));
    assert_eq!(
        sup.terminate_pid(pids[0]).await,
        Err(SupervisorError::NotFound(pids[0].to_string()))
    );
    sup.stop(ExitReason::Shutdown).await;
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_dynamic_instances_are_restarted_one_by_one() {
    let node = Node::new("t");
    let sup = dynamic(&node).await;
    let spec = ChildSpec::server("worker", || Echo);
    let a = sup.start_child(spec.clone()).await.unwrap();
    let b = sup.start_child(spec).await.unwrap();
    node.exit(a, ExitReason::error("crash"));
    wait_gone(&node, a).await;
    let (c, pids) = eventually_async("the crashed instance to be restarted", async || {
        let c = sup.which_children().await.unwrap();
        let pids: Vec<_> = c.iter().filter_map(|c| c.pid).collect();
        (pids.len() == 2 && !pids.contains(&a)).then_some((c, pids))
    })
    .await;
    assert!(pids.contains(&b), "the other instance is untouched");
    assert_eq!(c.iter().map(|c| c.restarts).sum::<u32>(), 1);
    sup.stop(ExitReason::Shutdown).await;
}

/// A connection's server: owns the socket it was started with.
struct Conn {
    sock: tokio::net::TcpStream,
    n: u32,
}

impl Server for Conn {
    type Call = ReplyTo<()>;
    type Cast = ();
    type Info = ();

    async fn init(&mut self, _: &mut ServerContext<Self>) -> Result<(), InitError> {
        use tokio::io::AsyncWriteExt;
        let hello = format!("hello {}\n", self.n);
        self.sock
            .write_all(hello.as_bytes())
            .await
            .map_err(|e| ExitReason::error(e.to_string()))?;
        Ok(())
    }

    async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
        from.reply(());
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_owns_its_own_arguments() {
    use tokio::io::AsyncReadExt;
    let node = Node::new("t");
    let sup = dynamic(&node).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    for n in 0..5 {
        let client = tokio::net::TcpStream::connect(at).await.unwrap();
        let (sock, _) = listener.accept().await.unwrap();
        // The accepted socket moves into the one child that owns it.
        sup.start_child(ChildSpec::server_once("conn", Conn { sock, n }))
            .await
            .unwrap();
        clients.push(client);
    }
    for (n, mut c) in clients.into_iter().enumerate() {
        let mut buf = [0u8; 16];
        let got = c.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..got], format!("hello {n}\n").as_bytes());
    }
    assert_eq!(sup.count_children().await.unwrap().active, 5);
    sup.stop(ExitReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_child_refuses_what_the_builder_refuses() {
    let node = Node::new("t");
    let once = || ChildSpec::server_once("conn", Echo);
    let empty = || ChildSpec::server("", || Echo);
    for strategy in [RestartStrategy::OneForOne, RestartStrategy::Dynamic] {
        for bad in [
            empty(),
            once().restart(Restart::Permanent),
            once().restart(Restart::Transient),
        ] {
            let built = Supervisor::builder()
                .strategy(strategy)
                .child(bad.clone())
                .start(&node)
                .await;
            assert!(
                matches!(built, Err(StartError::Other(_))),
                "{strategy:?} builder accepted {bad:?}"
            );
            let sup = Supervisor::builder()
                .strategy(strategy)
                .start(&node)
                .await
                .unwrap();
            assert!(
                matches!(
                    sup.start_child(bad.clone()).await,
                    Err(SupervisorError::BadSpec(_))
                ),
                "{strategy:?} start_child accepted {bad:?}"
            );
            sup.stop(ExitReason::Shutdown).await;
        }
    }
    // A once spec starts once; a clone of it cannot start a second instance.
    let sup = dynamic(&node).await;
    let spec = once();
    sup.start_child(spec.clone()).await.unwrap();
    assert!(matches!(
        sup.start_child(spec).await,
        Err(SupervisorError::StartFailed { .. })
    ));
    sup.stop(ExitReason::Shutdown).await;
    assert_eq!(node.process_count(), 0);
}

/// A server whose `init` declines to start (OTP's `ignore`).
struct Declines;

impl Server for Declines {
    type Call = ReplyTo<()>;
    type Cast = ();
    type Info = ();

    async fn init(&mut self, _: &mut ServerContext<Self>) -> Result<(), InitError> {
        Err(InitError::Ignore)
    }

    async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
        from.reply(());
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_may_return_ignore() {
    let node = Node::new("t");
    assert_eq!(
        girder::server::start(&node, Declines).await.unwrap_err(),
        StartError::Ignored
    );
    assert_eq!(node.process_count(), 0);

    // A static supervisor lists an ignoring child without a pid, or forgets it if temporary.
    let (tx, _rx) = mpsc::unbounded_channel();
    let sup = Supervisor::builder()
        .child(ChildSpec::server("lazy", || Declines))
        .child(ChildSpec::server("gone", || Declines).restart(Restart::Temporary))
        .child(child("real", tx, false))
        .start(&node)
        .await
        .unwrap();
    let c = sup.which_children().await.unwrap();
    let listed: Vec<_> = c.iter().map(|c| (c.id.as_str(), c.pid.is_some())).collect();
    assert_eq!(listed, [("lazy", false), ("real", true)]);
    assert_eq!(
        sup.restart_child("lazy").await,
        Err(SupervisorError::Ignored("lazy".into()))
    );
    assert_eq!(
        sup.start_child(ChildSpec::server("later", || Declines))
            .await,
        Err(SupervisorError::Ignored("later".into()))
    );
    assert_eq!(sup.which_children().await.unwrap().len(), 3);
    sup.stop(ExitReason::Shutdown).await;

    // A dynamic supervisor keeps nothing of it.
    let sup = dynamic(&node).await;
    assert_eq!(
        sup.start_child(ChildSpec::server("lazy", || Declines))
            .await,
        Err(SupervisorError::Ignored("lazy".into()))
    );
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    sup.stop(ExitReason::Shutdown).await;
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_traps_exits_runs_terminate_on_shutdown() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    struct Flushes(mpsc::UnboundedSender<ExitReason>);
    impl Server for Flushes {
        type Call = ();
        type Cast = ();
        type Info = ();
        async fn terminate(&mut self, reason: &ExitReason, _: &mut ServerContext<Self>) {
            let _ = self.0.send(reason.clone());
        }
    }
    let (t1, t2) = (tx.clone(), tx);
    let sup = Supervisor::builder()
        .child(ChildSpec::server("plain", move || Flushes(t1.clone())))
        .child(ChildSpec::server("trapping", move || Flushes(t2.clone())).trap_exit(true))
        .start(&node)
        .await
        .unwrap();
    sup.stop(ExitReason::Shutdown).await;
    // Only the one that traps exits runs `terminate` (as in OTP).
    assert_eq!(rx.recv().await, Some(ExitReason::Shutdown));
    assert!(rx.try_recv().is_err());
}

/// A plain idle child, as cheap as a child can be.
fn idle_child() -> ChildSpec {
    ChildSpec::process("idle", until_stopped::<()>).restart(Restart::Temporary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_supervisor_of_fifty_thousand_children_stops_at_once() {
    let node = Node::new("t");
    let sup = dynamic(&node).await;
    let n = 50_000;
    let started = Instant::now();
    for _ in 0..n {
        sup.start_child(idle_child()).await.unwrap();
    }
    assert_eq!(sup.count_children().await.unwrap().active, n);
    // Churn beside them: each start and stop finds its child by pid, not by a scan.
    for _ in 0..100 {
        let pid = sup.start_child(idle_child()).await.unwrap();
        sup.terminate_pid(pid).await.unwrap();
    }
    assert_eq!(sup.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
    // About 2 s in a debug build; with a scan per child it took 50 s. (Speed is measured by
    // `girder bench -w supervisor_churn`.)
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "starting, churning and stopping took {:?}",
        started.elapsed()
    );
    assert_eq!(node.process_count(), 0);
}
