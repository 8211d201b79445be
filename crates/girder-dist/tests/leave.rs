//! How a node goes away, as the others see it: a node that shuts its distribution down says
//! goodbye and is reported as having left (a departure), a lost connection is still a failure,
//! and a node that membership gives up on is forgotten.

use std::time::Duration;

use girder::ExitReason;
use girder_dist::membership::{Member, MemberEvent, Membership, MembershipConfig};
use girder_dist::{DistNode, NodeEvent, NodeName};
use girder_testkit::dist::{pair, start};
use girder_testkit::procs::{down_reason, idle};
use girder_testkit::{eventually, within};
use tokio::sync::broadcast;

/// The next event about `node` other than its discovery or its connection coming up (which a
/// subscriber that subscribed just after `connect` may still get).
async fn next_about(events: &mut broadcast::Receiver<NodeEvent>, node: &NodeName) -> NodeEvent {
    within(format!("an event about {node}"), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Discovered(_) | NodeEvent::Up(_)) => continue,
                Ok(
                    e @ (NodeEvent::Down { .. } | NodeEvent::Left { .. } | NodeEvent::Forgotten(_)),
                ) => {
                    let about = match &e {
                        NodeEvent::Forgotten(n) => n,
                        NodeEvent::Down { node, .. } | NodeEvent::Left { node, .. } => node,
                        _ => unreachable!(),
                    };
                    if about == node {
                        return e;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("no event about {node}: {e:?}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_node_that_shuts_down_has_left_and_a_lost_connection_is_down() {
    let (a, b) = pair("la@localhost", "lb@localhost").await;
    a.connect(b.name()).await.unwrap();
    eventually("b has the connection", || b.connected().contains(a.name())).await;
    // A monitor across the connection still fires: leaving is no reason to keep it quiet.
    let target = a.pid_on(b.name(), {
        let w = idle(b.node());
        b.export(&w);
        w.pid()
    });
    let watch = down_reason(a.node(), target);
    let (mut a_events, mut b_events) = (a.subscribe(), b.subscribe());

    b.shutdown_and_wait().await;
    assert_eq!(
        next_about(&mut a_events, b.name()).await,
        NodeEvent::Left {
            node: b.name().clone(),
            reason: "it shut down".into()
        },
        "a heard b's goodbye"
    );
    assert_eq!(
        next_about(&mut b_events, a.name()).await,
        NodeEvent::Left {
            node: a.name().clone(),
            reason: "this node shut down".into()
        }
    );
    assert_eq!(
        within("the monitor", watch).await,
        Ok(ExitReason::NoConnection)
    );
    // A node that left is not dialled again (it is going away) until its address is given again.
    assert!(!a.known().contains(b.name()), "{:?}", a.known());
    assert!(a.connect(b.name()).await.is_err());

    // A connection that is lost without a goodbye is still a failure, on both sides.
    let (c, d) = pair("lc@localhost", "ld@localhost").await;
    c.connect(d.name()).await.unwrap();
    let (mut c_events, mut d_events) = (c.subscribe(), d.subscribe());
    assert!(c.disconnect(d.name()));
    assert!(matches!(
        next_about(&mut c_events, d.name()).await,
        NodeEvent::Down { .. }
    ));
    assert!(matches!(
        next_about(&mut d_events, c.name()).await,
        NodeEvent::Down { .. }
    ));
    // And the other node is still dialable.
    within("the redial", c.connect(d.name())).await.unwrap();
}

#[tokio::test]
async fn shutdown_returns_at_once_and_the_goodbyes_finish_behind_it() {
    let (a, b) = pair("lsa@localhost", "lsb@localhost").await;
    a.connect(b.name()).await.unwrap();
    let mut a_events = a.subscribe();
    // The dialler is up when the acceptor's proof arrives, the acceptor a moment later: a
    // node that shuts down before it has the connection has no goodbye to say on it.
    eventually("b has the connection", || b.connected().contains(a.name())).await;
    b.shutdown();
    let heard = next_about(&mut a_events, b.name()).await;
    assert!(matches!(heard, NodeEvent::Left { .. }), "{heard:?}");
    eventually("both sides closed", || {
        a.connected().is_empty() && b.connected().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_forgotten_node_is_no_longer_dialled_and_subscribers_are_told() {
    let (a, b) = pair("lfa@localhost", "lfb@localhost").await;
    a.connect(b.name()).await.unwrap();
    // A node that is connected is not forgotten.
    assert!(!a.forget(b.name()));
    assert!(!a.forget(a.name()));
    let mut events = a.subscribe();
    assert!(a.disconnect(b.name()));
    assert!(matches!(
        next_about(&mut events, b.name()).await,
        NodeEvent::Down { .. }
    ));
    assert!(a.forget(b.name()));
    assert_eq!(
        next_about(&mut events, b.name()).await,
        NodeEvent::Forgotten(b.name().clone())
    );
    assert!(a.known().is_empty());
    assert_eq!(
        a.connect(b.name()).await,
        Err(girder_dist::ConnectError::NoAddress(b.name().clone()))
    );
}

/// A node with a membership on its own address, seeded with `seeds`, followed by its
/// distribution.
async fn member(
    name: &str,
    seeds: &[std::net::SocketAddr],
    cfg: MembershipConfig,
) -> (DistNode, Membership) {
    let dist = start(name).await;
    let me = Member {
        name: dist.name().clone(),
        addr: dist.local_addr(),
        creation: dist.node().creation(),
        roles: vec![],
    };
    let membership = Membership::start(dist.node(), me, seeds, cfg)
        .await
        .unwrap();
    dist.follow(&membership);
    (dist, membership)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_for_forget_after_is_forgotten_by_membership_and_distribution() {
    let cfg = || MembershipConfig {
        forget_after: Duration::from_secs(2),
        rejoin_every: Duration::from_millis(200),
        ..MembershipConfig::default()
    };
    let (a, ma) = member("mfa@127.0.0.1", &[], cfg()).await;
    let mut member_events = ma.subscribe();
    let mut node_events = a.subscribe();
    let (b, mb) = member("mfb@127.0.0.1", &[a.local_addr()], cfg()).await;
    eventually("a sees b", || ma.members().len() == 1).await;
    // b crashes: its membership stops answering, without a word.
    drop(mb);
    let forgotten = within("b forgotten by membership", async {
        let mut down = false;
        loop {
            match member_events.recv().await {
                Ok(MemberEvent::Down(m)) if m.name == *b.name() => down = true,
                Ok(MemberEvent::Forgotten(m)) if m.name == *b.name() => return (down, m),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await;
    assert!(forgotten.0, "forgotten after it was down");
    assert_eq!(
        next_about(&mut node_events, b.name()).await,
        NodeEvent::Forgotten(b.name().clone())
    );
    assert!(!a.known().contains(b.name()));
}

/// A second process with a live node's name joins the membership and leaves it again: the
/// live node keeps its name, its address and its connection throughout (membership knows
/// members by address, so the twin's coming and going must touch only the twin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_coming_and_going_does_not_touch_the_live_node_with_its_name() {
    let cfg = MembershipConfig::default;
    let (a, ma) = member("twa@127.0.0.1", &[], cfg()).await;
    let (b, _mb) = member("twb@127.0.0.1", &[a.local_addr()], cfg()).await;
    eventually("a sees b", || ma.members().len() == 1).await;
    a.connect(b.name()).await.unwrap();
    let mut events = a.subscribe();
    let (twin, mtwin) = member("twb@127.0.0.1", &[a.local_addr()], cfg()).await;
    eventually("a sees the twin as a member", || ma.members().len() == 2).await;
    let address = |d: &DistNode| {
        d.peers()
            .into_iter()
            .find(|p| &p.name == b.name())
            .and_then(|p| p.address)
    };
    assert_eq!(
        address(&a),
        Some(b.local_addr()),
        "the live one's address kept"
    );
    // The twin goes away without a word, and membership declares it down.
    drop(mtwin);
    twin.shutdown();
    eventually("a sees the twin down", || ma.members().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(&e, NodeEvent::Down { node, .. } | NodeEvent::Left { node, .. } if node == b.name()),
            "the live node was disconnected: {e:?}"
        );
    }
    assert!(a.connected().contains(b.name()));
    assert_eq!(address(&a), Some(b.local_addr()));
}
