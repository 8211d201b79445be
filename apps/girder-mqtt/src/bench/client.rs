//! The load generator's side of MQTT 3.1.1: the few packets a client writes (CONNECT,
//! SUBSCRIBE, PUBLISH, PUBACK) and a reader that cuts what a broker sends into packets
//! (CONNACK, SUBACK, PUBLISH, PUBACK), on the codec's primitives.
//!
//! Each client is a plain tokio task over a `TcpStream`: nothing here runs through Girder's
//! processes, so the load generator shares none of the broker's code paths beyond the byte
//! layout of packets.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, BytesMut};
use girder_mqtt::codec::connect::{Protocol, QoS};
use girder_mqtt::codec::publish::{self, Publish};
use girder_mqtt::codec::{self, FixedHeader, PacketType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Every message's payload length.
pub const PAYLOAD: usize = 64;

/// The keep alive every bench client asks for, in seconds. rumqttd refuses 0, and no run
/// comes near it, so no client sends PINGREQ.
pub const KEEP_ALIVE: u16 = 600;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Writes a 3.1.1 CONNECT with a clean session and no credentials.
pub fn write_connect(out: &mut BytesMut, client_id: &str) {
    let remaining = 6 + 1 + 1 + 2 + 2 + client_id.len();
    codec::write_fixed_header(out, PacketType::Connect, 0, remaining).expect("a small packet");
    codec::write_string(out, "MQTT").expect("no NUL");
    out.put_u8(4); // protocol level: 3.1.1
    out.put_u8(0b0000_0010); // clean session
    out.put_u16(KEEP_ALIVE);
    codec::write_string(out, client_id).expect("no NUL");
}

/// Writes a SUBSCRIBE to one filter.
pub fn write_subscribe(out: &mut BytesMut, packet_id: u16, filter: &str, qos: QoS) {
    let remaining = 2 + 2 + filter.len() + 1;
    codec::write_fixed_header(out, PacketType::Subscribe, 0b0010, remaining)
        .expect("a small packet");
    out.put_u16(packet_id);
    codec::write_string(out, filter).expect("no NUL");
    out.put_u8(qos as u8);
}

/// Writes a PUBACK.
pub fn write_puback(out: &mut BytesMut, packet_id: u16) {
    out.put_u8(PacketType::PubAck.nibble() << 4);
    out.put_u8(2);
    out.put_u16(packet_id);
}

/// Writes a PUBLISH of a 64-byte payload whose first eight bytes are `stamp` (little endian):
/// the nanoseconds since the bench's shared start when it was written.
pub fn write_publish(out: &mut BytesMut, topic: &str, qos: QoS, packet_id: u16, stamp: u64) {
    let mut payload = [0u8; PAYLOAD];
    payload[..8].copy_from_slice(&stamp.to_le_bytes());
    let p = Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
        properties: Default::default(),
        payload: &payload,
    };
    p.encode(out, Protocol::V311).expect("a valid PUBLISH");
}

