//! A membership datagram on the wire, and what it must pass before the protocol sees it.
//!
//! With a cookie, every datagram is sealed (XChaCha20-Poly1305 under a key derived from the
//! cookie): a passive observer learns neither member names nor addresses, and nobody without
//! the cookie can forge one. The header, authenticated but in clear, is
//!
//! ```text
//! version (1) | sender instance (16) | sequence (8) | sent at, ms since the epoch (8)
//! ```
//!
//! followed by the sealed protocol message and its 16-byte tag. The instance (random per agent)
//! and sequence make the nonce, unique per datagram. A receiver drops, cheapest check first:
//! what is too short or of another version; what repeats a sequence number it has already seen
//! from that instance (a 64-datagram sliding window, as IPsec and DTLS do); what comes from a
//! source over its rate; what does not open under the key; what was sent more than the
//! freshness window ago (or ahead), so that a recorded announcement of a member that has since
//! died cannot bring it back, even to a node that restarted and forgot the sequence numbers.
//!
//! Without a cookie the datagram is the protocol message alone, and only the rate limit applies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::identity::Cookie;

const VERSION: u8 = 2;
const HEADER: usize = 1 + 16 + 8 + 8;
const TAG: usize = 16;
/// Bytes a sealed datagram adds to the protocol message.
pub(crate) const OVERHEAD: usize = HEADER + TAG;

/// Sequence numbers a receiver remembers per sender instance.
const WINDOW: u64 = 64;
/// Sender instances remembered for replay detection: more than any cluster has members times
/// restarts within the freshness window.
const MAX_INSTANCES: usize = 4096;
/// Sources given their own rate budget; past that, new sources share one.
const MAX_SOURCES: usize = 4096;

fn cipher(cookie: &Cookie) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new_from_slice(&cookie.keys().membership).expect("a 32-byte key")
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seals outgoing datagrams.
pub(crate) struct Sealer {
    cipher: Option<XChaCha20Poly1305>,
    instance: [u8; 16],
    next: u64,
}

impl Sealer {
    pub(crate) fn new(cookie: Option<&Cookie>) -> Self {
        let mut instance = [0u8; 16];
        getrandom::fill(&mut instance).expect("the OS provides randomness");
        Sealer {
            cipher: cookie.map(cipher),
            instance,
            next: 0,
        }
    }

    /// The datagram that carries `message`.
    pub(crate) fn seal(&mut self, message: &[u8]) -> Vec<u8> {
        let Some(cipher) = &self.cipher else {
            return message.to_vec();
        };
        let seq = self.next;
        self.next += 1;
        let mut out = Vec::with_capacity(message.len() + OVERHEAD);
        out.push(VERSION);
        out.extend_from_slice(&self.instance);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&wall_ms().to_be_bytes());
        let sealed = cipher
            .encrypt(
                &nonce(&self.instance, seq),
                Payload {
                    msg: message,
                    aad: &out,
                },
            )
            .expect("a datagram is far below the AEAD's length limit");
        out.extend_from_slice(&sealed);
        out
    }
}

fn nonce(instance: &[u8; 16], seq: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(instance);
    n[16..].copy_from_slice(&seq.to_be_bytes());
    XNonce::from(n)
}

/// Why a datagram was dropped before the protocol saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    Malformed,
    Unauthenticated,
    Replayed,
    Stale { skew_ms: i64 },
    RateLimited,
}

impl Dropped {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::Unauthenticated => "not sealed with the cluster cookie",
            Dropped::Replayed => "replayed",
            Dropped::Stale { .. } => "outside the freshness window",
            Dropped::RateLimited => "over its source's rate",
        }
    }
}

