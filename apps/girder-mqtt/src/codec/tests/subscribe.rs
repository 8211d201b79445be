use crate::codec::connect::{Protocol, QoS};
use crate::codec::subscribe::{check_filter, decode_subscribe, decode_unsubscribe, RetainHandling};
use crate::codec::DecodeError;
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
