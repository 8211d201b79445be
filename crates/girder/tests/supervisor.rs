//! Semantics of supervisors and applications.

mod common;

use std::time::Duration;

use common::{child, drain, make_exit, pid_of, send_cmd, wait_gone, wait_trapping, Cmd, Life};
use girder::supervisor::{
    ChildSpec, Restart, RestartStrategy, Shutdown, Supervisor, SupervisorError,
};
use girder::{Addr, Application, ExitReason, Node, SupervisorRef};
use girder_testkit::within;
use tokio::sync::mpsc;

async fn three(
    node: &Node,
    strategy: RestartStrategy,
) -> (SupervisorRef, mpsc::UnboundedReceiver<Life>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sup = Supervisor::builder()
        .strategy(strategy)
        .intensity(10, Duration::from_secs(5))
        .child(child("a", tx.clone(), false))
        .child(child("b", tx.clone(), false))
        .child(child("c", tx, false))
        .start(node)
        .await
        .unwrap();
    (sup, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_in_order() {
    let node = Node::new("t");
    let (sup, mut rx) = three(&node, RestartStrategy::OneForOne).await;
    assert_eq!(
        drain(&mut rx),
        vec![Life::Started("a"), Life::Started("b"), Life::Started("c")]
    );
    let ids: Vec<_> = sup
        .which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(
        node.process_info(sup.pid()).unwrap().behaviour,
        "supervisor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_children_in_reverse_order() {
    let node = Node::new("t");
    let (sup, mut rx) = three(&node, RestartStrategy::OneForOne).await;
    drain(&mut rx);
    assert_eq!(sup.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
    assert_eq!(
        drain(&mut rx),
        vec![
            Life::Stopped("c", ExitReason::Shutdown),
            Life::Stopped("b", ExitReason::Shutdown),
            Life::Stopped("a", ExitReason::Shutdown)
        ]
    );
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_restarts_only_the_failed_child() {
    let node = Node::new("t");
    let (sup, mut rx) = three(&node, RestartStrategy::OneForOne).await;
    drain(&mut rx);
    let a = node.whereis("a").unwrap();
    let c = node.whereis("c").unwrap();
    let old_b = make_exit(&node, "b", ExitReason::error("b broke")).await;
    let new_b = pid_of(&node, "b", Some(old_b)).await;
    assert_ne!(old_b, new_b);
    assert_eq!(node.whereis("a"), Some(a));
    assert_eq!(node.whereis("c"), Some(c));
    assert_eq!(drain(&mut rx), vec![Life::Started("b")]);
    let children = sup.which_children().await.unwrap();
    assert_eq!(children[1].restarts, 1);
    assert_eq!(node.process_info(new_b).unwrap().restarts, 1);
    assert_eq!(node.process_info(sup.pid()).unwrap().restarts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_child() {
    let node = Node::new("t");
    let (sup, mut rx) = three(&node, RestartStrategy::OneForAll).await;
    drain(&mut rx);
    let old_a = node.whereis("a").unwrap();
    let old_b = make_exit(&node, "b", ExitReason::error("b broke")).await;
    pid_of(&node, "b", Some(old_b)).await;
    sup.which_children().await.unwrap(); // the restart is complete once the supervisor answers
    assert_ne!(node.whereis("a"), Some(old_a));
    assert_eq!(
        drain(&mut rx),
        vec![
            Life::Stopped("c", ExitReason::Shutdown),
            Life::Stopped("a", ExitReason::Shutdown),
            Life::Started("a"),
            Life::Started("b"),
            Life::Started("c")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let node = Node::new("t");
    let (sup, mut rx) = three(&node, RestartStrategy::RestForOne).await;
    drain(&mut rx);
    let a = node.whereis("a").unwrap();
    let old_b = make_exit(&node, "b", ExitReason::error("b broke")).await;
    pid_of(&node, "b", Some(old_b)).await;
    sup.which_children().await.unwrap();
    assert_eq!(node.whereis("a"), Some(a));
    assert_eq!(
        drain(&mut rx),
        vec![
            Life::Stopped("c", ExitReason::Shutdown),
            Life::Started("b"),
            Life::Started("c")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_types_permanent_transient_temporary() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = Supervisor::builder()
        .intensity(10, Duration::from_secs(5))
        .child(child("perm", tx.clone(), false))
        .child(child("trans", tx.clone(), false).restart(Restart::Transient))
        .child(child("temp", tx.clone(), false).restart(Restart::Temporary))
        .start(&node)
        .await
        .unwrap();
    drain(&mut rx);
    // Permanent: restarted even after a normal exit.
    let p = make_exit(&node, "perm", ExitReason::Normal).await;
    pid_of(&node, "perm", Some(p)).await;
    // Transient: not restarted after normal or shutdown, restarted after an error.
    make_exit(&node, "trans", ExitReason::Normal).await;
    sup.which_children().await.unwrap();
    assert_eq!(node.whereis("trans"), None);
    let restarted = sup.restart_child("trans").await.unwrap();
    let t = make_exit(&node, "trans", ExitReason::error("oops")).await;
    assert_eq!(t, restarted);
    pid_of(&node, "trans", Some(t)).await;
    // Temporary: never restarted, and forgotten.
    make_exit(&node, "temp", ExitReason::error("oops")).await;
    let ids: Vec<_> = sup
        .which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["perm", "trans"]);
    assert_eq!(node.whereis("temp"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_storm_hits_the_intensity_limit_and_escalates() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let inner = Supervisor::builder()
        .intensity(2, Duration::from_secs(60))
        .child(child("w", tx.clone(), false))
        .child(child("x", tx.clone(), false));
    let top = Supervisor::builder()
        .intensity(5, Duration::from_secs(60))
        .child(ChildSpec::supervisor("inner", inner).named("inner"))
        .start(&node)
        .await
        .unwrap();
    let inner1 = node.whereis("inner").unwrap();
    let mut last = None;
    for _ in 0..3 {
        let p = pid_of(&node, "w", last).await;
        send_cmd(&node, p, Cmd::Panic);
        wait_gone(&node, p).await;
        last = Some(p);
    }
    // The third crash within the period exceeds 2 restarts: the inner supervisor stops its other
    // child and exits with shutdown; the top supervisor restarts it with fresh children.
    let inner2 = pid_of(&node, "inner", Some(inner1)).await;
    assert_ne!(inner1, inner2);
    pid_of(&node, "w", last).await;
    let log = drain(&mut rx);
    assert!(
        log.contains(&Life::Stopped("x", ExitReason::Shutdown)),
        "{log:?}"
    );
    let children = top.which_children().await.unwrap();
    assert_eq!(children[0].restarts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_supervisor_past_its_intensity_exits_shutdown() {
    let node = Node::new("t");
    let (tx, _rx) = mpsc::unbounded_channel();
    let sup = Supervisor::builder()
        .child(child("w", tx, false))
        .start(&node)
        .await
        .unwrap(); // default intensity: 1 restart in 5 s
    let p = make_exit(&node, "w", ExitReason::error("1")).await;
    pid_of(&node, "w", Some(p)).await;
    make_exit(&node, "w", ExitReason::error("2")).await;
    assert_eq!(
        within("the supervisor to exit", sup.wait_exit()).await,
        ExitReason::Shutdown
    );
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_kills_a_child_that_ignores_shutdown() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = Supervisor::builder()
        .child(child("polite", tx.clone(), false))
        .child(
            child("stubborn", tx.clone(), true)
                .shutdown(Shutdown::Timeout(Duration::from_millis(100))),
        )
        .start(&node)
        .await
        .unwrap();
    drain(&mut rx);
    let stubborn: Addr<Cmd> = node.lookup("stubborn").unwrap();
    wait_trapping(&node, stubborn.pid()).await;
    let started = std::time::Instant::now();
    sup.stop(ExitReason::Shutdown).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(stubborn.wait_exit().await, ExitReason::Killed);
    // The plain child may log its start late; only the stops matter here.
    let stops: Vec<_> = drain(&mut rx)
        .into_iter()
        .filter(|l| matches!(l, Life::Stopped(..)))
        .collect();
    assert_eq!(stops, vec![Life::Stopped("polite", ExitReason::Shutdown)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brutal_kill_does_not_wait() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = Supervisor::builder()
        .child(child("k", tx, true).shutdown(Shutdown::BrutalKill))
        .start(&node)
        .await
        .unwrap();
    let k: Addr<Cmd> = node.lookup("k").unwrap();
    sup.terminate_child("k").await.unwrap();
    assert_eq!(k.wait_exit().await, ExitReason::Killed);
    assert!(!drain(&mut rx)
        .iter()
        .any(|l| matches!(l, Life::Stopped(..))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinity_waits_for_a_slow_child() {
    let node = Node::new("t");
    let slow = ChildSpec::process("slow", |mut ctx: girder::Context<()>| async move {
        ctx.trap_exit(true);
        loop {
            if let girder::Event::Exit { reason, .. } = ctx.recv().await {
                tokio::time::sleep(Duration::from_millis(150)).await;
                return reason;
            }
        }
    })
    .shutdown(Shutdown::Infinity);
    let sup = Supervisor::builder()
        .child(slow)
        .start(&node)
        .await
        .unwrap();
    let pid = sup.which_children().await.unwrap()[0].pid.unwrap();
    wait_trapping(&node, pid).await;
    let started = std::time::Instant::now();
    sup.terminate_child("slow").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    let c = sup.which_children().await.unwrap();
    assert_eq!(c[0].pid, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_children_and_bad_requests() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = Supervisor::builder()
        .strategy(RestartStrategy::Dynamic)
        .start(&node)
        .await
        .unwrap();
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    for id in ["d1", "d2", "d3"] {
        sup.start_child(child(id, tx.clone(), false)).await.unwrap();
    }
    let counts = sup.count_children().await.unwrap();
    assert_eq!((counts.specs, counts.active, counts.workers), (3, 3, 3));
    // Ids may repeat in a dynamic supervisor; this one fails on its registered name.
    assert!(matches!(
        sup.start_child(child("d1", tx.clone(), false)).await,
        Err(SupervisorError::StartFailed {
            error: girder::StartError::AlreadyStarted(_),
            ..
        })
    ));
    assert_eq!(
        sup.terminate_child("nope").await,
        Err(SupervisorError::NotFound("nope".into()))
    );
    assert!(matches!(
        sup.delete_child("d2").await,
        Err(SupervisorError::Running { .. })
    ));
    sup.terminate_child("d2").await.unwrap();
    assert_eq!(sup.count_children().await.unwrap().specs, 2);
    drain(&mut rx);
    sup.stop(ExitReason::Shutdown).await;
    let mut stopped = drain(&mut rx);
    stopped.sort_by_key(|l| format!("{l:?}"));
    assert_eq!(
        stopped,
        vec![
            Life::Stopped("d1", ExitReason::Shutdown),
            Life::Stopped("d3", ExitReason::Shutdown)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_failing_to_start_fails_the_supervisor_start_and_stops_the_others() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    struct Broken;
    impl girder::Server for Broken {
        type Call = ();
        type Cast = ();
        type Info = ();
        async fn init(
            &mut self,
            _: &mut girder::ServerContext<Self>,
        ) -> Result<(), girder::InitError> {
            Err(ExitReason::error("no database").into())
        }
    }
    let r = Supervisor::builder()
        .child(child("first", tx, false))
        .child(ChildSpec::server("broken", || Broken))
        .start(&node)
        .await;
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("broken") && err.contains("no database"),
        "{err}"
    );
    assert_eq!(
        drain(&mut rx),
        vec![
            Life::Started("first"),
            Life::Stopped("first", ExitReason::Shutdown)
        ]
    );
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused() {
    let node = Node::new("t");
    let (tx, _rx) = mpsc::unbounded_channel();
    let r = Supervisor::builder()
        .child(child("same", tx.clone(), false))
        .child(child("same", tx, false))
        .start(&node)
        .await;
    assert!(r.unwrap_err().to_string().contains("duplicate child id"));
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_starts_and_stops_its_tree_as_a_unit() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let inner = Supervisor::builder().child(child("leaf", tx.clone(), false));
    let app = Application::new(
        "demo",
        Supervisor::builder()
            .child(child("first", tx, false))
            .child(ChildSpec::supervisor("inner", inner)),
    );
    let running = app.start(&node).await.unwrap();
    assert_eq!(node.whereis("demo_sup"), Some(running.root().pid()));
    assert_eq!(node.process_count(), 4);
    assert_eq!(running.stop().await, ExitReason::Shutdown);
    assert_eq!(
        drain(&mut rx),
        vec![
            Life::Started("first"),
            Life::Started("leaf"),
            Life::Stopped("leaf", ExitReason::Shutdown),
            Life::Stopped("first", ExitReason::Shutdown)
        ]
    );
    assert_eq!(node.process_count(), 0);
}

/// The root's name is the application's: a second start of a running application is refused
/// (OTP's `already_started`) and harms nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_runs_once_per_node() {
    let node = Node::new("t");
    let app = || Application::new("shop", Supervisor::builder());
    let running = app().start(&node).await.unwrap();
    let again = app().start(&node).await;
    assert!(
        matches!(again, Err(girder::StartError::AlreadyStarted(pid)) if pid == running.root().pid()),
        "{again:?}"
    );
    assert!(running.root().is_alive());
    assert_eq!(running.stop().await, ExitReason::Shutdown);
    assert!(app().start(&node).await.is_ok(), "its name is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_supervisor_takes_its_children_down() {
    let node = Node::new("t");
    let (sup, _rx) = three(&node, RestartStrategy::OneForOne).await;
    let a = girder::ServerRef::<common::TestChild>::lookup(&node, "a").unwrap();
    node.exit(sup.pid(), ExitReason::Kill);
    assert_eq!(within("a to exit", a.wait_exit()).await, ExitReason::Killed);
}
