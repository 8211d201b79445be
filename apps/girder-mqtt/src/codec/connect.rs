//! CONNECT (3.1.1 §3.1, 5.0 §3.1): the first packet of every connection, and the one an
//! unauthenticated peer controls entirely, so every rule the spec makes is checked here.

use super::properties::Properties;
use super::{read_binary, read_string, read_u16, DecodeError};

/// The protocol version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// A message's quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS with this number (0 to 2).
    ///
    /// ```
    /// use girder_mqtt::codec::connect::QoS;
    /// assert_eq!(QoS::from_bits(1), Some(QoS::AtLeastOnce));
    /// assert_eq!(QoS::from_bits(3), None);
    /// ```
    pub fn from_bits(n: u8) -> Option<QoS> {
        match n {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The will a client leaves: published if it goes away without a DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    /// Where it is published.
    pub topic: &'a str,
    /// What is published.
    pub payload: &'a [u8],
    /// At what QoS.
    pub qos: QoS,
    /// Whether it is retained.
    pub retain: bool,
    /// Its properties (5.0: will delay, message expiry, content type, ...).
    pub properties: Properties<'a>,
}

/// A decoded CONNECT, borrowing the packet's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The version the client speaks.
    pub protocol: Protocol,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean_start: bool,
    /// Keep alive, seconds (0: none).
    pub keep_alive: u16,
    /// The client identifier (may be empty: the server assigns one, or refuses).
    pub client_id: &'a str,
    /// The will, if any.
    pub will: Option<Will<'a>>,
    /// The user name, if given.
    pub username: Option<&'a str>,
    /// The password, if given.
    pub password: Option<&'a [u8]>,
    /// The connection's properties (5.0; empty for 3.1.1).
    pub properties: Properties<'a>,
}

/// Decodes a CONNECT's body (what follows the fixed header).
///
/// A protocol name other than `MQTT` or a level other than 4 or 5 is
/// [`DecodeError::UnsupportedProtocol`], which the server answers with "unacceptable protocol
/// version" (3.1.1: return code 1; 5.0: 0x84) before closing; every other fault is a malformed
/// packet that closes the connection.
///
/// ```
/// use girder_mqtt::codec::connect::{decode, Protocol};
/// // 3.1.1, clean session, keep alive 60, client id "c1".
/// let body = [0, 4, b'M', b'Q', b'T', b'T', 4, 0b0000_0010, 0, 60, 0, 2, b'c', b'1'];
/// let c = decode(&body).unwrap();
/// assert_eq!((c.protocol, c.clean_start, c.keep_alive, c.client_id), (Protocol::V311, true, 60, "c1"));
/// assert!(c.will.is_none() && c.username.is_none());
/// ```
pub fn decode(body: &[u8]) -> Result<Connect<'_>, DecodeError> {
    let mut b = body;
    let name = read_string(&mut b)?;
    let (&level, rest) = b.split_first().ok_or(DecodeError::Truncated)?;
    b = rest;
    let protocol = match (name, level) {
        ("MQTT", 4) => Protocol::V311,
        ("MQTT", 5) => Protocol::V5,
        _ => {
            return Err(DecodeError::UnsupportedProtocol {
                name: name.chars().take(16).collect(),
                level,
            })
        }
    };
    let (&flags, rest) = b.split_first().ok_or(DecodeError::Truncated)?;
    b = rest;
    // §3.1.2.3: the reserved bit is 0.
    if flags & 0b1 != 0 {
        return Err(DecodeError::BadConnectFlags("the reserved flag is set"));
    }
    let clean_start = flags & 0b10 != 0;
    let will_flag = flags & 0b100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b10_0000 != 0;
    let password_flag = flags & 0b100_0000 != 0;
    let username_flag = flags & 0b1000_0000 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::BadConnectFlags(
            "will QoS or retain without a will",
        ));
    }
    let will_qos = QoS::from_bits(will_qos).ok_or(DecodeError::BadQos)?;
    // 3.1.1 §3.1.2.9: no password without a user name (5.0 allows it).
    if protocol == Protocol::V311 && password_flag && !username_flag {
        return Err(DecodeError::BadConnectFlags(
            "a password without a user name",
        ));
    }
    let keep_alive = read_u16(&mut b)?;
    let properties = match protocol {
        Protocol::V5 => Properties::read(&mut b)?,
        Protocol::V311 => Properties::default(),
    };
    let client_id = read_string(&mut b)?;
    let will = if will_flag {
        let properties = match protocol {
            Protocol::V5 => Properties::read(&mut b)?,
            Protocol::V311 => Properties::default(),
        };
        let topic = read_string(&mut b)?;
        let payload = read_binary(&mut b)?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = username_flag.then(|| read_string(&mut b)).transpose()?;
    let password = password_flag.then(|| read_binary(&mut b)).transpose()?;
    if !b.is_empty() {
        return Err(DecodeError::TrailingBytes(b.len()));
    }
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}
