//! rumqttc clients for the end-to-end tests: connected, their event loops polled in a task
//! whose events the test reads with timeouts. Included with
//! `#[path = "common/clients.rs"] mod clients;` (after the harness, whose `WAIT` it uses).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::harness::WAIT;

/// Polls a client's event loop in a task, handing each event (or the error that ended it)
/// to the test.
macro_rules! drive {
    ($el:expr) => {{
        let mut el = $el;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let r = el.poll().await.map_err(|e| e.to_string());
                let end = r.is_err();
                if tx.send(r).is_err() || end {
                    break;
                }
            }
        });
        rx
    }};
}

/// Waits for the first event `pick` takes; fails the test on an error or after [`WAIT`].
pub async fn wait_for<E: std::fmt::Debug, T>(
    rx: &mut mpsc::UnboundedReceiver<Result<E, String>>,
    what: &str,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Ok(e))) => {
                if let Some(t) = pick(&e) {
                    return t;
                }
            }
            Ok(Some(Err(e))) => panic!("waiting for {what}: the connection failed: {e}"),
            Ok(None) => panic!("waiting for {what}: the event loop ended"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

pub mod v311 {
    use super::*;
    pub use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    /// A connected 3.1.1 client and its events.
    pub async fn client(
        id: &str,
        port: u16,
        edit: impl FnOnce(&mut MqttOptions),
    ) -> (AsyncClient, mpsc::UnboundedReceiver<Result<Event, String>>) {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        edit(&mut o);
        let (c, el) = AsyncClient::new(o, 1000);
        let mut rx = drive!(el);
        wait_for(&mut rx, "CONNACK", |e| match e {
            Event::Incoming(Packet::ConnAck(a)) => Some(a.code),
            _ => None,
        })
        .await;
        (c, rx)
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(
        c: &AsyncClient,
        rx: &mut mpsc::UnboundedReceiver<Result<Event, String>>,
        filter: &str,
        qos: QoS,
    ) {
        c.subscribe(filter, qos).await.unwrap();
        wait_for(rx, "SUBACK", |e| match e {
            Event::Incoming(Packet::SubAck(a)) => Some(a.return_codes.clone()),
            _ => None,
        })
        .await;
    }

    /// The next message: topic, payload, QoS.
    pub async fn message(
        rx: &mut mpsc::UnboundedReceiver<Result<Event, String>>,
    ) -> (String, Vec<u8>, QoS) {
        wait_for(rx, "a PUBLISH", |e| match e {
            Event::Incoming(Packet::Publish(p)) => {
                Some((p.topic.clone(), p.payload.to_vec(), p.qos))
            }
            _ => None,
        })
        .await
    }
}

pub mod v5 {
    use super::*;
    pub use rumqttc::v5::mqttbytes::v5::Packet;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    /// A connected 5.0 client and its events.
    pub async fn client(
        id: &str,
        port: u16,
        edit: impl FnOnce(&mut MqttOptions),
    ) -> (AsyncClient, mpsc::UnboundedReceiver<Result<Event, String>>) {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        edit(&mut o);
        let (c, el) = AsyncClient::new(o, 1000);
        let mut rx = drive!(el);
        wait_for(&mut rx, "CONNACK", |e| match e {
            Event::Incoming(Packet::ConnAck(a)) => Some(a.code),
            _ => None,
        })
        .await;
        (c, rx)
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(
        c: &AsyncClient,
        rx: &mut mpsc::UnboundedReceiver<Result<Event, String>>,
        filter: &str,
        qos: QoS,
    ) {
        c.subscribe(filter, qos).await.unwrap();
        wait_for(rx, "SUBACK", |e| match e {
            Event::Incoming(Packet::SubAck(a)) => Some(a.return_codes.clone()),
            _ => None,
        })
        .await;
    }

    /// The next message: topic, payload, QoS.
    pub async fn message(
        rx: &mut mpsc::UnboundedReceiver<Result<Event, String>>,
    ) -> (String, Vec<u8>, QoS) {
        wait_for(rx, "a PUBLISH", |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some((
                String::from_utf8(p.topic.to_vec()).unwrap(),
                p.payload.to_vec(),
                p.qos,
            )),
            _ => None,
        })
        .await
    }
}
