//! `timers`: arming and cancelling a million timers (`erlang:send_after/3` and `cancel_timer/1`
//! in the Erlang peer), and what an armed timer costs in memory.

use std::time::{Duration, Instant};

use girder::{Context, ExitReason, Node, TimerRef};

use super::Outcome;
use crate::alloc;

/// Rounds of arm-all then cancel-all (the median of each is kept).
const ROUNDS: usize = 5;
/// Far enough that none fires while measured.
const DELAY: Duration = Duration::from_secs(3600);

/// `n` timers armed by a process for itself, as a server arms its own timeouts, then cancelled.
pub async fn timers(node: &Node, n: u64) -> Outcome {
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.spawn(move |ctx: Context<()>| async move {
        let _ = tx.send(drive(&ctx, n as usize));
        ExitReason::Normal
    });
    rx.await.expect("the driver reports")
}

fn drive(ctx: &Context<()>, n: usize) -> Outcome {
    let mut refs: Vec<TimerRef> = Vec::with_capacity(n);
    let (mut arm, mut cancel) = (Vec::new(), Vec::new());
    let mut bytes = 0.0;
    for round in 0..ROUNDS {
        // The references are the caller's (allocated before counting), as in the Erlang peer.
        if round == 0 {
            alloc::start();
        }
        let t0 = Instant::now();
        for _ in 0..n {
            refs.push(ctx.send_after((), DELAY));
        }
        arm.push(t0.elapsed());
        if round == 0 {
            bytes = alloc::stop() as f64 / n as f64;
        }
        let t0 = Instant::now();
        for r in &refs {
            assert!(r.cancel(), "an armed timer cancels");
        }
        cancel.push(t0.elapsed());
        refs.clear();
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[ROUNDS / 2].as_secs_f64() * 1e9 / n as f64
    };
    Outcome {
        workload: "timers",
        values: vec![
            ("timers", n as f64),
            ("arm_ns", median(arm)),
            ("cancel_ns", median(cancel)),
            ("bytes_per_timer", bytes),
        ],
    }
}
