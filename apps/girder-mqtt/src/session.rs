//! A session: what MQTT says outlives a client's network connection (§4.1), kept by the
//! client's process ([`crate::client::Client`]) while it is connected and after.
//!
//! It holds the client's subscriptions, the QoS 1 and 2 messages on their way to it (in
//! flight, up to its window) and those waiting behind them (the queue, bounded by
//! `max_queued`, past which the newest are dropped and counted), the QoS 2 packet identifiers
//! it has received and not yet released, and its will. While a client is connected, its
//! publishers wait once its queue reaches `backpressure_queued` ([`Backlog`]); an offline or
//! stalled client's queue fills to `max_queued`. Nothing a client does grows the broker
//! without bound.
//!
//! The rules here are the session's alone; the process ([`crate::client`]) hands it the link
//! to write to, if connected, and keeps its timers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{SendError, ServerRef, TimerRef};

use crate::backlog::Backlog;
use crate::broker::Shared;
use crate::client::{Cast, Client, Link};
use crate::codec::ack::Reason;
use crate::codec::connect::QoS;
use crate::codec::subscribe::RetainHandling;
use crate::codec::PacketType;
use crate::message::Message;
use crate::router::{Reader, Route};
use crate::store::{SavedDelivery, SavedSession, SavedSub};

/// Messages that may wait in a client process's mailbox: the bound on what a burst of
/// publishes leaves with a client that has not yet written them out or sorted them into its
/// queue (past it, publishers wait).
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

/// A PUBLISH for the link to write.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its packet identifier (QoS 1 and 2).
    pub packet_id: Option<u16>,
    /// A re-delivery.
    pub dup: bool,
    /// What it carries.
    pub delivery: Delivery,
}

/// A handle to a session: the process of its client, which the router casts deliveries to.
#[derive(Clone)]
pub struct SessionRef(pub(crate) ServerRef<Client>);

