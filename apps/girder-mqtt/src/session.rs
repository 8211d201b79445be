//! A session: one process per client id, registered under it, that outlives its connections.
//!
//! It holds what MQTT says a session is (§4.1): the client's subscriptions, the QoS 1 and 2
//! messages on their way to it (in flight, up to its window) and those waiting behind them
//! (the offline queue, bounded), the QoS 2 packet identifiers it has received and not yet
//! released, and its will. A connection attaches to it after CONNECT; a second connection
//! with the same client id attaches in its place and the first is told to go (takeover,
//! 0x8E). When its connection ends, the session publishes the will (after the will delay) and
//! ends at once (expiry 0, 3.1.1's clean session) or when its expiry interval has passed.
//!
//! Slow clients: what the session sends its connection goes through the connection's
//! bounded mailbox. When that is full, QoS 0 messages are dropped and counted, and QoS 1 and
//! 2 messages wait in the session's queue. While a client is connected, its publishers wait
//! once the queue reaches `backpressure_queued` ([`Backlog`]); the queue itself is bounded by
//! `max_queued` (past it the newest are dropped and counted), which an offline or stalled
//! client reaches. Nothing a client does grows the broker without bound.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{
    Down, Flow, MonitorRef, ReplyTo, SendError, Server, ServerContext, ServerRef, TimerRef,
};

use crate::backlog::Backlog;
use crate::broker::Shared;
use crate::codec::ack::Reason;
use crate::codec::connect::{Protocol, QoS};
use crate::codec::subscribe::RetainHandling;
use crate::connection::{Connection, ToClient};
use crate::message::Message;
use crate::router::{Reader, Route};
use crate::store::{SavedDelivery, SavedSession, SavedSub};

/// Messages that may wait in a session's mailbox: the bound on what a burst of publishes
/// leaves with a session that has not yet sorted them into its queue (past it, publishers
/// wait).
pub const MAILBOX: usize = 1024;

/// A message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub msg: Arc<Message>,
    /// The QoS it goes with (the lower of the published and the granted).
    pub qos: QoS,
    /// The retain flag it goes with.
    pub retain: bool,
    /// The subscription identifier that matched (5.0).
    pub sub_id: Option<u32>,
}

impl Delivery {
    /// A placeholder for a QoS 2 message already received by the client, of which only the
    /// packet id matters.
    fn released() -> Self {
        Delivery {
            msg: Message::broker("", bytes::Bytes::new(), false),
            qos: QoS::ExactlyOnce,
            retain: false,
            sub_id: None,
        }
    }
}

/// A PUBLISH for the connection to write.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its packet identifier (QoS 1 and 2).
    pub packet_id: Option<u16>,
    /// A re-delivery.
    pub dup: bool,
    /// What it carries.
    pub delivery: Delivery,
}

/// Acknowledgements from the client, handed from its connection to its session beside the
/// mailbox: a session's mailbox may hold thousands of deliveries, and an acknowledgement
/// queued behind them would hold the in-flight window shut that long (the benchmark's QoS 1
/// fan-in). The session takes them all before each message it handles; the connection casts
/// [`Cast::Acks`] only when it finds the box empty, to wake a session with nothing else to do.
#[derive(Debug, Default)]
pub struct Acks(parking_lot::Mutex<Vec<Ack>>);

/// One acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is done with.
    Done(u16),
    /// PUBREC (QoS 2): received; a PUBREL goes next.
    Received(u16),
}

impl Acks {
    /// Adds one; true if the box was empty (the session needs waking).
    pub fn push(&self, ack: Ack) -> bool {
        let mut v = self.0.lock();
        v.push(ack);
        v.len() == 1
    }

    fn take(&self) -> Vec<Ack> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// A handle to a session.
#[derive(Clone)]
pub struct SessionRef(ServerRef<Session>);

/// The delivery a refused `Cast::Deliver` carried.
fn delivery_back(e: SendError<Cast>) -> SendError<Delivery> {
    match e {
        SendError::Full(Cast::Deliver(d)) => SendError::Full(d),
        SendError::NoProc(Cast::Deliver(d)) => SendError::NoProc(d),
        _ => unreachable!("the message sent comes back"),
    }
}

impl SessionRef {
    /// The session's process.
    pub fn pid(&self) -> girder::Pid {
        self.0.pid()
    }

