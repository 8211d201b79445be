//! What a peer that has not proven the cookie can make a node do: nothing. Each test plays the
//! attacker with the real handshake and a wrong cookie against two connected nodes, then checks
//! that the node's state (its connections, its table of known nodes, the monitors across the
//! connection) is as it was; and what silent peers hold: places among the connections
//! authenticating, bounded in number (in all and per source address) and in time.

use std::time::{Duration, Instant};

use girder_dist::handshake::{self, HandshakeConfig, HandshakeError};
use girder_dist::{Cookie, DistNode, NodeEvent, NodeName};
use girder_testkit::dist::{self, pair, COOKIE};
use girder_testkit::procs::{down_reason, idle};
use girder_testkit::{eventually, eventually_async, within};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WRONG_COOKIE: &str = "not-the-cluster-cookie-at-all";

/// One handshake to `target` as `name` with `creation`, without the cookie. The acceptor must
/// close it without an Ack.
async fn hello_without_the_cookie(target: &DistNode, name: &NodeName, creation: u32) {
    let stream = TcpStream::connect(target.local_addr()).await.unwrap();
    let mut cfg = HandshakeConfig::new(name.clone(), creation, Cookie::new(WRONG_COOKIE).unwrap());
    cfg.timeout = Duration::from_secs(5);
    let outcome = handshake::initiate(stream, &cfg).await;
    assert!(
        matches!(outcome, Err(HandshakeError::ProofRefused(_))),
        "refused without an Ack: {outcome:?}"
    );
}

fn creation_of(node: &DistNode, peer: &NodeName) -> Option<u32> {
    node.peers()
        .into_iter()
        .find(|p| &p.name == peer)
        .and_then(|p| p.creation)
}

#[tokio::test]
async fn a_hello_claiming_a_restarted_peer_without_the_cookie_changes_nothing() {
    let (a, b) = pair("a1@127.0.0.1", "b1@127.0.0.1").await;
    a.connect(b.name()).await.unwrap();
    // The dialer is up once the acceptor's proof arrives; the acceptor a moment later.
    let creation = eventually("b sees a connected", || creation_of(&b, a.name())).await;
    // A monitor across the connection, from b on a process of a: it would fire `noconnection`
    // if the connection were torn down.
    let target = idle(a.node());
    let watched = down_reason(b.node(), b.pid_on(a.name(), target.pid()));
    let mut events = b.subscribe();

    // "a restarted": newer creations, and the oldest trick, the same one again.
    for c in [
        creation + 1,
        creation.wrapping_add(1_000),
        u32::MAX,
        creation,
    ] {
        hello_without_the_cookie(&b, a.name(), c).await;
    }

    assert_eq!(b.connected(), vec![a.name().clone()]);
    assert_eq!(
        creation_of(&b, a.name()),
        Some(creation),
        "the same incarnation"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut watched = watched;
    assert!(
        watched.try_recv().is_err(),
        "no monitor across the connection fired"
    );
    while let Ok(event) = events.try_recv() {
        assert!(
            matches!(event, NodeEvent::Refused { .. }),
            "only refusals, no Down or Up: {event:?}"
        );
    }
    // And the connection still carries traffic.
    assert_eq!(b.whereis(a.name(), "nobody").await, Ok(None));
}

#[tokio::test]
async fn unauthenticated_names_leave_no_trace_in_the_node_table() {
    let (a, b) = pair("a2@127.0.0.1", "b2@127.0.0.1").await;
    a.connect(b.name()).await.unwrap();
    let before: Vec<NodeName> = b.peers().into_iter().map(|p| p.name).collect();
    for i in 0..200 {
        let name = NodeName::new(&format!("stranger{i}@127.0.0.1")).unwrap();
        hello_without_the_cookie(&b, &name, 1).await;
    }
    let after: Vec<NodeName> = b.peers().into_iter().map(|p| p.name).collect();
    assert_eq!(after, before, "no stranger is known");
    assert!(b
        .known()
        .iter()
        .all(|n| !n.as_str().starts_with("stranger")));
}

/// Waits until `stream` is closed by the other side (a read returns end of stream or an error).
async fn closed_by_peer(mut stream: TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn connections_authenticating_are_bounded_per_source_and_in_time() {
    let mut cfg = dist::config("b3@127.0.0.1", COOKIE);
    cfg.handshake_timeout = Duration::from_millis(500);
    cfg.max_pending_handshakes_per_source = 4;
    let b = DistNode::start(girder::Node::new("b3@127.0.0.1"), cfg)
        .await
        .unwrap();
    // Four silent connections from one address hold its four places...
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(b.local_addr()).await.unwrap());
    }
    eventually("four authenticating", || {
        b.listener_status().pending_handshakes == 4
    })
    .await;
    // ...so a fifth is closed on arrival, long before the handshake timeout.
    let started = Instant::now();
    let fifth = TcpStream::connect(b.local_addr()).await.unwrap();
    within("the fifth closed at once", closed_by_peer(fifth)).await;
    assert!(started.elapsed() < Duration::from_millis(400));
    assert!(b.listener_status().turned_away >= 1);
    // The silent ones are closed after the timeout, and their places come back.
    for s in silent {
        within("a silent connection closed", closed_by_peer(s)).await;
    }
    eventually("no one authenticating", || {
        b.listener_status().pending_handshakes == 0
    })
    .await;
    let status = b.listener_status();
    assert!(status.refused >= 4, "{status:?}");
    // A real peer from the same address gets in.
    let a = dist::start("a3@127.0.0.1").await;
    a.add_address(b.name().clone(), b.local_addr());
    within("a's dial", a.connect(b.name())).await.unwrap();
}

