#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| openflume_proto::fuzzing::hub_session(data));
