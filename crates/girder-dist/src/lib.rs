//! # girder-dist: nodes that find and trust each other
//!
//! The first layer of Girder's distribution: who a node is, how bytes travel between two nodes,
//! and how two nodes prove to each other that they belong to the same cluster.
//!
//! | module | what it is | Erlang anchor |
//! |---|---|---|
//! | [`identity`] | [`NodeName`] (`name@host`), [`Cookie`] (the shared secret) | node names, the cookie |
//! | [`frame`] | [`FrameCodec`]: length-prefixed, typed, size-limited frames | the distribution packet |
//! | [`handshake`] | [`handshake::initiate`] / [`handshake::accept`]: versions, capabilities, mutual HMAC proof | the distribution handshake |
//! | [`connection`] | batched writes, fragments that interleave, ticks and loss detection | the distribution connection |
//! | [`tls`] | optional rustls under the handshake, mutual certificates | TLS distribution (`inet_tls`) |
//! | [`membership`] | [`Membership`]: SWIM failure detection and gossip (by `foca`), roles, graceful leave | `net_kernel` monitoring, `nodes()` |
//!
//! Remote processes, membership (SWIM via `foca`), the global registry and process groups build
//! on these; see `docs/architecture.md`.

#![warn(missing_docs)]

pub mod connection;
mod dispatch;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod global;
pub mod groups;
pub mod handshake;
pub mod identity;
pub mod membership;
pub mod node;
mod peer;
pub mod remote;
mod replica;
pub mod tls;
pub mod transport;
pub mod wire;

pub use connection::{ConnectionConfig, ConnectionHandle, Lost, Received};
pub use frame::{Frame, FrameCodec, FrameError, FrameKind};
pub use handshake::{Established, HandshakeConfig, HandshakeError};
pub use identity::{Cookie, IdentityError, NodeName};
pub use membership::{Member, MemberEvent, Membership, MembershipConfig};
pub use node::{ConnectError, DistConfig, DistNode, NodeEvent};
pub use wire::Wire;
