//! Membership over real UDP sockets on loopback: joining through a seed, detecting a crashed
//! member, a graceful leave, and a restarted member replacing its old incarnation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use girder_dist::membership::{Member, MemberEvent, Membership, MembershipConfig};
use girder_dist::NodeName;
use girder_testkit::dist::until_members;
use girder_testkit::within;
use tokio::sync::broadcast;

fn member(name: &str, addr: &str, creation: u32) -> Member {
    Member {
        name: NodeName::new(name).unwrap(),
        addr: addr.parse().unwrap(),
        creation,
        roles: vec!["core".into()],
    }
}

async fn start(name: &str, seeds: &[SocketAddr]) -> Membership {
    Membership::start(
        &girder::Node::new("m"),
        member(name, "127.0.0.1:0", 1),
        seeds,
        MembershipConfig::default(),
    )
    .await
    .unwrap()
}

async fn until_down(events: &mut broadcast::Receiver<MemberEvent>, name: &str) -> Member {
    within(format!("a Down for {name}"), async {
        loop {
            match events.recv().await {
                Ok(MemberEvent::Down(m)) if m.name.as_str() == name => return m,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("no Down for {name}: {e:?}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_detect_a_crash_and_see_a_graceful_leave() {
    let mut a = start("a@127.0.0.1", &[]).await;
    let seed = a.me().addr;
    let mut b = start("b@127.0.0.1", &[seed]).await;
    let mut c = start("c@127.0.0.1", &[seed]).await;
    until_members(&mut a, 2).await;
    until_members(&mut b, 2).await;
    until_members(&mut c, 2).await;
    assert!(a.members().iter().all(|m| m.has_role("core")));

    // c crashes: it stops answering without telling anyone.
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    let crashed_at = Instant::now();
    drop(c);
    let down = until_down(&mut a_events, "c@127.0.0.1").await;
    let detect = crashed_at.elapsed();
    assert_eq!(down.creation, 1);
    until_down(&mut b_events, "c@127.0.0.1").await;
    eprintln!("crash detected after {detect:?}");
    assert!(detect < Duration::from_secs(5), "detection took {detect:?}");

    // b leaves gracefully: a learns it without waiting for failure detection.
    let left_at = Instant::now();
    b.leave().await;
    until_down(&mut a_events, "b@127.0.0.1").await;
    eprintln!("graceful leave seen after {:?}", left_at.elapsed());
    until_members(&mut a, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_replaces_its_old_incarnation() {
    let mut a = start("a@127.0.0.1", &[]).await;
    let seed = a.me().addr;
    let b1 = Membership::start(
        &girder::Node::new("m"),
        member("b@127.0.0.1", "127.0.0.1:0", 1),
        &[seed],
        MembershipConfig::default(),
    )
    .await
    .unwrap();
    let b_addr = b1.me().addr;
    until_members(&mut a, 1).await;
    let mut events = a.subscribe();
    drop(b1);
    // The same node comes back on the same address with a higher creation (the old socket
    // closes once its aborted tasks are dropped).
    let mut restarted = None;
    for _ in 0..100 {
        match Membership::start(
            &girder::Node::new("m"),
            member("b@127.0.0.1", &b_addr.to_string(), 2),
            &[seed],
            MembershipConfig::default(),
        )
        .await
        {
            Ok(m) => {
                restarted = Some(m);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let _b2 = restarted.expect("the address frees up");
    within("the new incarnation", async {
        loop {
            match events.recv().await {
                Ok(MemberEvent::Replaced { old, new }) => {
                    assert_eq!((old.creation, new.creation), (1, 2));
                    break;
                }
                Ok(MemberEvent::Up(m)) if m.creation == 2 => break,
                Ok(_) => continue,
                Err(e) => panic!("the new incarnation never showed up: {e:?}"),
            }
        }
    })
    .await;
    until_members(&mut a, 1).await;
    assert_eq!(a.members()[0].creation, 2);
}

#[tokio::test]
async fn dns_discovery_returns_one_seed_per_record() {
    let seeds = girder_dist::membership::discover("localhost:4999")
        .await
        .unwrap();
    assert!(!seeds.is_empty());
    assert!(seeds
        .iter()
        .all(|a| a.port() == 4999 && a.ip().is_loopback()));
    assert!(girder_dist::membership::discover("no-such-host.invalid:1")
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cookie_only_members_holding_it_can_join() {
    let cfg = |cookie: &str| MembershipConfig {
        cookie: Some(girder_dist::Cookie::new(cookie).unwrap()),
        ..MembershipConfig::default()
    };
    let mut a = Membership::start(
        &girder::Node::new("m"),
        member("a@127.0.0.1", "127.0.0.1:0", 1),
        &[],
        cfg("the-cluster-cookie-1"),
    )
    .await
    .unwrap();
    let seed = a.me().addr;
    let mut b = Membership::start(
        &girder::Node::new("m"),
        member("b@127.0.0.1", "127.0.0.1:0", 1),
        &[seed],
        cfg("the-cluster-cookie-1"),
    )
    .await
    .unwrap();
    let mut intruder = Membership::start(
        &girder::Node::new("m"),
        member("x@127.0.0.1", "127.0.0.1:0", 1),
        &[seed],
        cfg("not-the-cluster-cookie"),
    )
    .await
    .unwrap();
    let no_cookie = Membership::start(
        &girder::Node::new("m"),
        member("y@127.0.0.1", "127.0.0.1:0", 1),
        &[seed],
        MembershipConfig::default(),
    )
    .await
    .unwrap();
    until_members(&mut a, 1).await;
    until_members(&mut b, 1).await;
    // Give the intruders time to try; they never get in, and learn nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.members().len(), 1, "{:?}", a.members());
    assert_eq!(a.members()[0].name.as_str(), "b@127.0.0.1");
    until_members(&mut intruder, 0).await;
    assert!(no_cookie.members().is_empty());
}
