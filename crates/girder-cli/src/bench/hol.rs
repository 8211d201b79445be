//! `hol`: head-of-line blocking across nodes. Calls to a healthy echo server on the server node,
//! alone and then beside a flood aimed at a process on the same node whose bounded mailbox is
//! never read. Decision 014 says the flood slows only its own senders: the calls' p99 beside it
//! should stay near their p99 alone, and the connection should stay up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::{Context, ExitReason, SendError};
use girder_dist::{DistNode, NodeEvent, NodeName};

use super::remote::{call_histogram, SinkMsg};
use super::Outcome;

/// The slow receiver's mailbox capacity.
pub const SLOW_CAPACITY: usize = 64;

/// Flooders that wait (`send_wait`) and flooders that are told `Full` (`send`).
const WAITING_FLOODERS: u64 = 8;
const SENDING_FLOODERS: u64 = 2;

pub async fn run(dist: &DistNode, server: &NodeName, calls: u64) -> Result<Outcome, String> {
    let mut events = dist.subscribe();
    let unloaded = call_histogram(dist, server, 1, calls).await?;

    let slow_pid = dist
        .whereis(server, "slow")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no slow receiver on the server node")?;
    let slow = dist.addr::<SinkMsg>(slow_pid);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let full = Arc::new(AtomicU64::new(0));
    let (waiting, sending) = (WAITING_FLOODERS, SENDING_FLOODERS);
    for f in 0..waiting + sending {
        let (slow, stop, accepted, full) =
            (slow.clone(), stop.clone(), accepted.clone(), full.clone());
        dist.node().spawn(move |_: Context<()>| async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if f < waiting {
                    // Waits while the receiver's node has paused it; ends when the bench ends.
                    let sent = tokio::time::timeout(
                        Duration::from_millis(50),
                        slow.send_wait(SinkMsg::Data(i)),
                    )
                    .await;
                    if let Ok(Ok(())) = sent {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    match slow.send(SinkMsg::Data(i)) {
                        Ok(()) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(SendError::Full(_)) => {
                            full.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(_) => break,
                    }
                }
                i += 1;
            }
            ExitReason::Normal
        });
    }
    // Let the mailbox fill, the pause reach us and what was on the way land (the flood's
    // burst: `flood_accepted`): the calls are measured beside a flood held back.
    let mut seen = u64::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = accepted.load(Ordering::Relaxed);
        if now == seen {
            break;
        }
        seen = now;
    }
    let loaded = call_histogram(dist, server, 1, calls).await;
    stop.store(true, Ordering::Relaxed);
    let loaded = loaded.map_err(|e| {
        // Say why the connection went, if it did.
        let mut why = e;
        while let Ok(ev) = events.try_recv() {
            if let NodeEvent::Down { reason, .. } = ev {
                why = format!("{why} (the connection went down: {reason})");
            }
        }
        why
    })?;

    let mut lost = 0;
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, NodeEvent::Down { .. }) {
            lost += 1;
        }
    }
    let us = |h: &hdrhistogram::Histogram<u64>, q| h.value_at_quantile(q) as f64 / 1000.0;
    let (p99_unloaded, p99_loaded) = (us(&unloaded, 0.99), us(&loaded, 0.99));
    Ok(Outcome {
        workload: "hol",
        values: vec![
            ("p50_us", us(&loaded, 0.5)),
            ("p99_us", p99_loaded),
            ("p99_us_unloaded", p99_unloaded),
            ("p99_us_loaded", p99_loaded),
            ("loaded_ratio", p99_loaded / p99_unloaded.max(0.001)),
            ("flood_accepted", accepted.load(Ordering::Relaxed) as f64),
            ("flood_full", full.load(Ordering::Relaxed) as f64),
            ("connection_lost", lost as f64),
        ],
    })
}
