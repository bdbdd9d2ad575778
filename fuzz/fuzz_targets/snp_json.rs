#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = veil_attestation::snp::json::report_from_trustee_json(data);
});
