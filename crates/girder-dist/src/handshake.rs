//! The handshake: two nodes agree on a protocol version and capabilities and prove to each other
//! that they hold the cluster's cookie, without ever sending it.
//!
//! ```text
//! initiator                                   acceptor
//!   Hello { versions, name, creation, caps, nonce_i } ─►
//!                                               checks the name is valid and not its own,
//!                                               and the versions
//!   ◄─ Challenge { version, name, creation, caps, nonce_a }
//!   Proof { HMAC(cookie, "initiator" | transcript) } ─►
//!                                               verifies (constant time), then admission
//!   ◄─ Ack { HMAC(cookie, "acceptor" | transcript) }
//!      or Refused { reason, HMAC(cookie, "refusal" | transcript | reason) }
//! verifies
//! ```
//!
//! The transcript binds both nonces, both names, both creations and the chosen version, so a
//! proof cannot be replayed on another connection or for another node. A peer that fails any
//! step gets nothing more: the connection is closed and the reason is logged on this side. An
//! initiator learns only where its connection ended: closed right after its proof
//! ([`HandshakeError::ProofRefused`]) almost always means the two cookies differ, and a
//! [`DistNode`](crate::DistNode) counts and logs it as such on the dialling side too.
//!
//! Nothing a peer says changes the acceptor's state before its proof is verified: admission
//! (which may replace a connected peer's old incarnation, or refuse a duplicate) runs only after
//! it, as ssh and TLS act on nothing before authentication. A Hello naming a connected node
//! with a newer creation, from a peer without the cookie, costs the acceptor a nonce and a
//! closed socket and nothing else. A peer that has proven the cookie and is refused admission
//! (its name is in use by a live node, say) is told why, so that it can say so.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::frame::{Frame, FrameCodec, FrameError, FrameKind, DEFAULT_MAX_FRAME};
use crate::identity::{Cookie, IdentityError, NodeName};

/// The protocol versions this build speaks.
pub const VERSIONS: (u16, u16) = (1, 1);

/// Handshake frames are small; anything bigger is refused before it is buffered.
pub const MAX_HANDSHAKE_FRAME: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

/// This node's side of a handshake.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// This node's name.
    pub name: NodeName,
    /// This node's incarnation.
    pub creation: u32,
    /// The cluster's shared secret.
    pub cookie: Cookie,
    /// Capability bits this node offers; the connection gets the intersection.
    pub capabilities: u64,
    /// How long the whole handshake may take.
    pub timeout: Duration,
    /// The frame limit once the connection is up.
    pub max_frame: usize,
}

