//! # veil-models
//!
//! Model loading and generation with candle: GGUF quantized llama (SmolLM2) and
//! safetensors BERT embeddings (MiniLM), device selection (CPU; CUDA behind a `cuda`
//! feature), tokenizers — fed from decrypted, in-memory weights only.
//!
//! The crate is intentionally empty until the serving-runtime issue lands; it exists
//! now so the workspace has its final shape from the start.
#![forbid(unsafe_code)]
