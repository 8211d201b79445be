use crate::codec::connect::{decode, Protocol, QoS};
use crate::codec::properties::{id, Properties, Value};
use crate::codec::DecodeError;

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
