//! A client: one process per client connection and, once its CONNECT names it, per client id.
//! It owns its socket (the read half is an event source of the process, so a slow or silent
//! client costs only its own process), speaks the protocol, routes what its client publishes,
//! and keeps the client's [`Session`], which outlives the connection: the process goes on
//! without a socket until the session expires.
//!
//! A second connection with the same client id (§3.1.4) finds the name taken and hands its
//! socket, CONNECT answered by nobody yet, to the process that holds the session; that one
//! ends its old connection (0x8E, session taken over) and goes on with the new. The session
//! never moves, so nothing in its mailbox or the router is lost on the way.
//!
//! The process never waits on anyone: deliveries are written to its socket without waiting
//! ([`link`]), and a publish that must wait for a subscriber that is behind (decision 016)
//! pauses the socket's reading and waits beside the mailbox, as an event source, not in it.
//! A malformed or oversized packet, or a protocol error, ends this connection alone, with the
//! reason code (5.0) and a log line.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::Either;
use girder::{ExitReason, Flow, ReplyTo, Server, ServerContext};

use crate::broker::Shared;
use crate::codec::ack::Reason;
use crate::codec::{FixedHeader, PacketType};
use crate::session::{Attach, Delivery, Detached, Session, SessionRef};
use crate::store::SavedSession;

mod connect;
pub mod link;
mod packets;
pub mod stream;

pub use link::{Link, ReadError};
use link::{Packets, Reader, Written};

/// Topic aliases a 5.0 client may use towards the broker.
pub const TOPIC_ALIAS_MAX: u16 = 64;

/// Fire-and-forget requests.
pub enum Cast {
    /// A message for the client.
    Deliver(Delivery),
}

/// Requests that expect a reply.
pub enum Call {
    /// A new connection of this client id hands its socket over (a takeover, or a client
    /// coming back to its session); true once the session has it.
    Adopt(Box<Adopt>, ReplyTo<bool>),
    /// The session's state to save, if it outlives its connection.
    Save(ReplyTo<Option<SavedSession>>),
    /// The connection ends, told `reason` (the broker is stopping); the session stays if it
    /// outlives it.
    Close(Reason, ReplyTo<()>),
}

/// A connection handed to the process that holds its client's session.
pub struct Adopt {
    /// The connection, taken out by the process that adopts it: if the call fails, it is
    /// still here for the caller.
    pub handover: Arc<parking_lot::Mutex<Option<Handover>>>,
    /// What CONNECT asks of the session.
    pub attach: Attach,
    /// What the CONNACK says.
    pub connack: Connack,
}

/// What moves with a connection to its session's process.
pub struct Handover {
    /// The connection, its read half paused.
    pub link: Link,
    /// The admission permit, released once CONNECT is answered.
    pub permit: Option<Box<girder_regulate::Permit>>,
}

/// What a CONNACK tells the client beside the session-present flag.
#[derive(Debug, Clone)]
pub struct Connack {
    /// Its client id, if the broker assigned it (5.0).
    pub assigned: Option<Arc<str>>,
    /// The keep alive it must use, if not its own (5.0).
    pub server_keep_alive: Option<u16>,
    /// The keep alive in force, seconds.
    pub keep_alive: u16,
    /// Clean start asked for (for the notice).
    pub clean_start: bool,
}

/// Packets, timers and waits that end.
pub enum Info {
    /// A packet from the socket with its fixed header (or why reading stopped).
    Packet(Result<(FixedHeader, BytesMut), ReadError>),
    /// The client closed the socket.
    Closed,
    /// Time to check that the client sent CONNECT.
    ConnectTimeout,
    /// Time to check the keep alive (of the link numbered so).
    KeepAlive(u64),
    /// The will delay has passed (for the detachment numbered so).
    WillDue(u64),
    /// The expiry interval has passed (for the detachment numbered so).
    Expired(u64),
    /// Try again to write to a socket that took no more.
    Write,
    /// The subscribers a publish waited for have taken it (or timed out): acknowledge it and
    /// read on (on the link numbered so).
    Released {
        /// The link.
        link: u64,
        /// The acknowledgement owed, and to how many sessions the message went.
        ack: Option<(PacketType, u16)>,
        /// How many sessions it reached.
        sent: usize,
    },
    /// The client's publish rate allows its next packet: handle it and read on.
    Permitted(u64, FixedHeader, BytesMut),
    /// A wait's source ended (nothing to do).
    Nothing,
}

