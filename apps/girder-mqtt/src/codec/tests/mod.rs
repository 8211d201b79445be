use proptest::prelude::*;

use super::*;

#[test]
fn varints_at_every_boundary_round_trip_in_the_fewest_bytes() {
    for (value, len) in [
        (0, 1),
        (127, 1),
        (128, 2),
        (16_383, 2),
        (16_384, 3),
        (2_097_151, 3),
        (2_097_152, 4),
        (MAX_VARINT, 4),
    ] {
        let mut out = Vec::new();
        write_varint(&mut out, value).unwrap();
        assert_eq!(out.len(), len, "{value}");
        assert_eq!(varint_len(value), len, "{value}");
        let mut b = &out[..];
        assert_eq!(read_varint(&mut b), Ok(value));
        assert!(b.is_empty());
    }
    assert_eq!(
        write_varint(&mut Vec::new(), MAX_VARINT + 1),
        Err(EncodeError::TooLong(MAX_VARINT + 1))
    );
}

#[test]
fn bad_varints_are_refused_and_short_ones_wait_for_more() {
    let mut five: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_eq!(read_varint(&mut five), Err(DecodeError::MalformedVarint));
    let mut four_open: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF];
    assert_eq!(
        read_varint(&mut four_open),
        Err(DecodeError::MalformedVarint)
    );
    let mut padded: &[u8] = &[0x80, 0x00];
    assert_eq!(read_varint(&mut padded), Err(DecodeError::NonMinimalVarint));
    let mut open: &[u8] = &[0x80, 0x80];
    assert_eq!(read_varint(&mut open), Err(DecodeError::Truncated));
    // In a fixed header, an unfinished length is not an error yet.
    assert_eq!(fixed_header(&[0x30, 0x80, 0x80], usize::MAX), Ok(None));
    assert_eq!(fixed_header(&[], usize::MAX), Ok(None));
    assert_eq!(
        fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], usize::MAX),
        Err(DecodeError::MalformedVarint)
    );
}

#[test]
fn reserved_flags_and_unknown_types_are_refused() {
    for (byte, ok) in [
        (0x10, true),  // CONNECT, flags 0
        (0x11, false), // CONNECT with a flag
        (0x62, true),  // PUBREL 0b0010
        (0x60, false), // PUBREL without it
        (0x82, true),  // SUBSCRIBE 0b0010
        (0xA2, true),  // UNSUBSCRIBE 0b0010
        (0xA0, false),
        (0xC1, false), // PINGREQ with a flag
        (0x3D, true),  // PUBLISH dup, QoS 2, retain
        (0xF0, true),  // AUTH
    ] {
        let got = fixed_header(&[byte, 0x00], usize::MAX);
        assert_eq!(got.is_ok(), ok, "{byte:#04x}: {got:?}");
    }
    assert_eq!(
        fixed_header(&[0x36, 0x00], usize::MAX),
        Err(DecodeError::BadQos)
    );
    assert_eq!(
        fixed_header(&[0x00, 0x00], usize::MAX),
        Err(DecodeError::UnknownPacketType(0))
    );
}

#[test]
fn the_packet_size_limit_counts_the_fixed_header_and_applies_before_buffering() {
    // 98 bytes of body + 2 of header = 100: allowed at 100, refused at 99.
    assert!(fixed_header(&[0x30, 98], 100).unwrap().is_some());
    assert_eq!(
        fixed_header(&[0x30, 98], 99),
        Err(DecodeError::PacketTooLarge { size: 100, max: 99 })
    );
    // Only the header has arrived; the announced size alone is refused.
    assert!(matches!(
        fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], 1 << 20),
        Err(DecodeError::PacketTooLarge { .. })
    ));
}

#[test]
fn strings_follow_mqtts_rules() {
    let mut bad_utf8: &[u8] = &[0x00, 0x02, 0xC3, 0x28];
    assert_eq!(read_string(&mut bad_utf8), Err(DecodeError::InvalidUtf8));
    // An encoded surrogate (U+D800) is not UTF-8.
    let mut surrogate: &[u8] = &[0x00, 0x03, 0xED, 0xA0, 0x80];
    assert_eq!(read_string(&mut surrogate), Err(DecodeError::InvalidUtf8));
    let mut short: &[u8] = &[0x00, 0x05, b'a'];
    assert_eq!(read_string(&mut short), Err(DecodeError::Truncated));
    let mut no_len: &[u8] = &[0x00];
    assert_eq!(read_string(&mut no_len), Err(DecodeError::Truncated));
    let long = "x".repeat(65_536);
    assert_eq!(
        write_string(&mut Vec::new(), &long),
        Err(EncodeError::FieldTooLong(65_536))
    );
    let mut out = Vec::new();
    write_string(&mut out, "").unwrap();
    assert_eq!(out, [0, 0]);
}