impl HandshakeConfig {
    /// A config with no capabilities, a 5 s timeout and 8 MiB frames.
    pub fn new(name: NodeName, creation: u32, cookie: Cookie) -> Self {
        HandshakeConfig {
            name,
            creation,
            cookie,
            capabilities: 0,
            timeout: Duration::from_secs(5),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The peer's name.
    pub peer: NodeName,
    /// The peer's incarnation.
    pub peer_creation: u32,
    /// The protocol version in use.
    pub version: u16,
    /// Capabilities both sides offered.
    pub capabilities: u64,
}

/// Why an acceptor's admission check turned a peer away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A node with this name and creation is already connected.
    #[error("a node named {0} is already connected")]
    DuplicateName(NodeName),
    /// The peer claims an older incarnation than one already seen.
    #[error("{name} offered creation {offered}, older than the known {known}")]
    StaleCreation {
        /// The peer.
        name: NodeName,
        /// The creation already known.
        known: u32,
        /// The creation offered.
        offered: u32,
    },
    /// The peer claims this node's own name.
    #[error("peer claims this node's own name {0}")]
    SameName(NodeName),
    /// Both nodes dialled each other at once; this node's own dial goes ahead (the dial from the
    /// node with the smaller name wins).
    #[error("{0} and this node dialled each other at once; this node's dial wins")]
    Simultaneous(NodeName),
    /// This node has shut its distribution down.
    #[error("this node has shut its distribution down")]
    ShutDown,
    /// The dialler's TLS certificate does not name the host of the node it claims to be.
    #[error("{name}'s certificate is not for its host: {why}")]
    CertificateNotForName {
        /// The name claimed.
        name: NodeName,
        /// What the check found.
        why: String,
    },
    /// A live node with this name is connected: the newcomer is refused, not the node that
    /// was there first. (A node that restarted is let in as soon as its old connection is
    /// seen lost, within the connection's `dead_after`.)
    #[error(
        "the name {name} is in use by a live node (creation {live}); \
         a newcomer with creation {offered} is refused"
    )]
    NameInUse {
        /// The name.
        name: NodeName,
        /// The creation of the live node.
        live: u32,
        /// The creation the newcomer offered.
        offered: u32,
    },
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The bytes were not frames (too large, unknown kind, truncated, i/o).
    #[error("handshake frame error: {0}")]
    Frame(#[from] FrameError),
    /// A frame held something that is not a handshake message.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// A message arrived out of order.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What the protocol wanted next.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// The peer closed the connection (an acceptor closes silently on any failure).
    #[error("peer closed the connection during the handshake")]
    Closed,
    /// The handshake took too long.
    #[error("handshake did not finish within {0:?}")]
    Timeout(Duration),
    /// No protocol version both sides speak.
    #[error("no common protocol version: ours {ours:?}, theirs {theirs:?}")]
    NoCommonVersion {
        /// Ours.
        ours: (u16, u16),
        /// Theirs.
        theirs: (u16, u16),
    },
    /// The peer's name is not a valid node name.
    #[error("peer name refused: {0}")]
    BadName(#[from] IdentityError),
    /// The peer's proof is wrong: it does not hold the cookie.
    #[error("peer {0} failed authentication (wrong cookie)")]
    BadProof(String),
    /// The initiator's side: the peer closed the connection after this node's proof instead
    /// of acknowledging it. An acceptor tells a peer without the cookie nothing, so this is
    /// all the initiator learns: the peer does not hold this node's cookie (a peer that
    /// verified the proof and refused admission says why: [`HandshakeError::RefusedByPeer`]).
    #[error("peer {0} closed the connection after our proof: its cookie differs from ours")]
    ProofRefused(String),
    /// The admission check refused the peer.
    #[error("peer refused: {0}")]
    Refused(#[from] Refusal),
    /// The peer authenticated this node, then refused it admission, and said why.
    #[error("{peer} refused this node: {reason}")]
    RefusedByPeer {
        /// The peer.
        peer: String,
        /// Its reason, in words.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
enum Msg {
    Hello {
        versions: (u16, u16),
        name: String,
        creation: u32,
        capabilities: u64,
        nonce: [u8; 32],
    },
    Challenge {
        version: u16,
        name: String,
        creation: u32,
        capabilities: u64,
        nonce: [u8; 32],
    },
    Proof {
        mac: Vec<u8>,
    },
    Ack {
        mac: Vec<u8>,
    },
    Refused {
        reason: String,
        mac: Vec<u8>,
    },
}

impl Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::Challenge { .. } => "Challenge",
            Msg::Proof { .. } => "Proof",
            Msg::Ack { .. } => "Ack",
            Msg::Refused { .. } => "Refused",
        }
    }
}

/// A connection after the handshake: frames over the stream.
pub type Connection<S> = Framed<S, FrameCodec>;

type Conn<S> = Connection<S>;

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    msg: &Msg,
) -> Result<(), HandshakeError> {
    let payload = postcard::to_stdvec(msg).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    conn.send(Frame {
        kind: FrameKind::Handshake,
        payload: Bytes::from(payload),
    })
    .await?;
    Ok(())
}

