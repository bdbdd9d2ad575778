#![no_main]
// A whole sealed bundle in memory: preamble, layout, header JSON, names, card, signature.
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_seal::fuzz_sealed_header(data));