/// The client process's state.
pub struct Client {
    shared: Arc<Shared>,
    link: Option<Link>,
    session: Option<Session>,
    /// The admission permit, held from accept to CONNACK (boxed: the process keeps room for
    /// its state's every field for as long as it lives).
    admitted: Option<Box<girder_regulate::Permit>>,
    /// Numbers the links the process has had, so a timer or wait for one is ignored after.
    links: u64,
    /// A write retry is due.
    retry_due: bool,
    /// The CONNECT timeout, cancelled once CONNECT is answered (a timer lives in the wheel
    /// until it fires or is cancelled).
    connect_timer: Option<Box<girder::TimerRef>>,
}

/// The item of a link's read source, as the process sees it.
fn packet_info(item: Option<Result<(FixedHeader, BytesMut), ReadError>>) -> Info {
    match item {
        Some(r) => Info::Packet(r),
        None => Info::Closed,
    }
}

impl Client {
    /// A connection over an accepted socket's halves, from `peer`.
    pub fn new(
        shared: Arc<Shared>,
        peer: std::net::SocketAddr,
        reader: Reader,
        writer: link::Writer,
    ) -> Self {
        let mut link = Link::new(peer, writer);
        // A source once `init` runs.
        link.paused = Some(Box::new(link::packets(
            reader,
            shared.config.max_packet_size,
        )));
        Client {
            shared,
            link: Some(link),
            session: None,
            admitted: None,
            links: 1,
            retry_due: false,
            connect_timer: None,
        }
    }

    /// A session restored from the store, without a connection until its client comes back.
    pub fn restored(saved: SavedSession, shared: Arc<Shared>) -> Self {
        Client {
            session: Some(Session::restore(saved, shared.clone())),
            shared,
            link: None,
            admitted: None,
            links: 0,
            retry_due: false,
            connect_timer: None,
        }
    }

    /// Holds the broker's admission permit until CONNECT is answered.
    pub fn admitted(mut self, permit: girder_regulate::Permit) -> Self {
        self.admitted = Some(Box::new(permit));
        self
    }

    /// The child spec a client runs under: temporary, with a bounded mailbox of
    /// [`MAILBOX`](crate::session::MAILBOX) (a client's publish waits for room in it; the
    /// broker's own messages are dropped and counted), trapping exits so that a shutdown
    /// runs its `terminate`, which tells the client.
    pub fn spec(self) -> girder::ChildSpec {
        girder::ChildSpec::server_once("client", self)
            .capacity(crate::session::MAILBOX)
            .trap_exit(true)
            .shutdown(girder::supervisor::Shutdown::Timeout(Duration::from_secs(
                1,
            )))
    }

    fn me(ctx: &ServerContext<Self>) -> SessionRef {
        SessionRef(ctx.me())
    }

    /// Reads the link's socket again (after a pause, or a handover).
    fn read_on(link: &mut Link, ctx: &mut ServerContext<Self>) {
        if let Some(packets) = link.paused.take() {
            link.source = Some(ctx.add_source(*packets, packet_info));
        }
    }

    /// Stops reading the link's socket: TCP slows its client.
    fn pause(link: &mut Link, ctx: &mut ServerContext<Self>) {
        if let Some(id) = link.source.take() {
            link.paused = ctx.take_source::<Packets>(id).map(Box::new);
        }
    }