async fn recv<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
) -> Result<Msg, HandshakeError> {
    let frame = conn.next().await.ok_or(HandshakeError::Closed)??;
    if frame.kind != FrameKind::Handshake {
        return Err(HandshakeError::Unexpected {
            expected: "a handshake frame",
            got: "another frame kind",
        });
    }
    postcard::from_bytes(&frame.payload).map_err(|e| HandshakeError::Malformed(e.to_string()))
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("the OS provides randomness");
    n
}

struct Transcript<'a> {
    initiator: &'a str,
    acceptor: &'a str,
    initiator_creation: u32,
    acceptor_creation: u32,
    nonce_i: &'a [u8; 32],
    nonce_a: &'a [u8; 32],
    version: u16,
}

impl Transcript<'_> {
    fn mac(&self, cookie: &Cookie, role: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&cookie.keys().handshake)
            .expect("HMAC takes keys of any size");
        mac.update(b"girder-dist/1 ");
        mac.update(role);
        for part in [self.initiator.as_bytes(), self.acceptor.as_bytes()] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.update(&self.initiator_creation.to_be_bytes());
        mac.update(&self.acceptor_creation.to_be_bytes());
        mac.update(self.nonce_i);
        mac.update(self.nonce_a);
        mac.update(&self.version.to_be_bytes());
        mac
    }

    fn prove(&self, cookie: &Cookie, role: &[u8]) -> Vec<u8> {
        self.mac(cookie, role).finalize().into_bytes().to_vec()
    }

    fn refusal_mac(&self, cookie: &Cookie, reason: &str) -> HmacSha256 {
        let mut mac = self.mac(cookie, b"refusal");
        mac.update(reason.as_bytes());
        mac
    }

    fn verify(&self, cookie: &Cookie, role: &[u8], proof: &[u8]) -> bool {
        self.mac(cookie, role).verify_slice(proof).is_ok()
    }
}

fn common_version(theirs: (u16, u16)) -> Result<u16, HandshakeError> {
    let low = theirs.0.max(VERSIONS.0);
    let high = theirs.1.min(VERSIONS.1);
    if low > high {
        return Err(HandshakeError::NoCommonVersion {
            ours: VERSIONS,
            theirs,
        });
    }
    Ok(high)
}

async fn with_timeout<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| HandshakeError::Timeout(limit))?
}

/// Bytes of buffer each way while a peer authenticates: its messages are under 200 bytes, and a
/// connection that never authenticates should hold little (8 KiB each way by default).
const HANDSHAKE_BUFFER: usize = 512;

fn handshake_framing<S: AsyncRead + AsyncWrite>(stream: S) -> Conn<S> {
    Framed::with_capacity(
        stream,
        FrameCodec::new(MAX_HANDSHAKE_FRAME),
        HANDSHAKE_BUFFER,
    )
}

/// Logs a failure (at debug: a node's distribution logs its refused peers, rate-limited, since
/// a flood of them must not flood the log); on success switches the connection to the
/// configured frame limit.
fn conclude<S>(
    result: Result<Established, HandshakeError>,
    conn: Conn<S>,
    cfg: &HandshakeConfig,
    failure: &'static str,
) -> Result<(Established, Conn<S>), HandshakeError> {
    match result {
        Ok(e) => {
            // The connection proper: the configured frame limit, and the usual 8 KiB buffers
            // (and write batching boundary) in place of the handshake's small ones.
            let parts = conn.into_parts();
            let mut next = tokio_util::codec::FramedParts::new::<Frame>(
                parts.io,
                FrameCodec::new(cfg.max_frame),
            );
            next.read_buf = parts.read_buf;
            next.write_buf = parts.write_buf;
            Ok((e, Framed::from_parts(next)))
        }
        Err(e) => {
            tracing::debug!(node = %cfg.name, error = %e, "{failure}");
            Err(e)
        }
    }
}