/// The delivery a refused `Cast::Deliver` carried.
fn delivery_back(e: SendError<Cast>) -> SendError<Delivery> {
    match e {
        SendError::Full(Cast::Deliver(d)) => SendError::Full(d),
        SendError::NoProc(Cast::Deliver(d)) => SendError::NoProc(d),
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
}

/// What a new connection brings to its session (from its CONNECT).
#[derive(Clone)]
pub struct Attach {
    /// Discard any state first (clean session / clean start).
    pub clean_start: bool,
    /// The most QoS 1 and 2 messages in flight to it (its receive maximum, capped).
    pub window: u16,
    /// Seconds the session outlives its connection (`u32::MAX`: for ever).
    pub expiry: u32,
    /// The will and its delay.
    pub will: Option<(Arc<Message>, Duration)>,
    /// The user name it authenticated with (the ACL's rules depend on it).
    pub username: Option<Arc<str>>,
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

enum State {
    /// On its way: a PUBLISH sent (or to resend), or for QoS 2 after PUBREC, a PUBREL.
    Sent(Delivery),
    Released,
}

struct Inflight {
    id: u16,
    state: State,
    /// Written to the current connection (false: to be written when it has room).
    handed: bool,
}

/// One client id's session.
pub struct Session {
    /// The client id.
    pub client_id: Arc<str>,
    /// The user name its client authenticated with.
    pub username: Option<Arc<str>>,
    shared: Arc<Shared>,
    fresh: bool,
    window: usize,
    /// Its subscriptions, one per filter (a list: most clients have a few).
    subs: Vec<SubRequest>,
    next_id: u16,
    /// Messages in flight and queued, QoS 2 ids, timers: `None` until there are any.
    held: Option<Box<Held>>,
    will: Option<(Arc<Message>, Duration)>,
    /// Seconds it outlives its connection (0: not at all; `u32::MAX`: for ever).
    pub expiry: u32,
    /// Numbers detachments, so a timer set for one is ignored after a re-attach.
    pub detached: u64,
    /// Restored from the store, not yet resumed.
    restored: bool,
    /// Messages it holds as last counted in the broker's `queued`.
    counted: usize,
    backlog: Arc<Backlog>,
}

/// What a session holds only once it has something to hold. Most clients never have a QoS 1
/// or 2 message in flight or queued, nor a timer running, and a session's every field is
/// memory held for as long as its client is connected: boxed, these cost such a session 8
/// bytes rather than 128. Once made, it stays (a busy session would make it again and again).
#[derive(Default)]
struct Held {
    inflight: VecDeque<Inflight>,
    queue: VecDeque<Delivery>,
    /// QoS 2 packet identifiers received from the client and not yet released (at most
    /// `max_inflight_in`).
    awaiting_rel: Vec<u16>,
    /// Cancelled when a connection attaches.
    timers: Vec<TimerRef>,
    /// When it expires, while detached (for a restored session, as the store said).
    expires_at: Option<Instant>,
}

impl Session {
    /// A new session for `client_id`.
    pub fn new(client_id: Arc<str>, shared: Arc<Shared>) -> Self {
        shared.stats.sessions.inc();
        Session {
            client_id,
            username: None,
            fresh: true,
            window: 1,
            subs: Vec::new(),
            next_id: 0,
            held: None,
            will: None,
            expiry: 0,
            detached: 0,
            restored: false,
            counted: 0,
            backlog: Arc::new(Backlog::new(
                shared
                    .config
                    .backpressure_queued
                    .min(shared.config.max_queued),
            )),
            shared,
        }
    }

    /// The name a session's process registers under.
    pub fn name(client_id: &str) -> String {
        format!("mqtt:session:{client_id}")
    }

    /// A session as saved, started again after a restart: detached, expiring when it would
    /// have; its subscriptions go back in the router when its process starts ([`Self::resume`]).
    pub fn restore(saved: SavedSession, shared: Arc<Shared>) -> Self {
        let mut s = Session::new(saved.client_id.as_str().into(), shared);
        s.fresh = false;
        s.username = saved.username.map(Into::into);
        s.expiry = saved.expiry;
        s.subs = saved.subs.into_iter().map(SavedSub::into_request).collect();
        s.held = Some(Box::new(Held {
            inflight: saved
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
                .collect(),
            queue: saved.queue.into_iter().map(|d| d.into_delivery()).collect(),
            awaiting_rel: saved.awaiting_rel,
            timers: Vec::new(),
            expires_at: saved.expires_at_ms.map(crate::store::instant_of),
        }));
        s.restored = true;
        s
    }

    /// A restored session's subscriptions back in the router; when it expires, if it does
    /// (`None` if never, or not restored).
    pub fn resume(&mut self, me: &SessionRef) -> Option<Duration> {
        if !std::mem::take(&mut self.restored) {
            return None;
        }
        let expires = self.held.as_ref().and_then(|h| h.expires_at);
        for r in &self.subs {
            self.shared
                .router
                .subscribe(&r.filter, &self.client_id, self.route(r, me));
        }
        self.detached += 1;
        match expires {
            Some(at) => Some(at.saturating_duration_since(Instant::now())),
            None if self.expiry != u32::MAX => Some(Duration::from_secs(self.expiry as u64)),
            None => None,
        }
    }

    /// Its state to save, if it outlives its connection.
    pub fn save(&self) -> Option<SavedSession> {
        if self.expiry == 0 {
            return None;
        }
        let held = self.held.as_deref();
        Some(SavedSession {
            client_id: self.client_id.to_string(),
            username: self.username.as_deref().map(str::to_string),
            expiry: self.expiry,
            expires_at_ms: held.and_then(|h| h.expires_at).map(crate::store::wall_ms),
            subs: self.subs.iter().map(SavedSub::of).collect(),
            inflight: held
                .into_iter()
                .flat_map(|h| &h.inflight)
                .map(|f| match &f.state {
                    State::Sent(d) => (f.id, SavedDelivery::of(d), false),
                    // The message itself is no longer needed: only its id, for the PUBREL.
                    State::Released => (f.id, SavedDelivery::of(&Delivery::released()), true),
                })
                .collect(),
            queue: held
                .into_iter()
                .flat_map(|h| &h.queue)
                .map(SavedDelivery::of)
                .collect(),
            awaiting_rel: held.map(|h| h.awaiting_rel.clone()).unwrap_or_default(),
        })
    }

    /// What it holds, made on first use.
    fn held(&mut self) -> &mut Held {
        self.held.get_or_insert_with(Default::default)
    }

    /// Messages queued for the client.
    fn queued(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.queue.len())
    }

    /// Messages in flight to the client.
    fn in_flight(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.inflight.len())
    }

    /// Tells the session's publishers how much its queue holds: after every message handled,
    /// so a publisher waits as soon as the session is behind.
    pub fn account_backlog(&self) {
        self.backlog.queued(self.queued());
    }

    /// Brings the broker's count of held messages up to date with this session's, and the
    /// backlog. The count is one atomic every session shares: brought up to date once a busy
    /// spell is over, not per message, where two cores fighting over it cost a fan-out 6%.
    pub fn account(&mut self) {
        let now = self.queued() + self.in_flight();
        if now > self.counted {
            self.shared.stats.queued.add((now - self.counted) as u64);
        } else if now < self.counted {
            self.shared.stats.queued.sub((self.counted - now) as u64);
        }
        self.counted = now;
        self.account_backlog();
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
        Route {
            session: me.clone(),
            backlog: self.backlog.clone(),
            reader,
            qos: r.qos,
            no_local: r.no_local,
            retain_as_published: r.retain_as_published,
            id: r.id,
        }
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
            let held = self.held.as_deref();
            if !held.is_some_and(|h| h.inflight.iter().any(|f| f.id == id)) {
                return id;
            }
        }
    }

    /// Writes queued messages to the link while the window and the link have room.
    pub fn pump(&mut self, link: &mut Link) {
        while self.in_flight() < self.window && link.has_room() {
            let Some(d) = self.held.as_mut().and_then(|h| h.queue.pop_front()) else {
                break;
            };
            if d.msg.expired() {
                self.shared.stats.messages_expired.inc();
                continue;
            }
            let id = self.next_packet_id();
            let out = Outgoing {
                packet_id: Some(id),
                dup: false,
                delivery: d,
            };
            if link.publish(&out, &self.shared.stats, &self.shared.latency) {
                self.held().inflight.push_back(Inflight {
                    id,
                    state: State::Sent(out.delivery),
                    handed: true,
                });
            }
        }
    }

    /// Keeps a message for later, within `max_queued`.
    fn enqueue(&mut self, d: Delivery) {
        if self.queued() >= self.shared.config.max_queued {
            self.shared.stats.messages_dropped.inc();
            return;
        }
        self.held().queue.push_back(d);
    }

    /// A message for the client: written now if it can be, else kept (QoS 1 and 2, and QoS 0
    /// for an offline client if `queue_qos0`) or dropped (counted).
    pub fn deliver(&mut self, d: Delivery, link: Option<&mut Link>) {
        if d.qos == QoS::AtMostOnce {
            match link {
                Some(link) if link.has_room() => {
                    let out = Outgoing {
                        packet_id: None,
                        dup: false,
                        delivery: d,
                    };
                    link.publish(&out, &self.shared.stats, &self.shared.latency);
                }
                Some(_) => self.shared.stats.messages_dropped.inc(),
                None if self.shared.config.queue_qos0 && self.expiry > 0 => self.enqueue(d),
                None => self.shared.stats.messages_dropped.inc(),
            }
            return;
        }
        self.backlog.received();
        self.enqueue(d);
        if let Some(link) = link {
            self.pump(link);
        }
    }

    /// Writes what is in flight and not yet written to this link, then the queue: after a
    /// reconnect everything in flight goes again (§4.4: PUBLISH with DUP, or PUBREL).
    pub fn resend(&mut self, link: &mut Link) {
        let inflight = self.held.as_deref_mut().map(|h| &mut h.inflight);
        for f in inflight.into_iter().flatten().filter(|f| !f.handed) {
            if !link.has_room() {
                return;
            }
            match &f.state {
                State::Sent(d) => {
                    let out = Outgoing {
                        packet_id: Some(f.id),
                        dup: true,
                        delivery: d.clone(),
                    };
                    link.publish(&out, &self.shared.stats, &self.shared.latency);
                }
                State::Released => link.reply(PacketType::PubRel, f.id, Reason::Success),
            }
            f.handed = true;
        }
        self.pump(link);
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is done with; the window has room.
    pub fn acked(&mut self, id: u16, link: &mut Link) {
        let removed = self.held.as_deref_mut().and_then(|h| {
            let at = h.inflight.iter().position(|f| f.id == id)?;
            h.inflight.remove(at)
        });
        if removed.is_none() {
            tracing::debug!(client = %self.client_id, id, "acknowledgement of an unknown packet id")
        }
        self.pump(link);
    }

    /// PUBREC (QoS 2): received; a PUBREL goes (and again after a reconnect, until PUBCOMP).
    pub fn received(&mut self, id: u16, link: &mut Link) {
        let inflight = self.held.as_deref_mut().map(|h| &mut h.inflight);
        if let Some(f) = inflight.and_then(|i| i.iter_mut().find(|f| f.id == id)) {
            f.state = State::Released;
            f.handed = true;
            link.reply(PacketType::PubRel, id, Reason::Success);
        }
    }

    /// Adds or replaces subscriptions (checked already); per filter, whether it is new.
    pub fn subscribe(&mut self, reqs: &[SubRequest], me: &SessionRef) -> Vec<bool> {
        reqs.iter()
            .map(|r| {
                let fresh =
                    self.shared
                        .router
                        .subscribe(&r.filter, &self.client_id, self.route(r, me));
                match self.subs.iter_mut().find(|s| s.filter == r.filter) {
                    Some(s) => *s = r.clone(),
                    None => self.subs.push(r.clone()),
                }
                fresh
            })
            .collect()
    }

    /// The retained messages new subscriptions get (§3.3.1.3), after the SUBACK: never for
    /// a shared subscription (5.0 §4.8.2).
    pub fn send_retained(&mut self, reqs: &[SubRequest], fresh: &[bool], link: &mut Link) {
        for (r, fresh) in reqs.iter().zip(fresh) {
            let wanted = match r.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscription => *fresh,
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
                let d = Delivery {
                    msg,
                    qos,
                    retain: true,
                    sub_id: r.id,
                };
                // Not counted by a publisher: counted here, as it is taken off.
                if qos != QoS::AtMostOnce {
                    self.backlog.sent();
                }
                self.deliver(d, Some(link));
            }
        }
    }

    /// Removes subscriptions; per filter, whether it existed.
    pub fn unsubscribe(&mut self, filters: &[String]) -> Vec<bool> {
        filters
            .iter()
            .map(|f| {
                self.subs.retain(|s| s.filter != *f);
                self.shared.router.unsubscribe(f, &self.client_id)
            })
            .collect()
    }

    fn reset(&mut self) {
        for s in &self.subs {
            self.shared.router.unsubscribe(&s.filter, &self.client_id);
        }
        self.subs.clear();
        if let Some(h) = self.held.as_deref_mut() {
            h.inflight.clear();
            h.queue.clear();
            h.awaiting_rel.clear();
        }
    }

    fn awaiting_rel(&self) -> &[u16] {
        self.held.as_ref().map_or(&[], |h| &h.awaiting_rel)
    }

    /// True if the client's QoS 2 message `id` was received and not yet released.
    pub fn awaits_release(&self, id: u16) -> bool {
        self.awaiting_rel().contains(&id)
    }

    /// QoS 2 messages received and not yet released.
    pub fn unreleased(&self) -> usize {
        self.awaiting_rel().len()
    }

    /// The client's QoS 2 message `id` was received (and routed).
    pub fn received_qos2(&mut self, id: u16) {
        if !self.awaits_release(id) {
            self.held().awaiting_rel.push(id);
        }
    }

    /// PUBREL: true if `id` was awaiting it.
    pub fn release(&mut self, id: u16) -> bool {
        let Some(h) = self.held.as_deref_mut() else {
            return false;
        };
        match h.awaiting_rel.iter().position(|&x| x == id) {
            Some(i) => {
                h.awaiting_rel.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Publishes the will, if there is one still.
    pub fn publish_will(&mut self) {
        if let Some((will, _)) = self.will.take() {
            self.shared.stats.wills_published.inc();
            self.shared.publish(&will);
        }
    }

    /// The connection before this one went without a DISCONNECT, as a new one took its
    /// place (§3.1.4): its will goes now if it has no delay; one with a delay goes only if
    /// the session ends (a clean start), as the new connection came before the delay ran out.
    pub fn taken_over(&mut self) {
        if self.will.as_ref().is_some_and(|(_, delay)| delay.is_zero()) {
            self.publish_will();
        }
    }

    /// A connection attaches: true if a session was present (§3.2.2.2).
    pub fn attach(&mut self, a: Attach, me: &SessionRef) -> bool {
        self.cancel_timers();
        if let Some(h) = self.held.as_deref_mut() {
            h.expires_at = None;
        }
        if a.clean_start {
            self.reset();
            // A will still pending from the last connection goes now (§3.1.2.5).
            self.publish_will();
        }
        let present = !self.fresh && !a.clean_start;
        self.fresh = false;
        self.window = a.window.max(1) as usize;
        if let Some(h) = self.held.as_deref_mut() {
            for f in &mut h.inflight {
                f.handed = false;
            }
        }
        self.expiry = a.expiry;
        self.will = a.will;
        if self.username != a.username {
            // Another user took the session over: its subscriptions are checked against that
            // user's rules from now on.
            self.username = a.username;
            for r in &self.subs {
                self.shared
                    .router
                    .subscribe(&r.filter, &self.client_id, self.route(r, me));
            }
        }
        self.backlog.attached(true);
        present
    }

    /// The connection is gone: the will goes now, or after its delay; the session ends now
    /// (expiry 0) or after its expiry. What to time is returned for the process to set.
    pub fn detach(&mut self, with_will: bool) -> Detached {
        self.backlog.attached(false);
        self.detached += 1;
        if !with_will {
            self.will = None;
        }
        if self.expiry == 0 {
            self.publish_will();
            return Detached::Ends;
        }
        let mut will_after = None;
        if let Some((_, delay)) = &self.will {
            if delay.is_zero() {
                self.publish_will();
            } else {
                will_after = Some((*delay).min(Duration::from_secs(self.expiry as u64)));
            }
        }
        let expire_after =
            (self.expiry != u32::MAX).then(|| Duration::from_secs(self.expiry as u64));
        Detached::Stays {
            will_after,
            expire_after,
        }
    }

    /// Notes when it expires, and the timer that ends it then.
    pub fn expires(&mut self, after: Duration, timer: TimerRef) {
        let h = self.held();
        h.expires_at = Some(Instant::now() + after);
        h.timers.push(timer);
    }

    /// Keeps a timer, cancelled when a connection attaches.
    pub fn keep_timer(&mut self, timer: TimerRef) {
        self.held().timers.push(timer);
    }

    fn cancel_timers(&mut self) {
        if let Some(h) = self.held.as_deref_mut() {
            for t in h.timers.drain(..) {
                t.cancel();
            }
        }
    }

    /// The protocol-independent part of ending: the will, the subscriptions, the counts.
    pub fn end(&mut self) {
        self.backlog.attached(false);
        self.cancel_timers();
        self.publish_will();
        for s in &self.subs {
            self.shared.router.unsubscribe(&s.filter, &self.client_id);
        }
        if let Some(h) = self.held.as_deref_mut() {
            if !h.queue.is_empty() {
                self.shared.stats.messages_dropped.add(h.queue.len() as u64);
            }
            h.queue.clear();
            h.inflight.clear();
        }
        self.account();
        self.shared.stats.sessions.dec();
    }
}

/// What a detached session does next.
pub enum Detached {
    /// It ends now (expiry 0).
    Ends,
    /// It stays: its will after a delay, its end after its expiry (`None`: never).
    Stays {
        /// When the will goes (`None`: gone already, or none).
        will_after: Option<Duration>,
        /// When the session ends.
        expire_after: Option<Duration>,
    },
}
