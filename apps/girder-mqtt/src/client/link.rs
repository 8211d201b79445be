//! A client's network connection, as its process holds it: the read half is an event source
//! of the process (packets arrive as `handle_info`); the write half is written without ever
//! waiting. What the process has to send collects in a buffer and goes out when its mailbox is
//! empty or the batch is large; a socket that takes no more leaves the rest in the buffer, and
//! the process tries again a moment later, handling its mailbox meanwhile. So a client that
//! does not read holds up only itself: its QoS 0 messages are dropped past the buffer's bound,
//! its QoS 1 and 2 messages wait in its session, and after the write timeout it is cut off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use girder::behaviour::SourceId;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Decoder, FramedRead};

use crate::codec::ack::{self, Reason};
use crate::codec::connect::Protocol;
use crate::codec::properties::Properties;
use crate::codec::publish::Publish;
use crate::codec::{fixed_header, DecodeError, FixedHeader, PacketType};
use crate::session::Outgoing;
use crate::stats::Stats;

/// The read buffer a connection starts with: enough for an idle client's CONNECT and
/// PINGREQs (most of a connection's life is idle); it grows as packets need and keeps what it
/// grew to, so a busy client reads in large chunks.
pub const READ_BUFFER: usize = 64;

/// The read buffer of a client that publishes.
const BUSY_READ: usize = 4096;

/// Writes are sent once this much is waiting, even if more messages are queued.
const FLUSH_AT: usize = 64 * 1024;

/// What may wait to be written to a client that does not read: past it, QoS 0 messages are
/// dropped (counted) and QoS 1 and 2 messages stay in the session's queue.
pub const OUT_MAX: usize = 256 * 1024;

/// One copy in this many, per connection, has its delivery latency recorded.
const LATENCY_SAMPLE: u32 = 16;

/// How often a socket that took no more is tried again.
pub const RETRY_WRITE: Duration = Duration::from_millis(2);

/// A connection's counts not yet added to the broker's.
#[derive(Debug, Default)]
struct Unsettled {
    bytes_in: u32,
    messages_in: u32,
    messages_out: u32,
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
        let n = h.packet_len();
        if src.len() < n {
            src.reserve(n - src.len());
            return Ok(None);
        }
        let packet = src.split_to(n);
        if h.kind == PacketType::Publish && src.capacity() < BUSY_READ {
            // A client that publishes reads in large chunks from now on: one read for many
            // packets. (An idle one keeps its small buffer.)
            src.reserve(BUSY_READ);
        }
        Ok(Some((h, packet)))
    }
}

pub use super::stream::{Reader, Writer};
/// The read half, cut into packets: the process's event source.
pub type Packets = FramedRead<Reader, Frames>;

/// The read half framed, with a small buffer to start with (tokio-util's default is 8 KiB):
/// most of a connection's life is idle, and it grows as packets need.
pub fn packets(reader: Reader, max_packet: usize) -> Packets {
    FramedRead::with_capacity(reader, Frames { max: max_packet }, READ_BUFFER)
}

/// What writing came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Everything went (or the batch waits for the mailbox to empty).
    Done,
    /// The socket takes no more for now: try again after [`RETRY_WRITE`].
    Blocked,
    /// The client is gone, or has not read for longer than the write timeout.
    Failed,
}

/// One network connection of a client, and what it said in CONNECT.
pub struct Link {
    /// Where it comes from.
    pub peer: SocketAddr,
    /// Its read half while it is the process's event source (`None` while it is read from
    /// another process's, or paused: then in `paused`).
    pub source: Option<SourceId>,
    /// Its read half while not a source: in transit to the client's session, or paused while
    /// the process waits for a subscriber that is behind (boxed: rare, and a process keeps
    /// room for its state's every field for as long as it lives).
    pub paused: Option<Box<Packets>>,
    writer: Writer,
    out: BytesMut,
    /// Since when the socket has taken no more.
    blocked: Option<Instant>,
    /// The protocol version (3.1.1 until CONNECT says).
    pub protocol: Protocol,
    /// Its keep alive, seconds (zero: none).
    pub keep_alive: u16,
    /// A packet came since the keep-alive check last looked.
    pub heard: bool,
    /// When the keep-alive check last saw the client had been heard from: no earlier than its
    /// last packet, so it is never cut off early.
    pub last_seen: Instant,
    /// Copies of messages written, for sampling their latency.
    sent: u32,
    /// What the broker's counts do not have yet: they are added per write and per busy spell
    /// ([`settle`](Self::settle)), not per packet.
    unsettled: Unsettled,
    /// Topic aliases it set (5.0; most clients set none).
    pub aliases: Option<Box<HashMap<u16, Arc<str>>>>,
    /// The client's maximum packet size (5.0): larger messages are not sent to it.
    pub max_out: usize,
    /// Its publish rate limit, if the broker has one.
    pub rate: Option<girder_regulate::Queue>,
    /// The topic of its last PUBLISH, reused while it publishes to the same topic.
    pub last_topic: Option<Arc<str>>,
    /// CONNECT was answered: the client is connected.
    pub connected: bool,
    /// Its reading is paused while a publish waits (for subscribers, or the client's rate).
    pub waiting: bool,
}

impl Link {
    /// A connection over an accepted socket's write half, from `peer`; its read half is an
    /// event source already (`source`) or comes with it (`paused`).
    pub fn new(peer: SocketAddr, writer: Writer) -> Self {
        Link {
            peer,
            source: None,
            paused: None,
            writer,
            // Taken on first use: an idle connection holds no output buffer.
            out: BytesMut::new(),
            blocked: None,
            protocol: Protocol::V311,
            keep_alive: 0,
            heard: false,
            last_seen: Instant::now(),
            sent: 0,
            unsettled: Unsettled::default(),
            aliases: None,
            max_out: usize::MAX,
            rate: None,
            last_topic: None,
            connected: false,
            waiting: false,
        }
    }