    /// Sends it a message to deliver (never waits: a full mailbox refuses it).
    pub fn deliver(&self, d: Delivery) -> Result<(), SendError<Delivery>> {
        self.0.cast(Cast::Deliver(d)).map_err(delivery_back)
    }

    /// Sends it a message to deliver, waiting while its mailbox is full.
    pub async fn deliver_wait(&self, d: Delivery) -> Result<(), SendError<Delivery>> {
        self.0
            .cast_wait(Cast::Deliver(d))
            .await
            .map_err(delivery_back)
    }

    /// The server handle.
    pub fn server(&self) -> &ServerRef<Session> {
        &self.0
    }
}

/// What a connection asks of its session when it attaches.
pub struct Attach {
    /// The connection.
    pub conn: ServerRef<Connection>,
    /// Discard any state first (clean session / clean start).
    pub clean_start: bool,
    /// The protocol the client speaks.
    pub protocol: Protocol,
    /// The most QoS 1 and 2 messages in flight to it (its receive maximum, capped).
    pub window: u16,
    /// Seconds the session outlives its connection (`u32::MAX`: for ever).
    pub expiry: u32,
    /// The will and its delay.
    pub will: Option<(Arc<Message>, Duration)>,
    /// The user name it authenticated with (the ACL's rules depend on it).
    pub username: Option<Arc<str>>,
}

/// What the session says back.
#[derive(Debug)]
pub struct Attached {
    /// A session was present (§3.2.2.2).
    pub present: bool,
    /// QoS 2 packet identifiers received and not yet released.
    pub awaiting_rel: Vec<u16>,
    /// Where the connection puts the client's acknowledgements.
    pub acks: Arc<Acks>,
}

/// A subscription request, checked by the connection (filter syntax and ACL).
#[derive(Debug, Clone)]
pub struct SubRequest {
    /// The filter.
    pub filter: String,
    /// The most QoS.
    pub qos: QoS,
    /// 5.0 options.
    pub no_local: bool,
    /// 5.0 options.
    pub retain_as_published: bool,
    /// 5.0 options.
    pub retain_handling: RetainHandling,
    /// 5.0 subscription identifier.
    pub id: Option<u32>,
}

impl SubRequest {
    /// The router's entry for this subscription of session `me`.
    fn route(&self, me: &SessionRef, backlog: &Arc<Backlog>, reader: Option<Arc<Reader>>) -> Route {
        Route {
            session: me.clone(),
            backlog: backlog.clone(),
            reader,
            qos: self.qos,
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            id: self.id,
        }
    }
}

/// Requests that expect a reply.
pub enum Call {
    /// A connection attaches.
    Attach(Box<Attach>, ReplyTo<Attached>),
    /// Subscribe; replies per filter whether it is new.
    Subscribe(Vec<SubRequest>, ReplyTo<Vec<bool>>),
    /// Unsubscribe; replies per filter whether it existed.
    Unsubscribe(Vec<String>, ReplyTo<Vec<bool>>),
    /// The connection ends with a DISCONNECT: without the will unless `will`, with a new
    /// expiry if given (5.0). A call, which the connection waits for before it ends: the
    /// `Down` of its end may overtake a message it sent (signals go first, decision 001), and
    /// would publish the will.
    Detach {
        /// The connection's process.
        conn: girder::Pid,
        /// Publish the will anyway (5.0 reason 0x04).
        will: bool,
        /// A new session expiry interval.
        expiry: Option<u32>,
        /// Answered once handled.
        reply: ReplyTo<()>,
    },
    /// Its state to save, if it outlives its connection.
    Save(ReplyTo<Option<SavedSession>>),
}

/// Fire-and-forget requests.
pub enum Cast {
    /// A message to deliver.
    Deliver(Delivery),
    /// Acknowledgements wait in the session's [`Acks`].
    Acks,
    /// The client sent a QoS 2 message with this identifier (kept until released).
    Qos2Received(u16),
    /// The client released it (PUBREL).
    Qos2Released(u16),
}

/// Timers.
pub enum Info {
    /// The will delay has passed (for the detachment numbered so).
    WillDue(u64),
    /// The expiry interval has passed (for the detachment numbered so).
    Expired(u64),
    /// Try again to hand queued messages to a connection that was full.
    Retry,
}

enum State {
    /// On its way: a PUBLISH sent (or to resend), or for QoS 2 after PUBREC, a PUBREL.
    Sent(Delivery),
    Released,
}

struct Inflight {
    id: u16,
    state: State,
    /// Handed to the current connection (false: to be sent when it has room).
    handed: bool,
}

/// The session process's state.
pub struct Session {
    client_id: Arc<str>,
    username: Option<Arc<str>>,
    shared: Arc<Shared>,
    fresh: bool,
    conn: Option<(ServerRef<Connection>, MonitorRef)>,
    window: usize,
    subs: HashMap<String, SubRequest>,
    next_id: u16,
    inflight: VecDeque<Inflight>,
    queue: VecDeque<Delivery>,
    awaiting_rel: HashSet<u16>,
    will: Option<(Arc<Message>, Duration)>,
    expiry: u32,
    /// Numbers detachments, so a timer set for one is ignored after a re-attach.
    detached: u64,
    timers: Vec<TimerRef>,
    retrying: bool,
    /// When a restored session's client reconnects at the latest (from the store).
    restored_expiry: Option<Option<Instant>>,
    /// When it expires, while detached.
    expires_at: Option<Instant>,
    /// Messages it holds as last counted in the broker's `queued`.
    counted: usize,
    acks: Arc<Acks>,
    backlog: Arc<Backlog>,
}

impl Session {
    /// A new session for `client_id`.
    pub fn new(client_id: Arc<str>, shared: Arc<Shared>) -> Self {
        Session {
            client_id,
            username: None,
            fresh: true,
            conn: None,
            window: 1,
            subs: HashMap::new(),
            next_id: 0,
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            awaiting_rel: HashSet::new(),
            will: None,
            expiry: 0,
            detached: 0,
            timers: Vec::new(),
            retrying: false,
            restored_expiry: None,
            expires_at: None,
            counted: 0,
            acks: Arc::default(),
            backlog: Arc::new(Backlog::new(
                shared
                    .config
                    .backpressure_queued
                    .min(shared.config.max_queued),
            )),
            shared,
        }
    }

