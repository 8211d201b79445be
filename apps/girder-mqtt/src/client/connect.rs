//! CONNECT: its checks (client id, credentials, the connection limit, keep alive, the will's
//! topic), then the session. The process takes the client id's name and starts the session
//! itself, or, if the name is taken, hands its connection to the process that holds the
//! session (a takeover, or a client coming back).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use girder::{ExitReason, Flow, ServerContext, ServerRef};

use super::{Adopt, Call, Client, Connack, Handover, Link};
use crate::broker::Shared;
use crate::codec::ack::{self, Reason};
use crate::codec::connect::{Connect, Protocol};
use crate::codec::packet::{self, Packet};
use crate::codec::properties::{id, Properties, Value};
use crate::codec::{DecodeError, FixedHeader};
use crate::message::Message;
use crate::session::{Attach, Session};

impl Client {
    /// The first packet: CONNECT, or the connection ends.
    pub(super) async fn on_first(
        &mut self,
        h: FixedHeader,
        bytes: BytesMut,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        match packet::decode(&h, &bytes[h.header_len()..], Protocol::V311) {
            Ok(Packet::Connect(c)) => self.on_connect(c, ctx).await,
            Ok(_) => {
                self.shared.stats.protocol_errors.inc();
                let peer = self.link.as_ref().map(|l| l.peer);
                tracing::info!(?peer, "first packet is not CONNECT");
                self.link_gone(None, false, ctx)
            }
            Err(DecodeError::UnsupportedProtocol { name, level }) => {
                let why = format!("unsupported protocol {name:?} level {level}");
                // 3.1.1 §3.2.2.3: return code 1, whatever version the client tried.
                self.refused(Reason::UnsupportedProtocolVersion, &why, ctx)
            }
            Err(e) => {
                self.shared.stats.protocol_errors.inc();
                self.close(e.reason(), &e.to_string(), ctx)
            }
        }
    }

    /// CONNECT refused: a CONNACK with `reason` in the link's protocol, and the end.
    fn refused(&mut self, reason: Reason, why: &str, ctx: &mut ServerContext<Self>) -> Flow {
        self.shared.stats.connections_refused.inc();
        if let Some(link) = &mut self.link {
            tracing::info!(peer = %link.peer, ?reason, why, "CONNECT refused");
            let protocol = link.protocol;
            let _ = ack::connack(link.out(), protocol, false, reason, &Properties::default());
        }
        self.link_gone(None, false, ctx)
    }

    async fn on_connect(&mut self, c: Connect<'_>, ctx: &mut ServerContext<Self>) -> Flow {
        let cfg = &self.shared.config;
        let protocol = c.protocol;
        let Some(link) = &mut self.link else {
            return Flow::Stop(ExitReason::Normal);
        };
        link.protocol = protocol;
        // The client identifier (§3.1.3.1): an empty one is assigned, except to a 3.1.1
        // client that wants its session kept.
        let assigned = c.client_id.is_empty();
        if assigned && protocol == Protocol::V311 && !c.clean_start {
            return self.refused(
                Reason::ClientIdentifierNotValid,
                "empty client id without clean session",
                ctx,
            );
        }
        let client_id: Arc<str> = if assigned {
            format!(
                "girder-{}-{}",
                ctx.pid().id(),
                self.shared.stats.connections_total.get()
            )
            .into()
        } else {
            c.client_id.into()
        };
        // Credentials. No user name at all is not a bad one: anonymous clients are refused as
        // not authorized (3.1.1 return code 5), with a password file or without, as Mosquitto.
        let bad_password = match (c.username, &self.shared.passwords) {
            (Some(user), Some(passwords)) => !passwords.check(user, c.password.unwrap_or_default()),
            _ => false,
        };
        if c.username.is_none() && !self.shared.allow_anonymous {
            return self.refused(
                Reason::NotAuthorized,
                "anonymous clients are not allowed",
                ctx,
            );
        }
        if bad_password {
            return self.refused(
                Reason::BadUserNameOrPassword,
                "bad user name or password",
                ctx,
            );
        }
        if self.shared.stats.connections.get() as usize >= cfg.max_connections {
            return self.refused(Reason::QuotaExceeded, "too many connections", ctx);
        }
        // Keep alive: a 3.1.1 client cannot be told a lower one, so it is refused.
        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        if cfg.max_keepalive < u16::MAX && (keep_alive == 0 || keep_alive > cfg.max_keepalive) {
            match protocol {
                Protocol::V311 if keep_alive > cfg.max_keepalive => {
                    return self.refused(
                        Reason::ClientIdentifierNotValid,
                        "keep alive above the maximum",
                        ctx,
                    );
                }
                Protocol::V311 => {}
                Protocol::V5 => {
                    keep_alive = cfg.max_keepalive;
                    server_keep_alive = Some(keep_alive);
                }
            }
        }
        let p = &c.properties;
        let window = p
            .u16(id::RECEIVE_MAXIMUM)
            .unwrap_or(u16::MAX)
            .min(cfg.max_inflight);
        // 3.1.1: a session that is not clean lasts for ever; 5.0 says how long.
        let expiry = match protocol {
            Protocol::V311 if c.clean_start => 0,
            Protocol::V311 => u32::MAX,
            Protocol::V5 => p.u32(id::SESSION_EXPIRY).unwrap_or(0),
        };
        let will = c.will.as_ref().map(|w| {
            let delay = w.properties.u32(id::WILL_DELAY).unwrap_or(0);
            (
                Message::from_will(w, &client_id),
                Duration::from_secs(delay as u64),
            )
        });
        if let Some((w, _)) = &will {
            if !self.may_publish(c.username, &client_id, &w.topic) {
                return self.refused(Reason::NotAuthorized, "will topic not allowed", ctx);
            }
        }
        let link = self.link.as_mut().expect("checked above");
        link.keep_alive = keep_alive;
        link.max_out = p
            .u32(id::MAXIMUM_PACKET_SIZE)
            .map_or(usize::MAX, |n| n as usize);
        link.rate = cfg.max_publish_rate.map(|r| {
            girder_regulate::Queue::builder()
                .rate(r, r.ceil().max(1.0) as u32)
                .build()
        });
        let attach = Attach {
            clean_start: c.clean_start,
            window,
            expiry,
            will,
            username: c.username.map(Into::into),
        };
        let connack = Connack {
            assigned: assigned.then(|| client_id.clone()),
            server_keep_alive,
            keep_alive,
            clean_start: c.clean_start,
        };
        self.session_for(client_id, attach, connack, ctx).await
    }

