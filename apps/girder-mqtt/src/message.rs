//! An application message once the broker owns it: what a PUBLISH leaves behind after its
//! packet's buffer is gone, shared (one `Arc`) by every subscriber it goes to, the retained
//! store and the offline queues.
//!
//! 5.0 properties that travel with a message (§3.3.2.3: payload format, content type,
//! response topic, correlation data, user properties) are kept as they came; the message
//! expiry interval becomes a deadline, and what is left of it is sent on (§3.3.2.3.3). Topic
//! aliases and subscription identifiers belong to one connection and are not kept.
//!
//! ```
//! use girder_mqtt::codec::connect::{Protocol, QoS};
//! use girder_mqtt::codec::publish::decode;
//! use girder_mqtt::message::Message;
//! let body = [0, 3, b'a', b'/', b'b', 0, 7, b'h', b'i'];
//! let p = decode(0b0010, &body, Protocol::V311).unwrap();
//! let m = Message::from_publish(&p, &"a/b".into(), &"client-1".into());
//! assert_eq!((&*m.topic, &m.payload[..], m.qos), ("a/b", &b"hi"[..], QoS::AtLeastOnce));
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::connect::{QoS, Will};
use crate::codec::properties::{id, Properties, Value};
use crate::codec::publish::Publish;

/// A property the broker forwards, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// Payload format indicator (0: bytes, 1: UTF-8).
    PayloadFormat(u8),
    /// Content type.
    ContentType(Arc<str>),
    /// Response topic (request/response).
    ResponseTopic(Arc<str>),
    /// Correlation data (request/response).
    CorrelationData(Bytes),
    /// A user property.
    User(Arc<str>, Arc<str>),
}

/// An application message, owned by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its topic name (never empty: a topic alias is resolved before this is made).
    pub topic: Arc<str>,
    /// Its payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The retain flag it was published with.
    pub retain: bool,
    /// The client that published it (for 5.0's no-local option); empty for the broker's own.
    pub from: Arc<str>,
    /// When it expires (5.0's message expiry interval), if it does.
    pub expires: Option<Instant>,
    /// The properties it carries on.
    pub properties: Vec<Forwarded>,
    /// When the broker got it (for the delivery latency).
    pub received: Instant,
}

impl Message {
    /// The message a PUBLISH carries, on `topic` (the packet's, or its alias's), from
    /// client `from` (shared, not copied: the connection holds both).
    pub fn from_publish(p: &Publish<'_>, topic: &Arc<str>, from: &Arc<str>) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.clone(),
            // Copied, not a slice of the packet's buffer: a queued message must not keep a
            // whole read buffer alive.
            payload: Bytes::copy_from_slice(p.payload),
            qos: p.qos,
            retain: p.retain,
            from: from.clone(),
            expires: expiry(&p.properties),
            properties: forwarded(&p.properties),
            received: Instant::now(),
        })
    }

    /// The message a will carries, from client `from`.
    pub fn from_will(w: &Will<'_>, from: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: w.topic.into(),
            payload: Bytes::copy_from_slice(w.payload),
            qos: w.qos,
            retain: w.retain,
            from: from.into(),
            expires: expiry(&w.properties),
            properties: forwarded(&w.properties),
            received: Instant::now(),
        })
    }

    /// A message the broker publishes itself (`$SYS` topics).
    pub fn broker(topic: &str, payload: impl Into<Bytes>, retain: bool) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain,
            from: "".into(),
            expires: None,
            properties: Vec::new(),
            received: Instant::now(),
        })
    }

    /// True once its expiry has passed at `now`: it is no longer delivered (§3.3.2.3.3).
    pub fn expired_at(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// True once its expiry has passed. Reads the clock only for a message with an expiry:
    /// most have none, and a delivery is cheap enough for a clock read to show.
    pub fn expired(&self) -> bool {
        self.expires.is_some_and(|e| e <= Instant::now())
    }

    /// Its properties as a PUBLISH to a subscriber carries them: the forwarded ones, what is
    /// left of its expiry interval, and the subscription identifiers that matched.
    pub fn properties_for(&self, subscription_ids: &[u32]) -> Properties<'_> {
        if self.properties.is_empty() && self.expires.is_none() && subscription_ids.is_empty() {
            return Properties::default();
        }
        let mut items = Vec::with_capacity(self.properties.len() + 1 + subscription_ids.len());
        for p in &self.properties {
            items.push(match p {
                Forwarded::PayloadFormat(b) => (id::PAYLOAD_FORMAT, Value::Byte(*b)),
                Forwarded::ContentType(s) => (id::CONTENT_TYPE, Value::Str(s)),
                Forwarded::ResponseTopic(s) => (id::RESPONSE_TOPIC, Value::Str(s)),
                Forwarded::CorrelationData(b) => (id::CORRELATION_DATA, Value::Bin(b)),
                Forwarded::User(k, v) => (id::USER_PROPERTY, Value::Pair(k, v)),
            });
        }
        if let Some(e) = self.expires {
            let left = e.saturating_duration_since(Instant::now()).as_secs().max(1);
            items.push((
                id::MESSAGE_EXPIRY,
                Value::U32(left.min(u32::MAX as u64) as u32),
            ));
        }
        for s in subscription_ids {
            items.push((id::SUBSCRIPTION_ID, Value::Varint(*s)));
        }
        Properties::from(items)
    }

    /// Its size as the memory it holds (topic and payload), for queue limits and statistics.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

fn expiry(p: &Properties<'_>) -> Option<Instant> {
    p.u32(id::MESSAGE_EXPIRY)
        .map(|s| Instant::now() + Duration::from_secs(s as u64))
}

fn forwarded(p: &Properties<'_>) -> Vec<Forwarded> {
    if p.is_empty() {
        return Vec::new();
    }
    p.iter()
        .filter_map(|(property, value)| {
            Some(match (*property, value) {
                (id::PAYLOAD_FORMAT, Value::Byte(b)) => Forwarded::PayloadFormat(*b),
                (id::CONTENT_TYPE, Value::Str(s)) => Forwarded::ContentType((*s).into()),
                (id::RESPONSE_TOPIC, Value::Str(s)) => Forwarded::ResponseTopic((*s).into()),
                (id::CORRELATION_DATA, Value::Bin(b)) => {
                    Forwarded::CorrelationData(Bytes::copy_from_slice(b))
                }
                (id::USER_PROPERTY, Value::Pair(k, v)) => Forwarded::User((*k).into(), (*v).into()),
                _ => return None,
            })
        })
        .collect()
}
