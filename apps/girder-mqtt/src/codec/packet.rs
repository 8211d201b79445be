//! What a client may send, decoded as one enum: the entry point a connection's reader uses.

use super::ack::{decode_pub_ack, PubAck};
use super::connect::{self, Connect, Protocol};
use super::properties::Properties;
use super::publish::{self, Publish};
use super::subscribe::{decode_subscribe, decode_unsubscribe, Subscribe, Unsubscribe};
use super::{DecodeError, FixedHeader, PacketType};

/// A packet from a client, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// The first packet of a connection.
    Connect(Connect<'a>),
    /// An application message.
    Publish(Publish<'a>),
    /// QoS 1 acknowledgement of a message the server sent.
    PubAck(PubAck<'a>),
    /// QoS 2, the client received a message the server sent.
    PubRec(PubAck<'a>),
    /// QoS 2, the client releases a message it sent.
    PubRel(PubAck<'a>),
    /// QoS 2, the client completes a message the server sent.
    PubComp(PubAck<'a>),
    /// A subscription request.
    Subscribe(Subscribe<'a>),
    /// An unsubscription request.
    Unsubscribe(Unsubscribe<'a>),
    /// A keep-alive ping.
    PingReq,
    /// The client is leaving: 5.0 says why (0: normal, 4: with its will).
    Disconnect {
        /// The reason code (0 in 3.1.1).
        reason: u8,
        /// Its properties (5.0: session expiry, reason string).
        properties: Properties<'a>,
    },
    /// 5.0 extended authentication.
    Auth {
        /// The reason code.
        reason: u8,
        /// Its properties (method and data).
        properties: Properties<'a>,
    },
}

/// Decodes the packet whose fixed header is `header` and body `body`, from a client speaking
/// `protocol` (CONNECT is read whatever `protocol` says: it is what sets it). Packets only a
/// server sends, and AUTH in 3.1.1, are protocol errors.
///
/// ```
/// use girder_mqtt::codec::{fixed_header, packet::{decode, Packet}, connect::Protocol};
/// let bytes = [0xC0, 0x00];
/// let h = fixed_header(&bytes, 1024).unwrap().unwrap();
/// assert_eq!(decode(&h, &bytes[h.header_len()..], Protocol::V311), Ok(Packet::PingReq));
/// ```
pub fn decode<'a>(
    header: &FixedHeader,
    body: &'a [u8],
    protocol: Protocol,
) -> Result<Packet<'a>, DecodeError> {
    let empty = |p: Packet<'a>| {
        if body.is_empty() {
            Ok(p)
        } else {
            Err(DecodeError::TrailingBytes(body.len()))
        }
    };
    Ok(match header.kind {
        PacketType::Connect => Packet::Connect(connect::decode(body)?),
        PacketType::Publish => Packet::Publish(publish::decode(header.flags, body, protocol)?),
        PacketType::PubAck => Packet::PubAck(decode_pub_ack(body, protocol)?),
        PacketType::PubRec => Packet::PubRec(decode_pub_ack(body, protocol)?),
        PacketType::PubRel => Packet::PubRel(decode_pub_ack(body, protocol)?),
        PacketType::PubComp => Packet::PubComp(decode_pub_ack(body, protocol)?),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(body, protocol)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(body, protocol)?),
        PacketType::PingReq => return empty(Packet::PingReq),
        PacketType::Disconnect => match protocol {
            Protocol::V311 => {
                return empty(Packet::Disconnect {
                    reason: 0,
                    properties: Properties::default(),
                })
            }
            Protocol::V5 => {
                let (reason, properties) = reason_and_properties(body)?;
                Packet::Disconnect { reason, properties }
            }
        },
        PacketType::Auth if protocol == Protocol::V5 => {
            let (reason, properties) = reason_and_properties(body)?;
            Packet::Auth { reason, properties }
        }
        kind => return Err(DecodeError::NotFromClient(kind)),
    })
}

/// 5.0's optional reason code and properties (§3.14.2, §3.15.2): absent means success.
fn reason_and_properties(body: &[u8]) -> Result<(u8, Properties<'_>), DecodeError> {
    let Some((&reason, mut rest)) = body.split_first() else {
        return Ok((0, Properties::default()));
    };
    let properties = if rest.is_empty() {
        Properties::default()
    } else {
        Properties::read(&mut rest)?
    };
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok((reason, properties))
}
