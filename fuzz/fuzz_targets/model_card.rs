#![no_main]
// A model card (YAML front matter) and the card policy check.
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_seal::fuzz_card(data));
