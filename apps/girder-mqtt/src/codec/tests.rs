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
            prop_assert!(h.len >= 2 && h.len <= 5 && h.len <= bytes.len());
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
        prop_assert_eq!((h.kind, h.flags, h.remaining, h.len), (kind, flags, remaining, out.len()));
    }
}

mod connect_packets {
    use super::super::connect::{decode, Protocol, QoS};
    use super::super::properties::{id, Properties, Value};
    use super::super::DecodeError;

    /// A CONNECT body: protocol name and level, flags, keep alive, then the rest.
    fn body(name: &str, level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
        let mut b = vec![0, name.len() as u8];
        b.extend_from_slice(name.as_bytes());
        b.push(level);
        b.push(flags);
        b.extend_from_slice(&[0, 30]);
        b.extend_from_slice(rest);
        b
    }

    fn s(v: &str) -> Vec<u8> {
        let mut b = vec![0, v.len() as u8];
        b.extend_from_slice(v.as_bytes());
        b
    }

    #[test]
    fn a_full_311_connect_with_will_user_and_password() {
        // username, password, will retain, will QoS 1, will, clean session.
        let flags = 0b1110_1110;
        let rest = [s("client"), s("will/t"), s("bye"), s("user"), s("pw")].concat();
        let packet = body("MQTT", 4, flags, &rest);
        let c = decode(&packet).unwrap();
        assert_eq!(c.protocol, Protocol::V311);
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 30);
        assert_eq!(c.client_id, "client");
        let w = c.will.unwrap();
        assert_eq!(
            (w.topic, w.payload, w.qos, w.retain),
            ("will/t", &b"bye"[..], QoS::AtLeastOnce, true)
        );
        assert_eq!((c.username, c.password), (Some("user"), Some(&b"pw"[..])));
        assert!(c.properties.is_empty());
    }

    #[test]
    fn a_5_connect_with_properties_and_will_properties() {
        let mut props = Vec::new();
        Properties::from(vec![
            (id::SESSION_EXPIRY, Value::U32(3600)),
            (id::RECEIVE_MAXIMUM, Value::U16(10)),
            (id::USER_PROPERTY, Value::Pair("a", "1")),
            (id::USER_PROPERTY, Value::Pair("a", "2")),
        ])
        .write(&mut props)
        .unwrap();
        let mut will_props = Vec::new();
        Properties::from(vec![(id::WILL_DELAY, Value::U32(5))])
            .write(&mut will_props)
            .unwrap();
        let rest = [props, s("c5"), will_props, s("w"), s("x")].concat();
        let packet = body("MQTT", 5, 0b0000_0100, &rest);
        let c = decode(&packet).unwrap();
        assert_eq!(c.protocol, Protocol::V5);
        assert!(!c.clean_start);
        assert_eq!(c.properties.u32(id::SESSION_EXPIRY), Some(3600));
        assert_eq!(c.properties.u16(id::RECEIVE_MAXIMUM), Some(10));
        assert_eq!(c.properties.user().count(), 2, "user properties may repeat");
        assert_eq!(c.will.unwrap().properties.u32(id::WILL_DELAY), Some(5));
    }

    #[test]
    fn every_rule_of_the_flags_and_the_protocol_is_checked() {
        let id = s("c");
        assert!(matches!(
            decode(&body("MQIsdp", 3, 0b10, &id)),
            Err(DecodeError::UnsupportedProtocol { level: 3, .. })
        ));
        assert!(matches!(
            decode(&body("MQTT", 6, 0b10, &id)),
            Err(DecodeError::UnsupportedProtocol { level: 6, .. })
        ));
        assert!(
            matches!(
                decode(&body("MQTT", 4, 0b11, &id)),
                Err(DecodeError::BadConnectFlags(_))
            ),
            "the reserved bit"
        );
        assert!(
            matches!(
                decode(&body("MQTT", 4, 0b0010_1000 | 0b10, &id)),
                Err(DecodeError::BadConnectFlags(_))
            ),
            "will QoS and retain without a will"
        );
        assert_eq!(
            decode(&body(
                "MQTT",
                4,
                0b0001_1110,
                &[s("c"), s("t"), s("p")].concat()
            )),
            Err(DecodeError::BadQos),
            "will QoS 3"
        );
        assert!(
            matches!(
                decode(&body("MQTT", 4, 0b0100_0010, &[s("c"), s("pw")].concat())),
                Err(DecodeError::BadConnectFlags(_))
            ),
            "3.1.1: a password without a user name"
        );
        // 5.0 allows it.
        let mut empty = Vec::new();
        Properties::default().write(&mut empty).unwrap();
        let packet = body("MQTT", 5, 0b0100_0010, &[empty, s("c"), s("pw")].concat());
        let c = decode(&packet).unwrap();
        assert_eq!((c.username, c.password), (None, Some(&b"pw"[..])));
        assert_eq!(
            decode(&body("MQTT", 4, 0b10, &[s("c"), vec![0]].concat())),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            decode(&body("MQTT", 4, 0b1000_0010, &s("c"))),
            Err(DecodeError::Truncated),
            "a user name flag without the user name"
        );
    }

    #[test]
    fn bad_properties_are_protocol_errors() {
        let rm = id::RECEIVE_MAXIMUM;
        let mut b: &[u8] = &[6, rm, 0, 1, rm, 0, 2];
        assert_eq!(
            Properties::read(&mut b),
            Err(DecodeError::DuplicateProperty(id::RECEIVE_MAXIMUM))
        );
        let mut unknown: &[u8] = &[2, 0x7F, 0];
        assert_eq!(
            Properties::read(&mut unknown),
            Err(DecodeError::UnknownProperty(0x7F))
        );
        let mut past: &[u8] = &[2, id::SESSION_EXPIRY, 0];
        assert_eq!(Properties::read(&mut past), Err(DecodeError::Truncated));
        let mut longer: &[u8] = &[9, id::PAYLOAD_FORMAT, 1];
        assert_eq!(Properties::read(&mut longer), Err(DecodeError::Truncated));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
            let mut b = &bytes[..];
            let _ = Properties::read(&mut b);
        }
    }
}

