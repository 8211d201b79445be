//! The handshake and the frame codec, over real loopback sockets, including every kind of bad
//! input: a wrong cookie, an oversize frame, garbage, a truncated frame, an unknown kind, an
//! unknown message, a version mismatch, refused names, a peer that names a connected node
//! without the cookie, and a silent peer.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use girder_dist::frame::{Frame, FrameCodec, FrameError, FrameKind};
use girder_dist::handshake::{self, HandshakeConfig, HandshakeError, Refusal, MAX_HANDSHAKE_FRAME};
use girder_dist::{Cookie, NodeName};
use girder_testkit::dist::COOKIE;
use girder_testkit::within;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn config(name: &str, creation: u32, cookie: &str) -> HandshakeConfig {
    let mut c = HandshakeConfig::new(
        NodeName::new(name).unwrap(),
        creation,
        Cookie::new(cookie).unwrap(),
    );
    c.timeout = Duration::from_secs(2);
    c
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (a.unwrap(), b.unwrap().0)
}

fn admit_all(_: &NodeName, _: u32) -> Result<(), Refusal> {
    Ok(())
}

#[tokio::test]
async fn two_nodes_with_the_same_cookie_connect_and_exchange_frames() {
    let (a, b) = pair().await;
    let mut ca = config("alpha@127.0.0.1", 7, COOKIE);
    ca.capabilities = 0b1011;
    let mut cb = config("beta@127.0.0.1", 9, COOKIE);
    cb.capabilities = 0b0110;
    let (ra, rb) = tokio::join!(
        handshake::initiate(a, &ca),
        handshake::accept(b, &cb, admit_all)
    );
    let (ea, mut conn_a) = ra.unwrap();
    let (eb, mut conn_b) = rb.unwrap();
    assert_eq!(ea.peer.as_str(), "beta@127.0.0.1");
    assert_eq!(ea.peer_creation, 9);
    assert_eq!(eb.peer.as_str(), "alpha@127.0.0.1");
    assert_eq!(eb.peer_creation, 7);
    assert_eq!((ea.version, eb.version), (1, 1));
    assert_eq!(ea.capabilities, 0b0010);
    assert_eq!(eb.capabilities, 0b0010);
    // After the handshake the connection carries larger frames.
    let big = Bytes::from(vec![7u8; 100_000]);
    conn_a
        .send(Frame {
            kind: FrameKind::Message,
            payload: big.clone(),
        })
        .await
        .unwrap();
    let got = conn_b.next().await.unwrap().unwrap();
    assert_eq!(got.kind, FrameKind::Message);
    assert_eq!(got.payload, big);
}

#[tokio::test]
async fn a_wrong_cookie_is_refused_and_the_peer_gets_nothing() {
    let (a, b) = pair().await;
    let ca = config("alpha@127.0.0.1", 1, "not-the-cluster-cookie");
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    let (ra, rb) = tokio::join!(
        handshake::initiate(a, &ca),
        handshake::accept(b, &cb, admit_all)
    );
    assert!(
        matches!(rb, Err(HandshakeError::BadProof(ref who)) if who == "alpha@127.0.0.1"),
        "{rb:?}"
    );
    // The acceptor closed without an Ack: the initiator only sees the connection end, right
    // after its proof, which it reports as a refused proof.
    assert!(
        matches!(ra, Err(HandshakeError::ProofRefused(ref who)) if who == "beta@127.0.0.1"),
        "{ra:?}"
    );
}

#[tokio::test]
async fn a_peer_without_the_cookie_never_reaches_admission() {
    // What an attacker on the network would send: a Hello naming a connected node with a newer
    // creation (a "restarted peer"), which admission would act on. Without the cookie the proof
    // fails first, and admission, the only step that changes anything, never runs.
    let admitted = std::sync::atomic::AtomicUsize::new(0);
    let admit = |_: &NodeName, _: u32| {
        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    };
    for creation in [1, 2, u32::MAX] {
        let (a, b) = pair().await;
        let ca = config("alpha@127.0.0.1", creation, "not-the-cluster-cookie");
        let cb = config("beta@127.0.0.1", 1, COOKIE);
        let (ra, rb) = tokio::join!(
            handshake::initiate(a, &ca),
            handshake::accept(b, &cb, admit)
        );
        assert!(matches!(rb, Err(HandshakeError::BadProof(_))), "{rb:?}");
        assert!(matches!(ra, Err(HandshakeError::ProofRefused(_))), "{ra:?}");
    }
    assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 0);

    // With the cookie, admission runs once, after the proof.
    let (a, b) = pair().await;
    let (ca, cb) = (
        config("alpha@127.0.0.1", 3, COOKIE),
        config("beta@127.0.0.1", 1, COOKIE),
    );
    let (ra, rb) = tokio::join!(
        handshake::initiate(a, &ca),
        handshake::accept(b, &cb, admit)
    );
    assert!(ra.is_ok() && rb.is_ok(), "{ra:?} {rb:?}");
    assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_names_never_get_an_ack() {
    let (a, b) = pair().await;
    let ca = config("alpha@127.0.0.1", 3, COOKIE);
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    let known = NodeName::new("alpha@127.0.0.1").unwrap();
    let admit = |n: &NodeName, c: u32| {
        if *n == known && c < 5 {
            return Err(Refusal::StaleCreation {
                name: n.clone(),
                known: 5,
                offered: c,
            });
        }
        Ok(())
    };
    let (ra, rb) = tokio::join!(
        handshake::initiate(a, &ca),
        handshake::accept(b, &cb, admit)
    );
    assert!(
        matches!(
            rb,
            Err(HandshakeError::Refused(Refusal::StaleCreation {
                known: 5,
                offered: 3,
                ..
            }))
        ),
        "{rb:?}"
    );
    // It proved the cookie, so it is told why, under the acceptor's proof.
    assert!(
        matches!(&ra, Err(HandshakeError::RefusedByPeer { peer, reason })
            if peer == "beta@127.0.0.1" && reason.contains("older than the known 5")),
        "{ra:?}"
    );

    // A peer claiming the acceptor's own name is refused too.
    let (a, b) = pair().await;
    let ca = config("beta@127.0.0.1", 1, COOKIE);
    let (_, rb) = tokio::join!(
        handshake::initiate(a, &ca),
        handshake::accept(b, &cb, admit_all)
    );
    assert!(
        matches!(rb, Err(HandshakeError::Refused(Refusal::SameName(_)))),
        "{rb:?}"
    );
}

