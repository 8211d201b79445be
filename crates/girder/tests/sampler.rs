//! The node's load sampler (issue 14): lag measured on Girder's own schedulers, per-scheduler
//! busy share, run queue, memory and mailbox fill, in one snapshot.

use std::time::Duration;

use girder::{Context, Node, Schedulers, SpawnOptions};

/// Waits until the sampler has published a sample after `after`.
async fn next_sample(node: &Node, after: u64) -> girder::LoadSample {
    for _ in 0..100 {
        let s = node.load();
        if s.samples > after {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no sample after {after}");
}

#[test]
fn lag_and_busy_are_measured_on_the_nodes_schedulers() {
    let pool = Schedulers::new(2);
    let node = Node::builder("sampler").schedulers(pool.clone()).build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(node.load().samples, 0);
        let idle = next_sample(&node, 0).await;
        assert_eq!(idle.schedulers.len(), 2, "{idle:?}");
        assert!(idle.lag < Duration::from_millis(100), "idle: {idle:?}");
        assert!(idle.memory_bytes > 0);

        // Processes that hold each scheduler for 250 ms at a time: everything else on the
        // pool, the probes included, waits.
        let hog = girder_testkit::procs::hog(&node, Duration::from_millis(250));
        let seen = idle.samples;
        let busy = next_sample(&node, seen + 1).await;
        assert!(
            busy.lag >= Duration::from_millis(100),
            "hogged schedulers show lag: {busy:?}"
        );
        assert!(
            busy.schedulers.iter().any(|s| s.busy > 0.5),
            "a hogged scheduler is busy: {busy:?}"
        );
        hog.stop();
        // Recovery: the lag falls back.
        let mut after = busy.samples;
        let mut calm = busy;
        for _ in 0..5 {
            calm = next_sample(&node, after).await;
            after = calm.samples;
            if calm.lag < Duration::from_millis(50) {
                break;
            }
        }
        assert!(calm.lag < Duration::from_millis(50), "recovered: {calm:?}");
    });
    pool.shutdown();
}

#[tokio::test]
async fn mailbox_fill_and_the_longest_mailbox_are_sampled() {
    let node = Node::new("sampler");
    let p = node.spawn_opts(SpawnOptions::new().capacity(10), |_: Context<u32>| {
        std::future::pending()
    });
    for i in 0..5 {
        p.send(i).unwrap();
    }
    let s = next_sample(&node, 0).await;
    assert_eq!(s.mailbox_max, 5);
    assert!((s.mailbox_fill - 0.5).abs() < 1e-9, "{s:?}");
    if !node.runs_on_schedulers() {
        assert!(s.schedulers.is_empty() && s.run_queue == 0);
    }
}
