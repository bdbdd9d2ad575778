//! # veil-models
//!
//! Model loading and generation with candle: GGUF quantized llama (SmolLM2) and
//! safetensors BERT embeddings (MiniLM), device selection (CPU; CUDA behind the `cuda`
//! feature), tokenizers and chat templates — fed from decrypted, **in-memory** weights
//! only: every loader takes a byte slice it borrows, so the caller keeps ownership of
//! the plaintext and wipes it after loading.
//!
//! Model bytes come from a verified sealed bundle (the runtime checks the OMS signature
//! before anything here sees them), but parsing still treats them as untrusted: a
//! malformed file is a [`ModelError`], never a panic.
//!
//! What stays in memory: candle copies the weights into its own tensors, which are
//! freed without being wiped when the model is dropped. The runtime runs inside the CVM
//! with core dumps off; the weights are the model owner's to protect against the host,
//! and the CVM's memory encryption is what does that.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chat;
pub mod embed;
mod error;
pub mod llama;

pub use error::ModelError;

/// Results of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

/// The compute device: CUDA when compiled in (`cuda` feature), asked for and present,
/// otherwise the CPU.
pub fn select_device(prefer_gpu: bool) -> candle_core::Device {
    if prefer_gpu && cfg!(feature = "cuda") {
        // A missing driver is an error from candle, and with some loaders a panic:
        // either way, fall back to the CPU and say so.
        match std::panic::catch_unwind(|| candle_core::Device::new_cuda(0)) {
            Ok(Ok(d)) => return d,
            Ok(Err(e)) => tracing::warn!(error = %e, "CUDA requested but unavailable; using the CPU"),
            Err(_) => tracing::warn!("CUDA initialisation panicked; using the CPU"),
        }
    }
    candle_core::Device::Cpu
}

/// A short name for a device, for logs and `/v1/models`.
pub fn device_name(d: &candle_core::Device) -> &'static str {
    if d.is_cuda() { "cuda" } else { "cpu" }
}
