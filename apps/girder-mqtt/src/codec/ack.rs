//! The small packets: CONNACK, the QoS acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP),
//! SUBACK, UNSUBACK, PINGRESP and DISCONNECT, with 5.0's reason codes and properties.

use bytes::BufMut;

use super::connect::Protocol;
use super::properties::Properties;
use super::{read_u16, write_fixed_header, DecodeError, EncodeError, PacketType};

macro_rules! reasons {
    ($($name:ident = $code:literal,)*) => {
        /// 5.0 reason codes (§2.4). 3.1.1 has only CONNACK's return codes and SUBACK's 0x80,
        /// which [`Reason::for_311_connack`] and [`suback`] derive from these.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[allow(missing_docs)] // the names are the spec's
        pub enum Reason {
            $($name = $code,)*
        }

        impl Reason {
            /// The reason with this code, if 5.0 defines it.
            ///
            /// ```
            /// use girder_mqtt::codec::ack::Reason;
            /// assert_eq!(Reason::from_code(0x87), Some(Reason::NotAuthorized));
            /// assert_eq!(Reason::from_code(0x03), None);
            /// ```
            pub fn from_code(code: u8) -> Option<Reason> {
                match code {
                    $($code => Some(Reason::$name),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    Success = 0x00,
    GrantedQos1 = 0x01,
    GrantedQos2 = 0x02,
    DisconnectWithWill = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QosNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl Reason {
    /// The 3.1.1 CONNACK return code closest to this 5.0 reason (§3.2.2.3): 1 unacceptable
    /// protocol version, 2 identifier rejected, 3 server unavailable, 4 bad user name or
    /// password, 5 not authorized.
    ///
    /// ```
    /// use girder_mqtt::codec::ack::Reason;
    /// assert_eq!(Reason::BadUserNameOrPassword.for_311_connack(), 4);
    /// assert_eq!(Reason::Success.for_311_connack(), 0);
    /// ```
    pub fn for_311_connack(self) -> u8 {
        match self {
            Reason::Success => 0,
            Reason::UnsupportedProtocolVersion => 1,
            Reason::ClientIdentifierNotValid => 2,
            Reason::BadUserNameOrPassword => 4,
            Reason::NotAuthorized | Reason::Banned => 5,
            _ => 3,
        }
    }

    /// True for the codes of a failure (0x80 and above).
    pub fn is_error(self) -> bool {
        self as u8 >= 0x80
    }
}

/// Writes a CONNACK.
///
/// ```
/// use girder_mqtt::codec::ack::{connack, Reason};
/// use girder_mqtt::codec::connect::Protocol;
/// let mut out = Vec::new();
/// connack(&mut out, Protocol::V311, true, Reason::Success, &Default::default()).unwrap();
/// assert_eq!(out, [0x20, 0x02, 0x01, 0x00]);
/// ```
pub fn connack(
    out: &mut impl BufMut,
    protocol: Protocol,
    session_present: bool,
    reason: Reason,
    properties: &Properties<'_>,
) -> Result<(), EncodeError> {
    // §3.2.2.1: no session is present when the connection is refused.
    let present = session_present && !reason.is_error();
    match protocol {
        Protocol::V311 => {
            write_fixed_header(out, PacketType::ConnAck, 0, 2)?;
            out.put_u8(present as u8);
            out.put_u8(reason.for_311_connack());
        }
        Protocol::V5 => {
            write_fixed_header(out, PacketType::ConnAck, 0, 2 + properties.encoded_len())?;
            out.put_u8(present as u8);
            out.put_u8(reason as u8);
            properties.write(out)?;
        }
    }
    Ok(())
}

/// Writes PUBACK, PUBREC, PUBREL or PUBCOMP for `packet_id`. In 5.0 a success without
/// properties is the short form (no reason code), as the spec allows.
///
/// ```
/// use girder_mqtt::codec::ack::{pub_ack, Reason};
/// use girder_mqtt::codec::{connect::Protocol, PacketType};
/// let mut out = Vec::new();
/// pub_ack(&mut out, PacketType::PubRel, 7, Protocol::V5, Reason::Success, &Default::default()).unwrap();
/// assert_eq!(out, [0x62, 0x02, 0x00, 0x07]);
/// ```
pub fn pub_ack(
    out: &mut impl BufMut,
    kind: PacketType,
    packet_id: u16,
    protocol: Protocol,
    reason: Reason,
    properties: &Properties<'_>,
) -> Result<(), EncodeError> {
    let flags = if kind == PacketType::PubRel {
        0b0010
    } else {
        0
    };
    let long = protocol == Protocol::V5 && (reason != Reason::Success || !properties.is_empty());
    if !long {
        write_fixed_header(out, kind, flags, 2)?;
        out.put_u16(packet_id);
        return Ok(());
    }
    write_fixed_header(out, kind, flags, 3 + properties.encoded_len())?;
    out.put_u16(packet_id);
    out.put_u8(reason as u8);
    properties.write(out)
}

/// A QoS acknowledgement read from a client: its packet id and (5.0) reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck<'a> {
    /// The message it acknowledges.
    pub packet_id: u16,
    /// Its reason code (5.0; `Success` in 3.1.1 and in 5.0's short form).
    pub reason: u8,
    /// Its properties (5.0).
    pub properties: Properties<'a>,
}

/// Reads a PUBACK, PUBREC, PUBREL or PUBCOMP body.
///
/// ```
/// use girder_mqtt::codec::ack::decode_pub_ack;
/// use girder_mqtt::codec::connect::Protocol;
/// let a = decode_pub_ack(&[0, 9, 0x10], Protocol::V5).unwrap();
/// assert_eq!((a.packet_id, a.reason), (9, 0x10));
/// ```
pub fn decode_pub_ack(body: &[u8], protocol: Protocol) -> Result<PubAck<'_>, DecodeError> {
    let mut b = body;
    let packet_id = match read_u16(&mut b)? {
        0 => return Err(DecodeError::ZeroPacketId),
        id => id,
    };
    let (reason, properties) = match protocol {
        Protocol::V311 => (0, Properties::default()),
        Protocol::V5 => match b.split_first() {
            None => (0, Properties::default()),
            Some((&reason, rest)) => {
                b = rest;
                let props = if b.is_empty() {
                    Properties::default()
                } else {
                    Properties::read(&mut b)?
                };
                (reason, props)
            }
        },
    };
    if !b.is_empty() {
        return Err(DecodeError::TrailingBytes(b.len()));
    }
    Ok(PubAck {
        packet_id,
        reason,
        properties,
    })
}

/// Writes a SUBACK with one code per filter: in 3.1.1 the granted QoS or 0x80 for a refusal
/// (any 5.0 error reason becomes 0x80), in 5.0 the reason itself.
///
/// ```
/// use girder_mqtt::codec::ack::{suback, Reason};
/// use girder_mqtt::codec::connect::Protocol;
/// let mut out = Vec::new();
/// suback(&mut out, Protocol::V311, 3, &[Reason::GrantedQos1, Reason::NotAuthorized], &Default::default()).unwrap();
/// assert_eq!(out, [0x90, 0x04, 0x00, 0x03, 0x01, 0x80]);
/// ```
pub fn suback(
    out: &mut impl BufMut,
    protocol: Protocol,
    packet_id: u16,
    codes: &[Reason],
    properties: &Properties<'_>,
) -> Result<(), EncodeError> {
    let props = match protocol {
        Protocol::V5 => properties.encoded_len(),
        Protocol::V311 => 0,
    };
    write_fixed_header(out, PacketType::SubAck, 0, 2 + props + codes.len())?;
    out.put_u16(packet_id);
    if protocol == Protocol::V5 {
        properties.write(out)?;
    }
    for code in codes {
        let byte = match protocol {
            Protocol::V311 if code.is_error() => 0x80,
            _ => *code as u8,
        };
        out.put_u8(byte);
    }
    Ok(())
}

/// Writes an UNSUBACK: in 5.0 with a reason per filter, in 3.1.1 the packet id alone.
pub fn unsuback(
    out: &mut impl BufMut,
    protocol: Protocol,
    packet_id: u16,
    codes: &[Reason],
    properties: &Properties<'_>,
) -> Result<(), EncodeError> {
    match protocol {
        Protocol::V311 => {
            write_fixed_header(out, PacketType::UnsubAck, 0, 2)?;
            out.put_u16(packet_id);
        }
        Protocol::V5 => {
            let remaining = 2 + properties.encoded_len() + codes.len();
            write_fixed_header(out, PacketType::UnsubAck, 0, remaining)?;
            out.put_u16(packet_id);
            properties.write(out)?;
            for code in codes {
                out.put_u8(*code as u8);
            }
        }
    }
    Ok(())
}

/// Writes a PINGRESP.
pub fn pingresp(out: &mut impl BufMut) {
    out.put_slice(&[0xD0, 0x00]);
}

/// Writes a DISCONNECT: 5.0's server-side disconnect with a reason (and properties, such as a
/// reason string); in 3.1.1 a server never sends one, so nothing is written.
///
/// ```
/// use girder_mqtt::codec::ack::{disconnect, Reason};
/// use girder_mqtt::codec::connect::Protocol;
/// let mut out = Vec::new();
/// disconnect(&mut out, Protocol::V5, Reason::SessionTakenOver, &Default::default()).unwrap();
/// assert_eq!(out, [0xE0, 0x02, 0x8E, 0x00]);
/// ```
pub fn disconnect(
    out: &mut impl BufMut,
    protocol: Protocol,
    reason: Reason,
    properties: &Properties<'_>,
) -> Result<(), EncodeError> {
    if protocol == Protocol::V311 {
        return Ok(());
    }
    write_fixed_header(out, PacketType::Disconnect, 0, 1 + properties.encoded_len())?;
    out.put_u8(reason as u8);
    properties.write(out)
}
