#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| girder_dist::fuzzing::packet(data));
