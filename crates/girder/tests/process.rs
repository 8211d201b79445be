//! Semantics of processes: mailboxes, links, monitors, exit signals, registry, timers,
//! introspection.

use std::time::Duration;

use girder::{Addr, Context, Event, ExitReason, LinkError, Node, SendError, SpawnOptions};
use girder_testkit::procs::{forwarder, idle, until_stopped};
use girder_testkit::within;
use tokio::sync::oneshot;

/// A process that waits forever, reporting every event it gets to `tx`.
fn reporter(
    node: &Node,
    opts: SpawnOptions,
    tx: tokio::sync::mpsc::UnboundedSender<Event<()>>,
) -> Addr<()> {
    node.spawn_opts(opts, move |mut ctx: Context<()>| async move {
        loop {
            let ev = ctx.recv().await;
            if tx.send(ev).is_err() {
                return ExitReason::Normal;
            }
        }
    })
}

async fn exit_of<M: Send + 'static>(addr: &Addr<M>) -> ExitReason {
    within("the process to exit", addr.wait_exit()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_sender_arrive_in_order() {
    let node = Node::new("t");
    let (tx, rx) = oneshot::channel();
    let p = node.spawn(|mut ctx: Context<u32>| async move {
        let mut got = Vec::new();
        while got.len() < 10_000 {
            if let Event::Message(n) = ctx.recv().await {
                got.push(n);
            }
        }
        tx.send(got).unwrap();
        ExitReason::Normal
    });
    for i in 0..10_000 {
        p.send(i).unwrap();
    }
    let got = rx.await.unwrap();
    assert_eq!(got, (0..10_000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mailbox_refuses_when_full_and_waits_with_send_wait() {
    let node = Node::new("t");
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel();
    let p = node.spawn_opts(
        SpawnOptions::new().capacity(2),
        |mut ctx: Context<u32>| async move {
            go_rx.await.unwrap();
            let mut got = Vec::new();
            while got.len() < 3 {
                if let Event::Message(n) = ctx.recv().await {
                    got.push(n);
                }
            }
            done_tx.send(got).unwrap();
            ExitReason::Normal
        },
    );
    p.send(1).unwrap();
    p.send(2).unwrap();
    assert_eq!(
        p.send(3),
        Err(SendError::Full(3)),
        "a full mailbox must refuse, not drop"
    );
    let waiting = tokio::spawn({
        let p = p.clone();
        async move { p.send_wait(3).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !waiting.is_finished(),
        "send_wait must wait while the mailbox is full"
    );
    go_tx.send(()).unwrap();
    waiting.await.unwrap().unwrap();
    assert_eq!(done_rx.await.unwrap(), vec![1, 2, 3]);
    exit_of(&p).await;
    assert_eq!(p.send(4), Err(SendError::NoProc(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_fails_when_the_process_exits_while_waiting() {
    let node = Node::new("t");
    let p = node.spawn_opts(
        SpawnOptions::new().capacity(1),
        |mut ctx: Context<u32>| async move {
            // Never reads: exits when told by an exit signal.
            std::future::pending::<()>().await;
            let _ = ctx.recv().await;
            ExitReason::Normal
        },
    );
    p.send(1).unwrap();
    let waiting = tokio::spawn({
        let p = p.clone();
        async move { p.send_wait(2).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    node.exit(p.pid(), ExitReason::Kill);
    let r = within("send_wait to fail", waiting).await.unwrap();
    assert_eq!(r, Err(SendError::NoProc(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_process_crashing_kills_its_non_trapping_partner() {
    let node = Node::new("t");
    let victim = idle(&node);
    let crasher = node.spawn_opts(
        SpawnOptions::new().link(victim.pid()),
        |mut ctx: Context<()>| async move {
            ctx.recv().await;
            panic!("boom");
        },
    );
    crasher.send(()).unwrap();
    assert_eq!(exit_of(&crasher).await, ExitReason::Panic("boom".into()));
    assert_eq!(exit_of(&victim).await, ExitReason::Panic("boom".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_ends_only_its_own_process() {
    let node = Node::new("t");
    let bystander = idle(&node);
    let crasher = node.spawn(|_: Context<()>| async move { panic!("alone") });
    assert_eq!(exit_of(&crasher).await, ExitReason::Panic("alone".into()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(bystander.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_exit_does_not_kill_linked_processes() {
    let node = Node::new("t");
    let partner = idle(&node);
    let quitter = node.spawn_opts(
        SpawnOptions::new().link(partner.pid()),
        |_: Context<()>| async { ExitReason::Normal },
    );
    assert_eq!(exit_of(&quitter).await, ExitReason::Normal);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(partner.is_alive());
    assert_eq!(
        node.process_info(partner.pid()).unwrap().links,
        0,
        "the link is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_process_receives_exits_as_messages() {
    let node = Node::new("t");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let trapper = reporter(&node, SpawnOptions::new().trap_exit(true), tx);
    let child = node.spawn_opts(
        SpawnOptions::new().link(trapper.pid()),
        |_: Context<()>| async { ExitReason::error("bad") },
    );
    let ev = within("an event", rx.recv()).await.unwrap();
    assert_eq!(
        ev,
        Event::Exit {
            from: child.pid(),
            reason: ExitReason::error("bad")
        }
    );
    // Normal exits are delivered to trapping processes too.
    let child2 = node.spawn_opts(
        SpawnOptions::new().link(trapper.pid()),
        |_: Context<()>| async { ExitReason::Normal },
    );
    let ev = within("an event", rx.recv()).await.unwrap();
    assert_eq!(
        ev,
        Event::Exit {
            from: child2.pid(),
            reason: ExitReason::Normal
        }
    );
    assert!(trapper.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_cannot_be_trapped_and_propagates_as_killed() {
    let node = Node::new("t");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = reporter(&node, SpawnOptions::new().trap_exit(true), tx);
    let (tx2, _rx2) = tokio::sync::mpsc::unbounded_channel();
    let target = reporter(
        &node,
        SpawnOptions::new().trap_exit(true).link(watcher.pid()),
        tx2,
    );
    node.exit(target.pid(), ExitReason::Kill);
    assert_eq!(exit_of(&target).await, ExitReason::Killed);
    // The linked, trapping watcher gets `Killed`, which it can trap.
    let ev = within("an event", rx.recv()).await.unwrap();
    assert_eq!(
        ev,
        Event::Exit {
            from: target.pid(),
            reason: ExitReason::Killed
        }
    );
    assert!(watcher.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_signal_semantics_for_non_trapping_targets() {
    let node = Node::new("t");
    let p = idle(&node);
    node.exit(p.pid(), ExitReason::Normal);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        p.is_alive(),
        "exit(pid, normal) is ignored by a non-trapping process"
    );
    node.exit(p.pid(), ExitReason::Shutdown);
    assert_eq!(exit_of(&p).await, ExitReason::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_signal_ends_a_process_that_is_busy_elsewhere() {
    let node = Node::new("t");
    let p = node.spawn(|_: Context<()>| async {
        // Not reading its mailbox at all.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        ExitReason::Normal
    });
    node.exit(p.pid(), ExitReason::error("stop now"));
    assert_eq!(exit_of(&p).await, ExitReason::error("stop now"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_fire_once_with_the_reason_and_noproc_for_dead_targets() {
    let node = Node::new("t");
    let (tx, rx) = oneshot::channel();
    let target = idle(&node);
    let target_pid = target.pid();
    let watcher = node.spawn(move |mut ctx: Context<()>| async move {
        let m = ctx.monitor(target_pid);
        ctx.exit(target_pid, ExitReason::error("x"));
        let first = ctx.recv().await;
        // A second monitor of the now-dead process fires NoProc at once.
        let m2 = ctx.monitor(target_pid);
        let second = ctx.recv().await;
        // Nothing else arrives: each monitor fired once.
        let third = ctx.recv_timeout(Duration::from_millis(50)).await;
        tx.send((m, first, m2, second, third)).unwrap();
        ExitReason::Normal
    });
    let (m, first, m2, second, third) = within("the watcher's report", rx).await.unwrap();
    match first {
        Event::Down(d) => {
            assert_eq!(d.monitor, m);
            assert_eq!(d.pid, target_pid);
            assert_eq!(d.reason, ExitReason::error("x"));
        }
        other => panic!("expected Down, got {other:?}"),
    }
    match second {
        Event::Down(d) => {
            assert_eq!(d.monitor, m2);
            assert_eq!(d.reason, ExitReason::NoProc);
        }
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(third.is_none());
    exit_of(&watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_are_one_way_and_demonitor_stops_them() {
    let node = Node::new("t");
    let (tx, rx) = oneshot::channel();
    let target = idle(&node);
    let tp = target.pid();
    let watcher = node.spawn(move |mut ctx: Context<()>| async move {
        let m = ctx.monitor(tp);
        ctx.demonitor(m);
        ctx.exit(tp, ExitReason::Kill);
        let got = ctx.recv_timeout(Duration::from_millis(100)).await;
        tx.send(got).unwrap();
        ExitReason::Normal
    });
    assert_eq!(within("the watcher's report", rx).await.unwrap(), None);
    assert_eq!(exit_of(&watcher).await, ExitReason::Normal);
    // The watcher exiting does not affect anything it monitored (one-way).
    let target2 = idle(&node);
    let t2 = target2.pid();
    let w2 = node.spawn(move |ctx: Context<()>| async move {
        ctx.monitor(t2);
        ExitReason::error("watcher dies")
    });
    exit_of(&w2).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(target2.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_to_a_dead_process_fails_with_noproc() {
    let node = Node::new("t");
    let dead = node.spawn(|_: Context<()>| async { ExitReason::Normal });
    exit_of(&dead).await;
    let (tx, rx) = oneshot::channel();
    let dp = dead.pid();
    node.spawn(move |ctx: Context<()>| async move {
        tx.send(ctx.link(dp)).unwrap();
        ExitReason::Normal
    });
    assert_eq!(rx.await.unwrap(), Err(LinkError::NoProc(dp)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_drops_an_exit_already_queued() {
    let node = Node::new("t");
    let (tx, rx) = oneshot::channel();
    let p = node.spawn_opts(
        SpawnOptions::new().trap_exit(true),
        move |mut ctx: Context<()>| async move {
            let child = ctx.spawn_link(|_: Context<()>| async { ExitReason::error("child") });
            // Wait until the child's exit is surely queued, then unlink.
            ctx.node().wait_exit(child.pid()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            ctx.unlink(child.pid());
            tx.send(ctx.recv_timeout(Duration::from_millis(50)).await)
                .unwrap();
            ExitReason::Normal
        },
    );
    assert_eq!(rx.await.unwrap(), None);
    exit_of(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_overtake_a_long_user_queue() {
    let node = Node::new("t");
    let (tx, rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let p = node.spawn_opts(
        SpawnOptions::new().trap_exit(true),
        move |mut ctx: Context<u32>| async move {
            go_rx.await.unwrap();
            tx.send(ctx.recv().await).unwrap();
            ExitReason::Normal
        },
    );
    for i in 0..100_000 {
        p.send(i).unwrap();
    }
    node.exit(p.pid(), ExitReason::Shutdown);
    go_tx.send(()).unwrap();
    let first = rx.await.unwrap();
    assert!(
        matches!(
            first,
            Event::Exit {
                reason: ExitReason::Shutdown,
                ..
            }
        ),
        "got {first:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_names_follow_process_lifetimes() {
    let node = Node::new("t");
    let a = idle(&node);
    let b = idle(&node);
    node.register("svc", a.pid()).unwrap();
    assert_eq!(node.whereis("svc"), Some(a.pid()));
    assert!(
        matches!(node.register("svc", b.pid()), Err(girder::RegisterError::NameTaken { owner, .. }) if owner == a.pid())
    );
    assert!(matches!(
        node.register("other", a.pid()),
        Err(girder::RegisterError::AlreadyNamed { .. })
    ));
    assert_eq!(
        node.register("", b.pid()),
        Err(girder::RegisterError::EmptyName)
    );
    let typed: Addr<()> = node.lookup("svc").unwrap();
    assert_eq!(typed.pid(), a.pid());
    assert!(matches!(
        node.lookup::<u64>("svc"),
        Err(girder::LookupError::WrongType { .. })
    ));
    assert!(matches!(
        node.lookup::<()>("nobody"),
        Err(girder::LookupError::NotRegistered(_))
    ));
    node.exit(a.pid(), ExitReason::Kill);
    exit_of(&a).await;
    assert_eq!(
        node.whereis("svc"),
        None,
        "a name never points at a dead process"
    );
    node.register("svc", b.pid()).unwrap();
    assert!(node.unregister("svc"));
    assert!(!node.unregister("svc"));
    let dead = node.spawn(|_: Context<()>| async { ExitReason::Normal });
    exit_of(&dead).await;
    assert_eq!(
        node.register("late", dead.pid()),
        Err(girder::RegisterError::NoProc(dead.pid()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_and_cancel() {
    let node = Node::new("t");
    let (p, mut rx) = forwarder::<&'static str>(&node);
    let fired = girder::send_after(&p, "fired", Duration::from_millis(10));
    let cancelled = girder::send_after(&p, "cancelled", Duration::from_millis(30));
    assert!(cancelled.cancel());
    assert!(!cancelled.cancel(), "a timer is cancelled once");
    assert_eq!(within("an event", rx.recv()).await, Some("fired"));
    assert!(fired.has_fired());
    assert!(
        !fired.cancel(),
        "cancelling a fired timer says it already fired"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(rx.try_recv().is_err(), "the cancelled timer never delivers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_lists_live_processes_without_stopping_them() {
    let node = Node::new("t");
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let busy = node.spawn(|mut ctx: Context<u32>| async move {
        go_rx.await.unwrap();
        loop {
            ctx.recv().await;
        }
    });
    for i in 0..5 {
        busy.send(i).unwrap();
    }
    node.register("busy", busy.pid()).unwrap();
    let other = idle(&node);
    let infos = node.processes();
    assert_eq!(infos.len(), 2);
    let b = infos.iter().find(|i| i.pid == busy.pid()).unwrap();
    assert_eq!(b.mailbox_len, 5);
    assert_eq!(b.name.as_deref(), Some("busy"));
    assert_eq!(b.behaviour, "process");
    assert!(infos.iter().any(|i| i.pid == other.pid()));
    go_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(node.process_info(busy.pid()).unwrap().mailbox_len, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_of_another_node_incarnation_are_never_live() {
    let old = Node::with_creation("n", 1);
    let new = Node::with_creation("n", 2);
    let p = idle(&old);
    let q = idle(&new);
    assert_eq!(p.pid().id(), q.pid().id());
    assert!(
        !new.is_alive(p.pid()),
        "same id, other creation: not the same process"
    );
    assert!(new.is_alive(q.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_process_during_spawn_is_not_lost() {
    let node = Node::new("t");
    for _ in 0..200 {
        let parent = idle(&node);
        let pp = parent.pid();
        let n2 = node.clone();
        let killer = tokio::spawn(async move { n2.exit(pp, ExitReason::error("die")) });
        let child = node.spawn_opts(SpawnOptions::new().link(pp), until_stopped::<()>);
        killer.await.unwrap();
        exit_of(&parent).await;
        let r = exit_of(&child).await;
        assert!(
            matches!(r, ExitReason::Error(_) | ExitReason::NoProc),
            "got {r:?}"
        );
    }
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_and_waits_leave_nothing_behind() {
    let node = Node::new("t");
    let target = idle(&node);
    let tp = target.pid();
    // Many short-lived watchers, each monitoring the long-lived target and exiting.
    for _ in 0..100 {
        let w = node.spawn(move |ctx: Context<()>| async move {
            ctx.monitor(tp);
            ExitReason::Normal
        });
        exit_of(&w).await;
    }
    // A watcher that monitors and demonitors in a loop.
    let (tx, rx) = oneshot::channel();
    node.spawn(move |mut ctx: Context<()>| async move {
        for _ in 0..100 {
            let m = ctx.monitor(tp);
            ctx.demonitor(m);
        }
        tx.send(()).unwrap();
        ctx.recv().await;
        ExitReason::Normal
    });
    rx.await.unwrap();
    assert_eq!(node.process_info(tp).unwrap().monitored_by, 0);
    // Waits that time out do not pile up either.
    for _ in 0..100 {
        let _ = tokio::time::timeout(Duration::from_micros(10), target.wait_exit()).await;
    }
    node.exit(tp, ExitReason::Kill);
    assert_eq!(exit_of(&target).await, ExitReason::Killed);
}
