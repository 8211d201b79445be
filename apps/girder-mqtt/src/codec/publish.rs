//! PUBLISH (3.1.1 §3.3, 5.0 §3.3): an application message, in either direction.

use bytes::BufMut;

use super::connect::{Protocol, QoS};
use super::properties::Properties;
use super::{read_string, read_u16, write_fixed_header, write_string, DecodeError, EncodeError};
use super::{varint_len, PacketType};

/// A decoded PUBLISH, borrowing the packet's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    /// A re-delivery of a QoS 1 or 2 message.
    pub dup: bool,
    /// Its QoS.
    pub qos: QoS,
    /// Whether the server keeps it for later subscribers.
    pub retain: bool,
    /// The topic (empty in 5.0 when a topic alias stands for it).
    pub topic: &'a str,
    /// The packet identifier, for QoS 1 and 2 (never 0).
    pub packet_id: Option<u16>,
    /// Its properties (5.0).
    pub properties: Properties<'a>,
    /// The application message.
    pub payload: &'a [u8],
}

/// Decodes a PUBLISH body with the fixed header's `flags`.
///
/// The topic name must not hold wildcards (§4.7.1: `+` and `#` are for filters), a QoS 1 or 2
/// message carries a non-zero packet identifier, and an empty topic is allowed only in 5.0
/// (with a topic alias, which the session checks).
///
/// ```
/// use girder_mqtt::codec::connect::{Protocol, QoS};
/// use girder_mqtt::codec::publish::decode;
/// // QoS 1, topic "a/b", packet id 7, payload "hi".
/// let body = [0, 3, b'a', b'/', b'b', 0, 7, b'h', b'i'];
/// let p = decode(0b0010, &body, Protocol::V311).unwrap();
/// assert_eq!((p.topic, p.qos, p.packet_id, p.payload), ("a/b", QoS::AtLeastOnce, Some(7), &b"hi"[..]));
/// ```
pub fn decode(flags: u8, body: &[u8], protocol: Protocol) -> Result<Publish<'_>, DecodeError> {
    let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::BadQos)?;
    let dup = flags & 0b1000 != 0;
    if dup && qos == QoS::AtMostOnce {
        // §3.3.1.1: DUP is 0 for every QoS 0 message.
        return Err(DecodeError::BadPublish("DUP set on a QoS 0 message"));
    }
    let mut b = body;
    let topic = read_string(&mut b)?;
    if topic.contains(['+', '#']) {
        return Err(DecodeError::BadPublish("a wildcard in a topic name"));
    }
    if topic.is_empty() && protocol == Protocol::V311 {
        return Err(DecodeError::BadPublish("an empty topic name"));
    }
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => match read_u16(&mut b)? {
            0 => return Err(DecodeError::ZeroPacketId),
            id => Some(id),
        },
    };
    let properties = match protocol {
        Protocol::V5 => Properties::read(&mut b)?,
        Protocol::V311 => Properties::default(),
    };
    Ok(Publish {
        dup,
        qos,
        retain: flags & 0b1 != 0,
        topic,
        packet_id,
        properties,
        payload: b,
    })
}

impl Publish<'_> {
    /// Encodes the whole packet, fixed header included, for a client speaking `protocol`. On an
    /// error `out` may hold part of the packet: discard it.
    ///
    /// ```
    /// use girder_mqtt::codec::connect::{Protocol, QoS};
    /// use girder_mqtt::codec::publish::{decode, Publish};
    /// use girder_mqtt::codec::fixed_header;
    /// let p = Publish {
    ///     dup: false, qos: QoS::ExactlyOnce, retain: true, topic: "t", packet_id: Some(9),
    ///     properties: Default::default(), payload: b"x",
    /// };
    /// let mut out = Vec::new();
    /// p.encode(&mut out, Protocol::V5).unwrap();
    /// let h = fixed_header(&out, usize::MAX).unwrap().unwrap();
    /// assert_eq!(decode(h.flags, &out[h.header_len()..], Protocol::V5).unwrap(), p);
    /// ```
    pub fn encode(&self, out: &mut impl BufMut, protocol: Protocol) -> Result<(), EncodeError> {
        if self.qos != QoS::AtMostOnce && matches!(self.packet_id, None | Some(0)) {
            return Err(EncodeError::MissingPacketId);
        }
        let remaining = self.remaining_len(protocol);
        let flags = (self.dup as u8) << 3 | (self.qos as u8) << 1 | self.retain as u8;
        write_fixed_header(out, PacketType::Publish, flags, remaining)?;
        write_string(out, self.topic)?;
        if let Some(id) = self.packet_id.filter(|_| self.qos != QoS::AtMostOnce) {
            out.put_u16(id);
        }
        if protocol == Protocol::V5 {
            self.properties.write(out)?;
        }
        out.put_slice(self.payload);
        Ok(())
    }

    /// The encoded packet's length, fixed header included.
    pub fn encoded_len(&self, protocol: Protocol) -> usize {
        let remaining = self.remaining_len(protocol);
        1 + varint_len(remaining) + remaining
    }

    /// The bytes after the fixed header.
    fn remaining_len(&self, protocol: Protocol) -> usize {
        let props = match protocol {
            Protocol::V5 => self.properties.encoded_len(),
            Protocol::V311 => 0,
        };
        let id_len = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        2 + self.topic.len() + id_len + props + self.payload.len()
    }
}
