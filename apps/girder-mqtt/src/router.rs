//! Routing: the subscription table and the retained messages of one broker, shared by every
//! connection that publishes and every session that subscribes.
//!
//! A publish reads the table under a read lock, so publishers never queue behind each other,
//! and casts the message to each matching session. A client's publish is handed back, for its
//! connection to wait ([`Held`]), where a session's mailbox is full, and for QoS 1 and 2 also
//! where a connected client's session is behind ([`Backlog`]); the broker's own messages
//! (wills, `$SYS`) never wait, and are dropped (counted in `messages_dropped`) where a mailbox
//! is full (decision 016). A session that has gone (crashed or killed) is found by its closed
//! mailbox and its subscriptions removed.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::acl::{Access, Acl};
use crate::backlog::Backlog;
use crate::codec::connect::QoS;
use crate::message::Message;
use crate::retained::Retained;
use crate::session::{Delivery, SessionRef};
use crate::stats::Stats;
use crate::topic::Subscriptions;

/// A session's subscription, as the table holds it.
#[derive(Clone)]
pub struct Route {
    /// The session it delivers to.
    pub session: SessionRef,
    /// What that session holds, as its publishers see it.
    pub backlog: Arc<Backlog>,
    /// The most QoS granted.
    pub qos: QoS,
    /// 5.0: not the subscriber's own messages.
    pub no_local: bool,
    /// 5.0: keep the retain flag as published.
    pub retain_as_published: bool,
    /// 5.0: the subscription identifier, sent with each message it matches.
    pub id: Option<u32>,
    /// Who reads, where the ACL may deny some of the topics the filter matches
    /// ([`Acl::denies_within`]): each message is checked before it goes.
    pub reader: Option<Arc<Reader>>,
}

/// A subscriber whose deliveries the ACL checks one by one.
#[derive(Debug)]
pub struct Reader {
    /// The ACL.
    pub acl: Arc<Acl>,
    /// The client's user name.
    pub username: Option<Arc<str>>,
    /// Its client id.
    pub client_id: Arc<str>,
}

impl Reader {
    /// True if the ACL lets the client read `topic`.
    pub fn may_read(&self, topic: &str) -> bool {
        self.acl.allows(
            self.username.as_deref(),
            &self.client_id,
            topic,
            Access::Read,
        )
    }
}

/// A delivery its publisher waits to hand over: the session's mailbox was full, or (QoS 1
/// and 2) the session is behind.
pub struct Held {
    session: SessionRef,
    backlog: Arc<Backlog>,
    delivery: Delivery,
}

impl Held {
    /// Waits while the session is behind (at most `timeout`, then it is taken as stalled)
    /// and then for room in its mailbox, and hands the delivery over. False if the session
    /// has gone meanwhile.
    pub async fn deliver(self, timeout: Duration) -> bool {
        let counted = self.delivery.qos != QoS::AtMostOnce;
        if counted {
            if self.backlog.holds() {
                self.backlog.wait_room(timeout).await;
            }
            self.backlog.sent();
        }
        let ok = self.session.deliver_wait(self.delivery).await.is_ok();
        if counted && !ok {
            self.backlog.received();
        }
        ok
    }
}

/// The subscription table and the retained store.
pub struct Router {
    subs: RwLock<Subscriptions<Arc<str>, Route>>,
    retained: RwLock<Retained<Arc<Message>>>,
    stats: Arc<Stats>,
}

