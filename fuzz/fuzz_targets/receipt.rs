#![no_main]
// An untrusted receipt: the compact JWS, a JSON answer carrying one, and an SSE answer
// stream the proxy follows (events split across reads).
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_client::receipt::fuzz_receipt(data));
