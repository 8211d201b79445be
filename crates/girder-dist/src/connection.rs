//! An established connection: batched writes, large messages split into fragments that interleave
//! with other traffic, keep-alive ticks and loss detection.
//!
//! Ordering: messages are sent on *streams* (a later layer uses the sending process as the
//! stream). Messages on one stream arrive in the order sent; a large message on one stream is
//! cut into fragments so that other streams' messages and the keep-alive ticks go out between its
//! chunks instead of waiting behind it (Erlang's head-of-line problem).
//!
//! Every buffer is bounded: the send queue (senders get `Full` or wait), the bytes held for
//! reassembly (a peer that exceeds it loses the connection), and the delivery queue (a slow
//! consumer stops the reader, which stops TCP, which slows the peer).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

use crate::frame::{Frame, FrameCodec, FrameError, FrameKind};

/// How a connection behaves.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// Messages larger than this are sent as fragments of this size.
    pub chunk: usize,
    /// Messages that may wait to be written (the send queue's bound).
    pub send_queue: usize,
    /// Delivered messages that may wait for the consumer.
    pub delivery_queue: usize,
    /// Bytes that may be held while reassembling fragments, over all streams.
    pub max_reassembly: usize,
    /// Bytes of messages from one peer that may wait for full mailboxes on this node (see
    /// decision 014): a full mailbox parks its messages and pauses their senders, so only the
    /// messages already on the way when the pause went out land here. Past this bound the
    /// connection's delivery waits for the parked messages to be taken, as a safety net for a
    /// peer that does not pause.
    pub max_parked: usize,
    /// How often a tick is sent when there is nothing else to send.
    pub tick: Duration,
    /// The connection is lost when nothing arrives for this long.
    pub dead_after: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            chunk: 64 * 1024,
            send_queue: 8192,
            delivery_queue: 8192,
            max_reassembly: 64 * 1024 * 1024,
            max_parked: 64 * 1024 * 1024,
            tick: Duration::from_millis(250),
            dead_after: Duration::from_secs(1),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    /// Nothing arrived for longer than `dead_after`.
    #[error("no traffic from the peer for {0:?}")]
    Silent(Duration),
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    Closed,
    /// The peer broke the protocol (bad frame, bad fragment, too much to reassemble).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// This side closed it.
    #[error("closed by this node")]
    Local,
}

impl From<FrameError> for Lost {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => Lost::Io(e.to_string()),
            other => Lost::Protocol(other.to_string()),
        }
    }
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send queue is full; nothing was queued.
    #[error("connection send queue is full")]
    Full,
    /// The connection is gone.
    #[error("connection is lost")]
    Lost,
}

/// A message received: its stream and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The stream it was sent on.
    pub stream: u64,
    /// The message.
    pub payload: Bytes,
}

struct Outgoing {
    stream: u64,
    payload: Bytes,
}

/// What went through a connection, counted by its reader and writer tasks (one writer per
/// counter, so the counting never contends).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Bytes of frames written (payloads plus the 5-byte frame headers).
    pub bytes_out: AtomicU64,
    /// Bytes of frames read.
    pub bytes_in: AtomicU64,
    /// Messages written (a fragmented message counts once).
    pub messages_out: AtomicU64,
    /// Messages read and delivered.
    pub messages_in: AtomicU64,
}

/// The sending side of a connection; cheap to clone.
#[derive(Clone)]
pub struct ConnectionHandle {
    tx: mpsc::Sender<Outgoing>,
    lost: watch::Receiver<Option<Lost>>,
    report: std::sync::Arc<watch::Sender<Option<Lost>>>,
    stats: std::sync::Arc<ConnectionStats>,
}

