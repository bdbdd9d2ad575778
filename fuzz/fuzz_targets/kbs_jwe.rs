#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_kbs::fuzzing::jwe(data));
