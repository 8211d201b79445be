use std::time::Duration;

use tokio::time::Instant;

use girder::{CallError, Flow, Node, Overflow, ReplyTo, Server, ServerContext, SpawnOptions};
use girder_regulate::Queue;

/// A scarce resource: 5 ms a request, one at a time (200 requests a second at most).
struct Database;

impl Server for Database {
    type Call = ReplyTo<()>;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
        // A caller that gave up gets no work done for it.
        if !from.caller_gave_up() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            from.reply(());
        }
        Flow::Continue
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::new("app");
    // 1. A bounded mailbox that lets nobody wait: when it is full, callers hear `Overloaded`.
    let opts = SpawnOptions::new()
        .capacity(32)
        .overflow(Overflow::FailFast);
    let db = girder::server::start_with(&node, Database, opts, Some("db")).await?;
    // 2. A regulated queue in front: one request in the database at a time, at most 20
    //    waiting, none for more than 50 ms. Past that, `Rejected` at once.
    let queue = Queue::builder()
        .count(1)
        .max_queue_len(20)
        .max_queue_time(Duration::from_millis(50))
        .build();
    // (girder-ops's `Ops::govern(&node, "db", &queue, lag)` would also tighten it while the
    // node's schedulers lag.)

    // Five times the database's capacity for two seconds: 2,000 requests, 1,000 a second,
    // each with a 100 ms deadline.
    let (mut served, mut rejected, mut late) = (0, 0, 0);
    let mut worst = Duration::ZERO;
    let mut calls = Vec::new();
    for _ in 0..2_000 {
        let (db, queue) = (db.clone(), queue.clone());
        calls.push(tokio::spawn(async move {
            let t = Instant::now();
            // 3. The deadline travels with the call: the database skips work nobody waits for.
            let outcome = match queue.ask_until(t + Duration::from_millis(100)).await {
                Ok(_permit) => {
                    let left = Duration::from_millis(100).saturating_sub(t.elapsed());
                    db.call_timeout(|r| r, left).await.map_err(Some)
                }
                // Turned away early: full queue, waited too long, or the deadline can't be met.
                Err(_rejected) => Err(None),
            };
            (outcome, t.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for call in calls {
        match call.await? {
            (Ok(()), took) => {
                served += 1;
                worst = worst.max(took);
            }
            (Err(None), _) => rejected += 1,
            (Err(Some(CallError::Timeout(_) | CallError::Overloaded)), _) => late += 1,
            (Err(Some(e)), _) => return Err(e.into()),
        }
    }
    println!("served {served}, rejected at once {rejected}, late {late}; slowest served {worst:?}");
    assert!(served > 100, "the database kept working at its capacity");
    assert!(
        worst <= Duration::from_millis(150),
        "what was served was served in time"
    );
    assert!(rejected > 500, "the excess was turned away early");
    Ok(())
}