    /// The buffer packets are encoded into.
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// True while less than [`OUT_MAX`] waits to be written.
    pub fn has_room(&self) -> bool {
        self.out.len() < OUT_MAX
    }

    /// True while the socket takes no more.
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// Writes a PUBLISH; false if it was not written (expired, or larger than the client
    /// takes: done with, as far as its session is concerned).
    pub fn publish(&mut self, o: &Outgoing, stats: &Stats, latency: &metrics::Histogram) -> bool {
        let d = &o.delivery;
        if d.msg.expired() {
            stats.messages_expired.inc();
            return false;
        }
        let sub_ids: &[u32] = match &d.sub_id {
            Some(s) => std::slice::from_ref(s),
            None => &[],
        };
        let props = match self.protocol {
            Protocol::V5 => d.msg.properties_for(sub_ids),
            Protocol::V311 => Properties::default(),
        };
        let p = Publish {
            dup: o.dup,
            qos: d.qos,
            retain: d.retain,
            topic: &d.msg.topic,
            packet_id: o.packet_id,
            properties: props,
            payload: &d.msg.payload,
        };
        if p.encoded_len(self.protocol) > self.max_out {
            // 5.0 §3.1.2.11.4: a message larger than the client takes is discarded.
            stats.messages_dropped.inc();
            return false;
        }
        if p.encode(&mut self.out, self.protocol).is_ok() {
            self.unsettled.messages_out += 1;
            // Sampled: a clock read and a histogram update per copy were a sixth of a
            // fan-out's time.
            self.sent = self.sent.wrapping_add(1);
            if self.sent % LATENCY_SAMPLE == 1 {
                latency.record(d.msg.received.elapsed().as_secs_f64());
            }
        }
        true
    }

    /// Writes an acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) without properties.
    pub fn reply(&mut self, kind: PacketType, id: u16, reason: Reason) {
        let protocol = self.protocol;
        let _ = ack::pub_ack(
            &mut self.out,
            kind,
            id,
            protocol,
            reason,
            &Properties::default(),
        );
    }

    /// A packet of `bytes` read.
    pub fn read(&mut self, bytes: usize, stats: &Stats) {
        // A flag, not a clock read: this runs for every packet.
        self.heard = true;
        self.unsettled.bytes_in += bytes as u32;
        // A publisher that is never idle still has its counts added, long before they wrap.
        if self.unsettled.bytes_in >= 1 << 30 {
            self.settle(stats);
        }
    }

    /// A PUBLISH read.
    pub fn published(&mut self) {
        self.unsettled.messages_in += 1;
    }

    /// Adds what this connection read and wrote to the broker's counts.
    pub fn settle(&mut self, stats: &Stats) {
        let u = std::mem::take(&mut self.unsettled);
        if u.bytes_in > 0 {
            stats.bytes_in.add(u.bytes_in as u64);
        }
        if u.messages_in > 0 {
            stats.messages_in.add(u.messages_in as u64);
        }
        if u.messages_out > 0 {
            stats.messages_out.add(u.messages_out as u64);
        }
    }

    /// Writes what is waiting, without waiting: all of it if the socket takes it, else what
    /// it takes. Unless `now` (the batch is over), only once enough is waiting or the socket
    /// is being tried again.
    pub(crate) fn flush(&mut self, now: bool, write_timeout: Duration, stats: &Stats) -> Written {
        if self.out.is_empty() {
            self.blocked = None;
            return Written::Done;
        }
        if !now && self.out.len() < FLUSH_AT && self.blocked.is_none() {
            return Written::Done;
        }
        self.settle(stats);
        while !self.out.is_empty() {
            // Polled once: a socket that is not ready leaves the bytes here, and the process
            // tries again after `RETRY_WRITE` (it is woken by no one while it waits).
            match self.writer.write(&self.out).now_or_never() {
                Some(Ok(0)) | Some(Err(_)) => return Written::Failed,
                Some(Ok(n)) => {
                    self.out.advance(n);
                    stats.bytes_out.add(n as u64);
                }
                None => break,
            }
        }
        // A TLS or WebSocket writer keeps what it was given until flushed.
        let flushed = matches!(self.writer.flush().now_or_never(), Some(Ok(())));
        if self.out.is_empty() && flushed {
            self.blocked = None;
            // A large buffer is not kept after a burst, nor a tiny one by a client that is
            // mostly idle (a CONNACK, a PINGRESP): both come back when needed.
            if self.out.capacity() > 4 * FLUSH_AT || self.out.capacity() <= 64 {
                self.out = BytesMut::new();
            }
            return Written::Done;
        }
        let since = *self.blocked.get_or_insert_with(Instant::now);
        if since.elapsed() >= write_timeout {
            return Written::Failed;
        }
        Written::Blocked
    }

    /// Writes a DISCONNECT with `reason` to a 5.0 client that has connected, what is waiting,
    /// and closes the socket; all without waiting (what the socket does not take is lost, as
    /// the client is going).
    pub fn close(mut self, reason: Option<Reason>, stats: &Stats) {
        if let Some(reason) = reason {
            if self.connected {
                let _ =
                    ack::disconnect(&mut self.out, self.protocol, reason, &Properties::default());
            }
        }
        self.settle(stats);
        self.flush(true, Duration::MAX, stats);
        let _ = self.writer.shutdown().now_or_never();
    }
}
