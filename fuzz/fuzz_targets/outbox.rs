#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| openflume_proto::fuzzing::outbox(data));
