//! Entry points for fuzzing the parts that read bytes from the network: the frame decoder, the
//! packet header decoder and the acceptor's handshake. Used by the cargo-fuzz targets in
//! `crates/girder-dist/fuzz` (nightly) and by a stable property test that feeds them random and
//! mutated input in CI. Each must refuse bad input with an error, never panic or hang.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;

use crate::frame::FrameCodec;
use crate::handshake::{self, HandshakeConfig, Refusal};
use crate::{Cookie, NodeName};

/// Decodes frames from `data` (limit 4 KiB) until an error or the end of the bytes.
pub fn frame_decoder(data: &[u8]) {
    let mut codec = FrameCodec::new(4096);
    let mut buf = BytesMut::from(data);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => {
                let _ = codec.decode_eof(&mut buf);
                return;
            }
            Err(_) => return,
        }
    }
}

/// Splits `data` as a packet (header and body).
pub fn packet(data: &[u8]) {
    let _ = crate::wire::split(data);
}

/// Plays `data` as an initiator's bytes against an acceptor. It must fail: nobody guesses the
/// cookie's proof. Panics if the handshake succeeds or takes longer than its timeout.
pub fn handshake_accept(data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut cfg = HandshakeConfig::new(
            NodeName::new("fuzz@localhost").expect("valid"),
            1,
            Cookie::new("fuzzing-cookie-of-decent-length").expect("valid"),
        );
        cfg.timeout = Duration::from_millis(20);
        let _ = peer.write_all(data).await;
        // Half the cases close the stream, half leave it open (the timeout must end those).
        if data.first().is_some_and(|b| b & 1 == 0) {
            drop(peer);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                drop(peer);
            });
        }
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            handshake::accept(ours, &cfg, |_: &NodeName, _| Ok::<(), Refusal>(())),
        )
        .await;
        match outcome {
            Err(_) => panic!("the handshake outlived its timeout"),
            Ok(Ok(_)) => panic!("a handshake succeeded without the cookie"),
            Ok(Err(_)) => {}
        }
    });
}
