#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_host::kbs::evidence::fuzz_attestation(data));
