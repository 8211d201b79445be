//! The global registry and process groups across several nodes on loopback: replication,
//! clean-up when owners exit or nodes go down, and convergence after a partition heals, with
//! exactly one owner per global name.

use std::time::Duration;

use girder::{ExitReason, Flow, Pid, ReplyTo, Server, ServerContext};
use girder_dist::global::{Global, GlobalError};
use girder_dist::groups::Groups;
use girder_testkit::dist::{introduce, start};
use girder_testkit::procs::{idle, Counter};
use girder_testkit::{eventually, within};

/// The same process, seen from two nodes, has the same id and creation.
fn same(a: Option<Pid>, b: Pid) -> bool {
    a.is_some_and(|a| a.id() == b.id() && a.creation() == b.creation())
}

#[tokio::test]
async fn a_global_name_is_seen_everywhere_and_goes_when_its_owner_exits() {
    let (a, b, c) = (
        start("ga@localhost").await,
        start("gb@localhost").await,
        start("gc@localhost").await,
    );
    let (ga, gb, gc) = (
        Global::start(&a).await.unwrap(),
        Global::start(&b).await.unwrap(),
        Global::start(&c).await.unwrap(),
    );
    introduce(&[&a, &b, &c]);
    let counter = girder::server::start(b.node(), Counter(0)).await.unwrap();
    b.export_server(&counter);
    gb.register("counter", counter.pid()).unwrap();
    eventually("a and c see the name", || {
        same(ga.whereis("counter"), counter.pid()) && same(gc.whereis("counter"), counter.pid())
    })
    .await;
    // Registered elsewhere: refused here too, with the owner.
    let other = idle(a.node());
    match ga.register("counter", other.pid()) {
        Err(GlobalError::NameTaken { owner, .. }) => assert!(same(Some(owner), counter.pid())),
        r => panic!("unexpected {r:?}"),
    }
    assert_eq!(
        ga.register("x", b.pid_on(b.name(), Pid::new(0, 1, 1))),
        Err(GlobalError::NoProc(Pid::new(0, 1, 1)))
    );
    // Callable through the name from any node.
    let remote = gc.server::<Counter>("counter").unwrap();
    assert_eq!(remote.call(|r| (5, r)).await, Ok(5));
    assert_eq!(
        ga.server::<Counter>("counter")
            .unwrap()
            .call(|r| (1, r))
            .await,
        Ok(6)
    );
    // The owner exits: the name is gone on every node, and free again.
    counter.stop(ExitReason::Shutdown).await;
    eventually("the name is gone everywhere", || {
        ga.whereis("counter").is_none()
            && gb.whereis("counter").is_none()
            && gc.whereis("counter").is_none()
    })
    .await;
    ga.register("counter", other.pid()).unwrap();
    eventually("the new owner is seen", || {
        same(gc.whereis("counter"), other.pid())
    })
    .await;
    // Unregister is announced too.
    assert!(ga.unregister("counter"));
    eventually("unregistered everywhere", || {
        gc.whereis("counter").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_node_going_down_takes_its_names_and_members_with_it() {
    let (a, b) = (start("gd1@localhost").await, start("gd2@localhost").await);
    let (ga, gb) = (
        Global::start(&a).await.unwrap(),
        Global::start(&b).await.unwrap(),
    );
    let (pa, pb) = (
        Groups::start(&a, "s").await.unwrap(),
        Groups::start(&b, "s").await.unwrap(),
    );
    introduce(&[&a, &b]);
    let w = idle(b.node());
    gb.register("svc", w.pid()).unwrap();
    pb.join("pool", w.pid()).unwrap();
    eventually("a sees b's name and member", || {
        ga.whereis("svc").is_some() && pa.members("pool").len() == 1
    })
    .await;
    b.shutdown();
    eventually("a dropped them", || {
        ga.whereis("svc").is_none() && pa.members("pool").is_empty()
    })
    .await;
}

#[tokio::test]
async fn after_a_partition_heals_exactly_one_owner_remains_the_older_one() {
    // Two nodes that do not know each other yet: a partition.
    let (a, b) = (start("pa@localhost").await, start("pb@localhost").await);
    let (ga, gb) = (
        Global::start(&a).await.unwrap(),
        Global::start(&b).await.unwrap(),
    );
    let first = idle(a.node());
    ga.register("leader", first.pid()).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = idle(b.node());
    gb.register("leader", second.pid()).unwrap();
    assert!(same(ga.whereis("leader"), first.pid()));
    assert!(same(gb.whereis("leader"), second.pid()));
    // The partition heals.
    introduce(&[&a, &b]);
    eventually("both agree on the older registration", || {
        same(ga.whereis("leader"), first.pid()) && same(gb.whereis("leader"), first.pid())
    })
    .await;
    match within("the loser to be ended", second.wait_exit()).await {
        ExitReason::Error(e) => assert!(e.contains("leader"), "{e}"),
        r => panic!("the loser should be ended with a conflict reason, got {r:?}"),
    }
    assert!(first.is_alive());
    assert_eq!(ga.registered().len(), 1);
    assert_eq!(gb.registered().len(), 1);
}

#[tokio::test]
async fn process_groups_replicate_prefer_local_members_and_converge() {
    let (a, b) = (start("ra@localhost").await, start("rb@localhost").await);
    let (pa, pb) = (
        Groups::start(&a, "workers").await.unwrap(),
        Groups::start(&b, "workers").await.unwrap(),
    );
    // Another scope with the same group name stays separate.
    let (oa, ob) = (
        Groups::start(&a, "other").await.unwrap(),
        Groups::start(&b, "other").await.unwrap(),
    );
    let (a1, a2, b1) = (idle(a.node()), idle(a.node()), idle(b.node()));
    // Joined while partitioned.
    pa.join("pool", a1.pid()).unwrap();
    pa.join("pool", a1.pid()).unwrap();
    pa.join("pool", a2.pid()).unwrap();
    pb.join("pool", b1.pid()).unwrap();
    ob.join("pool", b1.pid()).unwrap();
    assert_eq!(pa.members("pool").len(), 2);
    introduce(&[&a, &b]);
    eventually("both see all three", || {
        pa.members("pool").len() == 3 && pb.members("pool").len() == 3
    })
    .await;
    eventually("the other scope has its one", || {
        oa.members("pool").len() == 1
    })
    .await;
    // Local members first, and pick stays local while there are local members.
    let on_a = pa.members("pool");
    assert!(on_a[0].is_local() && on_a[1].is_local() && !on_a[2].is_local());
    assert_eq!(pa.local_members("pool").len(), 2);
    let picks: std::collections::HashSet<Pid> = (0..10).map(|_| pa.pick("pool").unwrap()).collect();
    assert_eq!(picks, [a1.pid(), a2.pid()].into_iter().collect());
    assert_eq!(pb.pick("pool"), Some(b1.pid()));
    // Leaving and exiting are announced.
    assert!(pa.leave("pool", a2.pid()));
    assert!(!pa.leave("pool", a2.pid()));
    a1.stop(ExitReason::Shutdown);
    eventually("b sees only itself", || {
        pb.members("pool") == vec![b1.pid()]
    })
    .await;
    // With no local members, pick goes remote.
    eventually("a sees b's member", || pa.members("pool").len() == 1).await;
    assert!(!pa.pick("pool").unwrap().is_local());
    assert_eq!(pa.groups(), vec!["pool".to_string()]);
    assert!(pa.pick("none").is_none());
}

/// A server that makes itself the cluster's `"svc"` in `init`, counting failed attempts.
struct Singleton {
    global: Global,
    refused: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Server for Singleton {
    type Call = (u64, ReplyTo<u64>);
    type Cast = ();
    type Info = ();

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        if let Err(e) = self.global.register_server("svc", &ctx.me()) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(ExitReason::error(e.to_string()).into());
        }
        Ok(())
    }

    async fn handle_call(
        &mut self,
        (n, from): (u64, ReplyTo<u64>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        from.reply(n);
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_global_singleton_restarts_cleanly_a_thousand_times() {
    use girder::supervisor::{ChildSpec, Supervisor};
    let (a, b) = (start("gsa@localhost").await, start("gsb@localhost").await);
    let (ga, gb) = (
        Global::start(&a).await.unwrap(),
        Global::start(&b).await.unwrap(),
    );
    introduce(&[&a, &b]);
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (g, r) = (gb.clone(), refused.clone());
    let sup = Supervisor::builder()
        .intensity(10_000, Duration::from_secs(3600))
        .child(ChildSpec::server("svc", move || Singleton {
            global: g.clone(),
            refused: r.clone(),
        }))
        .start(b.node())
        .await
        .unwrap();
    let mut holder = gb.wait_for("svc", Duration::from_secs(5)).await.unwrap();
    for round in 0..1_000 {
        b.node().exit(holder, ExitReason::error("crash"));
        holder = eventually(format!("round {round}: a new holder"), || {
            gb.whereis("svc")
                .filter(|p| *p != holder && b.node().is_alive(*p))
        })
        .await;
    }
    assert_eq!(
        refused.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "every restart registered at its first attempt"
    );
    let c = sup.which_children().await.unwrap();
    assert_eq!((c[0].pid, c[0].restarts), (Some(holder), 1_000));
    // The other node follows: it sees the last holder and can call it.
    eventually("a sees the last holder", || same(ga.whereis("svc"), holder)).await;
    assert_eq!(
        ga.server::<Singleton>("svc")
            .unwrap()
            .call(|r| (7, r))
            .await,
        Ok(7)
    );
}
