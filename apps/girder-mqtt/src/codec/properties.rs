//! MQTT 5.0 properties (§2.2.2): a length, then identifier–value pairs whose value type the
//! identifier fixes. Parsed once into a list that borrows the packet; typed getters read it.

use bytes::BufMut;

use super::{
    read_binary, read_string, read_u16, read_varint, varint_len, write_binary, write_string,
    write_varint, DecodeError, EncodeError,
};

/// A property's value, as its identifier says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A single byte.
    Byte(u8),
    /// A two-byte integer.
    U16(u16),
    /// A four-byte integer.
    U32(u32),
    /// A variable byte integer.
    Varint(u32),
    /// A UTF-8 string.
    Str(&'a str),
    /// Binary data.
    Bin(&'a [u8]),
    /// A name and value (user properties).
    Pair(&'a str, &'a str),
}

/// The property identifiers (5.0 §2.2.2.2), with the shape of each one's value.
pub mod id {
    /// Payload format indicator (byte).
    pub const PAYLOAD_FORMAT: u8 = 0x01;
    /// Message expiry interval, seconds (u32).
    pub const MESSAGE_EXPIRY: u8 = 0x02;
    /// Content type (string).
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response topic (string).
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation data (binary).
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription identifier (varint).
    pub const SUBSCRIPTION_ID: u8 = 0x0B;
    /// Session expiry interval, seconds (u32).
    pub const SESSION_EXPIRY: u8 = 0x11;
    /// Assigned client identifier (string).
    pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
    /// Server keep alive, seconds (u16).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Authentication method (string).
    pub const AUTH_METHOD: u8 = 0x15;
    /// Authentication data (binary).
    pub const AUTH_DATA: u8 = 0x16;
    /// Request problem information (byte).
    pub const REQUEST_PROBLEM_INFO: u8 = 0x17;
    /// Will delay interval, seconds (u32).
    pub const WILL_DELAY: u8 = 0x18;
    /// Request response information (byte).
    pub const REQUEST_RESPONSE_INFO: u8 = 0x19;
    /// Response information (string).
    pub const RESPONSE_INFO: u8 = 0x1A;
    /// Server reference (string).
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// Reason string (string).
    pub const REASON_STRING: u8 = 0x1F;
    /// Receive maximum (u16).
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic alias maximum (u16).
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic alias (u16).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// Maximum QoS (byte).
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Retain available (byte).
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// User property (string pair; may repeat).
    pub const USER_PROPERTY: u8 = 0x26;
    /// Maximum packet size (u32).
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Wildcard subscription available (byte).
    pub const WILDCARD_SUB_AVAILABLE: u8 = 0x28;
    /// Subscription identifiers available (byte).
    pub const SUB_ID_AVAILABLE: u8 = 0x29;
    /// Shared subscription available (byte).
    pub const SHARED_SUB_AVAILABLE: u8 = 0x2A;
}

/// The shape of a value.
#[derive(Clone, Copy)]
enum Shape {
    Byte,
    U16,
    U32,
    Varint,
    Str,
    Bin,
    Pair,
}

fn shape(property: u8) -> Option<Shape> {
    use id::*;
    Some(match property {
        PAYLOAD_FORMAT
        | REQUEST_PROBLEM_INFO
        | REQUEST_RESPONSE_INFO
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUB_AVAILABLE
        | SUB_ID_AVAILABLE
        | SHARED_SUB_AVAILABLE => Shape::Byte,
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => Shape::U16,
        MESSAGE_EXPIRY | SESSION_EXPIRY | WILL_DELAY | MAXIMUM_PACKET_SIZE => Shape::U32,
        SUBSCRIPTION_ID => Shape::Varint,
        CONTENT_TYPE | RESPONSE_TOPIC | ASSIGNED_CLIENT_ID | AUTH_METHOD | RESPONSE_INFO
        | SERVER_REFERENCE | REASON_STRING => Shape::Str,
        CORRELATION_DATA | AUTH_DATA => Shape::Bin,
        USER_PROPERTY => Shape::Pair,
        _ => return None,
    })
}

/// A packet's properties, in the order they came.
///
/// ```
/// use girder_mqtt::codec::properties::{id, Properties, Value};
/// let mut bytes = Vec::new();
/// let props = Properties::from(vec![
///     (id::SESSION_EXPIRY, Value::U32(60)),
///     (id::USER_PROPERTY, Value::Pair("k", "v")),
/// ]);
/// props.write(&mut bytes).unwrap();
/// let mut b = &bytes[..];
/// let back = Properties::read(&mut b).unwrap();
/// assert_eq!(back.u32(id::SESSION_EXPIRY), Some(60));
/// assert_eq!(back.user().collect::<Vec<_>>(), vec![("k", "v")]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties<'a> {
    items: Vec<(u8, Value<'a>)>,
}

impl<'a> From<Vec<(u8, Value<'a>)>> for Properties<'a> {
    fn from(items: Vec<(u8, Value<'a>)>) -> Self {
        Properties { items }
    }
}

