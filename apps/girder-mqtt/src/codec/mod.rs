//! The packet codec's foundation: the primitives every MQTT packet is made of, and the fixed
//! header, checked as the spec asks before the rest of a packet is read.
//!
//! A broker reads untrusted bytes, so the order of checks matters: the fixed header's length
//! is checked against the connection's maximum packet size *before* the packet is buffered,
//! reserved flags are checked before the body is decoded, and every field is bounds-checked
//! (a truncated field is [`DecodeError::Truncated`], never a panic).
//!
//! ```
//! use girder_mqtt::codec::{self, PacketType};
//!
//! // PINGREQ: type 12, no flags, no body.
//! let header = codec::fixed_header(&[0xC0, 0x00], 1024).unwrap().unwrap();
//! assert_eq!((header.kind, header.remaining, header.len), (PacketType::PingReq, 0, 2));
//! // Not all of the length has arrived yet: come back with more bytes.
//! assert_eq!(codec::fixed_header(&[0x30, 0x80], 1024), Ok(None));
//! ```

pub mod ack;
pub mod connect;
mod error;
pub mod packet;
pub mod properties;
pub mod publish;
pub mod subscribe;

pub use error::{DecodeError, EncodeError};

use bytes::{Buf, BufMut};

/// The largest value a variable byte integer holds (four bytes of seven bits).
pub const MAX_VARINT: usize = 268_435_455;

/// The control packet types (the fixed header's high nibble).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1: a client's request to connect.
    Connect,
    /// 2: the server's answer to CONNECT.
    ConnAck,
    /// 3: an application message.
    Publish,
    /// 4: QoS 1 acknowledgement.
    PubAck,
    /// 5: QoS 2, received.
    PubRec,
    /// 6: QoS 2, release.
    PubRel,
    /// 7: QoS 2, complete.
    PubComp,
    /// 8: a subscription request.
    Subscribe,
    /// 9: the answer to SUBSCRIBE.
    SubAck,
    /// 10: an unsubscription request.
    Unsubscribe,
    /// 11: the answer to UNSUBSCRIBE.
    UnsubAck,
    /// 12: a keep-alive ping.
    PingReq,
    /// 13: its answer.
    PingResp,
    /// 14: the end of a connection (from either side in 5.0).
    Disconnect,
    /// 15: authentication exchange (5.0 only).
    Auth,
}

impl PacketType {
    /// The type in the high nibble of a fixed header's first byte.
    ///
    /// ```
    /// use girder_mqtt::codec::PacketType;
    /// assert_eq!(PacketType::from_nibble(3), Ok(PacketType::Publish));
    /// assert!(PacketType::from_nibble(0).is_err());
    /// ```
    pub fn from_nibble(n: u8) -> Result<Self, DecodeError> {
        use PacketType::*;
        Ok(match n {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            other => return Err(DecodeError::UnknownPacketType(other)),
        })
    }

    /// The high nibble for this type.
    pub fn nibble(self) -> u8 {
        use PacketType::*;
        match self {
            Connect => 1,
            ConnAck => 2,
            Publish => 3,
            PubAck => 4,
            PubRec => 5,
            PubRel => 6,
            PubComp => 7,
            Subscribe => 8,
            SubAck => 9,
            Unsubscribe => 10,
            UnsubAck => 11,
            PingReq => 12,
            PingResp => 13,
            Disconnect => 14,
            Auth => 15,
        }
    }

    /// The flags every packet of this type must carry (PUBLISH's are its own: `None`).
    fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            // §3.6.1, §3.8.1, §3.10.1: these three carry 0b0010.
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

/// A packet's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub kind: PacketType,
    /// The low nibble: PUBLISH's dup, QoS and retain; fixed values for the others.
    pub flags: u8,
    /// The bytes after the fixed header (at most 268,435,455, §1.5.5; 32 bits keep the
    /// header, which rides in every packet event of a client's process, at 8 bytes).
    pub remaining: u32,
    /// The fixed header's own length (2 to 5 bytes).
    pub len: u8,
}

impl FixedHeader {
    /// The whole packet's length.
    pub fn packet_len(&self) -> usize {
        self.header_len() + self.remaining as usize
    }

    /// The fixed header's own length.
    pub fn header_len(&self) -> usize {
        usize::from(self.len)
    }
}

/// Reads a fixed header from the start of `buf` without consuming it: `Ok(None)` if more
/// bytes are needed. A packet longer than `max_packet` (fixed header included) is refused here,
/// before anything is buffered for it, as are reserved flags, unknown types and a PUBLISH with
/// QoS 3.
///
/// ```
/// use girder_mqtt::codec::{fixed_header, DecodeError, PacketType};
/// // SUBSCRIBE must carry flags 0b0010.
/// assert!(matches!(fixed_header(&[0x80, 0x00], 1024), Err(DecodeError::BadFlags { .. })));
/// // 200 bytes announced, 100 allowed.
/// assert!(matches!(
///     fixed_header(&[0x30, 0xC8, 0x01], 100),
///     Err(DecodeError::PacketTooLarge { size: 203, max: 100 })
/// ));
/// ```
pub fn fixed_header(buf: &[u8], max_packet: usize) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = PacketType::from_nibble(first >> 4)?;
    let flags = first & 0x0F;
    match kind.required_flags() {
        Some(required) if flags != required => return Err(DecodeError::BadFlags { kind, flags }),
        None if (flags >> 1) & 0b11 == 3 => return Err(DecodeError::BadQos),
        _ => {}
    }
    let Some((remaining, used)) = varint_prefix(&buf[1..])? else {
        return Ok(None);
    };
    let header = FixedHeader {
        kind,
        flags,
        // At most 4 bytes of varint: 268,435,455 at most, and 5 bytes of header.
        remaining: remaining as u32,
        len: 1 + used as u8,
    };
    if header.packet_len() > max_packet {
        return Err(DecodeError::PacketTooLarge {
            size: header.packet_len(),
            max: max_packet,
        });
    }
    Ok(Some(header))
}

