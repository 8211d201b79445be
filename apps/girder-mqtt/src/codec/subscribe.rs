//! SUBSCRIBE and UNSUBSCRIBE (3.1.1 §3.8, §3.10; 5.0 §3.8, §3.10), and the topic filter rules
//! they carry (§4.7).

use super::connect::{Protocol, QoS};
use super::properties::Properties;
use super::{read_string, read_u16, DecodeError};

/// What to do with retained messages when subscribing (5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time (0; what 3.1.1 always does).
    OnSubscribe,
    /// Send them only if the subscription did not exist (1).
    OnNewSubscription,
    /// Do not send them (2).
    Never,
}

/// One filter of a SUBSCRIBE, with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription<'a> {
    /// The topic filter (checked: see [`check_filter`]).
    pub filter: &'a str,
    /// The most QoS the subscriber wants.
    pub qos: QoS,
    /// 5.0: do not send the subscriber its own messages.
    pub no_local: bool,
    /// 5.0: keep the retain flag as published.
    pub retain_as_published: bool,
    /// 5.0: retained messages at subscribe time.
    pub retain_handling: RetainHandling,
}

/// A decoded SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// Its packet identifier (never 0).
    pub packet_id: u16,
    /// Its properties (5.0: a subscription identifier, user properties).
    pub properties: Properties<'a>,
    /// Its filters, at least one.
    pub subscriptions: Vec<Subscription<'a>>,
}

/// A decoded UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// Its packet identifier (never 0).
    pub packet_id: u16,
    /// Its properties (5.0: user properties).
    pub properties: Properties<'a>,
    /// Its filters, at least one.
    pub filters: Vec<&'a str>,
}

/// Checks a topic filter (§4.7.1): not empty; `#` only as the last level and alone in it; `+`
/// only alone in its level. `$share/{group}/{filter}` (5.0 §4.8.2) needs a group name without
/// wildcards and a filter after it.
///
/// ```
/// use girder_mqtt::codec::subscribe::check_filter;
/// assert!(check_filter("sport/+/player1").is_ok());
/// assert!(check_filter("sport/#").is_ok());
/// assert!(check_filter("#").is_ok());
/// assert!(check_filter("$share/g/a/+").is_ok());
/// assert!(check_filter("sport/#/x").is_err());
/// assert!(check_filter("sport+").is_err());
/// assert!(check_filter("$share/g").is_err());
/// assert!(check_filter("").is_err());
/// ```
pub fn check_filter(filter: &str) -> Result<(), DecodeError> {
    let bad = |why| Err(DecodeError::BadFilter(why));
    if filter.is_empty() {
        return bad("an empty topic filter");
    }
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => {
            let Some((group, inner)) = rest.split_once('/') else {
                return bad("a shared subscription without a filter");
            };
            if group.is_empty() || group.contains(['+', '#']) {
                return bad("a shared subscription's group name is empty or has a wildcard");
            }
            if inner.is_empty() {
                return bad("a shared subscription without a filter");
            }
            inner
        }
        None => filter,
    };
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return bad("'#' is not alone in the last level");
        }
        if level.contains('+') && *level != "+" {
            return bad("'+' is not alone in its level");
        }
    }
    Ok(())
}

/// Decodes a SUBSCRIBE body.
///
/// ```
/// use girder_mqtt::codec::connect::{Protocol, QoS};
/// use girder_mqtt::codec::subscribe::decode_subscribe;
/// // packet id 1, filter "a/#" at QoS 1.
/// let body = [0, 1, 0, 3, b'a', b'/', b'#', 1];
/// let s = decode_subscribe(&body, Protocol::V311).unwrap();
/// assert_eq!((s.packet_id, s.subscriptions[0].filter, s.subscriptions[0].qos), (1, "a/#", QoS::AtLeastOnce));
/// ```
pub fn decode_subscribe(body: &[u8], protocol: Protocol) -> Result<Subscribe<'_>, DecodeError> {
    let mut b = body;
    let packet_id = packet_id(&mut b)?;
    let properties = properties(&mut b, protocol)?;
    let mut subscriptions = Vec::new();
    while !b.is_empty() {
        let filter = read_string(&mut b)?;
        check_filter(filter)?;
        let (&options, rest) = b.split_first().ok_or(DecodeError::Truncated)?;
        b = rest;
        // 3.1.1: the upper six bits are reserved; 5.0: the upper two.
        let reserved = match protocol {
            Protocol::V311 => options & 0b1111_1100,
            Protocol::V5 => options & 0b1100_0000,
        };
        if reserved != 0 {
            return Err(DecodeError::BadSubscriptionOptions(options));
        }
        let qos = QoS::from_bits(options & 0b11).ok_or(DecodeError::BadQos)?;
        let retain_handling = match (options >> 4) & 0b11 {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscription,
            2 => RetainHandling::Never,
            _ => return Err(DecodeError::BadSubscriptionOptions(options)),
        };
        let no_local = options & 0b100 != 0;
        // 5.0 §3.8.3.1: no local on a shared subscription is a protocol error.
        if no_local && filter.starts_with("$share/") {
            return Err(DecodeError::BadFilter("no local on a shared subscription"));
        }
        subscriptions.push(Subscription {
            filter,
            qos,
            no_local,
            retain_as_published: options & 0b1000 != 0,
            retain_handling,
        });
    }
    if subscriptions.is_empty() {
        return Err(DecodeError::NoFilters);
    }
    Ok(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

/// Decodes an UNSUBSCRIBE body.
///
/// ```
/// use girder_mqtt::codec::connect::Protocol;
/// use girder_mqtt::codec::subscribe::decode_unsubscribe;
/// let body = [0, 2, 0, 1, b'a', 0, 1, b'b'];
/// let u = decode_unsubscribe(&body, Protocol::V311).unwrap();
/// assert_eq!((u.packet_id, u.filters), (2, vec!["a", "b"]));
/// ```
pub fn decode_unsubscribe(body: &[u8], protocol: Protocol) -> Result<Unsubscribe<'_>, DecodeError> {
    let mut b = body;
    let packet_id = packet_id(&mut b)?;
    let properties = properties(&mut b, protocol)?;
    let mut filters = Vec::new();
    while !b.is_empty() {
        let filter = read_string(&mut b)?;
        check_filter(filter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoFilters);
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn packet_id(b: &mut &[u8]) -> Result<u16, DecodeError> {
    match read_u16(b)? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

fn properties<'a>(b: &mut &'a [u8], protocol: Protocol) -> Result<Properties<'a>, DecodeError> {
    match protocol {
        Protocol::V5 => Properties::read(b),
        Protocol::V311 => Ok(Properties::default()),
    }
}