impl ConnectionHandle {
    /// Queues `payload` on `stream` without waiting.
    pub fn send(&self, stream: u64, payload: Bytes) -> Result<(), SendError> {
        self.tx
            .try_send(Outgoing { stream, payload })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::Full,
                mpsc::error::TrySendError::Closed(_) => SendError::Lost,
            })
    }

    /// Queues `payload` on `stream`, waiting for room.
    pub async fn send_wait(&self, stream: u64, payload: Bytes) -> Result<(), SendError> {
        self.tx
            .send(Outgoing { stream, payload })
            .await
            .map_err(|_| SendError::Lost)
    }

    /// Closes the connection from this side: both tasks stop and [`lost`](Self::lost) says
    /// [`Lost::Local`]. What is still queued to send is dropped; what has already arrived is
    /// still handed to the receiver (up to a bound), in order.
    pub fn close(&self) {
        self.report.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(Lost::Local);
                true
            } else {
                false
            }
        });
    }

    /// What has gone through the connection so far.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// True once the connection is lost.
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Waits until the send queue has room (or the connection is lost). Another sender may take
    /// the room first; callers retry.
    pub async fn ready(&self) {
        let _ = self.tx.reserve().await;
    }

    /// Waits until the connection is lost and says why.
    pub async fn lost(&self) -> Lost {
        let mut rx = self.lost.clone();
        loop {
            if let Some(why) = rx.borrow().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return Lost::Local;
            }
        }
    }
}

/// Starts the reader and writer of an established connection as tasks of `node`
/// ([`spawn_task`](girder::Node::spawn_task): beside the node's processes). Returns the
/// sending handle and the receiver of delivered messages. Dropping every handle closes the
/// connection.
pub fn start<S>(
    node: &girder::Node,
    conn: Framed<S, FrameCodec>,
    cfg: ConnectionConfig,
) -> (ConnectionHandle, mpsc::Receiver<Received>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = conn.split();
    let (out_tx, out_rx) = mpsc::channel(cfg.send_queue.max(1));
    let (in_tx, in_rx) = mpsc::channel(cfg.delivery_queue.max(1));
    let (lost_tx, lost_rx) = watch::channel(None);
    let lost_tx = std::sync::Arc::new(lost_tx);
    let report = {
        let lost_tx = lost_tx.clone();
        move |why: Lost| {
            lost_tx.send_if_modified(|slot| {
                if slot.is_none() {
                    *slot = Some(why);
                    true
                } else {
                    false
                }
            });
        }
    };
    let stats = std::sync::Arc::new(ConnectionStats::default());
    let writer_report = report.clone();
    let writer_lost = lost_rx.clone();
    let wcfg = cfg.clone();
    let wstats = stats.clone();
    node.spawn_task(async move {
        let why = write_loop(sink, out_rx, wcfg, writer_lost, &wstats).await;
        writer_report(why);
    });
    let reader_lost = lost_rx.clone();
    let rstats = stats.clone();
    node.spawn_task(async move {
        let why = read_loop(stream, in_tx, cfg, reader_lost, &rstats).await;
        report(why);
    });
    (
        ConnectionHandle {
            tx: out_tx,
            lost: lost_rx,
            report: lost_tx,
            stats,
        },
        in_rx,
    )
}

/// Small messages one stream may send in a row before the next stream's turn.
const SMALL_BATCH: usize = 64;

/// One stream's pending messages, the head possibly half sent.
struct StreamQueue {
    pending: VecDeque<Bytes>,
    /// Next fragment number of the head message, if it is being fragmented.
    seq: u32,
}