    /// Takes the client id's name and starts its session here, or hands the connection to
    /// the process that holds the name. That process may be on its way out (its session
    /// expiring): the call then fails, the connection comes back, and the next try finds the
    /// name free.
    async fn session_for(
        &mut self,
        client_id: Arc<str>,
        attach: Attach,
        connack: Connack,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        let name = Session::name(&client_id);
        for _ in 0..5 {
            if ctx.register(&name).is_ok() {
                let me = Self::me(ctx);
                let mut session = Session::new(client_id, self.shared.clone());
                let present = session.attach(attach, &me);
                self.session = Some(session);
                let mut link = self.link.take().expect("a link until handed over");
                Self::read_on(&mut link, ctx);
                let permit = self.admitted.take();
                self.connected(link, connack, present, permit, ctx);
                return Flow::Continue;
            }
            let Ok(holder) = ServerRef::<Client>::lookup(&self.shared.node, &name) else {
                tokio::task::yield_now().await;
                continue;
            };
            let mut link = self.link.take().expect("a link until handed over");
            Self::pause(&mut link, ctx);
            let slot = Arc::new(parking_lot::Mutex::new(Some(Handover {
                link,
                permit: self.admitted.take(),
            })));
            let adopt = Adopt {
                handover: slot.clone(),
                attach: attach.clone(),
                connack: connack.clone(),
            };
            if let Ok(true) = holder.call(|r| Call::Adopt(Box::new(adopt), r)).await {
                // The socket is the session's process's now.
                return Flow::Stop(ExitReason::Normal);
            }
            let Some(back) = slot.lock().take() else {
                return Flow::Stop(ExitReason::Normal);
            };
            self.link = Some(back.link);
            self.admitted = back.permit;
            tokio::task::yield_now().await;
        }
        tracing::warn!(client = %client_id, "no session after five tries");
        self.refused(Reason::ServerUnavailable, "no session", ctx)
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
}

/// Writes the CONNACK of a connection accepted.
pub(super) fn connack(link: &mut Link, shared: &Shared, c: &Connack, present: bool) {
    let cfg = &shared.config;
    let mut props = Vec::new();
    if link.protocol == Protocol::V5 {
        if let Some(id) = &c.assigned {
            props.push((id::ASSIGNED_CLIENT_ID, Value::Str(id)));
        }
        if let Some(k) = c.server_keep_alive {
            props.push((id::SERVER_KEEP_ALIVE, Value::U16(k)));
        }
        props.push((id::TOPIC_ALIAS_MAXIMUM, Value::U16(super::TOPIC_ALIAS_MAX)));
        props.push((id::RECEIVE_MAXIMUM, Value::U16(cfg.max_inflight_in)));
        if cfg.max_packet_size < u32::MAX as usize {
            props.push((
                id::MAXIMUM_PACKET_SIZE,
                Value::U32(cfg.max_packet_size as u32),
            ));
        }
    }
    let protocol = link.protocol;
    let _ = ack::connack(
        link.out(),
        protocol,
        present,
        Reason::Success,
        &Properties::from(props),
    );
}