/// Reads a variable byte integer from the start of `buf`: `Ok(None)` if it continues past the
/// end, else the value and the bytes it took. Refuses a fifth byte and a longer form than the
/// value needs.
fn varint_prefix(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &b) in buf.iter().enumerate() {
        if i == 4 {
            return Err(DecodeError::MalformedVarint);
        }
        value |= ((b & 0x7F) as usize) << (7 * i);
        if b & 0x80 == 0 {
            // A last byte of 0 after others means a shorter form existed.
            if i > 0 && b == 0 {
                return Err(DecodeError::NonMinimalVarint);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::MalformedVarint);
    }
    Ok(None)
}

/// Reads a variable byte integer (within a packet's body, where running out is an error).
///
/// ```
/// let mut b: &[u8] = &[0x80, 0x01, 0xFF];
/// assert_eq!(girder_mqtt::codec::read_varint(&mut b), Ok(128));
/// assert_eq!(b, &[0xFF]);
/// ```
pub fn read_varint(buf: &mut &[u8]) -> Result<usize, DecodeError> {
    match varint_prefix(buf)? {
        Some((value, used)) => {
            buf.advance(used);
            Ok(value)
        }
        None => Err(DecodeError::Truncated),
    }
}

/// Writes `value` as a variable byte integer.
///
/// ```
/// let mut out = Vec::new();
/// girder_mqtt::codec::write_varint(&mut out, 16_384).unwrap();
/// assert_eq!(out, [0x80, 0x80, 0x01]);
/// ```
pub fn write_varint(out: &mut impl BufMut, mut value: usize) -> Result<(), EncodeError> {
    if value > MAX_VARINT {
        return Err(EncodeError::TooLong(value));
    }
    loop {
        let mut b = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if value == 0 {
            return Ok(());
        }
    }
}

/// The bytes [`write_varint`] takes for `value` (1 to 4).
pub fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Reads a two-byte big-endian integer.
pub fn read_u16(buf: &mut &[u8]) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u16())
}

/// Reads binary data: a two-byte length, then that many bytes.
///
/// ```
/// let mut b: &[u8] = &[0x00, 0x02, 0xAB, 0xCD, 0x01];
/// assert_eq!(girder_mqtt::codec::read_binary(&mut b), Ok(&[0xAB, 0xCD][..]));
/// assert_eq!(b, &[0x01]);
/// ```
pub fn read_binary<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = read_u16(buf)? as usize;
    if buf.len() < len {
        return Err(DecodeError::Truncated);
    }
    let (data, rest) = buf.split_at(len);
    *buf = rest;
    Ok(data)
}

/// Reads a UTF-8 string as MQTT defines it: length-prefixed, well-formed, without U+0000.
///
/// ```
/// use girder_mqtt::codec::{read_string, DecodeError};
/// let mut b: &[u8] = &[0x00, 0x04, b'M', b'Q', b'T', b'T'];
/// assert_eq!(read_string(&mut b), Ok("MQTT"));
/// let mut nul: &[u8] = &[0x00, 0x01, 0x00];
/// assert_eq!(read_string(&mut nul), Err(DecodeError::NulInString));
/// ```
pub fn read_string<'a>(buf: &mut &'a [u8]) -> Result<&'a str, DecodeError> {
    let bytes = read_binary(buf)?;
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if s.contains('\0') {
        return Err(DecodeError::NulInString);
    }
    Ok(s)
}

/// Writes binary data with its two-byte length.
pub fn write_binary(out: &mut impl BufMut, data: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(data.len()))?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// Writes a string with its two-byte length, refusing what MQTT forbids.
///
/// ```
/// let mut out = Vec::new();
/// girder_mqtt::codec::write_string(&mut out, "a/b").unwrap();
/// assert_eq!(out, [0x00, 0x03, b'a', b'/', b'b']);
/// assert!(girder_mqtt::codec::write_string(&mut out, "a\0").is_err());
/// ```
pub fn write_string(out: &mut impl BufMut, s: &str) -> Result<(), EncodeError> {
    if s.contains('\0') {
        return Err(EncodeError::NulInString);
    }
    write_binary(out, s.as_bytes())
}

/// Writes a fixed header for a body of `remaining` bytes.
///
/// ```
/// use girder_mqtt::codec::{fixed_header, write_fixed_header, PacketType};
/// let mut out = Vec::new();
/// write_fixed_header(&mut out, PacketType::Subscribe, 0b0010, 300).unwrap();
/// let h = fixed_header(&out, usize::MAX).unwrap().unwrap();
/// assert_eq!((h.kind, h.flags, h.remaining, h.len), (PacketType::Subscribe, 0b0010, 300, 3));
/// ```
pub fn write_fixed_header(
    out: &mut impl BufMut,
    kind: PacketType,
    flags: u8,
    remaining: usize,
) -> Result<(), EncodeError> {
    out.put_u8(kind.nibble() << 4 | (flags & 0x0F));
    write_varint(out, remaining)
}

#[cfg(test)]
mod tests;
