//! A connected client's packets: PUBLISH (routed; QoS 1 and 2 acknowledged), the
//! acknowledgements of what it is sent, SUBSCRIBE (with the ACL) and UNSUBSCRIBE, PINGREQ,
//! DISCONNECT. None waits: a publish that must wait for subscribers that are behind, or for
//! the client's publish rate, pauses the socket's reading and waits as an event source of
//! the process, which handles its mailbox meanwhile.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream;
use girder::{Flow, ServerContext};

use super::{Client, Info};
use crate::codec::ack::{self, Reason};
use crate::codec::connect::QoS;
use crate::codec::packet::{self, Packet};
use crate::codec::properties::{id, Properties};
use crate::codec::publish::Publish;
use crate::codec::subscribe::Subscribe;
use crate::codec::{FixedHeader, PacketType};
use crate::message::Message;
use crate::router::Held;
use crate::session::SubRequest;

impl Client {
    /// A packet from a connected client. `permitted`: its publish rate has allowed it.
    pub(super) fn on_packet(
        &mut self,
        h: FixedHeader,
        bytes: BytesMut,
        permitted: bool,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        let (Some(link), Some(session)) = (&mut self.link, &mut self.session) else {
            return Flow::Continue;
        };
        let protocol = link.protocol;
        let packet = match packet::decode(&h, &bytes[h.header_len()..], protocol) {
            Ok(p) => p,
            Err(e) => {
                self.shared.stats.protocol_errors.inc();
                return self.close(e.reason(), &e.to_string(), ctx);
            }
        };
        match packet {
            Packet::Connect(_) => {
                self.shared.stats.protocol_errors.inc();
                return self.close(Reason::ProtocolError, "second CONNECT", ctx);
            }
            Packet::Publish(p) => {
                if let (Some(rate), false) = (&link.rate, permitted) {
                    if rate.try_ask().is_err() {
                        // Over its rate: read nothing more from it until it is allowed, so
                        // TCP slows this client and nobody else.
                        let rate = rate.clone();
                        let (n, mut packet) = (self.links, Some((h, bytes)));
                        self.wait_for(
                            async move {
                                if let Ok(permit) = rate.ask().await {
                                    permit.ignore();
                                }
                            },
                            move |()| {
                                let (h, bytes) = packet.take().expect("once");
                                Info::Permitted(n, h, bytes)
                            },
                            ctx,
                        );
                        return Flow::Continue;
                    }
                }
                return self.on_publish(p, ctx);
            }
            Packet::PubAck(a) | Packet::PubComp(a) => session.acked(a.packet_id, link),
            // A failure code ends the exchange as PUBCOMP would (5.0 §4.3.3).
            Packet::PubRec(a) if a.reason >= 0x80 => session.acked(a.packet_id, link),
            Packet::PubRec(a) => session.received(a.packet_id, link),
            Packet::PubRel(a) => {
                let reason = if session.release(a.packet_id) {
                    Reason::Success
                } else {
                    Reason::PacketIdentifierNotFound
                };
                link.reply(PacketType::PubComp, a.packet_id, reason);
            }
            Packet::Subscribe(s) => return self.on_subscribe(s, ctx),
            Packet::Unsubscribe(u) => {
                let filters: Vec<String> = u.filters.iter().map(|f| f.to_string()).collect();
                let codes: Vec<Reason> = session
                    .unsubscribe(&filters)
                    .into_iter()
                    .map(|existed| {
                        if existed {
                            Reason::Success
                        } else {
                            Reason::NoSubscriptionExisted
                        }
                    })
                    .collect();
                let props = Properties::default();
                let _ = ack::unsuback(link.out(), protocol, u.packet_id, &codes, &props);
            }
            Packet::PingReq => ack::pingresp(link.out()),
            Packet::Disconnect { reason, properties } => {
                if let Some(e) = properties.u32(id::SESSION_EXPIRY) {
                    session.expiry = e;
                }
                let will = reason == Reason::DisconnectWithWill as u8;
                return self.link_gone(None, will, ctx);
            }
            Packet::Auth { .. } => {
                return self.close(
                    Reason::BadAuthenticationMethod,
                    "extended authentication is not supported",
                    ctx,
                );
            }
        }
        Flow::Continue
    }

    fn on_subscribe(&mut self, s: Subscribe<'_>, ctx: &mut ServerContext<Self>) -> Flow {
        // A variable byte integer, 1 to 268,435,455 (§3.8.2.1.2).
        let sub_id = s.properties.varint(id::SUBSCRIPTION_ID);
        if sub_id == Some(0) {
            return self.close(Reason::ProtocolError, "subscription identifier 0", ctx);
        }
        let me = Self::me(ctx);
        let (Some(link), Some(session)) = (&mut self.link, &mut self.session) else {
            return Flow::Continue;
        };
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut wanted = Vec::new();
        for f in &s.subscriptions {
            let (_, inner) = crate::topic::shared_group(f.filter);
            let allowed = self.shared.acl.as_ref().is_none_or(|acl| {
                acl.may_subscribe(session.username.as_deref(), &session.client_id, inner)
            });
            if !allowed {
                codes.push(Reason::NotAuthorized);
                continue;
            }
            codes.push(match f.qos {
                QoS::AtMostOnce => Reason::Success,
                QoS::AtLeastOnce => Reason::GrantedQos1,
                QoS::ExactlyOnce => Reason::GrantedQos2,
            });
            wanted.push(SubRequest {
                filter: f.filter.to_string(),
                qos: f.qos,
                no_local: f.no_local,
                retain_as_published: f.retain_as_published,
                retain_handling: f.retain_handling,
                id: sub_id,
            });
        }
        let fresh = session.subscribe(&wanted, &me);
        let props = Properties::default();
        let protocol = link.protocol;
        let _ = ack::suback(link.out(), protocol, s.packet_id, &codes, &props);
        session.send_retained(&wanted, &fresh, link);
        Flow::Continue
    }

