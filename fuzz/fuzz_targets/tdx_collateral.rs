#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_attestation::tdx::fuzz_collateral(data));
