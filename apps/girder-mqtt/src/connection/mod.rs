//! A connection: one process per client connection, owning its socket. The read half is an
//! event source of the process (packets arrive as `handle_info`), so a slow or silent client
//! costs only its own process; the write half is written by the process itself, batched:
//! what it has to send goes out when its mailbox is empty or the batch is large.
//!
//! It speaks the protocol (CONNECT and its checks, keep alive at 1.5×, topic aliases, the
//! QoS 1 and 2 flows of messages from the client, SUBSCRIBE with the ACL) and routes what its
//! client publishes; the client's session keeps the state that outlives the connection.
//! A malformed or oversized packet, or a protocol error, ends this connection alone, with the
//! reason code (5.0) and a log line.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use girder::{ExitReason, Flow, Server, ServerContext, ServerRef};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, FramedRead};

use crate::broker::Shared;
use crate::codec::ack::{self, Reason};
use crate::codec::connect::{Connect, Protocol, QoS};
use crate::codec::packet::{self, Packet};
use crate::codec::properties::{id, Properties, Value};
use crate::codec::publish::Publish;
use crate::codec::{fixed_header, DecodeError, FixedHeader, PacketType};
use crate::message::Message;
use crate::session::{self, Ack, Attach, Outgoing, Session, SessionRef, SubRequest};

mod publish;
use publish::Now;

/// Topic aliases a 5.0 client may use towards the broker.
pub const TOPIC_ALIAS_MAX: u16 = 64;

/// The read buffer a connection starts with.
const READ_BUFFER: usize = 256;

/// Writes are sent once this much is waiting, even if more messages are queued.
const FLUSH_AT: usize = 64 * 1024;

/// What a session sends its connection to write.
pub enum ToClient {
    /// A PUBLISH.
    Publish(Outgoing),
    /// A PUBREL (QoS 2, after the client's PUBREC).
    PubRel(u16),
    /// The connection must end, told why (5.0): a takeover, a shutdown.
    Kick(Reason),
}

/// Why reading from the socket stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a packet.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Cuts the byte stream into whole packets, checking each one's size against the maximum
/// from its fixed header, before it is buffered.
pub struct Frames {
    /// The largest packet accepted.
    pub max: usize,
}

impl Decoder for Frames {
    /// A whole packet and its fixed header, checked once here.
    type Item = (FixedHeader, BytesMut);
    type Error = ReadError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, ReadError> {
        let Some(h) = fixed_header(src, self.max)? else {
            return Ok(None);
        };
        let n = h.len + h.remaining;
        if src.len() < n {
            src.reserve(n - src.len());
            return Ok(None);
        }
        Ok(Some((h, src.split_to(n))))
    }
}

/// Packets and timers.
pub enum Info {
    /// A packet from the socket with its fixed header (or why reading stopped).
    Packet(Result<(FixedHeader, BytesMut), ReadError>),
    /// The client closed the socket.
    Closed,
    /// Time to check that the client sent CONNECT.
    ConnectTimeout,
    /// Time to check the keep alive.
    KeepAlive,
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

struct Client {
    protocol: Protocol,
    id: Arc<str>,
    username: Option<Arc<str>>,
    session: SessionRef,
    keep_alive: Duration,
    /// QoS 2 packet identifiers received and not released.
    awaiting_rel: HashSet<u16>,
    aliases: HashMap<u16, Arc<str>>,
    /// The client's maximum packet size (5.0): larger messages are not sent to it.
    max_out: usize,
    /// Its publish rate limit, if the broker has one.
    rate: Option<girder_regulate::Queue>,
    /// The topic of its last PUBLISH, reused while it publishes to the same topic.
    last_topic: Arc<str>,
    /// Where its acknowledgements go to its session.
    acks: Arc<session::Acks>,
}

/// The connection process's state.
pub struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    reader: Option<Reader>,
    writer: Writer,
    out: BytesMut,
    client: Option<Client>,
    last_packet: Instant,
    /// The admission permit, held from accept to CONNACK.
    admitted: Option<girder_regulate::Permit>,
}

