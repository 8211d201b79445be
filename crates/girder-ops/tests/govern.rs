//! A regulated queue under the node's load (issue 14): while the scheduling lag measured where
//! the node's processes run is above the line, the queue is tightened and `overload:<name>` is
//! raised; once the load is gone, the alarm clears and the queue loosens back to its ceiling.

use std::time::{Duration, Instant};

use girder::Node;
use girder_ops::Ops;
use girder_testkit::eventually;

#[tokio::test(flavor = "current_thread")]
async fn a_governed_queue_tightens_under_lag_and_recovers() {
    let node = Node::new("govern");
    let (_router, ops) = Ops::builder(&node).router().await;
    let queue = girder_regulate::Queue::builder().count(20).build();
    let _governor = ops.govern(&node, "db", &queue, Duration::from_millis(20));
    // Processes that hog every worker the node runs on in 60 ms slices.
    let hogging = girder_testkit::procs::hog(&node, Duration::from_millis(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ops.alarms().is_active("overload:db") {
        assert!(Instant::now() < deadline, "overload:db never raised");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("the queue to be tightened", || {
        (queue.limit() < Some(20)).then_some(())
    })
    .await;
    hogging.stop();
    eventually("overload:db cleared", || {
        !ops.alarms().is_active("overload:db")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while queue.limit() != Some(20) {
        assert!(
            Instant::now() < deadline,
            "the queue never loosened back: {:?}",
            queue.limit()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_open_circuit_breaker_is_an_alarm_until_it_closes() {
    let node = Node::new("breaker");
    let (_router, ops) = Ops::builder(&node).router().await;
    let breaker = girder_regulate::Breaker::builder()
        .minimum_calls(2)
        .open_for(Duration::from_secs(60))
        .build();
    let _followed = ops.watch_breaker(&node, "payments", &breaker);
    for _ in 0..2 {
        breaker.acquire().unwrap().failure();
    }
    eventually("circuit_open:payments raised", || {
        ops.alarms().is_active("circuit_open:payments")
    })
    .await;
    breaker.reset();
    eventually("circuit_open:payments cleared", || {
        !ops.alarms().is_active("circuit_open:payments")
    })
    .await;
}
