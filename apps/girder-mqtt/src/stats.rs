//! The broker's counters: what `$SYS/broker/...` publishes and the metrics export. Plain
//! relaxed atomics, bumped where the event happens (one per connection, session or router
//! action), read by whoever reports. Each on its own cache line, and the per-message ones
//! bumped once per batch (a write, a busy spell) rather than per message: two cores bumping
//! counts that share a line pass it back and forth, which cost a fan-out several percent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_utils::CachePadded;

/// A count that goes up (a counter) or up and down (a gauge).
#[derive(Debug, Default)]
pub struct Count(CachePadded<AtomicU64>);

impl Count {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes one away.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes `n` away.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Sets it.
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// Its value.
    ///
    /// ```
    /// let c = girder_mqtt::stats::Count::default();
    /// c.inc();
    /// c.add(4);
    /// c.dec();
    /// assert_eq!(c.get(), 4);
    /// ```
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything the broker counts.
#[derive(Debug)]
pub struct Stats {
    /// When the broker started.
    pub started: Instant,
    /// Clients connected now.
    pub connections: Count,
    /// Connections accepted since the start.
    pub connections_total: Count,
    /// Connections refused at CONNECT (bad credentials, bad client id, limits).
    pub connections_refused: Count,
    /// Connections closed for a protocol error or a malformed or oversized packet.
    pub protocol_errors: Count,
    /// Sessions held (connected or not).
    pub sessions: Count,
    /// Subscriptions in the routing table.
    pub subscriptions: Count,
    /// Retained messages held.
    pub retained: Count,
    /// PUBLISH packets received from clients.
    pub messages_in: Count,
    /// PUBLISH packets sent to clients.
    pub messages_out: Count,
    /// Bytes read from clients.
    pub bytes_in: Count,
    /// Bytes written to clients.
    pub bytes_out: Count,
    /// Messages dropped: a full session mailbox or offline queue, a QoS 0 message for a
    /// client that could not take it.
    pub messages_dropped: Count,
    /// Messages that expired before they could be delivered.
    pub messages_expired: Count,
    /// Wills published.
    pub wills_published: Count,
    /// Messages held by sessions for their clients (queued or in flight).
    pub queued: Count,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            connections: Count::default(),
            connections_total: Count::default(),
            connections_refused: Count::default(),
            protocol_errors: Count::default(),
            sessions: Count::default(),
            subscriptions: Count::default(),
            retained: Count::default(),
            messages_in: Count::default(),
            messages_out: Count::default(),
            bytes_in: Count::default(),
            bytes_out: Count::default(),
            messages_dropped: Count::default(),
            messages_expired: Count::default(),
            wills_published: Count::default(),
            queued: Count::default(),
        }
    }
}