impl Connection {
    /// A connection over an accepted socket's halves, from `peer`.
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, reader: Reader, writer: Writer) -> Self {
        Connection {
            shared,
            peer,
            reader: Some(reader),
            writer,
            // Taken on first use: an idle connection holds no output buffer.
            out: BytesMut::new(),
            client: None,
            last_packet: Instant::now(),
            admitted: None,
        }
    }

    /// Holds the broker's admission permit until CONNECT is answered.
    pub fn admitted(mut self, permit: girder_regulate::Permit) -> Self {
        self.admitted = Some(permit);
        self
    }

    fn protocol(&self) -> Protocol {
        self.client.as_ref().map_or(Protocol::V311, |c| c.protocol)
    }

    /// Writes what is waiting, if the mailbox is empty or enough is waiting. False if the
    /// client is gone (the write failed or stalled past the write timeout).
    async fn flush(&mut self, ctx: &ServerContext<Self>, force: bool) -> bool {
        if self.out.is_empty() || (!force && ctx.mailbox_len() > 0 && self.out.len() < FLUSH_AT) {
            return true;
        }
        let n = self.out.len();
        let limit = self.shared.config.write_timeout();
        let ok = matches!(
            tokio::time::timeout(limit, self.writer.write_all(&self.out)).await,
            Ok(Ok(()))
        );
        self.out.clear();
        self.shared.stats.bytes_out.add(n as u64);
        if self.out.capacity() > 4 * FLUSH_AT {
            self.out = BytesMut::new();
        }
        ok
    }

    /// Ends the connection: a DISCONNECT with `reason` for a 5.0 client that has connected,
    /// and a log line for a failure.
    async fn close(&mut self, reason: Reason, why: &str, ctx: &ServerContext<Self>) -> Flow {
        if reason.is_error() {
            tracing::info!(peer = %self.peer, client = ?self.client.as_ref().map(|c| &c.id), ?reason, why, "closing connection");
        }
        if self.client.is_some() {
            let protocol = self.protocol();
            let _ = ack::disconnect(&mut self.out, protocol, reason, &Properties::default());
        }
        self.flush(ctx, true).await;
        let _ = self.writer.shutdown().await;
        Flow::Stop(ExitReason::Normal)
    }

    async fn protocol_error(&mut self, e: &DecodeError, ctx: &ServerContext<Self>) -> Flow {
        self.shared.stats.protocol_errors.inc();
        let why = e.to_string();
        self.close(e.reason(), &why, ctx).await
    }

    async fn on_connect(&mut self, c: Connect<'_>, ctx: &mut ServerContext<Self>) -> Flow {
        let cfg = &self.shared.config;
        let protocol = c.protocol;
        let refuse = |out: &mut BytesMut, reason: Reason| {
            let _ = ack::connack(out, protocol, false, reason, &Properties::default());
        };
        // The client identifier (§3.1.3.1): an empty one is assigned, except to a 3.1.1
        // client that wants its session kept.
        let assigned = c.client_id.is_empty();
        if assigned && protocol == Protocol::V311 && !c.clean_start {
            return self
                .refused(
                    Reason::ClientIdentifierNotValid,
                    "empty client id without clean session",
                    refuse,
                    ctx,
                )
                .await;
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
            return self
                .refused(
                    Reason::NotAuthorized,
                    "anonymous clients are not allowed",
                    refuse,
                    ctx,
                )
                .await;
        }
        if bad_password {
            return self
                .refused(
                    Reason::BadUserNameOrPassword,
                    "bad user name or password",
                    refuse,
                    ctx,
                )
                .await;
        }
        if self.shared.stats.connections.get() as usize >= cfg.max_connections {
            return self
                .refused(Reason::QuotaExceeded, "too many connections", refuse, ctx)
                .await;
        }
        // Keep alive: a 3.1.1 client cannot be told a lower one, so it is refused.
        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        if cfg.max_keepalive < u16::MAX && (keep_alive == 0 || keep_alive > cfg.max_keepalive) {
            match protocol {
                Protocol::V311 if keep_alive > cfg.max_keepalive => {
                    return self
                        .refused(
                            Reason::ClientIdentifierNotValid,
                            "keep alive above the maximum",
                            refuse,
                            ctx,
                        )
                        .await;
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
        let max_out = p
            .u32(id::MAXIMUM_PACKET_SIZE)
            .map_or(usize::MAX, |n| n as usize);
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
                return self
                    .refused(Reason::NotAuthorized, "will topic not allowed", refuse, ctx)
                    .await;
            }
        }
        // The session found may be on its way out (its connection just ended and it ends
        // with it): the call then fails with `Exited`, its name is free by then, and the next
        // try starts a new one.
        let mut tries = 0;
        let (session, attached) = loop {
            tries += 1;
            let session = match Session::find_or_start(&self.shared, &client_id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(client = %client_id, error = %e, "no session");
                    return self
                        .refused(Reason::ServerUnavailable, "no session", refuse, ctx)
                        .await;
                }
            };
            let attach = Attach {
                conn: ctx.me(),
                clean_start: c.clean_start,
                protocol,
                window,
                expiry,
                will: will.clone(),
                username: c.username.map(Into::into),
            };
            match session
                .server()
                .call(|r| session::Call::Attach(Box::new(attach), r))
                .await
            {
                Ok(a) => break (session, a),
                Err(girder::CallError::Exited(_)) if tries < 3 => {}
                Err(e) => {
                    tracing::warn!(client = %client_id, error = %e, "session did not attach");
                    return self
                        .refused(
                            Reason::ServerUnavailable,
                            "session did not attach",
                            refuse,
                            ctx,
                        )
                        .await;
                }
            }
        };
        let mut props = Vec::new();
        if protocol == Protocol::V5 {
            if assigned {
                props.push((id::ASSIGNED_CLIENT_ID, Value::Str(&client_id)));
            }
            if let Some(k) = server_keep_alive {
                props.push((id::SERVER_KEEP_ALIVE, Value::U16(k)));
            }
            props.push((id::TOPIC_ALIAS_MAXIMUM, Value::U16(TOPIC_ALIAS_MAX)));
            props.push((id::RECEIVE_MAXIMUM, Value::U16(cfg.max_inflight_in)));
            if cfg.max_packet_size < u32::MAX as usize {
                props.push((
                    id::MAXIMUM_PACKET_SIZE,
                    Value::U32(cfg.max_packet_size as u32),
                ));
            }
        }
        let _ = ack::connack(
            &mut self.out,
            protocol,
            attached.present,
            Reason::Success,
            &Properties::from(props),
        );
        self.shared.stats.connections.inc();
        if let Some(p) = self.admitted.take() {
            // Its latency teaches an adaptive admission regulator what a connect costs.
            p.success();
        }
        if let Some(alarms) = &self.shared.alarms {
            let text = format!(
                "{client_id} from {} ({protocol:?}, user {:?}, clean start {}, keep alive {keep_alive} s)",
                self.peer, c.username, c.clean_start
            );
            crate::ops::notice(alarms, "client_connected", text);
        }
        self.client = Some(Client {
            protocol,
            username: c.username.map(Into::into),
            id: client_id,
            session,
            keep_alive: Duration::from_secs(keep_alive as u64),
            awaiting_rel: attached.awaiting_rel.into_iter().collect(),
            aliases: HashMap::new(),
            max_out,
            last_topic: "".into(),
            acks: attached.acks,
            rate: cfg.max_publish_rate.map(|r| {
                girder_regulate::Queue::builder()
                    .rate(r, r.ceil().max(1.0) as u32)
                    .build()
            }),
        });
        if keep_alive > 0 {
            ctx.info_after(
                Info::KeepAlive,
                Duration::from_secs(keep_alive as u64) * 3 / 2,
            );
        }
        Flow::Continue
    }

    async fn refused(
        &mut self,
        reason: Reason,
        why: &str,
        refuse: impl FnOnce(&mut BytesMut, Reason),
        ctx: &ServerContext<Self>,
    ) -> Flow {
        self.shared.stats.connections_refused.inc();
        tracing::info!(peer = %self.peer, ?reason, why, "CONNECT refused");
        refuse(&mut self.out, reason);
        self.flush(ctx, true).await;
        let _ = self.writer.shutdown().await;
        Flow::Stop(ExitReason::Normal)
    }

    async fn on_packet(
        &mut self,
        h: FixedHeader,
        bytes: BytesMut,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        let body = &bytes[h.len..];
        let packet = match packet::decode(&h, body, self.protocol()) {
            Ok(p) => p,
            Err(DecodeError::UnsupportedProtocol { name, level }) if self.client.is_none() => {
                let why = format!("unsupported protocol {name:?} level {level}");
                let refuse = |out: &mut BytesMut, _| {
                    // 3.1.1 §3.2.2.3: return code 1, whatever version the client tried.
                    let _ = ack::connack(
                        out,
                        Protocol::V311,
                        false,
                        Reason::UnsupportedProtocolVersion,
                        &Properties::default(),
                    );
                };
                return self
                    .refused(Reason::UnsupportedProtocolVersion, &why, refuse, ctx)
                    .await;
            }
            Err(e) => return self.protocol_error(&e, ctx).await,
        };
        let Some(client) = &mut self.client else {
            return match packet {
                Packet::Connect(c) => self.on_connect(c, ctx).await,
                _ => {
                    self.shared.stats.protocol_errors.inc();
                    tracing::info!(peer = %self.peer, "first packet is not CONNECT");
                    Flow::Stop(ExitReason::Normal)
                }
            };
        };
        let protocol = client.protocol;
        match packet {
            Packet::Connect(_) => {
                self.shared.stats.protocol_errors.inc();
                return self
                    .close(Reason::ProtocolError, "second CONNECT", ctx)
                    .await;
            }
            Packet::Publish(p) => return self.on_publish(p, ctx).await,
            // Handled at once (`at_once`), as long as a client is connected.
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::PubRel(a) => {
                let known = client.awaiting_rel.remove(&a.packet_id);
                if known {
                    let _ = client
                        .session
                        .server()
                        .cast_wait(session::Cast::Qos2Released(a.packet_id))
                        .await;
                }
                let reason = if known {
                    Reason::Success
                } else {
                    Reason::PacketIdentifierNotFound
                };
                self.reply(PacketType::PubComp, a.packet_id, reason);
            }
            Packet::Subscribe(s) => {
                // A variable byte integer, 1 to 268,435,455 (§3.8.2.1.2).
                let sub_id = s.properties.varint(id::SUBSCRIPTION_ID);
                if sub_id == Some(0) {
                    return self
                        .close(Reason::ProtocolError, "subscription identifier 0", ctx)
                        .await;
                }
                let mut codes = Vec::with_capacity(s.subscriptions.len());
                let mut wanted = Vec::new();
                for f in &s.subscriptions {
                    let (_, inner) = crate::topic::shared_group(f.filter);
                    let allowed = self.shared.acl.as_ref().is_none_or(|acl| {
                        acl.may_subscribe(client.username.as_deref(), &client.id, inner)
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
                if !wanted.is_empty() {
                    let r = client
                        .session
                        .server()
                        .call(|r| session::Call::Subscribe(wanted, r))
                        .await;
                    if r.is_err() {
                        return self
                            .close(Reason::UnspecifiedError, "the session did not answer", ctx)
                            .await;
                    }
                }
                let _ = ack::suback(
                    &mut self.out,
                    protocol,
                    s.packet_id,
                    &codes,
                    &Properties::default(),
                );
            }
            Packet::Unsubscribe(u) => {
                let filters = u.filters.iter().map(|f| f.to_string()).collect();
                let existed = match client
                    .session
                    .server()
                    .call(|r| session::Call::Unsubscribe(filters, r))
                    .await
                {
                    Ok(e) => e,
                    Err(_) => {
                        return self
                            .close(Reason::UnspecifiedError, "the session did not answer", ctx)
                            .await
                    }
                };
                let codes: Vec<Reason> = existed
                    .into_iter()
                    .map(|e| {
                        if e {
                            Reason::Success
                        } else {
                            Reason::NoSubscriptionExisted
                        }
                    })
                    .collect();
                let _ = ack::unsuback(
                    &mut self.out,
                    protocol,
                    u.packet_id,
                    &codes,
                    &Properties::default(),
                );
            }
            Packet::PingReq => ack::pingresp(&mut self.out),
            Packet::Disconnect { reason, properties } => {
                let (conn, will) = (ctx.pid(), reason == Reason::DisconnectWithWill as u8);
                let expiry = properties.u32(id::SESSION_EXPIRY);
                // Waited for: a cast could be overtaken by the `Down` of this end.
                let _ = client
                    .session
                    .server()
                    .call(|reply| session::Call::Detach {
                        conn,
                        will,
                        expiry,
                        reply,
                    })
                    .await;
                self.flush(ctx, true).await;
                return Flow::Stop(ExitReason::Normal);
            }
            Packet::Auth { .. } => {
                return self
                    .close(
                        Reason::BadAuthenticationMethod,
                        "extended authentication is not supported",
                        ctx,
                    )
                    .await;
            }
        }
        Flow::Continue
    }

    fn write_publish(&mut self, out: Outgoing) -> bool {
        let client = self.client.as_ref().expect("connected");
        let d = &out.delivery;
        let now = Instant::now();
        if d.msg.expired(now) {
            self.shared.stats.messages_expired.inc();
            return false;
        }
        let sub_ids: &[u32] = match &d.sub_id {
            Some(s) => std::slice::from_ref(s),
            None => &[],
        };
        let props = match client.protocol {
            Protocol::V5 => d.msg.properties_for(now, sub_ids),
            Protocol::V311 => Properties::default(),
        };
        let p = Publish {
            dup: out.dup,
            qos: d.qos,
            retain: d.retain,
            topic: &d.msg.topic,
            packet_id: out.packet_id,
            properties: props,
            payload: &d.msg.payload,
        };
        if p.encoded_len(client.protocol) > client.max_out {
            // 5.0 §3.1.2.11.4: a message larger than the client takes is discarded.
            self.shared.stats.messages_dropped.inc();
            return false;
        }
        if p.encode(&mut self.out, client.protocol).is_ok() {
            self.shared.stats.messages_out.inc();
            self.shared
                .latency
                .record(d.msg.received.elapsed().as_secs_f64());
        }
        true
    }
}

impl Server for Connection {
    type Call = ();
    type Cast = ToClient;
    type Info = Info;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        self.shared.stats.connections_total.inc();
        let reader = self.reader.take().expect("a reader to start with");
        // A small read buffer to start with (tokio-util's default is 8 KiB): most of a
        // connection's life is idle, and it grows as packets need.
        let frames = FramedRead::with_capacity(
            reader,
            Frames {
                max: self.shared.config.max_packet_size,
            },
            READ_BUFFER,
        );
        ctx.add_source(frames, |item| match item {
            Some(r) => Info::Packet(r),
            None => Info::Closed,
        });
        ctx.info_after(Info::ConnectTimeout, self.shared.config.connect_timeout());
        Ok(())
    }

    async fn handle_cast(&mut self, msg: ToClient, ctx: &mut ServerContext<Self>) -> Flow {
        if self.client.is_none() {
            return Flow::Continue;
        }
        match msg {
            ToClient::Publish(out) => {
                let id = out.packet_id;
                if !self.write_publish(out) {
                    // Not sent (expired or too large for the client): done with, as far as
                    // the session is concerned.
                    if let Some(id) = id {
                        let now = self.ack_now(Ack::Done(id));
                        if matches!(now, Now::Wake) {
                            Box::pin(self.finish(now, ctx)).await;
                        }
                    }
                }
            }
            ToClient::PubRel(id) => self.reply(PacketType::PubRel, id, Reason::Success),
            ToClient::Kick(reason) => return Box::pin(self.close(reason, "told to go", ctx)).await,
        }
        if !self.flush(ctx, false).await {
            return Flow::Stop(ExitReason::Normal);
        }
        Flow::Continue
    }

    async fn handle_info(&mut self, info: Info, ctx: &mut ServerContext<Self>) -> Flow {
        let flow = match info {
            Info::Packet(Ok((h, bytes))) => {
                self.last_packet = Instant::now();
                self.shared.stats.bytes_in.add(bytes.len() as u64);
                match self.at_once(&h, &bytes) {
                    Now::Done => Flow::Continue,
                    // Boxed, as every wait here: inline, the largest future awaited is room
                    // every connection keeps for its whole life, idle or not (`publish`).
                    Now::Later => Box::pin(self.on_packet(h, bytes, ctx)).await,
                    now => Box::pin(self.finish(now, ctx)).await,
                }
            }
            Info::Packet(Err(ReadError::Decode(e))) => {
                return Box::pin(self.protocol_error(&e, ctx)).await
            }
            Info::Packet(Err(ReadError::Io(_))) | Info::Closed => {
                return Flow::Stop(ExitReason::Normal)
            }
            Info::ConnectTimeout if self.client.is_none() => {
                tracing::info!(peer = %self.peer, "no CONNECT in time");
                return Flow::Stop(ExitReason::Normal);
            }
            Info::ConnectTimeout => Flow::Continue,
            Info::KeepAlive => {
                let limit = self
                    .client
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.keep_alive * 3 / 2);
                let quiet = self.last_packet.elapsed();
                if quiet >= limit {
                    return Box::pin(self.close(
                        Reason::KeepAliveTimeout,
                        "keep alive timed out",
                        ctx,
                    ))
                    .await;
                }
                ctx.info_after(Info::KeepAlive, limit - quiet);
                Flow::Continue
            }
        };
        if flow == Flow::Continue && !self.flush(ctx, false).await {
            return Flow::Stop(ExitReason::Normal);
        }
        flow
    }

    async fn terminate(&mut self, reason: &ExitReason, ctx: &mut ServerContext<Self>) {
        if self.client.is_some() {
            if *reason == ExitReason::Shutdown {
                let protocol = self.protocol();
                let _ = ack::disconnect(
                    &mut self.out,
                    protocol,
                    Reason::ServerShuttingDown,
                    &Properties::default(),
                );
                self.flush(ctx, true).await;
            }
            self.shared.stats.connections.dec();
            if let (Some(alarms), Some(c)) = (&self.shared.alarms, &self.client) {
                let text = format!("{} from {} ({reason})", c.id, self.peer);
                crate::ops::notice(alarms, "client_disconnected", text);
            }
        }
    }
}

/// A handle to a connection.
pub type ConnectionRef = ServerRef<Connection>;