/// The stamp a [`write_publish`] payload carries.
pub fn stamp_of(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A PUBLISH as the bench reads it.
pub fn read_publish(h: &FixedHeader, body: &[u8]) -> io::Result<(QoS, Option<u16>, u64)> {
    let p = publish::decode(h.flags, body, Protocol::V311).map_err(|e| invalid(e.to_string()))?;
    let stamp = stamp_of(p.payload).ok_or_else(|| invalid("a payload without a stamp"))?;
    Ok((p.qos, p.packet_id, stamp))
}

/// Reads a broker's bytes and cuts them into packets.
pub struct Reader<R> {
    r: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader over `r`. Its buffer is allocated by the first read: small for that one (a
    /// CONNACK), 16 KiB from the next on, so the 15,000 clients of the idle run do not cost
    /// the load generator 240 MB of first-touched memory (and the broker under test the CPU
    /// that takes on a 2-core machine).
    pub fn new(r: R) -> Self {
        Reader {
            r,
            buf: BytesMut::new(),
        }
    }

    /// Reads what the socket has. False at the end of the stream.
    pub async fn fill(&mut self) -> io::Result<bool> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(256);
        } else if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        Ok(self.r.read_buf(&mut self.buf).await? > 0)
    }

    /// Hands every whole packet in the buffer to `f` (its fixed header and body), and keeps
    /// the part of a packet that has not all arrived.
    pub fn each(
        &mut self,
        mut f: impl FnMut(&FixedHeader, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut at = 0;
        while let Some(h) =
            codec::fixed_header(&self.buf[at..], usize::MAX).map_err(|e| invalid(e.to_string()))?
        {
            if self.buf.len() - at < h.packet_len() {
                break;
            }
            f(&h, &self.buf[at + h.header_len()..at + h.packet_len()])?;
            at += h.packet_len();
        }
        self.buf.advance(at);
        Ok(())
    }

    /// The next packet, waiting for it: its fixed header and an owned copy of its body.
    pub async fn next(&mut self) -> io::Result<(FixedHeader, Vec<u8>)> {
        loop {
            if let Some(h) =
                codec::fixed_header(&self.buf, usize::MAX).map_err(|e| invalid(e.to_string()))?
            {
                if self.buf.len() >= h.packet_len() {
                    let body = self.buf[h.header_len()..h.packet_len()].to_vec();
                    self.buf.advance(h.packet_len());
                    return Ok((h, body));
                }
            }
            if !self.fill().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// A connected client: its socket's halves.
pub struct Client {
    /// The read half.
    pub reader: Reader<OwnedReadHalf>,
    /// The write half.
    pub writer: OwnedWriteHalf,
}

impl Client {
    /// Connects to `addr` as `client_id` and waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, client_id: &str) -> io::Result<Client> {
        let stream = super::dial::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, mut writer) = stream.into_split();
        let mut out = BytesMut::with_capacity(64);
        write_connect(&mut out, client_id);
        writer.write_all(&out).await?;
        let mut reader = Reader::new(r);
        let (h, body) = reader.next().await?;
        match (h.kind, body.as_slice()) {
            (PacketType::ConnAck, [_, 0]) => Ok(Client { reader, writer }),
            (PacketType::ConnAck, [_, code]) => {
                Err(invalid(format!("CONNECT refused with code {code}")))
            }
            (kind, _) => Err(invalid(format!("{kind:?} where a CONNACK was due"))),
        }
    }

    /// Subscribes to `filter` at `qos` and waits for the SUBACK granting it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> io::Result<()> {
        let mut out = BytesMut::with_capacity(64);
        write_subscribe(&mut out, 1, filter, qos);
        self.writer.write_all(&out).await?;
        loop {
            let (h, body) = self.reader.next().await?;
            if h.kind != PacketType::SubAck {
                continue;
            }
            return match body.as_slice() {
                [0, 1, code] if *code == qos as u8 => Ok(()),
                [_, _, code] => Err(invalid(format!("SUBACK granted code {code:#x}"))),
                _ => Err(invalid("a malformed SUBACK")),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use girder_mqtt::codec::packet::{decode, Packet};

    fn server_reads(bytes: &[u8]) -> Packet<'_> {
        let h = codec::fixed_header(bytes, usize::MAX).unwrap().unwrap();
        assert_eq!(h.packet_len(), bytes.len());
        decode(&h, &bytes[h.header_len()..], Protocol::V311).unwrap()
    }

    #[test]
    fn the_broker_codec_reads_what_the_client_writes() {
        let mut out = BytesMut::new();
        write_connect(&mut out, "bench-1");
        match server_reads(&out) {
            Packet::Connect(c) => {
                assert_eq!((c.client_id, c.clean_start), ("bench-1", true));
                assert_eq!(c.keep_alive, KEEP_ALIVE);
            }
            other => panic!("{other:?}"),
        }
        out.clear();
        write_subscribe(&mut out, 1, "bench/p2p/7", QoS::AtLeastOnce);
        match server_reads(&out) {
            Packet::Subscribe(s) => {
                assert_eq!(s.subscriptions[0].filter, "bench/p2p/7");
                assert_eq!(s.subscriptions[0].qos, QoS::AtLeastOnce);
            }
            other => panic!("{other:?}"),
        }
        out.clear();
        write_puback(&mut out, 300);
        assert!(matches!(server_reads(&out), Packet::PubAck(a) if a.packet_id == 300));
        out.clear();
        write_publish(&mut out, "t", QoS::AtLeastOnce, 9, 123_456);
        let h = codec::fixed_header(&out, usize::MAX).unwrap().unwrap();
        let (qos, id, stamp) = read_publish(&h, &out[h.header_len()..]).unwrap();
        assert_eq!((qos, id, stamp), (QoS::AtLeastOnce, Some(9), 123_456));
    }

    #[tokio::test]
    async fn the_reader_keeps_a_packet_cut_in_two() {
        let mut out = BytesMut::new();
        write_publish(&mut out, "a", QoS::AtMostOnce, 0, 1);
        write_publish(&mut out, "a", QoS::AtMostOnce, 0, 2);
        let cut = out.len() - 10;
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut reader = Reader::new(rx);
        tx.write_all(&out[..cut]).await.unwrap();
        reader.fill().await.unwrap();
        let mut stamps = Vec::new();
        let mut take = |h: &FixedHeader, b: &[u8]| {
            stamps.push(read_publish(h, b)?.2);
            Ok(())
        };
        reader.each(&mut take).unwrap();
        tx.write_all(&out[cut..]).await.unwrap();
        reader.fill().await.unwrap();
        reader.each(&mut take).unwrap();
        assert_eq!(stamps, [1, 2]);
    }
}
