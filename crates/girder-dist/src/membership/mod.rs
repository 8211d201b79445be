//! Membership and failure detection: SWIM over UDP, by the `foca` crate.
//!
//! Each node runs one [`Membership`]: it joins through seed addresses, gossips who is alive,
//! probes a random member every `probe_period` (directly, then through others), and declares a
//! member down when it stays unreachable for `suspect_to_down_after`. Subscribers get
//! [`MemberEvent`]s; [`Membership::members`] is the current view. A graceful
//! [`leave`](Membership::leave) tells the others at once instead of waiting for detection.
//!
//! With a cookie, datagrams are sealed under a key derived from it, and a receiver drops
//! forgeries, replays, stale datagrams and a source's excess before the protocol sees them
//! (see [`DatagramStats`] and decision 004's amendment).
//!
//! Detection time is set by [`MembershipConfig`]; the defaults aim well under one second on a LAN
//! (probe every 200 ms, 100 ms round trip, suspicion 400 ms).

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::{Datagrams, Network};
use bytes::Bytes;
use foca::{Config, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::identity::{Cookie, NodeName};

mod datagram;

pub use datagram::DatagramStats;
use datagram::{Counters, Dropped, Intake, Sealer};

/// A cluster member as gossiped: its name, where its membership socket listens, its
/// incarnation and its roles.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node's name.
    pub name: NodeName,
    /// The node's membership (UDP) address.
    pub addr: SocketAddr,
    /// The node's incarnation: a restarted node has a newer one (in serial-number order, see
    /// `girder::Node::is_newer_creation`) and replaces the old.
    pub creation: u32,
    /// What the node is for (`edge`, `core`, ...), so services can be placed on node families.
    pub roles: Vec<String>,
}

impl Member {
    /// True if the member has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            creation: self.creation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Creation 0 is a seed's placeholder, which any real member replaces. Creations wrap:
        // compared as serial numbers, a node restarted after a wrap still wins.
        adversary.creation == 0
            || (self.creation != 0
                && girder::Node::is_newer_creation(self.creation, adversary.creation))
    }
}

/// A change in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member joined (or came back).
    Up(Member),
    /// A member was declared down (crashed, partitioned, or left).
    Down(Member),
    /// A member restarted: the old incarnation is replaced by the new one.
    Replaced {
        /// The old incarnation.
        old: Member,
        /// The new one.
        new: Member,
    },
    /// A member that went down has not come back for
    /// [`MembershipConfig::forget_after`]: this node stops looking for it (it no longer
    /// announces itself to its address) and takes it to be gone for good. If it does come
    /// back later, it is a member [`Up`](MemberEvent::Up) again as any newcomer would be.
    Forgotten(Member),
}

/// Failure detection timing.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// How often a random member is probed.
    pub probe_period: Duration,
    /// How long a direct probe may take before indirect probes start.
    pub probe_rtt: Duration,
    /// How long a suspected member has to refute before it is declared down.
    pub suspect_to_down_after: Duration,
    /// Expected cluster size (sets how many times updates are retransmitted).
    pub cluster_size: u32,
    /// Events kept for a slow subscriber; past that it misses the oldest (and is told it lagged).
    pub event_buffer: usize,
    /// The cluster cookie. When set, every datagram is sealed (encrypted and authenticated)
    /// under a key derived from it, and datagrams that do not open are dropped: a node without
    /// the cookie can neither join, nor forge a member's message, nor learn the members.
    pub cookie: Option<Cookie>,
    /// With a cookie, how far a datagram's send time may be from this node's clock: older ones
    /// are dropped as replays (a recorded announcement of a dead member cannot bring it back).
    /// The members' clocks must agree within it; stale datagrams are logged with the skew.
    pub freshness: Duration,
    /// Datagrams a second accepted from one source address (as many in a burst); more are
    /// dropped before any cryptography, so one flooding source costs little and cannot starve
    /// the real members. A member sends a few a second to each other.
    pub per_source_rate: u32,
    /// Where datagrams go: real UDP by default.
    pub network: Arc<dyn Network>,
    /// How often this node announces itself again to its seeds and to members it saw go down,
    /// so that both sides of a healed partition find each other again (SWIM alone never probes
    /// a member it declared down).
    pub rejoin_every: Duration,
    /// Where to bind when it is not the address members reach this node at (`me.addr`), e.g.
    /// `0.0.0.0:port` behind NAT or in a container. `None`: bind `me.addr`.
    pub bind: Option<SocketAddr>,
    /// How long a member that went down (crashed, partitioned, or left) is looked for before
    /// it is forgotten ([`MemberEvent::Forgotten`]): until then this node announces itself to
    /// its address every `rejoin_every`, so both sides of a healed partition find each other
    /// again. Default: an hour. At most 256 such members are looked for; past that the
    /// oldest are forgotten early.
    pub forget_after: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            probe_period: Duration::from_millis(200),
            probe_rtt: Duration::from_millis(100),
            suspect_to_down_after: Duration::from_millis(400),
            cluster_size: 16,
            event_buffer: 1024,
            cookie: None,
            freshness: Duration::from_secs(60),
            per_source_rate: 1_000,
            network: crate::transport::tokio_network(),
            bind: None,
            rejoin_every: Duration::from_secs(1),
            forget_after: Duration::from_secs(3600),
        }
    }
}