    /// The link is gone (`reason`: told to the client first, 5.0): the session detaches,
    /// with its will unless `will` is false, and the process ends with it or waits for the
    /// client to come back.
    fn link_gone(
        &mut self,
        reason: Option<Reason>,
        will: bool,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        if let Some(link) = self.link.take() {
            self.end_link(link, reason, "closed", ctx);
        }
        let Some(session) = &mut self.session else {
            return Flow::Stop(ExitReason::Normal);
        };
        match session.detach(will) {
            Detached::Ends => Flow::Stop(ExitReason::Normal),
            Detached::Stays {
                will_after,
                expire_after,
            } => {
                let n = session.detached;
                if let Some(after) = will_after {
                    session.keep_timer(ctx.info_after(Info::WillDue(n), after));
                }
                if let Some(after) = expire_after {
                    session.expires(after, ctx.info_after(Info::Expired(n), after));
                }
                Flow::Continue
            }
        }
    }

    /// Ends a link: no more reading, the client told `reason` (5.0) and the socket closed;
    /// a connected one counted and noticed (`why`).
    fn end_link(
        &self,
        link: Link,
        reason: Option<Reason>,
        why: &str,
        ctx: &mut ServerContext<Self>,
    ) {
        if let Some(id) = link.source {
            ctx.remove_source(id);
        }
        if link.connected {
            self.shared.stats.connections.dec();
            if let (Some(alarms), Some(s)) = (&self.shared.alarms, &self.session) {
                let text = format!("{} from {} ({why})", s.client_id, link.peer);
                crate::ops::notice(alarms, "client_disconnected", text);
            }
        }
        link.close(reason, &self.shared.stats);
    }

    /// Ends the connection for a protocol error, with its reason code and a log line.
    fn close(&mut self, reason: Reason, why: &str, ctx: &mut ServerContext<Self>) -> Flow {
        if reason.is_error() {
            let client = self.session.as_ref().map(|s| s.client_id.clone());
            let peer = self.link.as_ref().map(|l| l.peer);
            tracing::info!(?peer, ?client, ?reason, why, "closing connection");
        }
        self.link_gone(Some(reason), true, ctx)
    }

    /// Writes what waits if the batch is over (`batch_over`: nothing more is waiting to be
    /// handled) or large; pumps the session again once the link has room; ends the link if
    /// the client is gone or has stopped reading for too long.
    fn flush(&mut self, batch_over: bool, ctx: &mut ServerContext<Self>) -> Flow {
        let Some(link) = &mut self.link else {
            return Flow::Continue;
        };
        let full = !link.has_room() || link.is_blocked();
        let timeout = self.shared.config.write_timeout();
        let mut written = link.flush(batch_over, timeout, &self.shared.stats);
        if written == Written::Done && full && link.connected {
            // Room again: what waited for it goes now.
            if let Some(session) = &mut self.session {
                session.resend(link);
            }
            written = link.flush(batch_over, timeout, &self.shared.stats);
        }
        match written {
            Written::Done => Flow::Continue,
            Written::Blocked => {
                if !self.retry_due {
                    self.retry_due = true;
                    ctx.info_after(Info::Write, link::RETRY_WRITE);
                }
                Flow::Continue
            }
            Written::Failed => self.link_gone(None, true, ctx),
        }
    }

    /// After each message handled: the broker's counts, and the writes.
    fn after(&mut self, flow: Flow, ctx: &mut ServerContext<Self>) -> Flow {
        if let Some(s) = &self.session {
            s.account_backlog();
        }
        if flow != Flow::Continue {
            return flow;
        }
        self.flush(false, ctx)
    }

    /// A new connection for the session this process holds: the old one (if any) ends,
    /// taken over; the session attaches; CONNACK goes.
    fn adopt(&mut self, a: Adopt, ctx: &mut ServerContext<Self>) -> bool {
        if self.session.is_none() {
            return false;
        }
        let Some(Handover { mut link, permit }) = a.handover.lock().take() else {
            return false;
        };
        let me = Self::me(ctx);
        let old = self.link.take();
        let session_taken_over = old.is_some();
        if let Some(old) = old {
            self.end_link(old, Some(Reason::SessionTakenOver), "taken over", ctx);
        }
        let session = self.session.as_mut().expect("checked above");
        if session_taken_over {
            session.taken_over();
        }
        let present = session.attach(a.attach, &me);
        self.links += 1;
        Self::read_on(&mut link, ctx);
        self.connected(link, a.connack, present, permit, ctx);
        true
    }

