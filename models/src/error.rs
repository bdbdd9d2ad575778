//! Errors.

/// What can go wrong loading a model or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model file is malformed or not a supported architecture.
    #[error("model format: {0}")]
    Format(String),
    /// The tokenizer could not be built or failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// A request is outside what the model can do (too long, bad parameter).
    #[error("{0}")]
    InvalidRequest(String),
    /// The tensor library failed during inference.
    #[error("inference: {0}")]
    Inference(String),
}

impl ModelError {
    pub(crate) fn format(e: impl std::fmt::Display) -> Self {
        Self::Format(e.to_string())
    }

    pub(crate) fn inference(e: impl std::fmt::Display) -> Self {
        Self::Inference(e.to_string())
    }

    pub(crate) fn tokenizer(e: impl std::fmt::Display) -> Self {
        Self::Tokenizer(e.to_string())
    }
}