enum Input {
    Data(Bytes),
    Timer(Timer<Member>),
    Leave(oneshot::Sender<()>),
}

/// A running membership agent. Dropping it stops the agent without telling anyone (as a crash
/// would); call [`leave`](Self::leave) to leave gracefully.
pub struct Membership {
    me: Member,
    input: mpsc::Sender<Input>,
    events: broadcast::Sender<MemberEvent>,
    /// Subscribed before the agent started, so the first subscriber misses nothing.
    first: std::sync::Mutex<Option<broadcast::Receiver<MemberEvent>>>,
    view: watch::Receiver<Vec<Member>>,
    datagrams: Arc<Counters>,
    /// The reader and the agent, run by the node's tasks and ended with the membership.
    tasks: std::sync::Mutex<Vec<girder::OwnedTask>>,
}

impl Membership {
    /// Starts the agent on `me.addr` and announces itself to `seeds` (addresses of other
    /// members; unreachable ones are harmless).
    /// A port of 0 in `me.addr` binds any free port; [`me`](Self::me) then has the real one.
    pub async fn start(
        node: &girder::Node,
        mut me: Member,
        seeds: &[SocketAddr],
        cfg: MembershipConfig,
    ) -> std::io::Result<Self> {
        let socket = cfg
            .network
            .bind_datagrams(cfg.bind.unwrap_or(me.addr))
            .await?;
        match cfg.bind {
            None => me.addr = socket.local_addr()?,
            Some(_) if me.addr.port() == 0 => me.addr.set_port(socket.local_addr()?.port()),
            Some(_) => {}
        }
        let mut fcfg = Config::new_lan(NonZeroU32::new(cfg.cluster_size.max(1)).expect("non-zero"));
        fcfg.probe_period = cfg.probe_period;
        fcfg.probe_rtt = cfg.probe_rtt;
        fcfg.suspect_to_down_after = cfg.suspect_to_down_after;
        fcfg.num_indirect_probes = NonZeroUsize::new(3).expect("non-zero");
        // A sealed datagram stays within the packet size foca was configured for.
        fcfg.max_packet_size = NonZeroUsize::new(fcfg.max_packet_size.get() - datagram::OVERHEAD)
            .expect("foca's packet size is larger than the seal");
        let max_packet = fcfg.max_packet_size.get();
        if let Some(cookie) = &cfg.cookie {
            cookie.derive_keys();
        }
        let mut intake = Intake::new(cfg.cookie.as_ref(), cfg.freshness, cfg.per_source_rate);
        let datagrams = intake.counters.clone();
        let rng: StdRng = rand::make_rng();
        let mut foca = Foca::new(me.clone(), fcfg, rng, PostcardCodec);

        let (input_tx, mut input_rx) = mpsc::channel::<Input>(1024);
        let (events, first) = broadcast::channel(cfg.event_buffer.max(1));
        let (view_tx, view) = watch::channel(Vec::new());

        let reader = {
            let socket = socket.clone();
            let input = input_tx.clone();
            let name = me.name.clone();
            node.spawn_owned(async move {
                let mut buf = vec![0u8; max_packet.max(65_536)];
                let mut log = girder::log::LogBudget::default();
                loop {
                    let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                        return;
                    };
                    match intake.admit(from, &buf[..n]) {
                        Ok(message) => {
                            // Full: drop the datagram, as the network may; SWIM tolerates loss.
                            if input.try_send(Input::Data(Bytes::from(message))).is_err() {
                                let counters = &intake.counters;
                                counters.overloaded.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(dropped) => {
                            if let Some(suppressed) = log.spend() {
                                log_dropped(&name, from, dropped, suppressed);
                            }
                        }
                    }
                }
            })
        };

        let agent = {
            let events = events.clone();
            let timers = Timers {
                node: node.clone(),
                input: input_tx.clone(),
            };
            let seeds: Vec<SocketAddr> = seeds.to_vec();
            let rejoin_every = cfg.rejoin_every;
            let forget_after = cfg.forget_after;
            let me = me.clone();
            let mut sealer = Sealer::new(cfg.cookie.as_ref());
            node.spawn_owned(async move {
                let mut rt = foca::AccumulatingRuntime::new();
                for seed in seeds.iter().copied().filter(|s| *s != me.addr) {
                    let _ = foca.announce(placeholder(seed), &mut rt);
                }
                let mut watch_downs = events.subscribe();
                // Members seen going down, with when: announced to until they are back or
                // `forget_after` has passed (bounded by `MAX_LOST`), then forgotten.
                let mut lost = Lost::default();
                let mut rejoin = tokio::time::interval(rejoin_every);
                rejoin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    flush(
                        &mut rt,
                        &socket,
                        &mut sealer,
                        &timers,
                        &events,
                        &foca,
                        &view_tx,
                    )
                    .await;
                    let input = tokio::select! {
                        input = input_rx.recv() => input,
                        _ = rejoin.tick() => {
                            while let Ok(e) = watch_downs.try_recv() {
                                if let MemberEvent::Down(m) = e {
                                    lost.down(m);
                                }
                            }
                            let live: Vec<Member> = foca.iter_members().map(|m| m.id().clone()).collect();
                            for gone in lost.sweep(&live, forget_after) {
                                tracing::info!(member = %gone.name, "member forgotten: down for too long");
                                let _ = events.send(MemberEvent::Forgotten(gone));
                            }
                            let live: Vec<SocketAddr> = live.iter().map(|m| m.addr).collect();
                            let targets = seeds.iter().copied().chain(lost.addrs());
                            for addr in targets.filter(|a| *a != me.addr && !live.contains(a)) {
                                let _ = foca.announce(placeholder(addr), &mut rt);
                            }
                            continue;
                        }
                    };
                    let Some(input) = input else {
                        return;
                    };
                    let result = match input {
                        Input::Data(data) => foca.handle_data(&data, &mut rt),
                        Input::Timer(t) => foca.handle_timer(t, &mut rt),
                        Input::Leave(done) => {
                            let _ = foca.leave_cluster(&mut rt);
                            flush(
                                &mut rt,
                                &socket,
                                &mut sealer,
                                &timers,
                                &events,
                                &foca,
                                &view_tx,
                            )
                            .await;
                            let _ = done.send(());
                            return;
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "membership input ignored");
                    }
                }
            })
        };

        Ok(Membership {
            me,
            input: input_tx,
            events,
            first: std::sync::Mutex::new(Some(first)),
            view,
            datagrams,
            tasks: std::sync::Mutex::new(vec![reader, agent]),
        })
    }