/// Runs the initiator's side on a fresh connection. On success the connection continues with the
/// configured frame limit.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cfg: &HandshakeConfig,
) -> Result<(Established, Conn<S>), HandshakeError> {
    let mut conn = handshake_framing(stream);
    let established = with_timeout(cfg.timeout, async {
        let nonce_i = nonce();
        send(
            &mut conn,
            &Msg::Hello {
                versions: VERSIONS,
                name: cfg.name.to_string(),
                creation: cfg.creation,
                capabilities: cfg.capabilities,
                nonce: nonce_i,
            },
        )
        .await?;
        let (version, peer, peer_creation, capabilities, nonce_a) = match recv(&mut conn).await? {
            Msg::Challenge {
                version,
                name,
                creation,
                capabilities,
                nonce,
            } => (
                version,
                NodeName::new(&name)?,
                creation,
                capabilities,
                nonce,
            ),
            other => {
                return Err(HandshakeError::Unexpected {
                    expected: "Challenge",
                    got: other.label(),
                })
            }
        };
        common_version((version, version))?;
        let transcript = Transcript {
            initiator: cfg.name.as_str(),
            acceptor: peer.as_str(),
            initiator_creation: cfg.creation,
            acceptor_creation: peer_creation,
            nonce_i: &nonce_i,
            nonce_a: &nonce_a,
            version,
        };
        send(
            &mut conn,
            &Msg::Proof {
                mac: transcript.prove(&cfg.cookie, b"initiator"),
            },
        )
        .await?;
        let ack = match recv(&mut conn).await {
            // Turned away after the proof: the acceptor closes without a word.
            Err(HandshakeError::Closed) => Err(HandshakeError::ProofRefused(peer.to_string())),
            Err(HandshakeError::Frame(FrameError::Io(e)))
                if e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                Err(HandshakeError::ProofRefused(peer.to_string()))
            }
            other => other,
        };
        match ack? {
            Msg::Ack { mac } if transcript.verify(&cfg.cookie, b"acceptor", &mac) => {}
            Msg::Ack { .. } => return Err(HandshakeError::BadProof(peer.to_string())),
            Msg::Refused { reason, mac }
                if transcript
                    .refusal_mac(&cfg.cookie, &reason)
                    .verify_slice(&mac)
                    .is_ok() =>
            {
                return Err(HandshakeError::RefusedByPeer {
                    peer: peer.to_string(),
                    reason,
                })
            }
            Msg::Refused { .. } => return Err(HandshakeError::BadProof(peer.to_string())),
            other => {
                return Err(HandshakeError::Unexpected {
                    expected: "Ack",
                    got: other.label(),
                })
            }
        }
        Ok(Established {
            peer,
            peer_creation,
            version,
            capabilities: capabilities & cfg.capabilities,
        })
    })
    .await;
    conclude(established, conn, cfg, "outgoing handshake failed")
}