    /// Applies the acknowledgements waiting in the box, then fills the window again.
    fn take_acks(&mut self, ctx: &mut ServerContext<Self>) {
        let acks = self.acks.take();
        if acks.is_empty() {
            return;
        }
        for a in acks {
            match a {
                Ack::Done(id) => {
                    self.ack(id, "PUBACK/PUBCOMP");
                }
                Ack::Received(id) => {
                    if let Some(f) = self.inflight.iter_mut().find(|f| f.id == id) {
                        f.state = State::Released;
                        f.handed = false;
                    }
                }
            }
        }
        self.resend(ctx);
    }

    /// Brings the broker's count of held messages up to date with this session's.
    fn account(&mut self) {
        let now = self.queue.len() + self.inflight.len();
        if now > self.counted {
            self.shared.stats.queued.add((now - self.counted) as u64);
        } else {
            self.shared.stats.queued.sub((self.counted - now) as u64);
        }
        self.counted = now;
        self.backlog.queued(self.queue.len());
    }

    /// A session as saved, started again after a restart: detached, its subscriptions back in
    /// the router when it starts, and expiring when it would have.
    pub fn restore(saved: SavedSession, shared: Arc<Shared>) -> Self {
        let mut s = Session::new(saved.client_id.as_str().into(), shared);
        s.fresh = false;
        s.username = saved.username.map(Into::into);
        s.expiry = saved.expiry;
        s.subs = saved
            .subs
            .into_iter()
            .map(|sub| {
                let r = sub.into_request();
                (r.filter.clone(), r)
            })
            .collect();
        s.inflight = saved
            .inflight
            .into_iter()
            .map(|(id, d, released)| Inflight {
                id,
                state: if released {
                    State::Released
                } else {
                    State::Sent(d.into_delivery())
                },
                handed: false,
            })
            .collect();
        s.queue = saved.queue.into_iter().map(|d| d.into_delivery()).collect();
        s.awaiting_rel = saved.awaiting_rel.into_iter().collect();
        s.restored_expiry = Some(saved.expires_at_ms.map(crate::store::instant_of));
        s
    }

