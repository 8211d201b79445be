//! Girder's own services run under the node's supervisor (`girder.kernel_sup`, OTP's
//! `kernel_sup`): the global registry and process groups, killed as an operator's admin kill
//! does it, come back under their names with their state, and keep working with the other
//! nodes.

use girder::{ExitReason, Node, Pid};
use girder_dist::global::{self, Global};
use girder_dist::groups::Groups;
use girder_dist::node::KERNEL_SUP;
use girder_testkit::dist::{introduce, start};
use girder_testkit::procs::idle;
use girder_testkit::{eventually, within};

/// The same process, seen from two nodes, has the same id and creation.
fn same(a: Option<Pid>, b: Pid) -> bool {
    a.is_some_and(|a| a.id() == b.id() && a.creation() == b.creation())
}

/// Kills the process registered as `name` on `node` (as `POST /api/processes/<pid>/kill`
/// does) and waits for another one to hold the name: the new pid.
async fn kill_and_wait_for_the_next(node: &Node, name: &str) -> Pid {
    let old = node.whereis(name).unwrap_or_else(|| panic!("{name} runs"));
    node.exit(old, ExitReason::Kill);
    let what = format!("{name} back under its name");
    eventually(what, || node.whereis(name).is_some_and(|p| p != old)).await;
    let new = node.whereis(name).unwrap();
    assert!(node.is_alive(new));
    new
}

#[tokio::test]
async fn the_node_supervisor_is_registered_and_holds_the_services() {
    let a = start("ks@localhost").await;
    let _g = Global::start(&a).await.unwrap();
    let _p = Groups::start(&a, "s").await.unwrap();
    assert_eq!(a.node().whereis(KERNEL_SUP), Some(a.services().pid()));
    let ids: Vec<String> = a
        .services()
        .which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["girder.global", "girder.pg.s"]);
    // One per node: a second start is refused by the supervisor.
    assert!(matches!(
        Global::start(&a).await,
        Err(girder::supervisor::SupervisorError::AlreadyStarted { .. })
    ));
}

#[tokio::test]
async fn a_killed_global_registry_comes_back_with_every_name() {
    let (a, b) = (start("kga@localhost").await, start("kgb@localhost").await);
    let (ga, gb) = (
        Global::start(&a).await.unwrap(),
        Global::start(&b).await.unwrap(),
    );
    introduce(&[&a, &b]);
    let (on_a, on_b) = (idle(a.node()), idle(b.node()));
    ga.register("on_a", on_a.pid()).unwrap();
    gb.register("on_b", on_b.pid()).unwrap();
    eventually("both names everywhere", || {
        same(gb.whereis("on_a"), on_a.pid()) && same(ga.whereis("on_b"), on_b.pid())
    })
    .await;

    kill_and_wait_for_the_next(a.node(), global::SERVICE).await;
    // The names survive, here and there.
    assert!(same(ga.whereis("on_a"), on_a.pid()));
    assert!(same(ga.whereis("on_b"), on_b.pid()));
    assert!(same(gb.whereis("on_a"), on_a.pid()));
    // The other node can still find the service by its name.
    let found = within("b's lookup", b.whereis(a.name(), global::SERVICE))
        .await
        .unwrap();
    assert!(same(found, a.node().whereis(global::SERVICE).unwrap()));

    // And it works: news from the restarted service reaches b, and b's news reaches it.
    let later_a = idle(a.node());
    ga.register("later_a", later_a.pid()).unwrap();
    let later_b = idle(b.node());
    gb.register("later_b", later_b.pid()).unwrap();
    eventually("a name registered on a after the restart, on b", || {
        same(gb.whereis("later_a"), later_a.pid())
    })
    .await;
    eventually("a name registered on b after the restart, on a", || {
        same(ga.whereis("later_b"), later_b.pid())
    })
    .await;
    // A holder that exits is still watched by the new service: its name goes everywhere.
    on_a.stop(ExitReason::Shutdown);
    eventually("on_a gone everywhere", || {
        ga.whereis("on_a").is_none() && gb.whereis("on_a").is_none()
    })
    .await;
    // A holder's exit on b reaches a's new service too.
    on_b.stop(ExitReason::Shutdown);
    eventually("on_b gone on a", || ga.whereis("on_b").is_none()).await;

    // The other node's service can be killed as well: a's copy is rebuilt from it.
    kill_and_wait_for_the_next(b.node(), global::SERVICE).await;
    let last = idle(b.node());
    gb.register("last", last.pid()).unwrap();
    eventually("b's new service announces", || {
        same(ga.whereis("last"), last.pid())
    })
    .await;
}