#[tokio::test]
async fn connections_authenticating_are_bounded_in_all() {
    let mut cfg = dist::config("b4@127.0.0.1", COOKIE);
    cfg.max_pending_handshakes = 3;
    let b = DistNode::start(girder::Node::new("b4@127.0.0.1"), cfg)
        .await
        .unwrap();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(b.local_addr()).await.unwrap());
    }
    eventually("three authenticating", || {
        b.listener_status().pending_handshakes == 3
    })
    .await;
    let fourth = TcpStream::connect(b.local_addr()).await.unwrap();
    within("the fourth closed at once", closed_by_peer(fourth)).await;
    assert_eq!(b.listener_status().turned_away, 1);
    // A silent peer going away gives its place back at once.
    drop(silent.pop());
    eventually("a place given back", || {
        b.listener_status().pending_handshakes == 2
    })
    .await;
}

/// Two live nodes with one name: the newcomer (a newer creation, with the cookie) is refused
/// and told why, again and again, while the node that was there first keeps its connection.
/// Once that one is gone, the name is free and the newcomer gets in (a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_with_a_live_nodes_name_is_refused_clearly_and_the_live_one_stays() {
    let (a, b) = pair("live-a@127.0.0.1", "live-b@127.0.0.1").await;
    a.connect(b.name()).await.unwrap();
    let b_creation = creation_of(&a, b.name()).unwrap();
    let mut a_events = a.subscribe();
    let twin = dist::start(b.name().as_str()).await;
    assert_ne!(twin.node().creation(), b_creation);
    twin.add_address(a.name().clone(), a.local_addr());
    let mut twin_events = twin.subscribe();
    for _ in 0..5 {
        assert!(twin.connect(a.name()).await.is_err());
        let reason = within("the twin's dial failure", async {
            loop {
                if let Ok(NodeEvent::DialFailed { reason, .. }) = twin_events.recv().await {
                    return reason;
                }
            }
        })
        .await;
        assert!(reason.contains("in use by a live node"), "{reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while let Ok(e) = a_events.try_recv() {
        assert!(
            !matches!(e, NodeEvent::Down { .. }),
            "the live one was dropped: {e:?}"
        );
    }
    assert_eq!(creation_of(&a, b.name()), Some(b_creation));
    assert!(a.connected().contains(b.name()));

    b.shutdown();
    eventually_async("the name let in once its holder is gone", async || {
        twin.connect(a.name()).await.is_ok()
    })
    .await;
    // The twin (the dialer) is up once a's proof arrives; a records it a moment later.
    eventually("a holds the twin's creation", || {
        creation_of(&a, twin.name()) == Some(twin.node().creation())
    })
    .await;
}