impl<'a> Properties<'a> {
    /// Reads a property length and the properties it covers. An unknown identifier, a value
    /// of the wrong shape or one that runs past the length, and a property other than user
    /// properties and subscription identifiers given twice are protocol errors.
    pub fn read(buf: &mut &'a [u8]) -> Result<Self, DecodeError> {
        let len = read_varint(buf)?;
        if buf.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (mut body, rest) = buf.split_at(len);
        *buf = rest;
        let mut items: Vec<(u8, Value<'a>)> = Vec::new();
        while !body.is_empty() {
            let property = read_varint(&mut body)?;
            let property = u8::try_from(property).map_err(|_| DecodeError::UnknownProperty(0))?;
            let value = match shape(property).ok_or(DecodeError::UnknownProperty(property))? {
                Shape::Byte => {
                    let (&b, rest) = body.split_first().ok_or(DecodeError::Truncated)?;
                    body = rest;
                    Value::Byte(b)
                }
                Shape::U16 => Value::U16(read_u16(&mut body)?),
                Shape::U32 => {
                    let hi = read_u16(&mut body)? as u32;
                    let lo = read_u16(&mut body)? as u32;
                    Value::U32(hi << 16 | lo)
                }
                Shape::Varint => Value::Varint(read_varint(&mut body)? as u32),
                Shape::Str => Value::Str(read_string(&mut body)?),
                Shape::Bin => Value::Bin(read_binary(&mut body)?),
                Shape::Pair => Value::Pair(read_string(&mut body)?, read_string(&mut body)?),
            };
            let repeats = property == id::USER_PROPERTY || property == id::SUBSCRIPTION_ID;
            if !repeats && items.iter().any(|(p, _)| *p == property) {
                return Err(DecodeError::DuplicateProperty(property));
            }
            items.push((property, value));
        }
        Ok(Properties { items })
    }

    /// Writes the property length and the properties.
    pub fn write(&self, out: &mut impl BufMut) -> Result<(), EncodeError> {
        write_varint(out, self.body_len())?;
        for (property, value) in &self.items {
            write_varint(out, *property as usize)?;
            match value {
                Value::Byte(b) => out.put_u8(*b),
                Value::U16(v) => out.put_u16(*v),
                Value::U32(v) => out.put_u32(*v),
                Value::Varint(v) => write_varint(out, *v as usize)?,
                Value::Str(s) => write_string(out, s)?,
                Value::Bin(b) => write_binary(out, b)?,
                Value::Pair(k, v) => {
                    write_string(out, k)?;
                    write_string(out, v)?;
                }
            }
        }
        Ok(())
    }

    /// The bytes [`write`](Self::write) takes, counted without writing them.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body) + body
    }

    /// The properties' bytes after their length.
    fn body_len(&self) -> usize {
        self.items
            .iter()
            .map(|(property, value)| {
                varint_len(*property as usize)
                    + match value {
                        Value::Byte(_) => 1,
                        Value::U16(_) => 2,
                        Value::U32(_) => 4,
                        Value::Varint(v) => varint_len(*v as usize),
                        Value::Str(s) => 2 + s.len(),
                        Value::Bin(b) => 2 + b.len(),
                        Value::Pair(k, v) => 4 + k.len() + v.len(),
                    }
            })
            .sum()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every property, in order.
    pub fn iter(&self) -> impl Iterator<Item = &(u8, Value<'a>)> {
        self.items.iter()
    }

    fn first(&self, property: u8) -> Option<Value<'a>> {
        self.items
            .iter()
            .find(|(p, _)| *p == property)
            .map(|(_, v)| *v)
    }

    /// A byte property.
    pub fn byte(&self, property: u8) -> Option<u8> {
        match self.first(property)? {
            Value::Byte(b) => Some(b),
            _ => None,
        }
    }

    /// A two-byte integer property.
    pub fn u16(&self, property: u8) -> Option<u16> {
        match self.first(property)? {
            Value::U16(v) => Some(v),
            _ => None,
        }
    }

    /// A four-byte integer property.
    pub fn u32(&self, property: u8) -> Option<u32> {
        match self.first(property)? {
            Value::U32(v) => Some(v),
            _ => None,
        }
    }

    /// A variable byte integer property (the first, for a subscription identifier).
    pub fn varint(&self, property: u8) -> Option<u32> {
        match self.first(property)? {
            Value::Varint(v) => Some(v),
            _ => None,
        }
    }

    /// A string property.
    pub fn str(&self, property: u8) -> Option<&'a str> {
        match self.first(property)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A binary property.
    pub fn bin(&self, property: u8) -> Option<&'a [u8]> {
        match self.first(property)? {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// The user properties, in order.
    pub fn user(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.items.iter().filter_map(|(_, v)| match v {
            Value::Pair(k, v) => Some((*k, *v)),
            _ => None,
        })
    }
}
