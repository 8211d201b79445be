//! A dynamic pool: a supervisor with no children at start that runs one worker per job (as a
//! server runs a process per client connection), restarts a worker that crashes (transient:
//! not one that finishes), and stops them all, in one pass, when it stops.

use std::time::Duration;

use girder::supervisor::{ChildSpec, Restart, RestartStrategy, Supervisor};
use girder::{Context, Event, ExitReason, Node};

/// A job: a worker sleeps `ms`, then finishes, or fails if `fail` (once: its restart succeeds).
fn job(n: u32, ms: u64, fail: bool) -> ChildSpec {
    let failed_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    ChildSpec::process(format!("job-{n}"), move |mut ctx: Context<()>| {
        let failed_once = failed_once.clone();
        async move {
            match ctx.recv_timeout(Duration::from_millis(ms)).await {
                Some(Event::Stop(reason)) => return reason,
                _ if fail && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) => {
                    return ExitReason::error(format!("job {n} failed"));
                }
                _ => {}
            }
            println!("job {n} done");
            ExitReason::Normal
        }
    })
    .restart(Restart::Transient)
}

#[tokio::main]
async fn main() {
    let node = Node::new("example");
    let pool = Supervisor::builder()
        .strategy(RestartStrategy::Dynamic)
        .intensity(10, Duration::from_secs(1))
        .start(&node)
        .await
        .unwrap();

    for n in 0..100 {
        pool.start_child(job(n, 50 + u64::from(n % 5) * 10, n % 10 == 0))
            .await
            .unwrap();
    }
    let long = pool.start_child(job(100, 60_000, false)).await.unwrap();
    println!("running: {:?}", pool.count_children().await.unwrap());

    // Finished jobs leave the pool; the ten that failed ran again and finished too.
    while pool.count_children().await.unwrap().active > 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = pool.which_children().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].pid, Some(long));

    pool.terminate_pid(long).await.unwrap();
    assert_eq!(pool.count_children().await.unwrap().active, 0);
    pool.stop(ExitReason::Shutdown).await;
    println!("pool stopped");
}
