#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_attestation::azure::fuzz_hcl_report(data));