async fn write_loop<K>(
    mut sink: K,
    mut rx: mpsc::Receiver<Outgoing>,
    cfg: ConnectionConfig,
    mut lost: watch::Receiver<Option<Lost>>,
    stats: &ConnectionStats,
) -> Lost
where
    K: futures_util::Sink<Frame, Error = FrameError> + Unpin,
{
    let mut streams: HashMap<u64, StreamQueue> = HashMap::new();
    let mut order: VecDeque<u64> = VecDeque::new();
    // Messages held in the per-stream FIFOs.
    let mut queued = 0usize;
    let mut tick = tokio::time::interval(cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if order.is_empty() {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => {
                        enqueue(&mut streams, &mut order, m);
                        queued += 1;
                    }
                    None => return Lost::Local,
                },
                _ = tick.tick() => {
                    if let Err(e) = sink.send(Frame { kind: FrameKind::Tick, payload: Bytes::new() }).await {
                        return e.into();
                    }
                    continue;
                }
                _ = lost.changed() => return Lost::Local,
            }
        }
        // Take what else is ready, holding at most one queue's worth in the per-stream FIFOs.
        while queued < cfg.send_queue {
            match rx.try_recv() {
                Ok(m) => {
                    enqueue(&mut streams, &mut order, m);
                    queued += 1;
                }
                Err(_) => break,
            }
        }
        // Each stream in turn: its small messages (up to a batch), or one chunk of its large
        // head message, so no stream's large message holds up the others.
        let rounds = order.len();
        for _ in 0..rounds {
            let Some(id) = order.pop_front() else { break };
            let q = streams.get_mut(&id).expect("ordered streams have queues");
            let mut sent = 0;
            while let Some(head) = q.pending.front_mut() {
                if head.len() <= cfg.chunk && q.seq == 0 {
                    let payload = q.pending.pop_front().expect("head exists");
                    queued -= 1;
                    stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    stats
                        .bytes_out
                        .fetch_add(payload.len() as u64 + 13, Ordering::Relaxed);
                    if let Err(e) = sink.feed(message_frame(id, payload)).await {
                        return e.into();
                    }
                    sent += 1;
                    if sent == SMALL_BATCH {
                        break;
                    }
                } else {
                    let take = head.len().min(cfg.chunk);
                    let chunk = head.split_to(take);
                    let last = head.is_empty();
                    let frame = fragment_frame(id, q.seq, last, chunk);
                    stats
                        .bytes_out
                        .fetch_add(frame.payload.len() as u64 + 5, Ordering::Relaxed);
                    if last {
                        q.pending.pop_front();
                        queued -= 1;
                        stats.messages_out.fetch_add(1, Ordering::Relaxed);
                        q.seq = 0;
                    } else {
                        q.seq += 1;
                    }
                    if let Err(e) = sink.feed(frame).await {
                        return e.into();
                    }
                    break;
                }
            }
            if q.pending.is_empty() {
                streams.remove(&id);
            } else {
                order.push_back(id);
            }
        }
        if let Err(e) = sink.flush().await {
            return e.into();
        }
        tick.reset();
    }
}

fn enqueue(streams: &mut HashMap<u64, StreamQueue>, order: &mut VecDeque<u64>, m: Outgoing) {
    let q = streams.entry(m.stream).or_insert_with(|| {
        order.push_back(m.stream);
        StreamQueue {
            pending: VecDeque::new(),
            seq: 0,
        }
    });
    q.pending.push_back(m.payload);
}

fn message_frame(stream: u64, payload: Bytes) -> Frame {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u64(stream);
    b.extend_from_slice(&payload);
    Frame {
        kind: FrameKind::Message,
        payload: b.freeze(),
    }
}

fn fragment_frame(stream: u64, seq: u32, last: bool, chunk: Bytes) -> Frame {
    let mut b = BytesMut::with_capacity(13 + chunk.len());
    b.put_u64(stream);
    b.put_u32(seq);
    b.put_u8(last as u8);
    b.extend_from_slice(&chunk);
    Frame {
        kind: FrameKind::Fragment,
        payload: b.freeze(),
    }
}

struct Partial {
    next_seq: u32,
    data: BytesMut,
}

