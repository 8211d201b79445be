//! The `overload` alarm: raised when timers fire late for a while where the node's tasks run
//! (every worker busy: the tokio runtime's, or the node's schedulers), cleared once the load is
//! gone.

use std::time::{Duration, Instant};

use girder::Node;
use girder_ops::{Ops, OpsConfig};
use girder_testkit::eventually;

#[tokio::test(flavor = "current_thread")]
async fn a_busy_runtime_raises_overload_and_clears_it_when_idle() {
    let node = Node::new("overload");
    let mut cfg = OpsConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.overload_lag = Duration::from_millis(20);
    let ops = Ops::start_local(node.clone(), cfg).await.unwrap();
    // Processes that hog every worker the node runs on in 60 ms slices (as CPU-bound handlers
    // would): this runtime's only one, or each of the node's schedulers (GIRDER_SCHEDULERS).
    let hogging = girder_testkit::procs::hog(&node, Duration::from_millis(60));
    // Its own bound, not the testkit's WAIT (10 s): raising takes 5 s above the line after
    // the first second's measurement, over 7 s on an idle machine, so 10 s would be a race.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ops.alarms().is_active("overload") {
        assert!(Instant::now() < deadline, "overload never raised");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hogging.stop();
    eventually("overload cleared", || !ops.alarms().is_active("overload")).await;
}