#[tokio::test]
async fn what_happened_while_the_registry_was_down_is_made_good() {
    let (a, b) = (start("kwa@localhost").await, start("kwb@localhost").await);
    let (ga, gb) = (
        Global::start(&a).await.unwrap(),
        Global::start(&b).await.unwrap(),
    );
    introduce(&[&a, &b]);
    let gone_soon = idle(a.node());
    ga.register("gone_soon", gone_soon.pid()).unwrap();
    eventually("b sees it", || gb.whereis("gone_soon").is_some()).await;

    // a's service dies and stays down for a moment (its supervisor is suspended, as
    // `sys::suspend` does); meanwhile a's holder exits and a registers a new name.
    girder::sys::suspend(a.node(), a.services().pid())
        .await
        .unwrap();
    let old = a.node().whereis(global::SERVICE).unwrap();
    a.node().exit(old, ExitReason::Kill);
    eventually("the old service gone", || !a.node().is_alive(old)).await;
    gone_soon.stop(ExitReason::Shutdown);
    let meanwhile = idle(a.node());
    ga.register("meanwhile", meanwhile.pid()).unwrap();
    girder::sys::resume(a.node(), a.services().pid())
        .await
        .unwrap();

    eventually("b catches up with what a's service missed", || {
        gb.whereis("gone_soon").is_none() && same(gb.whereis("meanwhile"), meanwhile.pid())
    })
    .await;
    assert!(ga.whereis("gone_soon").is_none());
}

#[tokio::test]
async fn a_killed_process_group_scope_comes_back_with_its_members() {
    let (a, b) = (start("kpa@localhost").await, start("kpb@localhost").await);
    let (pa, pb) = (
        Groups::start(&a, "workers").await.unwrap(),
        Groups::start(&b, "workers").await.unwrap(),
    );
    introduce(&[&a, &b]);
    let (wa, wb) = (idle(a.node()), idle(b.node()));
    pa.join("pool", wa.pid()).unwrap();
    pb.join("pool", wb.pid()).unwrap();
    eventually("both members everywhere", || {
        pa.members("pool").len() == 2 && pb.members("pool").len() == 2
    })
    .await;

    kill_and_wait_for_the_next(a.node(), "girder.pg.workers").await;
    assert_eq!(pa.members("pool").len(), 2);
    assert_eq!(pb.members("pool").len(), 2);
    let wa2 = idle(a.node());
    pa.join("pool", wa2.pid()).unwrap();
    eventually("a join after the restart reaches b", || {
        pb.members("pool").len() == 3
    })
    .await;
    wb.stop(ExitReason::Shutdown);
    eventually("a leave on b reaches a's new service", || {
        pa.members("pool").len() == 2
    })
    .await;
}

#[tokio::test]
async fn the_services_are_restarted_within_the_intensity_and_not_beyond() {
    let a = start("kia@localhost").await;
    let g = Global::start(&a).await.unwrap();
    let w = idle(a.node());
    g.register("kept", w.pid()).unwrap();
    for _ in 0..girder_dist::node::SERVICES_MAX_RESTARTS {
        kill_and_wait_for_the_next(a.node(), global::SERVICE).await;
    }
    assert_eq!(g.whereis("kept"), Some(w.pid()));
    // One more within the period: the supervisor gives up rather than restart forever.
    let sup = a.services().pid();
    let service = a.node().whereis(global::SERVICE).unwrap();
    a.node().exit(service, ExitReason::Kill);
    eventually("the supervisor gave up", || !a.node().is_alive(sup)).await;
    assert_eq!(a.node().whereis(global::SERVICE), None);
}