async fn read_loop<R>(
    mut stream: R,
    tx: mpsc::Sender<Received>,
    cfg: ConnectionConfig,
    mut lost: watch::Receiver<Option<Lost>>,
    stats: &ConnectionStats,
) -> Lost
where
    R: futures_util::Stream<Item = Result<Frame, FrameError>> + Unpin,
{
    let mut partial: HashMap<u64, Partial> = HashMap::new();
    let mut held = 0usize;
    // Frames still to take, once the connection is lost from elsewhere.
    let mut draining: Option<usize> = None;
    loop {
        let frame = match &mut draining {
            // Lost elsewhere (the writer failed, say on the reset of a peer that has already
            // said goodbye, or closed here): what has already arrived still goes to dispatch,
            // in order, without waiting for more. A goodbye read here makes the end a
            // departure rather than a failure.
            Some(0) => return Lost::Local,
            Some(left) => {
                *left -= 1;
                match stream.next().now_or_never() {
                    Some(Some(Ok(frame))) => frame,
                    _ => return Lost::Local,
                }
            }
            None => tokio::select! {
                f = tokio::time::timeout(cfg.dead_after, stream.next()) => match f {
                    Err(_) => return Lost::Silent(cfg.dead_after),
                    Ok(None) => return Lost::Closed,
                    Ok(Some(Err(e))) => return e.into(),
                    Ok(Some(Ok(frame))) => frame,
                },
                _ = lost.changed() => {
                    draining = Some(DRAIN_FRAMES);
                    continue;
                }
            },
        };
        stats
            .bytes_in
            .fetch_add(frame.payload.len() as u64 + 5, Ordering::Relaxed);
        let mut p = frame.payload;
        let delivered = match frame.kind {
            FrameKind::Tick => continue,
            FrameKind::Message => {
                if p.len() < 8 {
                    return Lost::Protocol("message frame without a stream".into());
                }
                let stream_id = p.get_u64();
                Received {
                    stream: stream_id,
                    payload: p,
                }
            }
            FrameKind::Fragment => {
                if p.len() < 13 {
                    return Lost::Protocol("fragment frame without a header".into());
                }
                let stream_id = p.get_u64();
                let seq = p.get_u32();
                let last = p.get_u8() != 0;
                let part = partial.entry(stream_id).or_insert_with(|| Partial {
                    next_seq: 0,
                    data: BytesMut::new(),
                });
                if seq != part.next_seq {
                    return Lost::Protocol(format!(
                        "fragment {seq} of stream {stream_id}, expected {}",
                        part.next_seq
                    ));
                }
                held += p.len();
                if held > cfg.max_reassembly {
                    return Lost::Protocol(format!(
                        "more than {} bytes in reassembly",
                        cfg.max_reassembly
                    ));
                }
                part.next_seq += 1;
                part.data.extend_from_slice(&p);
                if !last {
                    continue;
                }
                let done = partial.remove(&stream_id).expect("entry exists");
                held -= done.data.len();
                Received {
                    stream: stream_id,
                    payload: done.data.freeze(),
                }
            }
            FrameKind::Handshake => {
                return Lost::Protocol("handshake frame after the handshake".into())
            }
        };
        stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let sent = match draining {
            // Dispatch may be gone, or full: what it cannot take now is dropped.
            Some(_) => tx.try_send(delivered).is_ok(),
            None => tx.send(delivered).await.is_ok(),
        };
        if !sent {
            return Lost::Local;
        }
    }
}

/// How many frames a reader takes from its socket after its connection was lost elsewhere:
/// what had arrived by then, bounded so a peer that keeps sending cannot keep it reading.
const DRAIN_FRAMES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection lost from this side (or by its writer) still hands dispatch what had
    /// already arrived: a peer's last words (its goodbye) are not lost to a race between the
    /// reader's socket and the loss. Without the drain the reader picks either at random, so
    /// twenty rounds would all but surely catch it.
    #[tokio::test]
    async fn what_arrived_before_the_loss_is_still_delivered() {
        let node = girder::Node::new("drain");
        for round in 0..20 {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let mut peer = Framed::new(theirs, FrameCodec::default());
            peer.send(message_frame(7, Bytes::from_static(b"goodbye")))
                .await
                .unwrap();
            let (handle, mut rx) = start(
                &node,
                Framed::new(ours, FrameCodec::default()),
                ConnectionConfig::default(),
            );
            // Before the reader has run (this runtime has one thread and nothing yielded).
            handle.close();
            let got = rx.recv().await.expect("the frame that had arrived");
            assert_eq!(
                (got.stream, &got.payload[..]),
                (7, &b"goodbye"[..]),
                "round {round}"
            );
            assert!(rx.recv().await.is_none(), "round {round}: nothing after");
            assert!(matches!(handle.lost().await, Lost::Local));
        }
    }
}