    fn save(&self) -> Option<SavedSession> {
        if self.expiry == 0 {
            return None;
        }
        Some(SavedSession {
            client_id: self.client_id.to_string(),
            username: self.username.as_deref().map(str::to_string),
            expiry: self.expiry,
            expires_at_ms: self.expires_at.map(crate::store::wall_ms),
            subs: self.subs.values().map(SavedSub::of).collect(),
            inflight: self
                .inflight
                .iter()
                .map(|f| match &f.state {
                    State::Sent(d) => (f.id, SavedDelivery::of(d), false),
                    // The message itself is no longer needed: only its id, for the PUBREL.
                    State::Released => (f.id, SavedDelivery::of(&Delivery::released()), true),
                })
                .collect(),
            queue: self.queue.iter().map(SavedDelivery::of).collect(),
            awaiting_rel: self.awaiting_rel.iter().copied().collect(),
        })
    }

    /// The child spec a session runs under: registered under its name, with a bounded
    /// mailbox of [`MAILBOX`] (a client's publish waits for room in it; the broker's own
    /// messages are dropped and counted).
    pub fn spec(self) -> girder::ChildSpec {
        let name = Session::name(&self.client_id);
        girder::ChildSpec::server_once("session", self)
            .named(name)
            .capacity(MAILBOX)
    }

    /// The name a session registers under.
    pub fn name(client_id: &str) -> String {
        format!("mqtt:session:{client_id}")
    }

    /// Finds the session of `client_id`, or starts one under the broker's session supervisor.
    pub async fn find_or_start(
        shared: &Arc<Shared>,
        client_id: &str,
    ) -> Result<SessionRef, String> {
        let name = Session::name(client_id);
        for _ in 0..3 {
            if let Ok(s) = ServerRef::<Session>::lookup(&shared.node, &name) {
                return Ok(SessionRef(s));
            }
            let spec = Session::new(client_id.into(), shared.clone()).spec();
            match shared.sessions.start_child(spec).await {
                Ok(pid) => {
                    if let Ok(s) = ServerRef::<Session>::from_pid(&shared.node, pid) {
                        return Ok(SessionRef(s));
                    }
                }
                // Another connection with this client id started it first: use that one.
                Err(girder::supervisor::SupervisorError::StartFailed {
                    error: girder::StartError::AlreadyStarted(_),
                    ..
                }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("no session for {client_id:?} after three tries"))
    }

    /// The router's entry for subscription `r`: checked message by message where the ACL may
    /// deny some of the topics its filter matches.
    fn route(&self, r: &SubRequest, me: &SessionRef) -> Route {
        let (_, filter) = crate::topic::shared_group(&r.filter);
        let reader = self
            .shared
            .acl
            .as_ref()
            .filter(|acl| acl.denies_within(self.username.as_deref(), &self.client_id, filter))
            .map(|acl| {
                Arc::new(Reader {
                    acl: acl.clone(),
                    username: self.username.clone(),
                    client_id: self.client_id.clone(),
                })
            });
        r.route(me, &self.backlog, reader)
    }

    /// True if the ACL (if any) lets the client read `topic` (for retained messages, which do
    /// not pass the router's check).
    fn may_read(&self, topic: &str) -> bool {
        self.shared.acl.as_ref().is_none_or(|acl| {
            acl.allows(
                self.username.as_deref(),
                &self.client_id,
                topic,
                crate::acl::Access::Read,
            )
        })
    }

    fn next_packet_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let id = self.next_id;
            if !self.inflight.iter().any(|f| f.id == id) {
                return id;
            }
        }
    }

