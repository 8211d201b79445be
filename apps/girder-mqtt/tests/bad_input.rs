//! Bad input from a raw TCP socket, no client library: garbage, a first packet that is not
//! CONNECT, a second CONNECT, a packet over `max_packet_size`, a PUBLISH to a wildcard topic,
//! an unsupported protocol level; a socket that never sends CONNECT; a client that stops
//! sending. Each closes that connection alone (5.0: with a DISCONNECT saying why), while a
//! rumqttc client on the same broker keeps receiving. And, with the same raw sockets, a client
//! id that connects again the moment its connection ended.

#[path = "common/harness.rs"]
mod harness;

#[path = "common/clients.rs"]
mod clients;

use std::time::{Duration, Instant};

use clients::v311::{self, AsyncClient, Event, QoS};
use harness::{TestBroker, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const V311: u8 = 4;
const V5: u8 = 5;

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

/// A packet: its first byte, then the remaining length, then `body`.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    varint(&mut p, body.len());
    p.extend_from_slice(body);
    p
}

/// A CONNECT (clean session / clean start) with protocol `name` and `level`.
fn connect_as(name: &[u8], level: u8, client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, name);
    body.push(level);
    body.push(0x02);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == V5 {
        body.push(0); // no properties
    }
    string(&mut body, client_id.as_bytes());
    packet(0x10, &body)
}

fn connect(level: u8, client_id: &str, keep_alive: u16) -> Vec<u8> {
    connect_as(b"MQTT", level, client_id, keep_alive)
}

/// A QoS 0 PUBLISH.
fn publish(level: u8, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic.as_bytes());
    if level == V5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

async fn open(b: &TestBroker) -> TcpStream {
    TcpStream::connect(b.addr()).await.expect("connect")
}

/// Opens a connection and has it accepted: CONNECT, then the CONNACK it is sent.
async fn connected(b: &TestBroker, level: u8, client_id: &str, keep_alive: u16) -> TcpStream {
    let mut s = open(b).await;
    s.write_all(&connect(level, client_id, keep_alive))
        .await
        .unwrap();
    let mut head = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .expect("a CONNACK in time")
        .expect("a CONNACK");
    assert_eq!(head[0], 0x20, "not a CONNACK: {head:?}");
    let mut rest = vec![0u8; head[1] as usize];
    s.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest[1], 0, "refused: {rest:?}");
    s
}

/// Reads everything the broker sends until it closes the connection; fails the test if it
/// does not within [`WAIT`].
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the broker kept the connection open (it sent {got:02x?})"),
        }
    }
}

/// A 5.0 DISCONNECT with `reason`, as the broker sends it (no properties).
fn disconnect(reason: u8) -> Vec<u8> {
    vec![0xE0, 0x02, reason, 0x00]
}

/// A rumqttc client subscribed to `by/t` and one publishing to it: the bystanders that must
/// not notice what happens to other connections.
struct Bystanders {
    sub_rx: mpsc::UnboundedReceiver<Result<Event, String>>,
    _sub: AsyncClient,
    publ: AsyncClient,
    _pub_rx: mpsc::UnboundedReceiver<Result<Event, String>>,
    n: u32,
}

impl Bystanders {
    async fn start(b: &TestBroker) -> Bystanders {
        let (sub, mut sub_rx) = v311::client("bystander-sub", b.port, |_| {}).await;
        v311::subscribe(&sub, &mut sub_rx, "by/t", QoS::AtLeastOnce).await;
        let (publ, pub_rx) = v311::client("bystander-pub", b.port, |_| {}).await;
        Bystanders {
            sub_rx,
            _sub: sub,
            publ,
            _pub_rx: pub_rx,
            n: 0,
        }
    }