mod publish_packets {
    use super::super::connect::{Protocol, QoS};
    use super::super::fixed_header;
    use super::super::properties::{id, Properties, Value};
    use super::super::publish::{decode, Publish};
    use super::super::{DecodeError, EncodeError};
    use proptest::prelude::*;

    #[test]
    fn the_spec_rules_on_publish_are_checked() {
        let topic = |t: &str| {
            let mut b = vec![0, t.len() as u8];
            b.extend_from_slice(t.as_bytes());
            b
        };
        assert_eq!(
            decode(0b0000, &topic("a/+"), Protocol::V311),
            Err(DecodeError::BadPublish("a wildcard in a topic name"))
        );
        assert_eq!(
            decode(0b0000, &topic("a/#"), Protocol::V5).map(|_| ()),
            Err(DecodeError::BadPublish("a wildcard in a topic name"))
        );
        assert_eq!(
            decode(0b0000, &topic(""), Protocol::V311),
            Err(DecodeError::BadPublish("an empty topic name"))
        );
        assert_eq!(
            decode(0b1000, &topic("t"), Protocol::V311),
            Err(DecodeError::BadPublish("DUP set on a QoS 0 message"))
        );
        let mut zero = topic("t");
        zero.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode(0b0010, &zero, Protocol::V311),
            Err(DecodeError::ZeroPacketId)
        );
        assert_eq!(
            decode(0b0010, &topic("t"), Protocol::V311),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(0b0110, &topic("t"), Protocol::V311),
            Err(DecodeError::BadQos)
        );
        // 5.0: an empty topic is the session's business (a topic alias), not the codec's.
        let mut aliased = topic("");
        aliased.extend_from_slice(&[3, id::TOPIC_ALIAS, 0, 1]);
        let p = decode(0, &aliased, Protocol::V5).unwrap();
        assert_eq!(p.properties.u16(id::TOPIC_ALIAS), Some(1));
        let p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t",
            packet_id: None,
            properties: Properties::default(),
            payload: b"",
        };
        assert_eq!(
            p.encode(&mut Vec::new(), Protocol::V311),
            Err(EncodeError::MissingPacketId)
        );
    }

    proptest! {
        #[test]
        fn publishes_round_trip_in_both_versions(
            topic in "[a-z/]{1,40}",
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            qos in 0u8..=2,
            retain in any::<bool>(),
            dup in any::<bool>(),
            id in 1u16..,
            expiry in proptest::option::of(any::<u32>()),
            v5 in any::<bool>(),
        ) {
            let qos = QoS::from_bits(qos).unwrap();
            let protocol = if v5 { Protocol::V5 } else { Protocol::V311 };
            let properties = match (v5, expiry) {
                (true, Some(e)) => Properties::from(vec![(id::MESSAGE_EXPIRY, Value::U32(e))]),
                _ => Properties::default(),
            };
            let p = Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic: &topic,
                packet_id: (qos != QoS::AtMostOnce).then_some(id),
                properties,
                payload: &payload,
            };
            let mut out = Vec::new();
            p.encode(&mut out, protocol).unwrap();
            prop_assert_eq!(out.len(), p.encoded_len(protocol));
            let h = fixed_header(&out, usize::MAX).unwrap().unwrap();
            prop_assert_eq!(h.packet_len(), out.len());
            prop_assert_eq!(decode(h.flags, &out[h.len..], protocol).unwrap(), p);
        }

        #[test]
        fn any_publish_bytes_decode_or_fail_cleanly(
            flags in 0u8..16,
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            v5 in any::<bool>(),
        ) {
            let protocol = if v5 { Protocol::V5 } else { Protocol::V311 };
            let _ = decode(flags, &bytes, protocol);
        }
    }
}