    /// CONNECT answered: the CONNACK, the counts and notice, the keep alive, and what the
    /// session has waiting.
    fn connected(
        &mut self,
        mut link: Link,
        c: Connack,
        present: bool,
        permit: Option<Box<girder_regulate::Permit>>,
        ctx: &mut ServerContext<Self>,
    ) {
        connect::connack(&mut link, &self.shared, &c, present);
        if let Some(t) = self.connect_timer.take() {
            t.cancel();
        }
        link.connected = true;
        self.shared.stats.connections.inc();
        if let Some(p) = permit {
            // Its latency teaches an adaptive admission regulator what a connect costs.
            p.success();
        }
        let session = self.session.as_mut().expect("a session");
        if let Some(alarms) = &self.shared.alarms {
            let text = format!(
                "{} from {} ({:?}, user {:?}, clean start {}, keep alive {} s)",
                session.client_id,
                link.peer,
                link.protocol,
                session.username,
                c.clean_start,
                c.keep_alive
            );
            crate::ops::notice(alarms, "client_connected", text);
        }
        if c.keep_alive > 0 {
            ctx.info_after(Info::KeepAlive(self.links), keep_alive_check(c.keep_alive));
        }
        session.resend(&mut link);
        self.link = Some(link);
    }
}

impl Server for Client {
    type Call = Call;
    type Cast = Cast;
    type Info = Info;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        if let Some(link) = &mut self.link {
            self.shared.stats.connections_total.inc();
            Self::read_on(link, ctx);
            let after = self.shared.config.connect_timeout();
            self.connect_timer = Some(Box::new(ctx.info_after(Info::ConnectTimeout, after)));
        }
        let me = Self::me(ctx);
        if let Some(session) = &mut self.session {
            // A restored session: under its name again, its subscriptions back in the router.
            if ctx.register(&Session::name(&session.client_id)).is_err() {
                let why = ExitReason::error("its client id is taken");
                return Err(girder::InitError::Stop(why));
            }
            if let Some(after) = session.resume(&me) {
                let t = ctx.info_after(Info::Expired(session.detached), after);
                session.expires(after, t);
            }
        }
        Ok(())
    }

    async fn handle_call(&mut self, req: Call, ctx: &mut ServerContext<Self>) -> Flow {
        let flow = match req {
            Call::Adopt(a, reply) => {
                let ok = self.adopt(*a, ctx);
                reply.reply(ok);
                Flow::Continue
            }
            Call::Save(reply) => {
                reply.reply(self.session.as_ref().and_then(Session::save));
                Flow::Continue
            }
            Call::Close(reason, reply) => {
                let flow = if self.link.is_some() {
                    self.link_gone(Some(reason), true, ctx)
                } else {
                    Flow::Continue
                };
                reply.reply(());
                flow
            }
        };
        self.after(flow, ctx)
    }

    async fn handle_cast(&mut self, msg: Cast, ctx: &mut ServerContext<Self>) -> Flow {
        match msg {
            Cast::Deliver(d) => {
                if let Some(s) = &mut self.session {
                    let link = self.link.as_mut().filter(|l| l.connected);
                    s.deliver(d, link);
                }
            }
        }
        self.after(Flow::Continue, ctx)
    }

    // Not an `async fn`: everything but a first packet is handled before the future is made,
    // which only carries the result. A process's future keeps room for its largest handler's
    // future for as long as it lives; CONNECT, the one that waits (for the process holding the
    // session), is boxed.
    #[allow(clippy::manual_async_fn)]
    fn handle_info(
        &mut self,
        info: Info,
        ctx: &mut ServerContext<Self>,
    ) -> impl std::future::Future<Output = Flow> + Send {
        let flow = match info {
            Info::Packet(Ok((h, bytes))) => {
                if let Some(link) = &mut self.link {
                    link.read(bytes.len(), &self.shared.stats);
                }
                if !self.link.as_ref().is_some_and(|l| l.connected) {
                    return Either::Right(Box::pin(async move {
                        let flow = self.on_first(h, bytes, ctx).await;
                        self.after(flow, ctx)
                    }));
                }
                self.on_packet(h, bytes, false, ctx)
            }
            Info::Packet(Err(ReadError::Decode(e))) => {
                self.shared.stats.protocol_errors.inc();
                self.close(e.reason(), &e.to_string(), ctx)
            }
            Info::Packet(Err(ReadError::Io(_))) | Info::Closed => self.link_gone(None, true, ctx),
            Info::ConnectTimeout if self.session.is_none() => {
                let peer = self.link.as_ref().map(|l| l.peer);
                tracing::info!(?peer, "no CONNECT in time");
                Flow::Stop(ExitReason::Normal)
            }
            Info::KeepAlive(n) if n == self.links => self.keep_alive(ctx),
            Info::WillDue(n) => {
                if let Some(s) = self.session.as_mut().filter(|s| s.detached == n) {
                    if self.link.is_none() {
                        s.publish_will();
                    }
                }
                Flow::Continue
            }
            Info::Expired(n) => {
                let ends =
                    self.link.is_none() && self.session.as_ref().is_some_and(|s| s.detached == n);
                if ends {
                    Flow::Stop(ExitReason::Normal)
                } else {
                    Flow::Continue
                }
            }
            Info::Write => {
                self.retry_due = false;
                Flow::Continue
            }
            Info::Released { link, ack, sent } if link == self.links => {
                if let Some(l) = &mut self.link {
                    if let Some((kind, id)) = ack {
                        l.reply(kind, id, packets::routed(sent));
                    }
                    l.waiting = false;
                    Self::read_on(l, ctx);
                }
                Flow::Continue
            }
            Info::Permitted(link, h, bytes) if link == self.links => {
                if let Some(l) = &mut self.link {
                    l.waiting = false;
                }
                let flow = self.on_packet(h, bytes, true, ctx);
                if let Some(l) = self.link.as_mut().filter(|l| !l.waiting) {
                    Self::read_on(l, ctx);
                }
                flow
            }
            _ => Flow::Continue,
        };
        Either::Left(std::future::ready(self.after(flow, ctx)))
    }

    /// What the handlers wrote goes out once nothing more is waiting: one write for a burst
    /// of deliveries or acknowledgements, however they came.
    async fn handle_idle(&mut self, ctx: &mut ServerContext<Self>) -> Flow {
        if let Some(s) = &mut self.session {
            s.account();
        }
        if let Some(link) = &mut self.link {
            link.settle(&self.shared.stats);
        }
        self.flush(true, ctx)
    }

    async fn terminate(&mut self, reason: &ExitReason, ctx: &mut ServerContext<Self>) {
        if let Some(link) = self.link.take() {
            let told = (*reason == ExitReason::Shutdown).then_some(Reason::ServerShuttingDown);
            self.end_link(link, told, &reason.to_string(), ctx);
        }
        if let Some(s) = &mut self.session {
            s.end();
        }
    }
}

impl Client {
    fn keep_alive(&mut self, ctx: &mut ServerContext<Self>) -> Flow {
        let Some(link) = &mut self.link else {
            return Flow::Continue;
        };
        let limit = keep_alive_limit(link.keep_alive);
        let now = std::time::Instant::now();
        // A connection paused by its publisher's wait is not silent: its packets wait unread.
        if std::mem::take(&mut link.heard) || link.waiting {
            link.last_seen = now;
        }
        if now.duration_since(link.last_seen) >= limit {
            return self.close(Reason::KeepAliveTimeout, "keep alive timed out", ctx);
        }
        ctx.info_after(
            Info::KeepAlive(self.links),
            keep_alive_check(link.keep_alive),
        );
        Flow::Continue
    }
}

/// How long a client with keep alive `secs` may stay silent (§3.1.2.10: 1.5 times it).
fn keep_alive_limit(secs: u16) -> Duration {
    Duration::from_secs(secs as u64) * 3 / 2
}

/// How often the keep-alive check looks: four times a limit, so a silent client is cut off
/// between 1.5 and about 1.9 keep-alives after its last packet.
fn keep_alive_check(secs: u16) -> Duration {
    (keep_alive_limit(secs) / 4).max(Duration::from_millis(100))
}
