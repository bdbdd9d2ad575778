#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_attestation::snp::fuzz_report(data));
