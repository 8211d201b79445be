use crate::codec::connect::{Protocol, QoS};
use crate::codec::fixed_header;
use crate::codec::properties::{id, Properties, Value};
use crate::codec::publish::{decode, Publish};
use crate::codec::{DecodeError, EncodeError};
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
        prop_assert_eq!(decode(h.flags, &out[h.header_len()..], protocol).unwrap(), p);
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