    /// Hands queued messages to the connection while the window has room.
    fn pump(&mut self, ctx: &mut ServerContext<Self>) {
        let Some((conn, _)) = &self.conn else { return };
        let conn = conn.clone();
        let now = Instant::now();
        while self.inflight.len() < self.window {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            if d.msg.expired(now) {
                self.shared.stats.messages_expired.inc();
                continue;
            }
            let id = self.next_packet_id();
            self.inflight.push_back(Inflight {
                id,
                state: State::Sent(d.clone()),
                handed: true,
            });
            let out = Outgoing {
                packet_id: Some(id),
                dup: false,
                delivery: d,
            };
            if let Err(e) = conn.cast(ToClient::Publish(out)) {
                self.inflight.pop_back();
                if let ToClient::Publish(out) = e.into_inner() {
                    self.queue.push_front(out.delivery);
                }
                self.retry_later(ctx);
                break;
            }
        }
    }

    fn retry_later(&mut self, ctx: &mut ServerContext<Self>) {
        if !self.retrying {
            self.retrying = true;
            ctx.info_after(Info::Retry, Duration::from_millis(20));
        }
    }

    /// Keeps a message for later, within `max_queued`.
    fn enqueue(&mut self, d: Delivery) {
        if self.queue.len() >= self.shared.config.max_queued {
            self.shared.stats.messages_dropped.inc();
            return;
        }
        self.queue.push_back(d);
    }

    fn deliver(&mut self, d: Delivery, ctx: &mut ServerContext<Self>) {
        if d.qos == QoS::AtMostOnce {
            match &self.conn {
                Some((conn, _)) => {
                    let out = Outgoing {
                        packet_id: None,
                        dup: false,
                        delivery: d,
                    };
                    if conn.cast(ToClient::Publish(out)).is_err() {
                        self.shared.stats.messages_dropped.inc();
                    }
                }
                None if self.shared.config.queue_qos0 && self.expiry > 0 => self.enqueue(d),
                None => self.shared.stats.messages_dropped.inc(),
            }
            return;
        }
        self.enqueue(d);
        self.pump(ctx);
    }

    /// What is in flight and not yet handed to the connection, then the queue: after a
    /// reconnect everything in flight goes again (§4.4: PUBLISH with DUP, or PUBREL).
    fn resend(&mut self, ctx: &mut ServerContext<Self>) {
        let Some((conn, _)) = &self.conn else { return };
        let conn = conn.clone();
        for f in self.inflight.iter_mut().filter(|f| !f.handed) {
            let msg = match &f.state {
                State::Sent(d) => ToClient::Publish(Outgoing {
                    packet_id: Some(f.id),
                    dup: true,
                    delivery: d.clone(),
                }),
                State::Released => ToClient::PubRel(f.id),
            };
            if conn.cast(msg).is_err() {
                // The connection is full: the rest wait for room.
                self.retry_later(ctx);
                return;
            }
            f.handed = true;
        }
        self.pump(ctx);
    }

    fn ack(&mut self, id: u16, from: &str) -> Option<State> {
        let at = self.inflight.iter().position(|f| f.id == id);
        match at {
            Some(at) => self.inflight.remove(at).map(|f| f.state),
            None => {
                tracing::debug!(client = %self.client_id, id, from, "acknowledgement of an unknown packet id");
                None
            }
        }
    }

    fn reset(&mut self) {
        for filter in self.subs.keys() {
            self.shared.router.unsubscribe(filter, &self.client_id);
        }
        self.subs.clear();
        self.inflight.clear();
        self.queue.clear();
        self.awaiting_rel.clear();
    }

    fn cancel_timers(&mut self) {
        for t in self.timers.drain(..) {
            t.cancel();
        }
    }

