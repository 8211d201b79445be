use crate::codec::ack::{connack, decode_pub_ack, disconnect, pub_ack, suback, unsuback, Reason};
use crate::codec::connect::Protocol;
use crate::codec::properties::{id, Properties, Value};
use crate::codec::{fixed_header, DecodeError, PacketType};

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
            let back = decode_pub_ack(&out[h.header_len()..], protocol).unwrap();
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