    /// This node as a member.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The other members currently considered alive.
    pub fn members(&self) -> Vec<Member> {
        self.view.borrow().clone()
    }

    /// Datagrams received and dropped so far, by reason.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder_dist::membership::{Member, Membership, MembershipConfig};
    /// let me = Member {
    ///     name: girder_dist::NodeName::new("a@127.0.0.1").unwrap(),
    ///     addr: "127.0.0.1:0".parse().unwrap(),
    ///     creation: 1,
    ///     roles: vec![],
    /// };
    /// let node = girder::Node::new("doc");
    /// let m = Membership::start(&node, me, &[], MembershipConfig::default()).await.unwrap();
    /// assert_eq!(m.datagram_stats().dropped(), 0);
    /// # }
    /// ```
    pub fn datagram_stats(&self) -> DatagramStats {
        self.datagrams.snapshot()
    }

    /// Subscribes to membership changes. The first subscriber gets every event since the agent
    /// started; later ones get events from the moment they subscribe.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        let first = self.first.lock().expect("not poisoned").take();
        first.unwrap_or_else(|| self.events.subscribe())
    }

    /// Waits until the view changes.
    pub async fn changed(&mut self) {
        let _ = self.view.changed().await;
    }

    /// Leaves the cluster gracefully: the others see this node down at once. The agent stops;
    /// later calls do nothing.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.input.send(Input::Leave(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.tasks.lock().expect("not poisoned").clear();
    }
}

/// How many members that went down are looked for at most.
const MAX_LOST: usize = 256;

/// The members seen going down and not back yet, oldest first, with when they went.
#[derive(Default)]
struct Lost(Vec<(Member, tokio::time::Instant)>);

impl Lost {
    fn down(&mut self, m: Member) {
        self.0.retain(|(x, _)| x.addr != m.addr);
        self.0.push((m, tokio::time::Instant::now()));
    }

    /// Drops the members that are back (`live` has their address) and returns the ones to
    /// forget: down for `forget_after`, or the oldest past [`MAX_LOST`]. A member whose name is
    /// live again at another address is not forgotten, only no longer looked for there.
    fn sweep(&mut self, live: &[Member], forget_after: Duration) -> Vec<Member> {
        let mut gone = Vec::new();
        let excess = self.0.len().saturating_sub(MAX_LOST);
        let mut i = 0;
        self.0.retain(|(m, at)| {
            i += 1;
            if live.iter().any(|l| l.addr == m.addr) {
                return false;
            }
            if i <= excess || at.elapsed() >= forget_after {
                if !live.iter().any(|l| l.name == m.name) {
                    gone.push(m.clone());
                }
                return false;
            }
            true
        });
        gone
    }

    fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.0.iter().map(|(m, _)| m.addr)
    }
}

/// An identity for an address whose member is not known yet (a seed): only its address is used.
fn placeholder(addr: SocketAddr) -> Member {
    Member {
        name: NodeName::new("seed@unknown").expect("valid"),
        addr,
        creation: 0,
        roles: Vec::new(),
    }
}

/// Resolves a DNS name to seed addresses, one per A/AAAA record (as a Kubernetes headless service
/// gives one record per pod). `target` is `host:port`.
///
/// ```
/// # #[tokio::main] async fn main() {
/// let seeds = girder_dist::membership::discover("localhost:4370").await.unwrap();
/// assert!(seeds.iter().all(|a| a.port() == 4370));
/// # }
/// ```
pub async fn discover(target: &str) -> std::io::Result<Vec<SocketAddr>> {
    let mut seeds: Vec<SocketAddr> = tokio::net::lookup_host(target).await?.collect();
    seeds.sort();
    seeds.dedup();
    Ok(seeds)
}

/// One line for a dropped datagram (at most one a second: the caller's budget), saying how many
/// were dropped without a line since the last one.
fn log_dropped(me: &NodeName, from: SocketAddr, dropped: Dropped, suppressed: u64) {
    let reason = dropped.reason();
    match dropped {
        Dropped::Stale { skew_ms } => tracing::warn!(
            node = %me, %from, reason, skew_ms, suppressed,
            "membership datagram dropped: replayed, or the clocks of the two hosts differ by more \
             than the freshness window"
        ),
        Dropped::Unauthenticated => tracing::warn!(
            node = %me, %from, reason, suppressed,
            "membership datagram dropped: a wrong cookie, or forged"
        ),
        _ => tracing::warn!(node = %me, %from, reason, suppressed, "membership datagram dropped"),
    }
}

/// Where the protocol's timers go: a task of the node each, sleeping then sending to the agent.
struct Timers {
    node: girder::Node,
    input: mpsc::Sender<Input>,
}

async fn flush(
    rt: &mut foca::AccumulatingRuntime<Member>,
    socket: &Arc<dyn Datagrams>,
    sealer: &mut Sealer,
    timers: &Timers,
    events: &broadcast::Sender<MemberEvent>,
    foca: &Foca<Member, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    view: &watch::Sender<Vec<Member>>,
) {
    while let Some((dst, data)) = rt.to_send() {
        let _ = socket.send_to(&sealer.seal(&data), dst.addr).await;
    }
    while let Some((delay, timer)) = rt.to_schedule() {
        let input = timers.input.clone();
        timers.node.spawn_task(async move {
            tokio::time::sleep(delay).await;
            let _ = input.send(Input::Timer(timer)).await;
        });
    }
    let mut happened = Vec::new();
    while let Some(n) = rt.to_notify() {
        happened.push(match n {
            OwnedNotification::MemberUp(m) => MemberEvent::Up(m),
            OwnedNotification::MemberDown(m) => MemberEvent::Down(m),
            OwnedNotification::Rename(old, new) => MemberEvent::Replaced { old, new },
            _ => continue,
        });
    }
    if happened.is_empty() {
        return;
    }
    // The view first, so a subscriber that reacts to an event already sees it in `members`.
    let mut members: Vec<Member> = foca.iter_members().map(|m| m.id().clone()).collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let _ = view.send(members);
    for event in happened {
        let _ = events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn member(creation: u32) -> Member {
        Member {
            name: NodeName::new("m@127.0.0.1").unwrap(),
            addr: "127.0.0.1:4000".parse().unwrap(),
            creation,
            roles: Vec::new(),
        }
    }

    #[test]
    fn the_newer_incarnation_wins_its_address_across_a_wrap_of_creations() {
        let (old, new) = (member(u32::MAX - 1_000), member(4_000));
        assert!(new.win_addr_conflict(&old), "restarted after the wrap");
        assert!(!old.win_addr_conflict(&new));
        assert!(member(7).win_addr_conflict(&member(6)));
        assert!(!member(6).win_addr_conflict(&member(7)));
    }

    #[test]
    fn any_real_member_replaces_a_seed_placeholder() {
        let seed = placeholder("127.0.0.1:4000".parse().unwrap());
        for creation in [1, 1 << 31, u32::MAX] {
            assert!(member(creation).win_addr_conflict(&seed), "{creation}");
            assert!(!seed.win_addr_conflict(&member(creation)), "{creation}");
        }
    }
}
