#![no_main]
// A hostile GGUF as the runtime loads an unsealed chat model: the Veil kernels' weight
// loader and one forward step must refuse bad input with an error, never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_models::llama::fuzz_gguf(data));