proptest! {
    #[test]
    fn any_varint_round_trips(value in 0..=MAX_VARINT) {
        let mut out = Vec::new();
        write_varint(&mut out, value).unwrap();
        let mut b = &out[..];
        prop_assert_eq!(read_varint(&mut b), Ok(value));
        prop_assert_eq!(out.len(), varint_len(value));
    }

    #[test]
    fn any_string_without_nul_round_trips(s in "[^\u{0}]{0,300}") {
        let mut out = Vec::new();
        write_string(&mut out, &s).unwrap();
        let mut b = &out[..];
        prop_assert_eq!(read_string(&mut b), Ok(s.as_str()));
        prop_assert!(b.is_empty());
    }

    #[test]
    fn any_bytes_give_a_header_an_error_or_a_wait_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..8),
        max in 0usize..1_000,
    ) {
        if let Ok(Some(h)) = fixed_header(&bytes, max) {
            prop_assert!(h.packet_len() <= max);
            prop_assert!(h.len >= 2 && h.len <= 5 && h.header_len() <= bytes.len());
        }
    }

    #[test]
    fn fixed_headers_round_trip(nibble in 1u8..=15, remaining in 0..=MAX_VARINT) {
        let kind = PacketType::from_nibble(nibble).unwrap();
        let flags = match kind {
            PacketType::Publish => 0b1011,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        };
        let mut out = Vec::new();
        write_fixed_header(&mut out, kind, flags, remaining).unwrap();
        let h = fixed_header(&out, usize::MAX).unwrap().unwrap();
        prop_assert_eq!((h.kind, h.flags, h.remaining as usize, h.header_len()), (kind, flags, remaining, out.len()));
    }
}

mod acks;
mod connect;
mod publish;
mod subscribe;

mod whole_packets {
    use crate::codec::connect::Protocol;
    use crate::codec::packet::{decode, Packet};
    use crate::codec::{fixed_header, DecodeError, PacketType};
    use proptest::prelude::*;

    fn one(bytes: &[u8], protocol: Protocol) -> Result<Packet<'_>, DecodeError> {
        let h = fixed_header(bytes, usize::MAX)?.expect("a whole header");
        decode(&h, &bytes[h.header_len()..h.packet_len()], protocol)
    }

    #[test]
    fn server_packets_and_311_auth_are_refused() {
        assert_eq!(
            one(&[0x20, 0x02, 0x00, 0x00], Protocol::V311),
            Err(DecodeError::NotFromClient(PacketType::ConnAck))
        );
        assert_eq!(
            one(&[0xD0, 0x00], Protocol::V5),
            Err(DecodeError::NotFromClient(PacketType::PingResp))
        );
        assert_eq!(
            one(&[0xF0, 0x00], Protocol::V311),
            Err(DecodeError::NotFromClient(PacketType::Auth))
        );
        assert_eq!(
            one(&[0xC0, 0x01, 0x00], Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn disconnects_in_both_versions() {
        assert_eq!(
            one(&[0xE0, 0x00], Protocol::V5),
            Ok(Packet::Disconnect {
                reason: 0,
                properties: Default::default()
            })
        );
        let Packet::Disconnect { reason, .. } =
            one(&[0xE0, 0x02, 0x04, 0x00], Protocol::V5).unwrap()
        else {
            panic!("a disconnect");
        };
        assert_eq!(reason, 4, "disconnect with will");
        assert_eq!(
            one(&[0xE0, 0x01, 0x04], Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    proptest! {
        /// The stable stand-in for the fuzz target: whatever the bytes, a header and a packet
        /// decode, or an error says why; nothing panics or reads past the packet.
        #[test]
        fn any_bytes_are_a_packet_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
            v5 in any::<bool>(),
        ) {
            let protocol = if v5 { Protocol::V5 } else { Protocol::V311 };
            if let Ok(Some(h)) = fixed_header(&bytes, 1024) {
                if h.packet_len() <= bytes.len() {
                    let _ = decode(&h, &bytes[h.header_len()..h.packet_len()], protocol);
                }
            }
        }
    }
}