/// Counts of datagrams received and dropped, by reason.
///
/// ```
/// let stats = girder_dist::membership::DatagramStats::default();
/// assert_eq!(stats.dropped(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramStats {
    /// Datagrams received.
    pub received: u64,
    /// Too short, or of another format version.
    pub malformed: u64,
    /// Not sealed with the cluster cookie (forged, corrupted, or from another cluster).
    pub unauthenticated: u64,
    /// Copies of a datagram already received.
    pub replayed: u64,
    /// Sent longer ago (or further ahead) than the freshness window: replayed, or the clocks
    /// of the two hosts disagree.
    pub stale: u64,
    /// Over their source's rate.
    pub rate_limited: u64,
    /// Dropped because the agent was behind (its input queue full).
    pub overloaded: u64,
}

impl DatagramStats {
    /// All datagrams dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.malformed
            + self.unauthenticated
            + self.replayed
            + self.stale
            + self.rate_limited
            + self.overloaded
    }
}

/// The live counters behind [`DatagramStats`].
#[derive(Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    malformed: AtomicU64,
    unauthenticated: AtomicU64,
    replayed: AtomicU64,
    stale: AtomicU64,
    rate_limited: AtomicU64,
    pub(crate) overloaded: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> DatagramStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DatagramStats {
            received: get(&self.received),
            malformed: get(&self.malformed),
            unauthenticated: get(&self.unauthenticated),
            replayed: get(&self.replayed),
            stale: get(&self.stale),
            rate_limited: get(&self.rate_limited),
            overloaded: get(&self.overloaded),
        }
    }

    fn count(&self, dropped: Dropped) {
        let c = match dropped {
            Dropped::Malformed => &self.malformed,
            Dropped::Unauthenticated => &self.unauthenticated,
            Dropped::Replayed => &self.replayed,
            Dropped::Stale { .. } => &self.stale,
            Dropped::RateLimited => &self.rate_limited,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sequence numbers seen from one sender instance: the highest, and which of the 63 below it.
#[derive(Clone, Copy)]
struct Window {
    top: u64,
    seen: u64,
    used: Instant,
}

impl Window {
    fn is_new(&self, seq: u64) -> bool {
        seq > self.top || (self.top - seq < WINDOW && self.seen & (1 << (self.top - seq)) == 0)
    }

    fn mark(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.top = seq;
        }
        self.seen |= 1 << (self.top - seq);
    }
}

/// A token bucket: `rate` datagrams a second, as many in a burst.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: rate,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = now;
    }

    fn take(&mut self, rate: f64, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Checks incoming datagrams, cheapest check first, and counts what it drops.
pub(crate) struct Intake {
    cipher: Option<XChaCha20Poly1305>,
    freshness_ms: u64,
    rate: f64,
    windows: HashMap<[u8; 16], Window>,
    sources: HashMap<SocketAddr, Bucket>,
    /// Shared by new sources once `sources` is full.
    crowd: Bucket,
    pub(crate) counters: std::sync::Arc<Counters>,
}

impl Intake {
    pub(crate) fn new(cookie: Option<&Cookie>, freshness: Duration, per_source_rate: u32) -> Self {
        let rate = f64::from(per_source_rate.max(1));
        Intake {
            cipher: cookie.map(cipher),
            freshness_ms: freshness.as_millis() as u64,
            rate,
            windows: HashMap::new(),
            sources: HashMap::new(),
            crowd: Bucket::full(rate, Instant::now()),
            counters: Default::default(),
        }
    }

    /// The protocol message in `datagram` from `from`, or why it was dropped.
    pub(crate) fn admit(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<Vec<u8>, Dropped> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let result = self.check(from, datagram, Instant::now(), wall_ms());
        if let Err(dropped) = result {
            self.counters.count(dropped);
        }
        result
    }

    fn check(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        wall_now: u64,
    ) -> Result<Vec<u8>, Dropped> {
        if self.cipher.is_none() {
            self.within_rate(from, now)?;
            return Ok(datagram.to_vec());
        }
        if datagram.len() < OVERHEAD || datagram[0] != VERSION {
            return Err(Dropped::Malformed);
        }
        let instance: [u8; 16] = datagram[1..17].try_into().expect("16 bytes");
        let seq = u64::from_be_bytes(datagram[17..25].try_into().expect("8 bytes"));
        let sent_at = u64::from_be_bytes(datagram[25..33].try_into().expect("8 bytes"));
        if self.windows.get(&instance).is_some_and(|w| !w.is_new(seq)) {
            return Err(Dropped::Replayed);
        }
        self.within_rate(from, now)?;
        let cipher = self.cipher.as_ref().expect("checked above");
        let message = cipher
            .decrypt(
                &nonce(&instance, seq),
                Payload {
                    msg: &datagram[HEADER..],
                    aad: &datagram[..HEADER],
                },
            )
            .map_err(|_| Dropped::Unauthenticated)?;
        let skew_ms = wall_now as i64 - sent_at as i64;
        if skew_ms.unsigned_abs() > self.freshness_ms {
            return Err(Dropped::Stale { skew_ms });
        }
        self.remember(instance, seq, now);
        Ok(message)
    }

    fn within_rate(&mut self, from: SocketAddr, now: Instant) -> Result<(), Dropped> {
        let rate = self.rate;
        if !self.sources.contains_key(&from) && self.sources.len() >= MAX_SOURCES {
            // Forget the sources that have been quiet long enough to have a full bucket again.
            self.sources.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < rate
            });
        }
        let bucket = if self.sources.len() < MAX_SOURCES || self.sources.contains_key(&from) {
            self.sources
                .entry(from)
                .or_insert_with(|| Bucket::full(rate, now))
        } else {
            &mut self.crowd
        };
        if bucket.take(rate, now) {
            Ok(())
        } else {
            Err(Dropped::RateLimited)
        }
    }

    fn remember(&mut self, instance: [u8; 16], seq: u64, now: Instant) {
        if !self.windows.contains_key(&instance) && self.windows.len() >= MAX_INSTANCES {
            if let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.used)
                .map(|(k, _)| *k)
            {
                self.windows.remove(&oldest);
            }
        }
        let w = self.windows.entry(instance).or_insert(Window {
            top: seq,
            seen: 0,
            used: now,
        });
        w.mark(seq);
        w.used = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie() -> Cookie {
        Cookie::new("datagram-test-cookie-0123456789").unwrap()
    }

    fn from() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    fn intake() -> Intake {
        Intake::new(Some(&cookie()), Duration::from_secs(60), 1_000)
    }

    #[test]
    fn a_sealed_datagram_opens_once_and_hides_its_message() {
        let mut sealer = Sealer::new(Some(&cookie()));
        let d = sealer.seal(b"b@10.0.0.7 is alive");
        assert!(
            !d.windows(10).any(|w| w == b"b@10.0.0.7"),
            "names in clear text"
        );
        let mut intake = intake();
        assert_eq!(intake.admit(from(), &d).unwrap(), b"b@10.0.0.7 is alive");
        assert_eq!(intake.admit(from(), &d), Err(Dropped::Replayed));
        let stats = intake.counters.snapshot();
        assert_eq!((stats.received, stats.replayed, stats.dropped()), (2, 1, 1));
    }

    #[test]
    fn another_cookie_a_flipped_bit_or_a_short_datagram_is_refused() {
        let mut sealer = Sealer::new(Some(&Cookie::new("another-cluster-cookie-000").unwrap()));
        let mut intake = intake();
        assert_eq!(
            intake.admit(from(), &sealer.seal(b"hello")),
            Err(Dropped::Unauthenticated)
        );
        let mut ours = Sealer::new(Some(&cookie()));
        for at in [0, 1, 20, 30, HEADER, HEADER + 3] {
            let mut d = ours.seal(b"hello");
            d[at] ^= 0x40;
            let expected = if at == 0 {
                Dropped::Malformed
            } else {
                Dropped::Unauthenticated
            };
            assert_eq!(
                intake.admit(from(), &d),
                Err(expected),
                "bit flipped at {at}"
            );
        }
        assert_eq!(intake.admit(from(), &[2; 20]), Err(Dropped::Malformed));
        assert_eq!(intake.admit(from(), &[]), Err(Dropped::Malformed));
    }

    #[test]
    fn reordering_within_the_window_is_accepted_and_replays_anywhere_are_not() {
        let mut sealer = Sealer::new(Some(&cookie()));
        let sent: Vec<Vec<u8>> = (0..200).map(|i| sealer.seal(&[i as u8])).collect();
        let mut intake = intake();
        intake.rate = 1e9;
        // Out of order but within 64 of the newest: all fresh, once.
        for i in (100..160).rev().chain(160..200) {
            assert!(intake.admit(from(), &sent[i]).is_ok(), "{i}");
        }
        for (i, d) in sent.iter().enumerate().take(155).skip(150) {
            assert_eq!(intake.admit(from(), d), Err(Dropped::Replayed), "{i} again");
        }
        // Older than the window: refused, as a replay would be.
        assert_eq!(intake.admit(from(), &sent[120]), Err(Dropped::Replayed));
        assert_eq!(intake.admit(from(), &sent[0]), Err(Dropped::Replayed));
    }

    #[test]
    fn a_datagram_from_outside_the_freshness_window_is_stale_even_to_a_fresh_receiver() {
        let d = Sealer::new(Some(&cookie())).seal(b"old news");
        let mut intake = intake();
        let sent_at = u64::from_be_bytes(d[25..33].try_into().unwrap());
        let later = sent_at + 61_000;
        let r = intake.check(from(), &d, Instant::now(), later);
        assert!(
            matches!(r, Err(Dropped::Stale { skew_ms }) if skew_ms >= 61_000),
            "{r:?}"
        );
        let earlier = sent_at - 61_000;
        let r = intake.check(from(), &d, Instant::now(), earlier);
        assert!(
            matches!(r, Err(Dropped::Stale { skew_ms }) if skew_ms <= -61_000),
            "{r:?}"
        );
        assert!(intake
            .check(from(), &d, Instant::now(), sent_at + 59_000)
            .is_ok());
    }

    #[test]
    fn one_source_over_its_rate_is_held_back_and_others_are_not() {
        let mut sealer = Sealer::new(Some(&cookie()));
        let mut intake = Intake::new(Some(&cookie()), Duration::from_secs(60), 100);
        let now = Instant::now();
        let wall = wall_ms();
        let mut admitted = 0;
        for _ in 0..1_000 {
            if intake.check(from(), &sealer.seal(b"x"), now, wall).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 100, "a burst of the rate, then nothing");
        let other: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert!(intake.check(other, &sealer.seal(b"x"), now, wall).is_ok());
        let second_later = now + Duration::from_secs(1);
        assert!(intake
            .check(from(), &sealer.seal(b"x"), second_later, wall)
            .is_ok());
    }

    #[test]
    fn tables_stay_bounded_under_a_flood_of_sources_and_instances() {
        let mut intake = Intake::new(Some(&cookie()), Duration::from_secs(60), u32::MAX);
        let now = Instant::now();
        let wall = wall_ms();
        for i in 0..6_000u32 {
            let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000));
            let _ = intake.check(from, &Sealer::new(Some(&cookie())).seal(b"x"), now, wall);
        }
        assert_eq!(intake.sources.len(), MAX_SOURCES);
        assert_eq!(intake.windows.len(), MAX_INSTANCES);
        assert_eq!(
            intake.counters.snapshot().dropped(),
            0,
            "bounded, yet all admitted"
        );
    }

    #[test]
    fn without_a_cookie_the_message_is_the_datagram() {
        let mut sealer = Sealer::new(None);
        assert_eq!(sealer.seal(b"plain"), b"plain");
        let mut intake = Intake::new(None, Duration::from_secs(60), 1_000);
        assert_eq!(intake.admit(from(), b"plain").unwrap(), b"plain");
    }
}