#[tokio::test]
async fn garbage_bytes_are_refused_cleanly() {
    let (mut a, b) = pair().await;
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    // A valid length and kind, then bytes that are not a handshake message.
    let mut junk = vec![0, 0, 0, 9, FrameKind::Handshake as u8];
    junk.extend_from_slice(&[0xff; 8]);
    a.write_all(&junk).await.unwrap();
    let r = handshake::accept(b, &cb, admit_all).await;
    assert!(matches!(r, Err(HandshakeError::Malformed(_))), "{r:?}");
}

#[tokio::test]
async fn an_oversize_frame_is_refused_before_it_is_buffered() {
    let (mut a, b) = pair().await;
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    // Announce a 1 GiB frame; send only the header.
    a.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    let r = handshake::accept(b, &cb, admit_all).await;
    match r {
        Err(HandshakeError::Frame(FrameError::TooLarge { size, limit })) => {
            assert_eq!(size, 1 << 30);
            assert_eq!(limit, MAX_HANDSHAKE_FRAME);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_truncated_frame_is_reported_as_such() {
    let (mut a, b) = pair().await;
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    a.write_all(&[0, 0, 0, 50, FrameKind::Handshake as u8, 1, 2, 3])
        .await
        .unwrap();
    drop(a);
    let r = handshake::accept(b, &cb, admit_all).await;
    assert!(
        matches!(r, Err(HandshakeError::Frame(FrameError::Truncated(8)))),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_unknown_frame_kind_is_named_in_the_error() {
    let (mut a, b) = pair().await;
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    a.write_all(&[0, 0, 0, 1, 0xee]).await.unwrap();
    let r = handshake::accept(b, &cb, admit_all).await;
    assert!(
        matches!(r, Err(HandshakeError::Frame(FrameError::UnknownKind(0xee)))),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_message_out_of_order_is_refused() {
    let (a, b) = pair().await;
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    let mut raw = tokio_util::codec::Framed::new(a, FrameCodec::new(4096));
    // Start with a tick frame instead of Hello.
    raw.send(Frame {
        kind: FrameKind::Tick,
        payload: Bytes::new(),
    })
    .await
    .unwrap();
    let r = handshake::accept(b, &cb, admit_all).await;
    assert!(matches!(r, Err(HandshakeError::Unexpected { .. })), "{r:?}");
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    let (_a, b) = pair().await;
    let mut cb = config("beta@127.0.0.1", 1, COOKIE);
    cb.timeout = Duration::from_millis(100);
    let r = handshake::accept(b, &cb, admit_all).await;
    assert!(matches!(r, Err(HandshakeError::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn a_node_survives_a_burst_of_bad_peers_and_then_accepts_a_good_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cb = config("beta@127.0.0.1", 1, COOKIE);
    let server = tokio::spawn(async move {
        let mut refused = 0;
        loop {
            let (s, _) = listener.accept().await.unwrap();
            match handshake::accept(s, &cb, admit_all).await {
                Ok((e, _)) => return (refused, e.peer),
                Err(_) => refused += 1,
            }
        }
    });
    let bad_inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xde, 0xad, 0xbe, 0xef],
        vec![0, 0, 0, 0],
        vec![0, 0, 0, 2, 1, 0xff],
        (0..64u8).collect(),
    ];
    for bytes in bad_inputs {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&bytes).await;
        drop(s);
    }
    let wrong = config("mallory@127.0.0.1", 1, "definitely-the-wrong-cookie");
    let _ = handshake::initiate(TcpStream::connect(addr).await.unwrap(), &wrong).await;
    let good = config("alpha@127.0.0.1", 1, COOKIE);
    let (e, _) = handshake::initiate(TcpStream::connect(addr).await.unwrap(), &good)
        .await
        .unwrap();
    assert_eq!(e.peer.as_str(), "beta@127.0.0.1");
    let (refused, peer) = within("the server's count of refusals", server)
        .await
        .unwrap();
    assert_eq!(refused, 6);
    assert_eq!(peer.as_str(), "alpha@127.0.0.1");
}

#[test]
fn names_and_cookies_are_validated() {
    assert!(NodeName::new("a@b").is_ok());
    for bad in ["", "nohost@", "@noname", "two@@ats", "sp ace@h", "a@b c"] {
        assert!(NodeName::new(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(NodeName::new(&format!("{}@h", "x".repeat(300))).is_err());
    assert!(Cookie::new("0123456789abcdef").is_ok());
    assert!(
        Cookie::new("0123456789abcdef\n").is_ok(),
        "a trailing newline from a file is fine"
    );
    assert!(Cookie::new("0123456789 abcdef").is_err());
    assert!(Cookie::new(&"x".repeat(2000)).is_err());
}
