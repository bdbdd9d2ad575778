#![no_main]
// Quantized matrix products on hostile weights: every SIMD tier against the scalar one.
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_kernels::fuzz_matmul(data));