    fn publish_will(&mut self) {
        if let Some((will, _)) = self.will.take() {
            self.shared.stats.wills_published.inc();
            self.shared.publish(&will);
        }
    }

    /// The connection is gone: the will (now or after its delay), then the end of the
    /// session (now or after its expiry).
    fn detach(&mut self, with_will: bool, ctx: &mut ServerContext<Self>) -> Flow {
        self.conn = None;
        self.backlog.attached(false);
        self.detached += 1;
        if !with_will {
            self.will = None;
        }
        if self.expiry == 0 {
            self.publish_will();
            return Flow::Stop(girder::ExitReason::Normal);
        }
        if let Some((_, delay)) = &self.will {
            if delay.is_zero() {
                self.publish_will();
            } else {
                let delay = (*delay).min(Duration::from_secs(self.expiry as u64));
                self.timers
                    .push(ctx.info_after(Info::WillDue(self.detached), delay));
            }
        }
        if self.expiry != u32::MAX {
            let after = Duration::from_secs(self.expiry as u64);
            self.expire_after(after, ctx);
        }
        Flow::Continue
    }

    fn expire_after(&mut self, after: Duration, ctx: &mut ServerContext<Self>) {
        self.expires_at = Some(Instant::now() + after);
        let t = ctx.info_after(Info::Expired(self.detached), after);
        self.timers.push(t);
    }
}

impl Server for Session {
    type Call = Call;
    type Cast = Cast;
    type Info = Info;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        self.shared.stats.sessions.inc();
        if let Some(expires) = self.restored_expiry.take() {
            let me = SessionRef(ctx.me());
            for r in self.subs.values() {
                self.shared
                    .router
                    .subscribe(&r.filter, &self.client_id, self.route(r, &me));
            }
            self.detached += 1;
            match expires {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    self.expire_after(left, ctx);
                }
                None if self.expiry != u32::MAX => {
                    self.expire_after(Duration::from_secs(self.expiry as u64), ctx);
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn handle_call(&mut self, req: Call, ctx: &mut ServerContext<Self>) -> Flow {
        self.take_acks(ctx);
        match req {
            Call::Attach(a, reply) => {
                let a = *a;
                if let Some((old, mref)) = self.conn.take() {
                    // Takeover (§3.1.4): the old connection goes, told why. Its network
                    // connection closes without a DISCONNECT, so its will goes (§3.1.2.5):
                    // now if it has no delay; one with a delay goes only if the session ends
                    // (clean start, below), as the new connection came before the delay ran out.
                    ctx.demonitor(mref);
                    let _ = old.cast(ToClient::Kick(Reason::SessionTakenOver));
                    if self.will.as_ref().is_some_and(|(_, delay)| delay.is_zero()) {
                        self.publish_will();
                    }
                }
                self.cancel_timers();
                self.expires_at = None;
                if a.clean_start {
                    self.reset();
                    // A will still pending from the last connection goes now (§3.1.2.5).
                    self.publish_will();
                }
                let present = !self.fresh && !a.clean_start;
                self.fresh = false;
                self.window = a.window.max(1) as usize;
                for f in &mut self.inflight {
                    f.handed = false;
                }
                self.expiry = a.expiry;
                self.will = a.will;
                if self.username != a.username {
                    // Another user took the session over: its subscriptions are checked
                    // against that user's rules from now on.
                    self.username = a.username;
                    let me = SessionRef(ctx.me());
                    for r in self.subs.values() {
                        self.shared.router.subscribe(
                            &r.filter,
                            &self.client_id,
                            self.route(r, &me),
                        );
                    }
                }
                let mref = ctx.monitor(a.conn.pid());
                self.conn = Some((a.conn, mref));
                self.backlog.attached(true);
                reply.reply(Attached {
                    present,
                    awaiting_rel: self.awaiting_rel.iter().copied().collect(),
                    acks: self.acks.clone(),
                });
                self.resend(ctx);
            }
            Call::Subscribe(reqs, reply) => {
                let mut new = Vec::with_capacity(reqs.len());
                let me = SessionRef(ctx.me());
                for r in &reqs {
                    let fresh = self.shared.router.subscribe(
                        &r.filter,
                        &self.client_id,
                        self.route(r, &me),
                    );
                    self.subs.insert(r.filter.clone(), r.clone());
                    new.push(fresh);
                }
                reply.reply(new.clone());
                // Retained messages (§3.3.1.3), after the SUBACK: never for a shared
                // subscription (5.0 §4.8.2).
                for (r, fresh) in reqs.iter().zip(new) {
                    let wanted = match r.retain_handling {
                        RetainHandling::OnSubscribe => true,
                        RetainHandling::OnNewSubscription => fresh,
                        RetainHandling::Never => false,
                    };
                    if !wanted || r.filter.starts_with("$share/") {
                        continue;
                    }
                    for msg in self.shared.router.retained(&r.filter) {
                        if !self.may_read(&msg.topic) {
                            continue;
                        }
                        let qos = msg.qos.min(r.qos);
                        self.deliver(
                            Delivery {
                                msg,
                                qos,
                                retain: true,
                                sub_id: r.id,
                            },
                            ctx,
                        );
                    }
                }
            }
            Call::Unsubscribe(filters, reply) => {
                let existed = filters
                    .iter()
                    .map(|f| {
                        self.subs.remove(f);
                        self.shared.router.unsubscribe(f, &self.client_id)
                    })
                    .collect();
                reply.reply(existed);
            }
            Call::Detach {
                conn,
                will,
                expiry,
                reply,
            } => {
                reply.reply(());
                if self.conn.as_ref().is_some_and(|(c, _)| c.pid() == conn) {
                    if let Some((_, mref)) = self.conn.take() {
                        ctx.demonitor(mref);
                    }
                    if let Some(e) = expiry {
                        self.expiry = e;
                    }
                    return self.detach(will, ctx);
                }
            }
            Call::Save(reply) => reply.reply(self.save()),
        }
        self.account();
        Flow::Continue
    }

    async fn handle_cast(&mut self, msg: Cast, ctx: &mut ServerContext<Self>) -> Flow {
        self.take_acks(ctx);
        match msg {
            Cast::Deliver(d) => {
                if d.qos != QoS::AtMostOnce {
                    self.backlog.received();
                }
                self.deliver(d, ctx)
            }
            // Taken above, with every other acknowledgement waiting.
            Cast::Acks => {}
            Cast::Qos2Received(id) => {
                self.awaiting_rel.insert(id);
            }
            Cast::Qos2Released(id) => {
                self.awaiting_rel.remove(&id);
            }
        }
        self.account();
        Flow::Continue
    }

    async fn handle_info(&mut self, info: Info, ctx: &mut ServerContext<Self>) -> Flow {
        self.take_acks(ctx);
        match info {
            Info::WillDue(n) if n == self.detached && self.conn.is_none() => self.publish_will(),
            Info::Expired(n) if n == self.detached && self.conn.is_none() => {
                return Flow::Stop(girder::ExitReason::Normal)
            }
            Info::Retry => {
                self.retrying = false;
                self.resend(ctx);
            }
            _ => {}
        }
        self.account();
        Flow::Continue
    }

    async fn handle_down(&mut self, down: Down, ctx: &mut ServerContext<Self>) -> Flow {
        if self.conn.as_ref().is_some_and(|(c, _)| c.pid() == down.pid) {
            // Gone without a DISCONNECT: the will goes (§3.1.2.5).
            return self.detach(true, ctx);
        }
        Flow::Continue
    }

    async fn terminate(&mut self, _: &girder::ExitReason, _: &mut ServerContext<Self>) {
        self.backlog.attached(false);
        self.cancel_timers();
        self.publish_will();
        for filter in self.subs.keys() {
            self.shared.router.unsubscribe(filter, &self.client_id);
        }
        if !self.queue.is_empty() {
            self.shared
                .stats
                .messages_dropped
                .add(self.queue.len() as u64);
        }
        self.queue.clear();
        self.inflight.clear();
        self.account();
        self.shared.stats.sessions.dec();
    }
}
