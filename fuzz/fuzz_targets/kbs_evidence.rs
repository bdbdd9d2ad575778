#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_client::evidence::fuzz_attestation(data));
