//! Established connections: ordering per stream, large messages that do not block others,
//! ticks, loss detection, bounded buffers and protocol errors.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use girder_dist::connection::{
    self, ConnectionConfig, ConnectionHandle, Lost, Received, SendError,
};
use girder_dist::frame::{Frame, FrameCodec, FrameKind};
use girder_dist::handshake::{self, HandshakeConfig, Refusal};
use girder_dist::{Cookie, NodeName};
use girder_testkit::within;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

fn hs(name: &str) -> HandshakeConfig {
    HandshakeConfig::new(
        NodeName::new(name).unwrap(),
        1,
        Cookie::new("connection-test-cookie").unwrap(),
    )
}

/// Two nodes connected over loopback TCP, handshake done.
async fn connected(
    a: ConnectionConfig,
    b: ConnectionConfig,
) -> (
    (ConnectionHandle, mpsc::Receiver<Received>),
    (ConnectionHandle, mpsc::Receiver<Received>),
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sa, sb) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (ha, hb) = (hs("a@127.0.0.1"), hs("b@127.0.0.1"));
    let (ra, rb) = tokio::join!(
        handshake::initiate(sa.unwrap(), &ha),
        handshake::accept(sb.unwrap().0, &hb, |_: &NodeName, _| Ok::<(), Refusal>(()))
    );
    (
        connection::start(&girder::Node::new("c"), ra.unwrap().1, a),
        connection::start(&girder::Node::new("c"), rb.unwrap().1, b),
    )
}

