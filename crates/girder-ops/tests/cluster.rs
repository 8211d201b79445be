//! Alarms and notices across nodes: another node's alarms through this node's API, a lost
//! connection as a `node_down` alarm (cleared when it is back, or when the node is forgotten), a
//! graceful leave as a notice without an alarm, the alarm service back after an admin kill,
//! supervisor restarts as notices, the distribution's metrics described like the rest.

use std::time::Duration;

use girder::{ChildSpec, Context, ExitReason, Node, Supervisor};
use girder_dist::{DistNode, Member, Membership, MembershipConfig};
use girder_ops::cluster::SERVICE;
use girder_ops::{Alarm, Notice, Ops, OpsConfig, Severity};
use girder_testkit::{dist, eventually, eventually_async, within};
use serde_json::Value;

mod prometheus;

/// A distribution node on loopback with its ops API: the node, the API's handle and base URL.
async fn node(name: &str) -> (DistNode, Ops, String) {
    let dist = dist::start(name).await;
    let ops = Ops::builder(dist.node())
        .dist(&dist)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", ops.local_addr());
    (dist, ops, base)
}

/// GET `url`: its JSON body.
async fn get_json(url: impl reqwest::IntoUrl) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn alarms_are_visible_across_the_cluster_and_a_lost_node_is_an_alarm() {
    let (a, _ops_a, base_a) = node("oa@localhost").await;
    let (b, ops_b, _) = node("ob@localhost").await;
    a.add_address(b.name().clone(), b.local_addr());
    a.connect(b.name()).await.unwrap();
    ops_b
        .alarms()
        .raise(Alarm::new(
            "queue_full",
            Severity::Major,
            "ob",
            "the ingest queue is full",
        ))
        .unwrap();
    let v: Value = get_json(format!("{base_a}/api/alarms?scope=cluster")).await;
    let cluster = v["cluster"].as_array().unwrap();
    assert_eq!(cluster.len(), 1, "{v}");
    assert_eq!(cluster[0]["node"], "ob@localhost");
    assert_eq!(cluster[0]["active"][0]["id"], "queue_full");
    // Node scope (the default) lists only this node's.
    let v: Value = get_json(format!("{base_a}/api/alarms")).await;
    assert!(
        v["cluster"].is_null() && v["active"].as_array().unwrap().is_empty(),
        "{v}"
    );
    let r = reqwest::get(format!("{base_a}/api/alarms?scope=galaxy"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The connection drops: a raises node_down for b, and clears it once b is back.
    a.disconnect(b.name());
    let active = |base: String| async move {
        let v: Value = get_json(format!("{base}/api/alarms")).await;
        v["active"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    eventually_async("node_down raised", async || {
        active(base_a.clone())
            .await
            .contains(&"node_down:ob@localhost".to_string())
    })
    .await;
    a.connect(b.name()).await.unwrap();
    eventually_async("node_down cleared", async || {
        active(base_a.clone()).await.is_empty()
    })
    .await;
}

/// The handle owns the node's alarm service: it stops with the handle, and a new handle on the
/// same node starts its own.
#[tokio::test]
async fn the_alarm_service_stops_with_its_handle() {
    let (a, ops, _) = node("sa@localhost").await;
    let service = a
        .node()
        .whereis(SERVICE)
        .expect("the alarm service is registered");
    ops.shutdown();
    eventually("the alarm service to stop", || {
        !a.node().is_alive(service) && a.node().whereis(SERVICE).is_none()
    })
    .await;
    let _ops = Ops::builder(a.node())
        .dist(&a)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let again = a.node().whereis(SERVICE).expect("a new alarm service");
    assert_ne!(again, service);
}

#[tokio::test]
async fn supervisor_restarts_become_notices() {
    let node = Node::new("restarts");
    let ops = Ops::start(
        node.clone(),
        None,
        None,
        OpsConfig::new("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let mut notices = ops.alarms().subscribe();
    let _sup = Supervisor::builder()
        .name("flaky_sup")
        .intensity(1_000, Duration::from_secs(1))
        .child(ChildSpec::process("flaky", |_: Context<()>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ExitReason::error("boom")
        }))
        .start(&node)
        .await
        .unwrap();
    let n = within("a restart notice", notices.recv()).await.unwrap();
    assert_eq!(
        n,
        Notice::ProcessRestarted {
            supervisor: "flaky_sup".into(),
            child: "flaky".into(),
            reason: "error: boom".into()
        }
    );
}

#[tokio::test]
async fn distribution_metrics_have_help_and_type_lines() {
    let (b, _ops_b, _) = node("mb@localhost").await;
    let a = dist::start("ma@localhost").await;
    let membership = Membership::start(
        a.node(),
        Member {
            name: a.name().clone(),
            addr: "127.0.0.1:0".parse().unwrap(),
            creation: 1,
            roles: vec![],
        },
        &[],
        MembershipConfig::default(),
    )
    .await
    .unwrap();
    let ops = Ops::start(
        a.node().clone(),
        Some(a.clone()),
        Some(std::sync::Arc::new(membership)),
        OpsConfig::new("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    a.add_address(b.name().clone(), b.local_addr());
    a.connect(b.name()).await.unwrap();
    // A node without the cookie knocks on a: refused, and counted.
    let stranger = dist::start_with("mstranger@localhost", "not-the-cluster-cookie-at-all").await;
    stranger.add_address(a.name().clone(), a.local_addr());
    assert!(stranger.connect(a.name()).await.is_err());
    // And a dials the stranger: refused there, and counted here as a dial refused.
    a.add_address(stranger.name().clone(), stranger.local_addr());
    assert!(a.connect(stranger.name()).await.is_err());
    // Counted once the acceptor has finished with it (the stranger may see the close first).
    let metrics = format!("http://{}/metrics", ops.local_addr());
    let body = eventually_async("the refusals counted", async || {
        let body = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        (body.contains("girder_dist_handshakes_refused_total{node=\"ma@localhost\"} 1")
            && body.contains("girder_dist_dials_refused_total{node=\"ma@localhost\"} 1"))
        .then_some(body)
    })
    .await;
    for name in [
        "girder_dist_connected_nodes",
        "girder_dist_connected",
        "girder_dist_bytes_out_total",
        "girder_dist_messages_in_total",
        "girder_cluster_members",
        "girder_membership_datagrams_received_total",
        "girder_membership_datagrams_dropped_total",
        "girder_dist_listener_accepting",
        "girder_dist_accept_errors_total",
        "girder_dist_handshakes_pending",
        "girder_dist_handshakes_turned_away_total",
    ] {
        assert!(
            body.contains(&format!("{name}{{node=\"ma@localhost\"")),
            "{name} not published:\n{body}"
        );
    }
    let (missing, _) = prometheus::undocumented(&body);
    assert!(
        missing.is_empty(),
        "without HELP or TYPE: {missing:?}\n{body}"
    );
}

#[tokio::test]
async fn readiness_reports_a_distribution_listener_that_cannot_accept() {
    let network = dist::Exhaustible::default();
    let mut cfg = dist::config("ready-listener@127.0.0.1", dist::COOKIE);
    cfg.network = std::sync::Arc::new(network.clone());
    let node = DistNode::start(Node::new("ready-listener@127.0.0.1"), cfg)
        .await
        .unwrap();
    let ops = Ops::builder(node.node())
        .dist(&node)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let readyz = format!("http://{}/readyz", ops.local_addr());
    let ready = || async { reqwest::get(&readyz).await.unwrap() };
    assert_eq!(ready().await.status(), 200);

    // Out of file descriptors: the listener fails, readiness says so (and why).
    network.exhaust(true);
    // A connection attempt makes the pending accept return (and fail).
    let _knock = tokio::net::TcpStream::connect(node.local_addr()).await;
    let why = eventually_async("readiness to turn 503", async || {
        let r = ready().await;
        if r.status() != 503 {
            return None;
        }
        Some(r.json::<Value>().await.unwrap())
    })
    .await;
    let why = why["why"].to_string();
    assert!(
        why.contains("listener") && why.contains("Too many open files"),
        "{why}"
    );

    // The cause goes away: the listener recovers by itself, and so does readiness.
    network.exhaust(false);
    let peer = dist::start("ready-peer@127.0.0.1").await;
    peer.add_address(node.name().clone(), node.local_addr());
    within("the peer's dial", peer.connect(node.name()))
        .await
        .unwrap();
    eventually_async("readiness back to 200", async || {
        ready().await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn readiness_reports_girders_own_services_down() {
    let node = dist::start("ready-services@127.0.0.1").await;
    let ops = Ops::builder(node.node())
        .dist(&node)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let readyz = format!("http://{}/readyz", ops.local_addr());
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);
    node.node()
        .exit(node.services().pid(), girder::ExitReason::Kill);
    let why = eventually_async("readiness to turn 503", async || {
        let r = reqwest::get(&readyz).await.unwrap();
        (r.status() == 503).then_some(())?;
        Some(r.json::<Value>().await.unwrap()["why"].to_string())
    })
    .await;
    assert!(why.contains("girder.kernel_sup is down"), "{why}");
}

/// The next notice about nodes (up, down, left, forgotten) or alarms raised.
async fn next_node_notice(notices: &mut tokio::sync::broadcast::Receiver<Notice>) -> Notice {
    within("a notice", async {
        loop {
            match notices.recv().await.unwrap() {
                n @ (Notice::NodeLeft { .. }
                | Notice::NodeDown { .. }
                | Notice::NodeForgotten { .. }
                | Notice::AlarmRaised { .. }
                | Notice::AlarmCleared { .. }) => return n,
                _ => continue,
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_node_that_leaves_gracefully_is_a_notice_and_no_alarm() {
    let (a, ops_a, base_a) = node("gla@localhost").await;
    let b = dist::start("glb@localhost").await;
    a.add_address(b.name().clone(), b.local_addr());
    a.connect(b.name()).await.unwrap();
    let mut notices = ops_a.alarms().subscribe();

    // b shuts down as `girder node` does on SIGTERM.
    b.shutdown_and_wait().await;
    assert_eq!(
        next_node_notice(&mut notices).await,
        Notice::NodeLeft {
            node: "glb@localhost".into(),
            reason: "it shut down".into()
        }
    );
    let v: Value = get_json(format!("{base_a}/api/alarms")).await;
    assert_eq!(v["active"], serde_json::json!([]), "{v}");
    assert!(ops_a.alarms().active().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_alarm_clears_when_membership_forgets_the_node() {
    let membership = |dist: &DistNode, seeds: Vec<std::net::SocketAddr>| {
        let (node, me) = (
            dist.node().clone(),
            Member {
                name: dist.name().clone(),
                addr: dist.local_addr(),
                creation: dist.node().creation(),
                roles: vec![],
            },
        );
        async move {
            let cfg = MembershipConfig {
                forget_after: Duration::from_secs(2),
                rejoin_every: Duration::from_millis(200),
                ..MembershipConfig::default()
            };
            std::sync::Arc::new(Membership::start(&node, me, &seeds, cfg).await.unwrap())
        }
    };
    let a = dist::start("fga@127.0.0.1").await;
    let ma = membership(&a, vec![]).await;
    a.follow(&ma);
    let ops_a = Ops::builder(a.node())
        .dist(&a)
        .membership(ma.clone())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = dist::start("fgb@127.0.0.1").await;
    let mb = membership(&b, vec![a.local_addr()]).await;
    b.follow(&mb);
    eventually("a and b members of each other", || {
        ma.members().len() == 1 && mb.members().len() == 1
    })
    .await;
    // Following the membership gives `a` b's address a moment after b is a member (it failed
    // once in CI with `NoAddress`): connect once it has it.
    eventually_async("a connected to b", async || {
        a.connect(b.name()).await.is_ok()
    })
    .await;
    let mut notices = ops_a.alarms().subscribe();

    // b is lost without a goodbye (its membership stops answering, its connection drops): a
    // failure, with an alarm.
    drop(mb);
    a.disconnect(b.name());
    assert!(matches!(
        next_node_notice(&mut notices).await,
        Notice::AlarmRaised { alarm } if alarm.id == "node_down:fgb@127.0.0.1"
    ));
    assert!(matches!(
        next_node_notice(&mut notices).await,
        Notice::NodeDown { .. }
    ));
    // It does not come back: after `forget_after`, membership gives up on it, and the alarm
    // clears.
    let cleared = next_node_notice(&mut notices).await;
    assert!(
        matches!(&cleared, Notice::AlarmCleared { alarm } if alarm.id == "node_down:fgb@127.0.0.1"),
        "{cleared:?}"
    );
    assert_eq!(
        next_node_notice(&mut notices).await,
        Notice::NodeForgotten {
            node: "fgb@127.0.0.1".into()
        }
    );
    assert!(ops_a.alarms().active().is_empty());
}

#[tokio::test]
async fn the_alarm_service_comes_back_after_an_admin_kill() {
    let token = "an-admin-token-for-the-test";
    let a = dist::start("aka@localhost").await;
    let ops_a = Ops::builder(a.node())
        .dist(&a)
        .admin_token(token)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (b, _ops_b, base_b) = node("akb@localhost").await;
    b.add_address(a.name().clone(), a.local_addr());
    b.connect(a.name()).await.unwrap();

    let old = a.node().whereis(SERVICE).expect("the alarm service runs");
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/api/processes/{old}/kill",
            ops_a.local_addr()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the alarm service back under its name", || {
        a.node().whereis(SERVICE).is_some_and(|p| p != old)
    })
    .await;

    // It still works: b asks for a's alarms (through the service) and gets them.
    ops_a
        .alarms()
        .raise(Alarm::new(
            "after_kill",
            Severity::Minor,
            "aka",
            "raised after the kill",
        ))
        .unwrap();
    let v: Value = get_json(format!("{base_b}/api/alarms?scope=cluster")).await;
    let cluster = v["cluster"].as_array().unwrap();
    assert_eq!(cluster.len(), 1, "{v}");
    assert_eq!(cluster[0]["node"], "aka@localhost", "{v}");
    assert_eq!(cluster[0]["active"][0]["id"], "after_kill", "{v}");
    // And this node's own listing.
    let v: Value = get_json(format!("http://{}/api/alarms", ops_a.local_addr())).await;
    assert_eq!(v["active"][0]["id"], "after_kill", "{v}");
}
