//! The `overload` alarm: raised when the runtime's timers fire late for a while (every worker
//! busy), cleared once the load is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::Node;
use girder_ops::{Ops, OpsConfig};

#[tokio::test(flavor = "current_thread")]
async fn a_busy_runtime_raises_overload_and_clears_it_when_idle() {
    let node = Node::new("overload");
    let mut cfg = OpsConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.overload_lag = Duration::from_millis(20);
    let ops = Ops::start_local(node, cfg).await.unwrap();
    // A task that hogs the only worker in 60 ms slices (as a CPU-bound handler would).
    let hogging = Arc::new(AtomicBool::new(true));
    let h = hogging.clone();
    tokio::spawn(async move {
        while h.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(60));
            tokio::task::yield_now().await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ops.alarms().is_active("overload") {
        assert!(Instant::now() < deadline, "overload never raised");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hogging.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ops.alarms().is_active("overload") {
        assert!(Instant::now() < deadline, "overload never cleared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