mod subscribe_packets {
    use super::super::connect::{Protocol, QoS};
    use super::super::subscribe::{
        check_filter, decode_subscribe, decode_unsubscribe, RetainHandling,
    };
    use super::super::DecodeError;
    use proptest::prelude::*;

    fn filter(f: &str, options: u8) -> Vec<u8> {
        let mut b = vec![0, f.len() as u8];
        b.extend_from_slice(f.as_bytes());
        b.push(options);
        b
    }

    #[test]
    fn options_are_read_and_reserved_bits_refused() {
        // 5.0: QoS 2, no local, retain as published, retain handling 2, no properties.
        let body = [vec![0, 5, 0], filter("a/+", 0b0010_1110)].concat();
        let s = decode_subscribe(&body, Protocol::V5).unwrap();
        let sub = s.subscriptions[0];
        assert_eq!(sub.qos, QoS::ExactlyOnce);
        assert!(sub.no_local && sub.retain_as_published);
        assert_eq!(sub.retain_handling, RetainHandling::Never);
        // The same byte in 3.1.1 has reserved bits set.
        let body = [vec![0, 5], filter("a/+", 0b0010_1110)].concat();
        assert_eq!(
            decode_subscribe(&body, Protocol::V311),
            Err(DecodeError::BadSubscriptionOptions(0b0010_1110))
        );
        let body = [vec![0, 5, 0], filter("a", 0b0011_0000)].concat();
        assert!(
            matches!(
                decode_subscribe(&body, Protocol::V5),
                Err(DecodeError::BadSubscriptionOptions(_))
            ),
            "retain handling 3"
        );
        let body = [vec![0, 5, 0], filter("a", 0b1000_0000)].concat();
        assert!(matches!(
            decode_subscribe(&body, Protocol::V5),
            Err(DecodeError::BadSubscriptionOptions(_))
        ));
        let body = [vec![0, 5], filter("a", 3)].concat();
        assert_eq!(
            decode_subscribe(&body, Protocol::V311),
            Err(DecodeError::BadQos)
        );
        let body = [vec![0, 5, 0], filter("$share/g/a", 0b0100)].concat();
        assert!(
            matches!(
                decode_subscribe(&body, Protocol::V5),
                Err(DecodeError::BadFilter(_))
            ),
            "no local on a shared subscription"
        );
    }

    #[test]
    fn empty_zero_and_bad_filters_are_refused() {
        assert_eq!(
            decode_subscribe(&[0, 1], Protocol::V311),
            Err(DecodeError::NoFilters)
        );
        assert_eq!(
            decode_unsubscribe(&[0, 1], Protocol::V311),
            Err(DecodeError::NoFilters)
        );
        assert_eq!(
            decode_subscribe(&[vec![0, 0], filter("a", 0)].concat(), Protocol::V311),
            Err(DecodeError::ZeroPacketId)
        );
        assert!(matches!(
            decode_subscribe(&[vec![0, 1], filter("a/#/b", 0)].concat(), Protocol::V311),
            Err(DecodeError::BadFilter(_))
        ));
        assert!(matches!(
            decode_unsubscribe(&[0, 1, 0, 2, b'a', b'+'], Protocol::V311),
            Err(DecodeError::BadFilter(_))
        ));
        assert_eq!(
            decode_subscribe(&[0, 1, 0, 1, b'a'], Protocol::V311),
            Err(DecodeError::Truncated),
            "a filter without its options byte"
        );
        for ok in ["a", "/", "+", "#", "+/+", "a//b", "$SYS/#", "$share/g/#"] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a#",
            "#/a",
            "a/b+",
            "++",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
        ] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_subscribe_bytes_decode_or_fail_cleanly(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            v5 in any::<bool>(),
        ) {
            let protocol = if v5 { Protocol::V5 } else { Protocol::V311 };
            let _ = decode_subscribe(&bytes, protocol);
            let _ = decode_unsubscribe(&bytes, protocol);
        }

