#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_attestation::runtime_log::fuzz_runtime_log(data));
