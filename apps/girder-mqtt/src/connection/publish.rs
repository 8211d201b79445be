//! A client's PUBLISH and acknowledgements, handled without awaiting when nothing makes them
//! wait (`at_once`), which is nearly always. The connection process's future keeps room for the
//! largest future its handlers await for as long as it lives, idle or not: the packets that
//! come by the thousand are handled by plain functions, and the rare waits (a publish held for
//! a subscriber that is behind, a client over its publish rate, QoS 2, the other packets) are
//! boxed, allocated only while they last.

use std::sync::Arc;

use girder::{Flow, SendError, ServerContext};

use super::Connection;
use crate::codec::ack::{self, Reason};
use crate::codec::connect::QoS;
use crate::codec::packet::{self, Packet};
use crate::codec::properties::{id, Properties};
use crate::codec::publish::Publish;
use crate::codec::{FixedHeader, PacketType};
use crate::message::Message;
use crate::router::Held;
use crate::session::{self, Ack};

use bytes::BytesMut;

/// What handling a packet at once came to.
pub(super) enum Now {
    /// Handled.
    Done,
    /// The connection ends, with this reason and log line.
    Close(Reason, &'static str),
    /// Routed except to these sessions, which the connection waits for before it acknowledges
    /// (a PUBACK with this packet id, if QoS 1) and reads on.
    Held {
        held: Vec<Held>,
        sent: usize,
        puback: Option<u16>,
    },
    /// The session has acknowledgements waiting and a full mailbox: wake it, waiting for room.
    Wake,
    /// Not one of the packets handled at once: the general path.
    Later,
}

impl Connection {
    /// PUBLISH at QoS 0 and 1 (unless the client has a publish rate), PUBACK, PUBREC, PUBCOMP
    /// and PINGREQ from a connected client, without awaiting; anything else is `Later`.
    pub(super) fn at_once(&mut self, h: &FixedHeader, bytes: &BytesMut) -> Now {
        let Some(client) = &self.client else {
            return Now::Later;
        };
        let Ok(packet) = packet::decode(h, &bytes[h.len..], client.protocol) else {
            return Now::Later;
        };
        match packet {
            Packet::Publish(p) if p.qos != QoS::ExactlyOnce && client.rate.is_none() => {
                self.publish_now(p)
            }
            Packet::PubAck(a) | Packet::PubComp(a) => self.ack_now(Ack::Done(a.packet_id)),
            Packet::PubRec(a) => self.ack_now(rec(a.packet_id, a.reason)),
            Packet::PingReq => {
                ack::pingresp(&mut self.out);
                Now::Done
            }
            _ => Now::Later,
        }
    }

    /// Hands an acknowledgement to the session, waking it (if it had none waiting) when its
    /// mailbox has room; `Wake` if it has none.
    pub(super) fn ack_now(&self, ack: Ack) -> Now {
        let client = self.client.as_ref().expect("connected");
        if client.acks.push(ack) {
            if let Err(SendError::Full(_)) = client.session.server().cast(session::Cast::Acks) {
                return Now::Wake;
            }
        }
        Now::Done
    }

    /// Finishes what `at_once` (or the general path) could not do at once.
    pub(super) async fn finish(&mut self, now: Now, ctx: &ServerContext<Self>) -> Flow {
        match now {
            Now::Done | Now::Later => Flow::Continue,
            Now::Close(reason, why) => self.close(reason, why, ctx).await,
            Now::Held {
                held,
                mut sent,
                puback,
            } => {
                sent += deliver_held(held, self.shared.config.backpressure_timeout()).await;
                if let Some(id) = puback {
                    self.reply(PacketType::PubAck, id, routed(sent));
                }
                Flow::Continue
            }
            Now::Wake => {
                let client = self.client.as_ref().expect("connected");
                let _ = client.session.server().cast_wait(session::Cast::Acks).await;
                Flow::Continue
            }
        }
    }

    /// Writes an acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) without properties.
    pub(super) fn reply(&mut self, kind: PacketType, id: u16, reason: Reason) {
        let protocol = self.protocol();
        let _ = ack::pub_ack(
            &mut self.out,
            kind,
            id,
            protocol,
            reason,
            &Properties::default(),
        );
    }

    pub(super) fn may_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        if topic.starts_with("$SYS") {
            return false;
        }
        match &self.shared.acl {
            Some(acl) => acl.allows(username, client_id, topic, crate::acl::Access::Write),
            None => true,
        }
    }