        #[test]
        fn every_filter_check_filter_accepts_has_wildcards_only_where_allowed(f in "[a+#/]{1,12}") {
            if check_filter(&f).is_ok() {
                for (i, level) in f.split('/').enumerate() {
                    prop_assert!(!level.contains('+') || level == "+");
                    prop_assert!(!level.contains('#') || (level == "#" && i == f.split('/').count() - 1));
                }
            }
        }
    }
}

mod acks {
    use super::super::ack::{
        connack, decode_pub_ack, disconnect, pub_ack, suback, unsuback, Reason,
    };
    use super::super::connect::Protocol;
    use super::super::properties::{id, Properties, Value};
    use super::super::{fixed_header, DecodeError, PacketType};

    #[test]
    fn every_reason_code_maps_back_to_itself() {
        let mut known = 0;
        for code in 0..=255u8 {
            if let Some(r) = Reason::from_code(code) {
                assert_eq!(r as u8, code);
                known += 1;
            }
        }
        assert_eq!(known, 43, "5.0 defines 43 distinct reason codes");
    }

    #[test]
    fn a_refused_connection_never_says_a_session_is_present() {
        let mut out = Vec::new();
        connack(
            &mut out,
            Protocol::V5,
            true,
            Reason::NotAuthorized,
            &Properties::default(),
        )
        .unwrap();
        assert_eq!(out, [0x20, 0x03, 0x00, 0x87, 0x00]);
        let mut out = Vec::new();
        connack(
            &mut out,
            Protocol::V311,
            true,
            Reason::ServerBusy,
            &Properties::default(),
        )
        .unwrap();
        assert_eq!(out, [0x20, 0x02, 0x00, 0x03], "3.1.1: server unavailable");
    }

    #[test]
    fn acks_are_well_formed_and_read_back() {
        for kind in [
            PacketType::PubAck,
            PacketType::PubRec,
            PacketType::PubRel,
            PacketType::PubComp,
        ] {
            for protocol in [Protocol::V311, Protocol::V5] {
                let props = Properties::from(vec![(id::REASON_STRING, Value::Str("why"))]);
                let (reason, props) = match protocol {
                    Protocol::V5 => (Reason::PacketIdentifierNotFound, props),
                    Protocol::V311 => (Reason::Success, Properties::default()),
                };
                let mut out = Vec::new();
                pub_ack(&mut out, kind, 300, protocol, reason, &props).unwrap();
                let h = fixed_header(&out, usize::MAX).unwrap().unwrap();
                assert_eq!((h.kind, h.packet_len()), (kind, out.len()));
                let back = decode_pub_ack(&out[h.len..], protocol).unwrap();
                assert_eq!(
                    (back.packet_id, back.reason, back.properties),
                    (300, reason as u8, props)
                );
            }
        }
        assert_eq!(
            decode_pub_ack(&[0, 0], Protocol::V311),
            Err(DecodeError::ZeroPacketId)
        );
        assert_eq!(
            decode_pub_ack(&[0, 1, 0], Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            decode_pub_ack(&[0], Protocol::V5),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn suback_unsuback_and_disconnect_per_version() {
        let codes = [Reason::GrantedQos2, Reason::NotAuthorized];
        let mut v5 = Vec::new();
        suback(&mut v5, Protocol::V5, 1, &codes, &Properties::default()).unwrap();
        assert_eq!(v5, [0x90, 0x05, 0x00, 0x01, 0x00, 0x02, 0x87]);
        let mut out = Vec::new();
        unsuback(
            &mut out,
            Protocol::V311,
            4,
            &[Reason::Success],
            &Properties::default(),
        )
        .unwrap();
        assert_eq!(out, [0xB0, 0x02, 0x00, 0x04]);
        let mut out = Vec::new();
        unsuback(
            &mut out,
            Protocol::V5,
            4,
            &[Reason::NoSubscriptionExisted],
            &Properties::default(),
        )
        .unwrap();
        assert_eq!(out, [0xB0, 0x04, 0x00, 0x04, 0x00, 0x11]);
        let mut out = Vec::new();
        disconnect(
            &mut out,
            Protocol::V311,
            Reason::ServerShuttingDown,
            &Properties::default(),
        )
        .unwrap();
        assert!(out.is_empty(), "a 3.1.1 server sends no DISCONNECT");
    }
}
