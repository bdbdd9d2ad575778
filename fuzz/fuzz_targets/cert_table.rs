#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_attestation::snp::cert_table::fuzz_cert_table(data));
