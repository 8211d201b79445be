//! Back pressure from a subscriber to its publishers (decision 016, `backpressure_queued` and
//! `backpressure_timeout_ms`), with rumqttc clients: a subscriber that acknowledges slowly sets
//! its publishers' pace and loses nothing they were told was delivered; one that stops
//! acknowledging holds them only until the timeout, and then its own queue drops.

#[path = "common/clients.rs"]
mod clients;
#[path = "common/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::v311::{self, Event, Packet, QoS};
use clients::wait_for;
use harness::{start_with, WAIT};

/// A subscriber on `topic` that acknowledges each QoS 1 message `ack_after` after it arrives
/// (`None`: never), and hands back the payloads in the order received.
async fn subscriber(
    id: &str,
    port: u16,
    topic: &str,
    ack_after: Option<Duration>,
) -> tokio::sync::mpsc::UnboundedReceiver<Vec<u8>> {
    let (c, mut rx) = v311::client(id, port, |o| {
        o.set_manual_acks(true);
    })
    .await;
    v311::subscribe(&c, &mut rx, topic, QoS::AtLeastOnce).await;
    let (tx, got) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(e)) = rx.recv().await {
            if let Event::Incoming(Packet::Publish(p)) = e {
                let _ = tx.send(p.payload.to_vec());
                if let Some(after) = ack_after {
                    tokio::time::sleep(after).await;
                    if c.ack(&p).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    got
}

/// Publishes `n` QoS 1 messages (payload: their number) with 20 in flight and returns when
/// every one is acknowledged.
async fn publish(port: u16, topic: &str, n: usize) {
    let (c, mut rx) = v311::client("publisher", port, |o| {
        o.set_inflight(20);
    })
    .await;
    let c = Arc::new(c);
    let sender = tokio::spawn({
        let (c, topic) = (c.clone(), topic.to_string());
        async move {
            for i in 0..n {
                c.publish(&topic, QoS::AtLeastOnce, false, i.to_string())
                    .await
                    .unwrap();
            }
        }
    });
    let mut acked = 0;
    while acked < n {
        wait_for(&mut rx, "a PUBACK", |e| match e {
            Event::Incoming(Packet::PubAck(_)) => Some(()),
            _ => None,
        })
        .await;
        acked += 1;
    }
    sender.await.unwrap();
}

async fn collect(got: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>, n: usize) -> Vec<usize> {
    let mut all = Vec::new();
    while all.len() < n {
        let p = tokio::time::timeout(WAIT, got.recv())
            .await
            .expect("the next message")
            .expect("the subscriber runs");
        all.push(String::from_utf8(p).unwrap().parse().unwrap());
    }
    all
}

/// A slow subscriber (2 ms per acknowledgement) and 600 messages through a session whose
/// queue holds 50: returns what the subscriber got and what the broker dropped.
async fn slow_subscriber_run(backpressure_queued: usize) -> (Vec<usize>, u64) {
    let b = start_with(|c, _| {
        c.max_queued = 50;
        c.backpressure_queued = backpressure_queued;
        c.backpressure_timeout_ms = 10_000;
    })
    .await;
    let n = 600;
    let mut got = subscriber("slow", b.port, "bp/slow", Some(Duration::from_millis(2))).await;
    publish(b.port, "bp/slow", n).await;
    let mut all = Vec::new();
    // What was not dropped arrives; stop at the first gap in arrivals.
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(3), got.recv()).await {
        all.push(String::from_utf8(p).unwrap().parse().unwrap());
        if all.len() == n {
            break;
        }
    }
    let dropped = b.stats().messages_dropped.get();
    b.stop().await;
    (all, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_sets_its_publishers_pace_and_loses_nothing_acknowledged() {
    let (got, dropped) = slow_subscriber_run(10).await;
    assert_eq!(
        dropped, 0,
        "nothing acknowledged to the publisher was dropped"
    );
    assert_eq!(got, (0..600).collect::<Vec<_>>(), "every message, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_back_pressure_the_slow_subscribers_queue_drops_what_was_acknowledged() {
    // The control for the test above: Mosquitto's behaviour, with `backpressure_queued = 0`.
    let (got, dropped) = slow_subscriber_run(0).await;
    assert!(dropped > 0, "the queue of 50 overflowed");
    assert_eq!(
        got.len() as u64 + dropped,
        600,
        "each message delivered or counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_acknowledging_holds_its_publishers_only_until_the_timeout() {
    let b = start_with(|c, _| {
        c.max_queued = 50;
        c.backpressure_queued = 10;
        c.backpressure_timeout_ms = 300;
    })
    .await;
    let n = 500;
    let _stuck = subscriber("stuck", b.port, "bp/stuck", None).await;
    let mut healthy = subscriber(
        "healthy",
        b.port,
        "bp/stuck",
        Some(Duration::from_millis(0)),
    )
    .await;
    let started = Instant::now();
    publish(b.port, "bp/stuck", n).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "the publisher waited for the stuck subscriber first: {took:?}"
    );
    assert_eq!(
        collect(&mut healthy, n).await,
        (0..n).collect::<Vec<_>>(),
        "the healthy subscriber got everything, in order"
    );
    // The stuck one holds its window (20) and queue (50); the rest was dropped and counted.
    harness::until(
        "the stuck session holds its window and queue, no more",
        || b.stats().queued.get() == 20 + 50,
    )
    .await;
    let dropped = b.stats().messages_dropped.get();
    assert_eq!(dropped, (n - 20 - 50) as u64, "dropped past max_queued");
    b.stop().await;
}