async fn recv(rx: &mut mpsc::Receiver<Received>) -> Received {
    within("a message", rx.recv())
        .await
        .expect("connection open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_their_order_per_stream() {
    let ((a, _), (_b, mut from_a)) =
        connected(ConnectionConfig::default(), ConnectionConfig::default()).await;
    let streams = 4u64;
    let per = 2_000u32;
    for i in 0..per {
        for s in 0..streams {
            a.send_wait(s, Bytes::from(format!("{s}:{i}")))
                .await
                .unwrap();
        }
    }
    let mut next = vec![0u32; streams as usize];
    for _ in 0..(streams as u32 * per) {
        let m = recv(&mut from_a).await;
        let text = String::from_utf8(m.payload.to_vec()).unwrap();
        let (s, i) = text.split_once(':').unwrap();
        let (s, i): (u64, u32) = (s.parse().unwrap(), i.parse().unwrap());
        assert_eq!(s, m.stream);
        assert_eq!(i, next[s as usize], "stream {s} out of order");
        next[s as usize] += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_does_not_hold_up_other_streams() {
    // A pipe nobody reads yet: the writer stalls inside the large message, so the small one is
    // surely queued while the large one is still going out.
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let cfg = ConnectionConfig {
        chunk: 16 * 1024,
        dead_after: Duration::from_secs(60),
        ..ConnectionConfig::default()
    };
    let (a, _rx) = connection::start(
        &girder::Node::new("c"),
        Framed::new(mine, FrameCodec::default()),
        cfg,
    );
    let big: Bytes = (0..2 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    a.send(1, big.clone()).unwrap();
    a.send(2, Bytes::from_static(b"small and urgent")).unwrap();
    a.send(1, Bytes::from_static(b"after the big one")).unwrap();
    // Now read what went out, frame by frame, with the receiving side's reassembly.
    let (_b, mut from_a) = connection::start(
        &girder::Node::new("c"),
        Framed::new(theirs, FrameCodec::default()),
        ConnectionConfig {
            dead_after: Duration::from_secs(60),
            ..ConnectionConfig::default()
        },
    );
    let first = recv(&mut from_a).await;
    assert_eq!(
        first.stream, 2,
        "the small message on another stream arrives first"
    );
    let second = recv(&mut from_a).await;
    assert_eq!(second.stream, 1);
    assert_eq!(second.payload.len(), big.len());
    assert!(
        second.payload == big,
        "the large message arrives whole and intact"
    );
    let third = recv(&mut from_a).await;
    assert_eq!(
        &third.payload[..],
        b"after the big one",
        "order on stream 1 is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_keep_an_idle_connection_alive_and_silence_kills_it() {
    let cfg = ConnectionConfig {
        tick: Duration::from_millis(50),
        dead_after: Duration::from_millis(400),
        ..ConnectionConfig::default()
    };
    let ((a, _ra), (b, mut from_a)) = connected(cfg.clone(), cfg).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.send(9, Bytes::from_static(b"still here")).unwrap();
    assert_eq!(&recv(&mut from_a).await.payload[..], b"still here");

    // A peer that completes the handshake and then says nothing is declared lost.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sa, sb) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (hsa, hsb) = (hs("a@127.0.0.1"), hs("b@127.0.0.1"));
    let (ra, rb) = tokio::join!(
        handshake::initiate(sa.unwrap(), &hsa),
        handshake::accept(sb.unwrap().0, &hsb, |_: &NodeName, _| Ok::<(), Refusal>(()))
    );
    let _silent_peer = ra.unwrap().1; // never started: sends no ticks
    let (watch, _rx) = connection::start(
        &girder::Node::new("c"),
        rb.unwrap().1,
        ConnectionConfig {
            dead_after: Duration::from_millis(300),
            ..ConnectionConfig::default()
        },
    );
    let t = std::time::Instant::now();
    assert_eq!(
        within("the connection to be lost", watch.lost()).await,
        Lost::Silent(Duration::from_millis(300))
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_is_seen_and_sends_then_fail() {
    let ((a, _ra), (b, rb)) =
        connected(ConnectionConfig::default(), ConnectionConfig::default()).await;
    drop((b, rb));
    // The reader sees the end of the stream, or the writer a broken pipe first.
    let why = within("the connection to be lost", a.lost()).await;
    assert!(matches!(why, Lost::Closed | Lost::Io(_)), "{why:?}");
    let mut failed = false;
    for _ in 0..100 {
        if a.send(1, Bytes::from_static(b"x")).is_err() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(failed, "sending on a lost connection fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_send_queue_says_so() {
    // The peer never reads, so the writer blocks once the socket buffers fill.
    let (mine, _theirs) = tokio::io::duplex(1024);
    let cfg = ConnectionConfig {
        send_queue: 4,
        dead_after: Duration::from_secs(60),
        ..ConnectionConfig::default()
    };
    let (h, _rx) = connection::start(
        &girder::Node::new("c"),
        Framed::new(mine, FrameCodec::default()),
        cfg,
    );
    let payload = Bytes::from(vec![0u8; 4096]);
    let mut full = false;
    for _ in 0..10_000 {
        match h.send(1, payload.clone()) {
            Ok(()) => tokio::task::yield_now().await,
            Err(SendError::Full) => {
                full = true;
                break;
            }
            Err(SendError::Lost) => panic!("not lost"),
        }
    }
    assert!(full, "a bounded queue must refuse when full");
}

async fn raw_peer(
    cfg: ConnectionConfig,
) -> (
    Framed<tokio::io::DuplexStream, FrameCodec>,
    ConnectionHandle,
    mpsc::Receiver<Received>,
) {
    let (mine, theirs) = tokio::io::duplex(1 << 20);
    let (h, rx) = connection::start(
        &girder::Node::new("c"),
        Framed::new(mine, FrameCodec::default()),
        cfg,
    );
    (Framed::new(theirs, FrameCodec::default()), h, rx)
}

fn fragment(stream: u64, seq: u32, last: bool, data: &[u8]) -> Frame {
    let mut b = BytesMut::new();
    b.put_u64(stream);
    b.put_u32(seq);
    b.put_u8(last as u8);
    b.extend_from_slice(data);
    Frame {
        kind: FrameKind::Fragment,
        payload: b.freeze(),
    }
}

#[tokio::test]
async fn fragments_out_of_order_break_the_connection_with_a_clear_reason() {
    let (mut peer, h, _rx) = raw_peer(ConnectionConfig::default()).await;
    peer.send(fragment(5, 0, false, b"abc")).await.unwrap();
    peer.send(fragment(5, 2, true, b"def")).await.unwrap();
    match within("the connection to be lost", h.lost()).await {
        Lost::Protocol(why) => assert!(why.contains("expected 1"), "{why}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn reassembly_is_bounded() {
    let cfg = ConnectionConfig {
        max_reassembly: 10_000,
        ..ConnectionConfig::default()
    };
    let (mut peer, h, _rx) = raw_peer(cfg).await;
    for seq in 0..20 {
        if peer
            .send(fragment(1, seq, false, &[0u8; 1000]))
            .await
            .is_err()
        {
            break;
        }
    }
    match within("the connection to be lost", h.lost()).await {
        Lost::Protocol(why) => assert!(why.contains("reassembly"), "{why}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_that_break_the_protocol_are_refused() {
    for bad in [
        Frame {
            kind: FrameKind::Message,
            payload: Bytes::from_static(b"short"),
        },
        Frame {
            kind: FrameKind::Fragment,
            payload: Bytes::from_static(b"tiny"),
        },
        Frame {
            kind: FrameKind::Handshake,
            payload: Bytes::from_static(b"late hello"),
        },
    ] {
        let (mut peer, h, _rx) = raw_peer(ConnectionConfig::default()).await;
        peer.send(bad).await.unwrap();
        assert!(matches!(
            within("the connection to be lost", h.lost()).await,
            Lost::Protocol(_)
        ));
    }
}
