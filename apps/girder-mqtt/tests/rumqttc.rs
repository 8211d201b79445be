//! The broker driven end to end by `rumqttc`, a Rust MQTT client written elsewhere, in 3.1.1
//! (`rumqttc`) and 5.0 (`rumqttc::v5`): QoS 1 and 2 round trips, the acknowledgements the
//! publisher is sent, and a burst of 10,000 QoS 1 messages delivered whole and in order.

#[path = "common/harness.rs"]
mod harness;

#[path = "common/clients.rs"]
mod clients;

use std::time::Instant;

use clients::{v311, v5, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_1_and_2_round_trip_in_3_1_1() {
    use v311::*;
    let b = harness::start().await;
    let (sub, mut sub_rx) = client("rt-sub", b.port, |_| {}).await;
    subscribe(&sub, &mut sub_rx, "rt/#", QoS::ExactlyOnce).await;
    let (publ, mut pub_rx) = client("rt-pub", b.port, |_| {}).await;
    publ.publish("rt/one", QoS::AtLeastOnce, false, "q1")
        .await
        .unwrap();
    wait_for(&mut pub_rx, "PUBACK", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
    publ.publish("rt/two", QoS::ExactlyOnce, false, "q2")
        .await
        .unwrap();
    wait_for(&mut pub_rx, "PUBREC", |e| {
        matches!(e, Event::Incoming(Packet::PubRec(_))).then_some(())
    })
    .await;
    wait_for(&mut pub_rx, "PUBCOMP", |e| {
        matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
    })
    .await;
    assert_eq!(
        message(&mut sub_rx).await,
        ("rt/one".into(), b"q1".to_vec(), QoS::AtLeastOnce)
    );
    assert_eq!(
        message(&mut sub_rx).await,
        ("rt/two".into(), b"q2".to_vec(), QoS::ExactlyOnce)
    );
    // The subscriber's side of QoS 2: the broker's PUBREL came and was answered.
    wait_for(&mut sub_rx, "PUBREL", |e| {
        matches!(e, Event::Incoming(Packet::PubRel(_))).then_some(())
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_1_and_2_round_trip_in_5_0() {
    use v5::*;
    let b = harness::start().await;
    let (sub, mut sub_rx) = client("rt-sub", b.port, |_| {}).await;
    subscribe(&sub, &mut sub_rx, "rt/#", QoS::ExactlyOnce).await;
    let (publ, mut pub_rx) = client("rt-pub", b.port, |_| {}).await;
    publ.publish("rt/one", QoS::AtLeastOnce, false, "q1")
        .await
        .unwrap();
    let reason = wait_for(&mut pub_rx, "PUBACK", |e| match e {
        Event::Incoming(Packet::PubAck(a)) => Some(a.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, rumqttc::v5::mqttbytes::v5::PubAckReason::Success);
    publ.publish("rt/two", QoS::ExactlyOnce, false, "q2")
        .await
        .unwrap();
    wait_for(&mut pub_rx, "PUBCOMP", |e| {
        matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
    })
    .await;
    assert_eq!(
        message(&mut sub_rx).await,
        ("rt/one".into(), b"q1".to_vec(), QoS::AtLeastOnce)
    );
    assert_eq!(
        message(&mut sub_rx).await,
        ("rt/two".into(), b"q2".to_vec(), QoS::ExactlyOnce)
    );
    wait_for(&mut sub_rx, "PUBREL", |e| {
        matches!(e, Event::Incoming(Packet::PubRel(_))).then_some(())
    })
    .await;
    // Nobody subscribed: said in the PUBACK (0x10).
    publ.publish("nobody/here", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let reason = wait_for(&mut pub_rx, "PUBACK", |e| match e {
        Event::Incoming(Packet::PubAck(a)) => Some(a.reason),
        _ => None,
    })
    .await;
    assert_eq!(
        reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::NoMatchingSubscribers
    );
    b.stop().await;
}

const BURST: u32 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_qos_1_messages_arrives_whole_and_in_order() {
    use v311::*;
    // The publisher is acknowledged as soon as the broker has a message and can run far
    // ahead of the subscriber, whose session holds what waits behind its in-flight window:
    // with Mosquitto's default of 1000 (`max_queued`), the newest past it are dropped (and
    // counted), as Mosquitto drops them. Room for the whole burst here.
    let b = harness::start_with(|c, _| c.max_queued = BURST as usize).await;
    let (sub, mut sub_rx) = client("burst-sub", b.port, |_| {}).await;
    subscribe(&sub, &mut sub_rx, "burst/t", QoS::AtLeastOnce).await;
    let (publ, mut pub_rx) = client("burst-pub", b.port, |_| {}).await;
    let sender = tokio::spawn(async move {
        for i in 0..BURST {
            publ.publish("burst/t", QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
                .await
                .unwrap();
        }
        publ
    });
    let started = Instant::now();
    for want in 0..BURST {
        let (topic, payload, qos) = message(&mut sub_rx).await;
        assert_eq!((&*topic, qos), ("burst/t", QoS::AtLeastOnce));
        let got = u32::from_be_bytes(payload.try_into().expect("4 bytes"));
        assert_eq!(got, want, "out of order or lost");
    }
    let _publ = sender.await.unwrap();
    let mut acked = 0;
    while acked < BURST {
        wait_for(&mut pub_rx, "the publisher's PUBACKs", |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
        })
        .await;
        acked += 1;
    }
    eprintln!("{BURST} QoS 1 messages through in {:?}", started.elapsed());
    assert_eq!(b.stats().messages_dropped.get(), 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_passes_over_a_member_that_is_offline() {
    use v311::{Event, Packet, QoS};
    let b = harness::start().await;
    // A member with a persistent session, subscribed and then gone: its session stays.
    let (away, mut away_rx) = v311::client("away", b.port, |o| {
        o.set_clean_session(false);
    })
    .await;
    v311::subscribe(&away, &mut away_rx, "$share/g/jobs", QoS::AtLeastOnce).await;
    away.disconnect().await.unwrap();
    b.until_connections(0).await;
    let (here, mut here_rx) = v311::client("here", b.port, |_| {}).await;
    v311::subscribe(&here, &mut here_rx, "$share/g/jobs", QoS::AtLeastOnce).await;
    b.until_subscriptions(2).await;
    let (publisher, mut pub_rx) = v311::client("publisher", b.port, |_| {}).await;
    for i in 0..10 {
        publisher
            .publish("jobs", QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
        wait_for(&mut pub_rx, "a PUBACK", |e| match e {
            Event::Incoming(Packet::PubAck(_)) => Some(()),
            _ => None,
        })
        .await;
    }
    // Every job goes to the member that is here; none waits for the one away.
    for i in 0..10 {
        let (_, payload, _) = v311::message(&mut here_rx).await;
        assert_eq!(payload, i.to_string().as_bytes());
    }
    // (What is in flight to the member here is counted until its PUBACK is in.)
    harness::until("nothing held for the member away", || {
        b.stats().queued.get() == 0
    })
    .await;
    b.stop().await;
}
