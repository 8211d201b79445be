#![no_main]

use girder_mqtt::codec::{connect::Protocol, fixed_header, packet};

// A connection's reader: packets one after another until the bytes run out or one is refused,
// under both protocol versions. Whatever the bytes, no panic, no read past a packet.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut rest = data;
        while let Ok(Some(h)) = fixed_header(rest, 64 * 1024) {
            if h.packet_len() > rest.len() {
                break;
            }
            if packet::decode(&h, &rest[h.len..h.packet_len()], protocol).is_err() {
                break;
            }
            rest = &rest[h.packet_len()..];
        }
    }
});
