//! What can be wrong with bytes from a client.

/// Why bytes from a client are not a valid MQTT packet. Each closes that client's connection
/// (with the matching reason code in 5.0); the broker and its other clients carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A variable byte integer ran past four bytes.
    #[error("malformed variable byte integer (more than 4 bytes)")]
    MalformedVarint,
    /// A variable byte integer used more bytes than its value needs (5.0 §1.5.5).
    #[error("variable byte integer not in its shortest form")]
    NonMinimalVarint,
    /// The packet is larger than this connection accepts.
    #[error("packet of {size} bytes is larger than the maximum of {max}")]
    PacketTooLarge {
        /// The whole packet's size, fixed header included.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Packet type 0 or 15 (15 is AUTH, which only 5.0 has).
    #[error("unknown packet type {0}")]
    UnknownPacketType(u8),
    /// The fixed header's flags are not what the packet type requires.
    #[error("{kind:?} with reserved flags {flags:#06b}")]
    BadFlags {
        /// The packet type.
        kind: super::PacketType,
        /// The flags it came with.
        flags: u8,
    },
    /// A PUBLISH with QoS 3.
    #[error("PUBLISH with QoS 3")]
    BadQos,
    /// A field runs past the end of the packet.
    #[error("a field runs past the end of the packet")]
    Truncated,
    /// A string that is not well-formed UTF-8 (surrogates included, which Rust rejects too).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string containing U+0000, which MQTT forbids (§1.5.3 / §1.5.4).
    #[error("string contains U+0000")]
    NulInString,
    /// A 5.0 property identifier this version does not define.
    #[error("unknown property {0:#04x}")]
    UnknownProperty(u8),
    /// A property that may appear once appeared twice.
    #[error("property {0:#04x} given twice")]
    DuplicateProperty(u8),
    /// CONNECT for a protocol this broker does not speak (answered with "unacceptable protocol
    /// version" before the connection closes).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// The protocol name given (at most 16 characters of it).
        name: String,
        /// The protocol level given.
        level: u8,
    },
    /// CONNECT flags the spec forbids.
    #[error("bad CONNECT flags: {0}")]
    BadConnectFlags(&'static str),
    /// Bytes left over after the last field.
    #[error("{0} bytes after the last field")]
    TrailingBytes(usize),
    /// A PUBLISH the spec forbids.
    #[error("bad PUBLISH: {0}")]
    BadPublish(&'static str),
    /// A packet identifier of 0 where one is required (§2.2.1 / §2.3.1).
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A topic filter the spec forbids (§4.7.1, §4.8.2).
    #[error("bad topic filter: {0}")]
    BadFilter(&'static str),
    /// Subscription options with reserved bits or retain handling 3.
    #[error("bad subscription options {0:#010b}")]
    BadSubscriptionOptions(u8),
    /// A SUBSCRIBE or UNSUBSCRIBE without a filter.
    #[error("no topic filter")]
    NoFilters,
    /// A packet only a server sends (or AUTH from a 3.1.1 client).
    #[error("{0:?} is not a packet a client sends")]
    NotFromClient(super::PacketType),
}

impl DecodeError {
    /// The 5.0 reason code a DISCONNECT (or CONNACK) carries for it (§4.13): too large,
    /// unsupported protocol, a protocol error for what is well formed but not allowed, and
    /// malformed packet for the rest.
    ///
    /// ```
    /// use girder_mqtt::codec::{ack::Reason, DecodeError};
    /// assert_eq!(DecodeError::PacketTooLarge { size: 9, max: 8 }.reason(), Reason::PacketTooLarge);
    /// assert_eq!(DecodeError::Truncated.reason(), Reason::MalformedPacket);
    /// ```
    pub fn reason(&self) -> super::ack::Reason {
        use super::ack::Reason;
        match self {
            DecodeError::PacketTooLarge { .. } => Reason::PacketTooLarge,
            DecodeError::UnsupportedProtocol { .. } => Reason::UnsupportedProtocolVersion,
            DecodeError::DuplicateProperty(_)
            | DecodeError::NotFromClient(_)
            | DecodeError::ZeroPacketId
            | DecodeError::BadConnectFlags(_) => Reason::ProtocolError,
            DecodeError::BadFilter(_) => Reason::TopicFilterInvalid,
            _ => Reason::MalformedPacket,
        }
    }
}

/// Why a value cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A length over 268,435,455 (the largest variable byte integer).
    #[error("{0} does not fit a variable byte integer")]
    TooLong(usize),
    /// A string or binary field over 65,535 bytes.
    #[error("a field of {0} bytes is longer than 65,535")]
    FieldTooLong(usize),
    /// A string containing U+0000.
    #[error("string contains U+0000")]
    NulInString,
    /// A QoS 1 or 2 message without a packet identifier (or with 0).
    #[error("a QoS 1 or 2 message needs a non-zero packet identifier")]
    MissingPacketId,
}
