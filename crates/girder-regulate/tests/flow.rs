//! Credit-based flow control between processes (issue 14), on one node and across nodes: the
//! producer sends only against demand, so the consumer's mailbox never holds more than the
//! window and every message arrives, in order, whatever the two processes' speeds.

use std::sync::Arc;
use std::time::Duration;

use girder::{Addr, Context, Event, ExitReason, Node, SendError, SpawnOptions};
use girder_regulate::flow::{Credit, Demand};
use girder_testkit::within;
use tokio::sync::{mpsc, oneshot};

const WINDOW: u64 = 64;
const TOTAL: u64 = 20_000;

/// A producer of `TOTAL` numbers that sends only against the demand it receives (its own
/// messages: `u64` top-ups), to the consumer it is handed.
fn producer(node: &Node, consumer: oneshot::Receiver<Addr<u64>>) -> Addr<u64> {
    node.spawn(move |mut ctx: Context<u64>| async move {
        let credit = Arc::new(Credit::new());
        let consumer = consumer.await.expect("a consumer");
        let mut next = 0;
        while next < TOTAL {
            tokio::select! {
                ev = ctx.recv() => match ev {
                    Event::Message(n) => credit.grant(n),
                    Event::Stop(r) => return r,
                    _ => {}
                },
                _ = credit.take() => {
                    match consumer.send(next) {
                        Ok(()) => next += 1,
                        Err(SendError::Full(_)) => panic!("message {next} found the window full"),
                        Err(e) => panic!("the consumer is gone: {e}"),
                    }
                }
            }
        }
        ExitReason::Normal
    })
}

/// A consumer with a mailbox of exactly the window, slow now and then, that reports what it
/// got and the longest its mailbox was.
fn consumer(
    node: &Node,
    producer: Addr<u64>,
    out: mpsc::UnboundedSender<(u64, usize)>,
) -> Addr<u64> {
    node.spawn_opts(
        SpawnOptions::new().capacity(WINDOW as usize),
        move |mut ctx: Context<u64>| async move {
            let mut demand = Demand::new(WINDOW);
            producer.send(demand.initial()).unwrap();
            loop {
                let Event::Message(n) = ctx.recv().await else {
                    return ExitReason::Normal;
                };
                let queued = ctx.mailbox_len();
                if n % 1_000 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if let Some(more) = demand.handled() {
                    let _ = producer.send(more);
                }
                if out.send((n, queued)).is_err() || n + 1 == TOTAL {
                    return ExitReason::Normal;
                }
            }
        },
    )
}

async fn check(mut got: mpsc::UnboundedReceiver<(u64, usize)>) {
    let mut longest = 0;
    for want in 0..TOTAL {
        let (n, queued) = within("the next message", got.recv()).await.unwrap();
        assert_eq!(n, want, "in order");
        longest = longest.max(queued);
    }
    assert!(
        longest < WINDOW as usize,
        "the mailbox held {longest}, past the window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_stream_keeps_within_its_window() {
    let node = Node::new("flow");
    let (to_producer, handed) = oneshot::channel();
    let p = producer(&node, handed);
    let (tx, rx) = mpsc::unbounded_channel();
    let c = consumer(&node, p.clone(), tx);
    to_producer.send(c).unwrap();
    check(rx).await;
    assert_eq!(
        within("the producer to finish", p.wait_exit()).await,
        ExitReason::Normal
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_across_nodes_keeps_within_its_window_and_never_parks() {
    let (a, b) = girder_testkit::dist::pair("flow-a@localhost", "flow-b@localhost").await;
    let (to_producer, handed) = oneshot::channel();
    let p = producer(a.node(), handed);
    a.export(&p);
    let (tx, rx) = mpsc::unbounded_channel();
    let c = consumer(b.node(), b.remote::<u64>(a.name(), p.pid()), tx);
    b.export(&c);
    to_producer
        .send(a.remote::<u64>(b.name(), c.pid()))
        .unwrap();
    check(rx).await;
    assert_eq!(
        within("the producer to finish", p.wait_exit()).await,
        ExitReason::Normal
    );
    let parked = b.peers().iter().map(|p| p.pauses_sent).sum::<u64>();
    assert_eq!(parked, 0, "demand kept the consumer's mailbox from filling");
}
