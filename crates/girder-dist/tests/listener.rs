//! The distribution listener outlives its errors: an `accept` that fails (as it does with
//! EMFILE when the process is out of file descriptors) is logged, counted and retried, and the
//! listener accepts again once the cause is gone. Here a network whose listener fails while a
//! switch is on (the testkit's `Exhaustible`) stands in for the exhausted process, so the test is
//! exact and harms nothing else.

use std::sync::Arc;
use std::time::Duration;

use girder::Node;
use girder_dist::DistNode;
use girder_testkit::dist::{self, Exhaustible, COOKIE};
use girder_testkit::{eventually, within};

#[tokio::test]
async fn a_listener_out_of_file_descriptors_retries_and_accepts_again() {
    let network = Exhaustible::default();
    network.exhaust(true);
    let mut cfg = dist::config("b1@127.0.0.1", COOKIE);
    cfg.network = Arc::new(network.clone());
    let b = DistNode::start(Node::new("b1@127.0.0.1"), cfg)
        .await
        .unwrap();

    eventually("the failing accepts are counted", || {
        let s = b.listener_status();
        !s.accepting && s.errors >= 3
    })
    .await;
    let status = b.listener_status();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("Too many open files"),
        "{status:?}"
    );
    // It keeps trying with a growing pause, not in a tight loop: far fewer than one try a ms.
    let before = b.listener_status().errors;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tries = b.listener_status().errors - before;
    assert!(tries <= 10, "{tries} tries in 500 ms");

    // A peer dials meanwhile (its connection waits in the kernel's backlog); the cause goes
    // away; the listener takes the connection and the nodes connect.
    let a = dist::start("a1@127.0.0.1").await;
    a.add_address(b.name().clone(), b.local_addr());
    let dial = {
        let a = a.clone();
        let name = b.name().clone();
        tokio::spawn(async move { a.connect(&name).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    network.exhaust(false);
    within("the dial", dial)
        .await
        .unwrap()
        .expect("connected once the listener recovered");
    assert_eq!(b.connected(), vec![a.name().clone()]);
    let status = b.listener_status();
    assert!(
        status.accepting && status.last_error.is_none(),
        "{status:?}"
    );
    assert!(status.errors >= 3);
}
