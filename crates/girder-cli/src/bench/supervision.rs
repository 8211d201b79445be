//! `supervisor_churn`: what one process per client connection asks of a dynamic supervisor.
//! Starting and stopping a child must cost the same beside a hundred thousand idle siblings as
//! alone, and stopping the whole supervisor must take seconds, not minutes.

use std::time::{Duration, Instant};

use girder::supervisor::{ChildSpec, Restart, RestartStrategy, Supervisor};
use girder::{Context, Event, ExitReason, Node, SupervisorRef};

use super::Outcome;

/// Rounds per measurement (the median is kept).
const ROUNDS: usize = 7;

/// An idle child: waits, and stops when asked.
fn idle() -> ChildSpec {
    ChildSpec::process("conn", |mut ctx: Context<()>| async move {
        loop {
            if let Event::Stop(r) = ctx.recv().await {
                return r;
            }
        }
    })
    .restart(Restart::Temporary)
}

/// The median time of `ROUNDS` rounds of `pairs` start+stop pairs.
async fn churn(sup: &SupervisorRef, pairs: u64) -> Duration {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        for _ in 0..pairs {
            let pid = sup.start_child(idle()).await.expect("child starts");
            sup.terminate_pid(pid).await.expect("child stops");
        }
        rounds.push(t0.elapsed());
    }
    rounds.sort();
    rounds[ROUNDS / 2]
}

/// `pairs` start+stop pairs (1,000 at scale 1) timed alone and beside `idle_children`, driven
/// from a process (as a listener starting a process per connection would), in either runtime.
pub async fn supervisor_churn(node: &Node, idle_children: u64, pairs: u64) -> Outcome {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let n = node.clone();
    node.spawn(move |_: Context<()>| async move {
        let _ = tx.send(drive(&n, idle_children, pairs).await);
        ExitReason::Normal
    });
    rx.await.expect("the driver reports")
}

async fn drive(node: &Node, idle_children: u64, pairs: u64) -> Outcome {
    let sup = Supervisor::builder()
        .strategy(RestartStrategy::Dynamic)
        .start(node)
        .await
        .expect("supervisor starts")
        .with_timeout(Duration::from_secs(600));
    let alone = churn(&sup, pairs).await;
    for _ in 0..idle_children {
        sup.start_child(idle()).await.expect("child starts");
    }
    let beside = churn(&sup, pairs).await;
    let t0 = Instant::now();
    sup.stop(ExitReason::Shutdown).await;
    let shutdown = t0.elapsed();
    Outcome {
        workload: "supervisor_churn",
        values: vec![
            ("idle_children", idle_children as f64),
            ("pair_us_alone", alone.as_secs_f64() * 1e6 / pairs as f64),
            ("pair_us_beside", beside.as_secs_f64() * 1e6 / pairs as f64),
            ("churn_ratio", beside.as_secs_f64() / alone.as_secs_f64()),
            ("shutdown_s", shutdown.as_secs_f64()),
        ],
    }
}