impl Router {
    /// An empty router counting into `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Router {
            subs: RwLock::new(Subscriptions::new()),
            retained: RwLock::new(Retained::new()),
            stats,
        }
    }

    /// Adds or replaces `client`'s subscription to `filter` (checked already). True if new.
    pub fn subscribe(&self, filter: &str, client: &Arc<str>, route: Route) -> bool {
        let new = self.subs.write().subscribe(filter, client.clone(), route);
        if new {
            self.stats.subscriptions.inc();
        }
        new
    }

    /// Removes `client`'s subscription to `filter`. True if it existed.
    pub fn unsubscribe(&self, filter: &str, client: &Arc<str>) -> bool {
        let gone = self.subs.write().unsubscribe(filter, client);
        if gone {
            self.stats.subscriptions.dec();
        }
        gone
    }

    /// Subscriptions in the table.
    pub fn subscriptions(&self) -> usize {
        self.subs.read().len()
    }

    /// Retained messages held.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Publishes `msg`: keeps it if retained (an empty retained payload deletes the topic's),
    /// and sends it to every matching subscription. A session whose mailbox is full loses it
    /// (counted). Returns how many sessions it went to. For the broker's own messages (wills,
    /// `$SYS`); a client's go through [`publish_held`](Self::publish_held).
    pub fn publish(&self, msg: &Arc<Message>) -> usize {
        self.route(msg, false).0
    }

    /// Publishes a client's message as [`publish`](Self::publish) does, except that a
    /// delivery for a session whose mailbox is full, or (QoS 1 and 2) whose connected client
    /// is behind, is handed back, for the publishing connection to wait ([`Held::deliver`])
    /// before it reads on: so a subscriber that cannot keep up slows its publishers (TCP
    /// carries it to them) instead of losing messages already acknowledged. The wait for a
    /// client is bounded by `backpressure_timeout`; the wait for a mailbox by the subscriber's
    /// process, which drains it at its own speed, never waiting on its client (decision 017).
    pub fn publish_held(&self, msg: &Arc<Message>) -> (usize, Vec<Held>) {
        self.route(msg, true)
    }

    fn route(&self, msg: &Arc<Message>, hold: bool) -> (usize, Vec<Held>) {
        if msg.retain {
            let mut r = self.retained.write();
            if msg.payload.is_empty() {
                r.remove(&msg.topic);
            } else {
                r.set(&msg.topic, msg.clone());
            }
            self.stats.retained.set(r.len() as u64);
        }
        let mut sent = 0;
        let mut held = Vec::new();
        let mut gone: Vec<(Arc<str>, SessionRef)> = Vec::new();
        // A shared group's turn passes over offline members and those behind, if it can.
        let ready = |r: &Route| r.backlog.is_attached() && !r.backlog.holds();
        self.subs
            .read()
            .matches_preferring(&msg.topic, ready, |who, route| {
                if route.no_local && **who == *msg.from {
                    return;
                }
                if route
                    .reader
                    .as_ref()
                    .is_some_and(|r| !r.may_read(&msg.topic))
                {
                    return;
                }
                let d = Delivery {
                    msg: msg.clone(),
                    qos: msg.qos.min(route.qos),
                    retain: route.retain_as_published && msg.retain,
                    sub_id: route.id,
                };
                let counted = d.qos != QoS::AtMostOnce;
                let hold_it = |delivery| Held {
                    session: route.session.clone(),
                    backlog: route.backlog.clone(),
                    delivery,
                };
                if hold && counted && route.backlog.holds() {
                    held.push(hold_it(d));
                    return;
                }
                if counted {
                    route.backlog.sent();
                }
                let result = route.session.deliver(d);
                if counted && result.is_err() {
                    route.backlog.received();
                }
                match result {
                    Ok(()) => sent += 1,
                    Err(girder::SendError::Full(d)) if hold => held.push(hold_it(d)),
                    Err(girder::SendError::Full(_)) => self.stats.messages_dropped.inc(),
                    Err(girder::SendError::NoProc(_)) => {
                        gone.push((who.clone(), route.session.clone()))
                    }
                }
            });
        for (who, session) in gone {
            self.forget(&who, &session);
        }
        (sent, held)
    }

    /// Every retained message (for saving them).
    pub fn all_retained(&self) -> Vec<Arc<Message>> {
        let mut all = Vec::new();
        self.retained.read().each(|m| all.push(m.clone()));
        all
    }

    /// Puts back saved retained messages.
    pub fn restore_retained(&self, msgs: Vec<Arc<Message>>) {
        let mut r = self.retained.write();
        for m in msgs {
            r.set(&m.topic.clone(), m);
        }
        self.stats.retained.set(r.len() as u64);
    }

    /// Every retained message whose topic `filter` matches, for a new subscription.
    pub fn retained(&self, filter: &str) -> Vec<Arc<Message>> {
        let mut found = Vec::new();
        self.retained
            .read()
            .matching(filter, |_, m| found.push(m.clone()));
        found
    }

    /// Removes every subscription of a session that is gone (found by its closed mailbox).
    fn forget(&self, who: &Arc<str>, session: &SessionRef) {
        tracing::debug!(client = %who, pid = %session.pid(), "subscriptions of a session that is gone removed");
        let pid = session.pid();
        let removed = self
            .subs
            .write()
            .retain(|w, r| w != who || r.session.pid() != pid);
        self.stats.subscriptions.sub(removed as u64);
    }
}