/// Runs the acceptor's side on a fresh incoming connection. `admit` decides whether a peer that
/// names itself may connect (duplicate or stale names); it runs only once the peer has proven
/// the cookie, so a peer that cannot prove it never reaches it. On any failure the connection
/// is dropped without a word to the peer and the reason is logged.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cfg: &HandshakeConfig,
    admit: impl Fn(&NodeName, u32) -> Result<(), Refusal>,
) -> Result<(Established, Conn<S>), HandshakeError> {
    let mut conn = handshake_framing(stream);
    let established = with_timeout(cfg.timeout, async {
        let (versions, peer, peer_creation, capabilities, nonce_i) = match recv(&mut conn).await? {
            Msg::Hello {
                versions,
                name,
                creation,
                capabilities,
                nonce,
            } => (
                versions,
                NodeName::new(&name)?,
                creation,
                capabilities,
                nonce,
            ),
            other => {
                return Err(HandshakeError::Unexpected {
                    expected: "Hello",
                    got: other.label(),
                })
            }
        };
        let version = common_version(versions)?;
        if peer == cfg.name {
            return Err(Refusal::SameName(peer).into());
        }
        let nonce_a = nonce();
        send(
            &mut conn,
            &Msg::Challenge {
                version,
                name: cfg.name.to_string(),
                creation: cfg.creation,
                capabilities: cfg.capabilities,
                nonce: nonce_a,
            },
        )
        .await?;
        let transcript = Transcript {
            initiator: peer.as_str(),
            acceptor: cfg.name.as_str(),
            initiator_creation: peer_creation,
            acceptor_creation: cfg.creation,
            nonce_i: &nonce_i,
            nonce_a: &nonce_a,
            version,
        };
        match recv(&mut conn).await? {
            Msg::Proof { mac } if transcript.verify(&cfg.cookie, b"initiator", &mac) => {}
            Msg::Proof { .. } => return Err(HandshakeError::BadProof(peer.to_string())),
            other => {
                return Err(HandshakeError::Unexpected {
                    expected: "Proof",
                    got: other.label(),
                })
            }
        }
        // Authenticated: only now may what the peer claims change anything here, and only
        // now is it told why it is refused, if it is.
        if let Err(refusal) = admit(&peer, peer_creation) {
            let reason = refusal.to_string();
            let mac = transcript.refusal_mac(&cfg.cookie, &reason);
            let mac = mac.finalize().into_bytes().to_vec();
            let _ = send(&mut conn, &Msg::Refused { reason, mac }).await;
            return Err(refusal.into());
        }
        send(
            &mut conn,
            &Msg::Ack {
                mac: transcript.prove(&cfg.cookie, b"acceptor"),
            },
        )
        .await?;
        Ok(Established {
            peer,
            peer_creation,
            version,
            capabilities: capabilities & cfg.capabilities,
        })
    })
    .await;
    conclude(established, conn, cfg, "incoming handshake refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acceptor that does not hold the cookie plays along and sends a forged Ack (or a
    /// forged refusal): the initiator must refuse it rather than trust the connection.
    async fn answer_with(
        last: Msg,
    ) -> Result<(Established, Conn<tokio::io::DuplexStream>), HandshakeError> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let cfg = HandshakeConfig::new(
            NodeName::new("alpha@h").unwrap(),
            1,
            Cookie::new("the-real-cluster-cookie").unwrap(),
        );
        let rogue = async move {
            let mut conn = Framed::new(b, FrameCodec::new(MAX_HANDSHAKE_FRAME));
            let Msg::Hello { .. } = recv(&mut conn).await.unwrap() else {
                panic!("expected Hello")
            };
            send(
                &mut conn,
                &Msg::Challenge {
                    version: 1,
                    name: "mallory@h".into(),
                    creation: 1,
                    capabilities: 0,
                    nonce: [0; 32],
                },
            )
            .await
            .unwrap();
            let Msg::Proof { .. } = recv(&mut conn).await.unwrap() else {
                panic!("expected Proof")
            };
            send(&mut conn, &last).await.unwrap();
            conn
        };
        let (r, _conn) = tokio::join!(initiate(a, &cfg), rogue);
        r
    }

    #[tokio::test]
    async fn a_forged_ack_or_refusal_is_refused_by_the_initiator() {
        for last in [
            Msg::Ack { mac: vec![0; 32] },
            Msg::Refused {
                reason: "go away".into(),
                mac: vec![0; 32],
            },
        ] {
            let r = answer_with(last).await;
            assert!(
                matches!(r, Err(HandshakeError::BadProof(ref who)) if who == "mallory@h"),
                "{r:?}"
            );
        }
    }

    #[tokio::test]
    async fn versions_without_overlap_are_refused() {
        assert_eq!(common_version((1, 3)).unwrap(), 1);
        assert!(matches!(
            common_version((2, 5)),
            Err(HandshakeError::NoCommonVersion { theirs: (2, 5), .. })
        ));
    }
}