    /// A message goes through, on the connections the bystanders opened at the start.
    async fn still_receiving(&mut self, after: &str) {
        self.n += 1;
        let payload = format!("{} after {after}", self.n);
        self.publ
            .publish("by/t", QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        let (topic, got, _) = v311::message(&mut self.sub_rx).await;
        assert_eq!(
            (topic.as_str(), String::from_utf8(got).unwrap()),
            ("by/t", payload),
            "the bystander missed a message"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_the_connection_it_came_on() {
    let b = harness::start_with(|c, _| c.max_packet_size = 1024).await;
    let mut by = Bystanders::start(&b).await;

    // Garbage as the first packet: closed, nothing said (it is not an MQTT client).
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xFF; 16][..],
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F][..], // a remaining length of five bytes
        &packet(0x10, b"\x00\x04MQTT\x04")[..],    // a CONNECT cut short
    ] {
        let mut s = open(&b).await;
        s.write_all(garbage).await.unwrap();
        assert_eq!(until_closed(&mut s).await, b"", "{garbage:02x?}");
        by.still_receiving("garbage").await;
    }

    // A first packet other than CONNECT.
    for first in [
        vec![0xC0, 0x00], // PINGREQ
        publish(V311, "a/b", b"x"),
        packet(0x82, b"\x00\x01\x00\x03a/b\x00"), // SUBSCRIBE
    ] {
        let mut s = open(&b).await;
        s.write_all(&first).await.unwrap();
        assert_eq!(until_closed(&mut s).await, b"", "{first:02x?}");
        by.still_receiving("a first packet other than CONNECT")
            .await;
    }

    // A second CONNECT (§3.1.0-2): a protocol error.
    for (level, said) in [(V311, vec![]), (V5, disconnect(0x82))] {
        let mut s = connected(&b, level, &format!("twice-{level}"), 30).await;
        s.write_all(&connect(level, &format!("twice-{level}"), 30))
            .await
            .unwrap();
        assert_eq!(until_closed(&mut s).await, said, "level {level}");
        by.still_receiving("a second CONNECT").await;
    }

    // Bigger than max_packet_size (1024): closed on its fixed header, before its body.
    let mut s = open(&b).await;
    let mut big_connect = vec![0x10];
    varint(&mut big_connect, 5000);
    s.write_all(&big_connect).await.unwrap();
    assert_eq!(until_closed(&mut s).await, b"");
    for (level, said) in [(V311, vec![]), (V5, disconnect(0x95))] {
        let mut s = connected(&b, level, &format!("big-{level}"), 30).await;
        let mut big = vec![0x30];
        varint(&mut big, 100_000);
        big.extend_from_slice(b"\x00\x03a/b");
        s.write_all(&big).await.unwrap();
        assert_eq!(until_closed(&mut s).await, said, "level {level}");
        by.still_receiving("an oversized packet").await;
    }
    // Just under the limit is fine.
    let mut s = connected(&b, V311, "just-under", 30).await;
    let fits = publish(V311, "by/t", &vec![b'x'; 1000]);
    assert!(fits.len() <= 1024);
    s.write_all(&fits).await.unwrap();
    let (_, got, _) = v311::message(&mut by.sub_rx).await;
    assert_eq!(got.len(), 1000);
    drop(s);

    // A PUBLISH to a topic name with a wildcard (§4.7.1): closed (5.0: a malformed packet,
    // as Mosquitto says).
    for topic in ["by/+", "by/#", "#"] {
        for (level, said) in [(V311, vec![]), (V5, disconnect(0x81))] {
            let mut s = connected(&b, level, &format!("wild-{level}"), 30).await;
            s.write_all(&publish(level, topic, b"x")).await.unwrap();
            assert_eq!(until_closed(&mut s).await, said, "level {level} {topic}");
            by.still_receiving("a PUBLISH to a wildcard").await;
        }
    }

    // A protocol level the broker does not speak: CONNACK "unacceptable protocol version"
    // (3.1.1's return code 1, in 3.1.1's CONNACK, whatever the client spoke), then closed.
    for (name, level) in [
        (&b"MQIsdp"[..], 3),
        (b"MQTT", 3),
        (b"MQTT", 6),
        (b"MQTT", 255),
    ] {
        let mut s = open(&b).await;
        s.write_all(&connect_as(name, level, "old", 30))
            .await
            .unwrap();
        assert_eq!(
            until_closed(&mut s).await,
            [0x20, 0x02, 0x00, 0x01],
            "{} level {level}",
            String::from_utf8_lossy(name)
        );
        by.still_receiving("an unsupported protocol level").await;
    }

    b.until_connections(2).await;
    assert!(b.stats().protocol_errors.get() >= 10);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_sends_connect_is_closed_after_the_connect_timeout() {
    let b = harness::start_with(|c, _| c.connect_timeout_secs = 1).await;
    let mut by = Bystanders::start(&b).await;
    let mut s = open(&b).await;
    let started = Instant::now();
    assert_eq!(until_closed(&mut s).await, b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}, before the timeout"
    );
    by.still_receiving("a silent socket").await;
    // A socket that sent CONNECT in time stays (the timer fires, and finds it connected).
    let mut s = connected(&b, V311, "in-time", 30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut pong))
        .await
        .expect("a PINGRESP in time")
        .unwrap();
    assert_eq!(pong, [0xD0, 0x00]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_is_closed_after_one_and_a_half_keep_alives() {
    let b = harness::start().await;
    let mut by = Bystanders::start(&b).await;
    for (level, said) in [(V311, vec![]), (V5, disconnect(0x8D))] {
        // Pings every half second for three seconds: stays.
        let mut s = connected(&b, level, &format!("pinger-{level}"), 1).await;
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.write_all(&[0xC0, 0x00]).await.unwrap();
            let mut pong = [0u8; 2];
            tokio::time::timeout(WAIT, s.read_exact(&mut pong))
                .await
                .expect("a PINGRESP in time")
                .expect("still connected while pinging");
            assert_eq!(pong, [0xD0, 0x00]);
        }
        // Then falls silent: closed 1.5 s after its last packet.
        let started = Instant::now();
        assert_eq!(until_closed(&mut s).await, said, "level {level}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400),
            "closed after {waited:?} of silence, before 1.5 x its keep alive of 1 s"
        );
        by.still_receiving("a silent client").await;
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_coming_back_at_once_after_its_connection_ended_is_accepted() {
    // The session of the connection that ended (clean: it ends with it) may still be on its
    // way out when the same client id connects again; the new connection gets a session all
    // the same (it was once refused "server unavailable").
    let b = harness::start().await;
    let mut s = connected(&b, V311, "again", 30).await;
    for i in 0..300 {
        let level = if i % 2 == 0 { V311 } else { V5 };
        // The next socket is open before this one ends, and its CONNECT follows the end at
        // once.
        let mut next = open(&b).await;
        match i % 3 {
            0 => s.write_all(&[0xE0, 0x00]).await.unwrap(), // DISCONNECT
            1 => s.write_all(&[0xF0]).await.unwrap(),       // a protocol error
            _ => {}                                         // just gone
        }
        drop(s);
        next.write_all(&connect(level, "again", 30)).await.unwrap();
        let mut connack = [0u8; 4];
        tokio::time::timeout(WAIT, next.read_exact(&mut connack))
            .await
            .expect("a CONNACK in time")
            .expect("a CONNACK");
        assert_eq!(connack[..2], [0x20, connack[1]]);
        assert_eq!(connack[3], 0, "round {i}: refused ({connack:02x?})");
        if level == V5 {
            let mut rest = vec![0u8; connack[1] as usize - 2];
            next.read_exact(&mut rest).await.unwrap();
        }
        s = next;
    }
    b.stop().await;
}
