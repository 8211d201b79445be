//! The fuzz entry points (see `crates/girder-dist/fuzz`) on stable: random bytes and mutated
//! valid frames into the frame decoder, the packet decoder and the acceptor's handshake. None
//! may panic or hang, and no handshake may succeed without the cookie.

use bytes::{BufMut, BytesMut};
use girder_dist::fuzzing;
use proptest::prelude::*;

/// A well-formed frame header (`u32 length | u8 kind`) followed by `body`, with a mutation.
fn frame(kind: u8, body: &[u8], flip: Option<(usize, u8)>) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u32(body.len() as u32 + 1);
    b.put_u8(kind);
    b.extend_from_slice(body);
    let mut v = b.to_vec();
    if let Some((i, x)) = flip {
        let n = v.len();
        v[i % n] ^= x;
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_frame_decoder_refuses_any_bytes_cleanly(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzzing::frame_decoder(&data);
    }

    #[test]
    fn mutated_frames_are_refused_cleanly(
        kind in 0u8..8,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        flip in proptest::option::of((any::<usize>(), any::<u8>())),
        repeat in 1usize..4,
    ) {
        let one = frame(kind, &body, flip);
        let data: Vec<u8> = std::iter::repeat_n(one, repeat).flatten().collect();
        fuzzing::frame_decoder(&data);
        fuzzing::packet(&body);
    }

    #[test]
    fn packets_of_any_bytes_are_refused_cleanly(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::packet(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_handshake_succeeds_on_random_or_mutated_bytes(
        kind in prop_oneof![Just(1u8), 0u8..8],
        body in proptest::collection::vec(any::<u8>(), 0..300),
        raw in any::<bool>(),
    ) {
        let data = if raw { body } else { frame(kind, &body, None) };
        fuzzing::handshake_accept(&data);
    }
}