    /// The topic of a PUBLISH (5.0 topic aliases resolved, §3.3.2.3.4) if the client may
    /// publish to it; otherwise what to do instead (`Ok(None)`: refused, with a failure code
    /// in the PUBACK or PUBREC; `Err`: the connection closes).
    fn admit(&mut self, p: &Publish<'_>) -> Result<Option<Arc<str>>, (Reason, &'static str)> {
        let (Some(link), Some(session)) = (&mut self.link, &self.session) else {
            return Ok(None);
        };
        let topic: Arc<str> = match p.properties.u16(id::TOPIC_ALIAS) {
            Some(a) if a == 0 || a > super::TOPIC_ALIAS_MAX => {
                return Err((Reason::TopicAliasInvalid, "topic alias out of range"))
            }
            Some(a) if p.topic.is_empty() => match link.aliases.as_ref().and_then(|m| m.get(&a)) {
                Some(t) => t.clone(),
                None => return Err((Reason::ProtocolError, "unknown topic alias")),
            },
            Some(a) => {
                let t: Arc<str> = p.topic.into();
                link.aliases.get_or_insert_default().insert(a, t.clone());
                t
            }
            None if p.topic.is_empty() => {
                return Err((Reason::ProtocolError, "empty topic without an alias"))
            }
            None => match &link.last_topic {
                Some(t) if **t == *p.topic => t.clone(),
                _ => link.last_topic.insert(p.topic.into()).clone(),
            },
        };
        link.published();
        if self.may_publish(session.username.as_deref(), &session.client_id, &topic) {
            return Ok(Some(topic));
        }
        tracing::debug!(client = %session.client_id, %topic, "publish not allowed");
        let id = p.packet_id.unwrap_or(0);
        let link = self.link.as_mut().expect("checked above");
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => link.reply(PacketType::PubAck, id, Reason::NotAuthorized),
            QoS::ExactlyOnce => link.reply(PacketType::PubRec, id, Reason::NotAuthorized),
        }
        Ok(None)
    }

    /// A PUBLISH: routed, and acknowledged (PUBACK, PUBREC) once every subscriber has it or
    /// its wait is over. QoS 2 is method B of §4.3.3: routed on the first PUBLISH, its id kept
    /// until PUBREL, so a re-sent PUBLISH is acknowledged and not routed again.
    fn on_publish(&mut self, p: Publish<'_>, ctx: &mut ServerContext<Self>) -> Flow {
        let topic = match self.admit(&p) {
            Ok(Some(t)) => t,
            Ok(None) => return Flow::Continue,
            Err((reason, why)) => return self.close(reason, why, ctx),
        };
        let id = p.packet_id.unwrap_or(0);
        let max = self.shared.config.max_inflight_in as usize;
        let (Some(link), Some(session)) = (&mut self.link, &mut self.session) else {
            return Flow::Continue;
        };
        let ack = match p.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some((PacketType::PubAck, id)),
            QoS::ExactlyOnce => Some((PacketType::PubRec, id)),
        };
        if p.qos == QoS::ExactlyOnce {
            if session.awaits_release(id) {
                link.reply(PacketType::PubRec, id, Reason::Success);
                return Flow::Continue;
            }
            if session.unreleased() >= max {
                self.shared.stats.protocol_errors.inc();
                return self.close(
                    Reason::ReceiveMaximumExceeded,
                    "too many QoS 2 messages unreleased",
                    ctx,
                );
            }
            session.received_qos2(id);
        }
        let msg = Message::from_publish(&p, &topic, &session.client_id);
        let (sent, held) = self.shared.router.publish_held(&msg);
        if held.is_empty() {
            if let Some((kind, id)) = ack {
                link.reply(kind, id, routed(sent));
            }
            return Flow::Continue;
        }
        let timeout = self.shared.config.backpressure_timeout();
        let n = self.links;
        self.wait_for(
            deliver_held(held, timeout),
            move |reached| Info::Released {
                link: n,
                ack,
                sent: sent + reached,
            },
            ctx,
        );
        Flow::Continue
    }

    /// Stops reading the socket until `wait` is over, then handles what `done` makes of its
    /// result: the wait runs as an event source, beside the mailbox.
    fn wait_for<T, F>(
        &mut self,
        wait: impl std::future::Future<Output = T> + Send + 'static,
        mut done: F,
        ctx: &mut ServerContext<Self>,
    ) where
        T: Send + 'static,
        F: FnMut(T) -> Info + Send + 'static,
    {
        let Some(link) = &mut self.link else {
            return;
        };
        Self::pause(link, ctx);
        link.waiting = true;
        ctx.add_source(stream::once(wait), move |r| match r {
            Some(r) => done(r),
            None => Info::Nothing,
        });
    }
}

/// Hands over what the router held back, waiting for each session in turn (each wait at most
/// `timeout` for a session that is behind); how many it reached.
async fn deliver_held(held: Vec<Held>, timeout: Duration) -> usize {
    let mut sent = 0;
    for h in held {
        if h.deliver(timeout).await {
            sent += 1;
        }
    }
    sent
}

/// The reason code for a message that went to `sent` sessions (5.0: 0x10 when none).
pub(super) fn routed(sent: usize) -> Reason {
    if sent == 0 {
        Reason::NoMatchingSubscribers
    } else {
        Reason::Success
    }
}
