#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_attestation::tcg::fuzz_event_log(data));
