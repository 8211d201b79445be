//! What travels between nodes once they are connected: messages with stable wire names, calls
//! and their replies, and the signals (link, exit, monitor, down) that keep Erlang's semantics
//! across nodes.
//!
//! A packet is a small postcard-encoded `Packet` header followed by the message's own bytes,
//! so a message is encoded once, straight into the frame.
//!
//! Every message type that crosses nodes names itself with a [`Wire`] name. The receiver checks
//! the name before decoding, so two builds with different message shapes refuse each other's
//! messages with a clear error instead of misreading them. To change a message's shape in a
//! rolling upgrade, give the new shape a new name (`"kv.put.v2"`) and keep a process that still
//! takes the old one until every node runs the new build.

use bytes::Bytes;
use girder::remote::{with_pid_translation, PidTranslation};
use girder::{ExitReason, Pid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A message type that may cross to another node, with the stable name it travels under.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use girder_dist::Wire;
///
/// #[derive(Serialize, Deserialize)]
/// enum Kv { Put(String, u64), Get(String) }
///
/// impl Wire for Kv {
///     const NAME: &'static str = "kv.request.v1";
/// }
/// assert_eq!(<Kv as Wire>::NAME, "kv.request.v1");
/// ```
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {
    /// The name this type travels under; change it when the shape changes incompatibly.
    const NAME: &'static str;
}

macro_rules! wire_builtin {
    ($($t:ty => $n:literal),* $(,)?) => {
        $(impl Wire for $t { const NAME: &'static str = $n; })*
    };
}

// Plain types, so small protocols and tests need no wrapper.
wire_builtin! {
    () => "unit",
    bool => "bool",
    u32 => "u32",
    u64 => "u64",
    i64 => "i64",
    String => "string",
    Vec<u8> => "bytes",
    Pid => "pid",
}

/// A request paired with its reply handle (a server's `type Call = (Req, ReplyTo<Reply>)`, the
/// shape for one kind of reply) travels under the request's own name.
impl<T, R> Wire for (T, girder::ReplyTo<R>)
where
    T: Wire,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    const NAME: &'static str = T::NAME;
}

/// An event manager's requests that cross nodes (`sync_notify`; see
/// [`DistNode::export_event_manager`](crate::DistNode::export_event_manager)).
impl<E: Wire + Sync> Wire for girder::event::ManagerCall<E> {
    const NAME: &'static str = "girder.event_manager.call.v1";
}

/// Capability bits (negotiated in the handshake: a connection has those both nodes offer), for
/// packets an older build would not decode. A node sends such a packet only on a connection
/// whose peer offered its bit.
pub(crate) mod caps {
    /// `Pause` and `Resume` (decision 014).
    pub(crate) const PAUSE: u64 = 1 << 0;
    /// `CallUntil`: calls that carry their time left.
    pub(crate) const DEADLINES: u64 = 1 << 1;
    /// `CallRefused`: a call turned away unhandled by an overloaded callee.
    pub(crate) const REFUSED: u64 = 1 << 2;
}

/// Every capability this build has.
pub(crate) const CAPABILITIES: u64 = caps::PAUSE | caps::DEADLINES | caps::REFUSED;

/// A pid of the sending or the receiving node: which one is implied by the field it is in, so
/// the node need not be named.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WirePid {
    pub(crate) creation: u32,
    pub(crate) id: u64,
}

impl WirePid {
    pub(crate) fn of(pid: Pid) -> Self {
        WirePid {
            creation: pid.creation(),
            id: pid.id(),
        }
    }
}

/// The header of every packet. Pids named `from`/`watcher` in signals belong to the sender;
/// `to`/`target` to the receiver (except in `Down`, sent by the target's node).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Packet<'a> {
    /// A message to a process; its bytes follow.
    Send {
        to: WirePid,
        name: &'a str,
    },
    /// A message to a registered name; its bytes follow.
    SendNamed {
        to: &'a str,
        name: &'a str,
    },
    /// A call to a server; the request's bytes follow.
    Call {
        to: WirePid,
        reff: u64,
        name: &'a str,
    },
    /// A call to a server by its registered name.
    CallNamed {
        to: &'a str,
        reff: u64,
        name: &'a str,
    },
    /// A call's reply; its bytes follow.
    Reply {
        reff: u64,
        name: &'a str,
    },
    /// A call ended without a reply: the callee exited (`Some`) or dropped the request (`None`).
    CallFailed {
        reff: u64,
        reason: Option<ExitReason>,
    },
    Link {
        from: WirePid,
        to: WirePid,
    },
    Unlink {
        from: WirePid,
        to: WirePid,
    },
    Exit {
        from: WirePid,
        to: WirePid,
        reason: ExitReason,
        via_link: bool,
    },
    Monitor {
        watcher: WirePid,
        target: WirePid,
        id: u64,
    },
    Demonitor {
        watcher: WirePid,
        target: WirePid,
        id: u64,
    },
    /// `target` (the sender's) exited; `watcher` (the receiver's) monitored it.
    Down {
        target: WirePid,
        watcher: WirePid,
        id: u64,
        reason: ExitReason,
    },
    Stop {
        to: WirePid,
        reason: ExitReason,
    },
    WhereIs {
        reff: u64,
        name: &'a str,
    },
    WhereIsReply {
        reff: u64,
        pid: Option<WirePid>,
    },
    /// The sender is leaving: its distribution is shutting down
    /// ([`DistNode::shutdown`](crate::DistNode::shutdown)). The receiver closes the connection,
    /// which tells the sender it was heard, and reports a departure
    /// ([`NodeEvent::Left`](crate::NodeEvent::Left)), not a failure. Last, so a build that does
    /// not know it drops it as an undecodable packet and the rest still decodes.
    Goodbye,
    /// `to` (the sender's process) has a full mailbox and messages for it wait on the sender's
    /// node: stop sending to it until `Resume` (see `park`). Messages to it already on the way
    /// are kept. After `Goodbye`, so an older build drops it as undecodable and is held back by
    /// the bound on parked messages instead.
    Pause {
        to: WirePid,
    },
    /// Messages for `to` no longer wait: sending to it may go on.
    Resume {
        to: WirePid,
    },
    /// A call whose caller waits `left_us` more microseconds from when it was sent: the callee
    /// drops it unstarted if that passes while it waits, and its handler can read the time
    /// left. (`Call` is a call with no deadline, or to a peer without `caps::DEADLINES`.)
    CallUntil {
        to: WirePid,
        reff: u64,
        name: &'a str,
        left_us: u64,
    },
    /// The call `reff` was refused unhandled: the callee is overloaded (a full mailbox that
    /// lets nobody wait, or a handler that said so). The caller gets `CallError::Overloaded`.
    CallRefused {
        reff: u64,
    },
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {name}: {reason}")]
pub struct EncodeError {
    /// The wire name of the message.
    pub name: &'static str,
    /// What serde said.
    pub reason: String,
}

/// Encodes a header with no body.
pub(crate) fn packet(p: &Packet<'_>) -> Bytes {
    let mut buf = Vec::with_capacity(32);
    // A header of plain fields always encodes.
    buf = postcard::to_extend(p, buf).expect("packet headers encode");
    Bytes::from(buf)
}

/// Encodes a header and `body`, translating pids inside `body` with `t`.
pub(crate) fn packet_with<T: Wire>(
    p: &Packet<'_>,
    body: &T,
    t: &Arc<dyn PidTranslation>,
) -> Result<Bytes, EncodeError> {
    packet_with_named(p, body, T::NAME, t)
}

/// Encodes a header and `body` (of any serializable type, named `name` in errors).
pub(crate) fn packet_with_named<T: Serialize + ?Sized>(
    p: &Packet<'_>,
    body: &T,
    name: &'static str,
    t: &Arc<dyn PidTranslation>,
) -> Result<Bytes, EncodeError> {
    let buf = postcard::to_extend(p, Vec::with_capacity(64)).expect("packet headers encode");
    with_pid_translation(t, || postcard::to_extend(body, buf))
        .map(Bytes::from)
        .map_err(|e| EncodeError {
            name,
            reason: e.to_string(),
        })
}

/// Decodes a body named `name` as `T`, translating pids with `t`.
pub(crate) fn decode<T: Wire>(
    name: &str,
    body: &[u8],
    t: &Arc<dyn PidTranslation>,
) -> Result<T, String> {
    if name != T::NAME {
        return Err(format!("got a {name:?} where {:?} is taken", T::NAME));
    }
    with_pid_translation(t, || postcard::from_bytes(body))
        .map_err(|e| format!("a {name:?} that does not decode: {e}"))
}

/// Splits a packet into its header and body.
pub(crate) fn split(bytes: &[u8]) -> Result<(Packet<'_>, &[u8]), postcard::Error> {
    postcard::take_from_bytes(bytes)
}