    /// The topic of a PUBLISH (5.0 topic aliases resolved, §3.3.2.3.4) if the client may
    /// publish to it; otherwise what to do instead (refused: `Done`, with a failure code in
    /// the PUBACK or PUBREC; or `Close`).
    fn admit(&mut self, p: &Publish<'_>) -> Result<Arc<str>, Now> {
        let client = self.client.as_mut().expect("connected");
        let topic: Arc<str> = match p.properties.u16(id::TOPIC_ALIAS) {
            Some(a) if a == 0 || a > super::TOPIC_ALIAS_MAX => {
                return Err(Now::Close(
                    Reason::TopicAliasInvalid,
                    "topic alias out of range",
                ))
            }
            Some(a) if p.topic.is_empty() => match client.aliases.get(&a) {
                Some(t) => t.clone(),
                None => return Err(Now::Close(Reason::ProtocolError, "unknown topic alias")),
            },
            Some(a) => {
                let t: Arc<str> = p.topic.into();
                client.aliases.insert(a, t.clone());
                t
            }
            None if p.topic.is_empty() => {
                return Err(Now::Close(
                    Reason::ProtocolError,
                    "empty topic without an alias",
                ))
            }
            None if *client.last_topic == *p.topic => client.last_topic.clone(),
            None => {
                client.last_topic = p.topic.into();
                client.last_topic.clone()
            }
        };
        self.shared.stats.messages_in.inc();
        let client = self.client.as_ref().expect("connected");
        if self.may_publish(client.username.as_deref(), &client.id, &topic) {
            return Ok(topic);
        }
        tracing::debug!(client = %client.id, %topic, "publish not allowed");
        let id = p.packet_id.unwrap_or(0);
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.reply(PacketType::PubAck, id, Reason::NotAuthorized),
            QoS::ExactlyOnce => self.reply(PacketType::PubRec, id, Reason::NotAuthorized),
        }
        Err(Now::Done)
    }

    /// A QoS 0 or 1 PUBLISH: routed, and acknowledged unless a session made it wait.
    fn publish_now(&mut self, p: Publish<'_>) -> Now {
        let topic = match self.admit(&p) {
            Ok(t) => t,
            Err(now) => return now,
        };
        let client = self.client.as_ref().expect("connected");
        let msg = Message::from_publish(&p, &topic, &client.id);
        let (sent, held) = self.shared.router.publish_held(&msg);
        let puback = (p.qos == QoS::AtLeastOnce).then(|| p.packet_id.unwrap_or(0));
        if !held.is_empty() {
            return Now::Held { held, sent, puback };
        }
        if let Some(id) = puback {
            self.reply(PacketType::PubAck, id, routed(sent));
        }
        Now::Done
    }

    /// The general path's PUBLISH: after the client's publish rate allows (waiting stops this
    /// connection reading its socket, so TCP slows the client, and nobody else), QoS 0 and 1
    /// as at once, and QoS 2.
    pub(super) async fn on_publish(&mut self, p: Publish<'_>, ctx: &ServerContext<Self>) -> Flow {
        let client = self.client.as_ref().expect("connected");
        if let Some(rate) = &client.rate {
            if let Ok(permit) = rate.ask().await {
                permit.ignore();
            }
        }
        if p.qos != QoS::ExactlyOnce {
            let now = self.publish_now(p);
            return self.finish(now, ctx).await;
        }
        let topic = match self.admit(&p) {
            Ok(t) => t,
            Err(now) => return self.finish(now, ctx).await,
        };
        // Method B of §4.3.3: routed on the first PUBLISH, its id kept until PUBREL, so a
        // re-sent PUBLISH is acknowledged and not routed again.
        let id = p.packet_id.unwrap_or(0);
        let client = self.client.as_mut().expect("connected");
        let max = self.shared.config.max_inflight_in as usize;
        if !client.awaiting_rel.contains(&id) && client.awaiting_rel.len() >= max {
            self.shared.stats.protocol_errors.inc();
            return self
                .close(
                    Reason::ReceiveMaximumExceeded,
                    "too many QoS 2 messages unreleased",
                    ctx,
                )
                .await;
        }
        let mut reason = Reason::Success;
        if client.awaiting_rel.insert(id) {
            let msg = Message::from_publish(&p, &topic, &client.id);
            let session = client.session.clone();
            let (sent, held) = self.shared.router.publish_held(&msg);
            let timeout = self.shared.config.backpressure_timeout();
            reason = routed(sent + deliver_held(held, timeout).await);
            let _ = session
                .server()
                .cast_wait(session::Cast::Qos2Received(id))
                .await;
        }
        self.reply(PacketType::PubRec, id, reason);
        Flow::Continue
    }
}

/// Hands over what the router held back, waiting for each session in turn (each wait at most
/// `timeout` for a session that is behind); how many it reached.
async fn deliver_held(held: Vec<Held>, timeout: std::time::Duration) -> usize {
    let mut sent = 0;
    for h in held {
        if h.deliver(timeout).await {
            sent += 1;
        }
    }
    sent
}

/// The reason code for a message that went to `sent` sessions (5.0: 0x10 when none).
fn routed(sent: usize) -> Reason {
    if sent == 0 {
        Reason::NoMatchingSubscribers
    } else {
        Reason::Success
    }
}

/// PUBREC: received, a PUBREL goes next; a failure code ends the exchange as PUBCOMP would
/// (5.0 §4.3.3).
fn rec(packet_id: u16, reason: u8) -> Ack {
    if reason >= 0x80 {
        Ack::Done(packet_id)
    } else {
        Ack::Received(packet_id)
    }
}
