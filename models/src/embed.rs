//! Sentence embeddings: a BERT encoder (MiniLM) from safetensors, mean-pooled over the
//! attention mask and L2-normalised, as sentence-transformers computes them.

use std::panic::AssertUnwindSafe;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use tokenizers::Tokenizer;

use crate::{ModelError, Result};

/// Inputs one request may embed at once.
pub const MAX_INPUTS: usize = 256;

/// A loaded embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dim", &self.dim).field("max_tokens", &self.max_tokens).finish()
    }
}

/// Embeddings of a batch.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One unit-length vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens in all inputs together.
    pub tokens: usize,
}

impl Embedder {
    /// Loads a BERT model: `weights` (safetensors), `config_json` (the Hugging Face
    /// `config.json`) and `tokenizer_json`. The bytes are only read; the caller keeps
    /// (and wipes) them.
    pub fn from_safetensors(
        weights: &[u8],
        config_json: &[u8],
        tokenizer_json: &[u8],
        device: &Device,
    ) -> Result<Self> {
        std::panic::catch_unwind(AssertUnwindSafe(|| Self::load(weights, config_json, tokenizer_json, device)))
            .unwrap_or_else(|_| Err(ModelError::Format("the safetensors loader panicked on this model".into())))
    }

    fn load(weights: &[u8], config_json: &[u8], tokenizer_json: &[u8], device: &Device) -> Result<Self> {
        let cfg: Config =
            serde_json::from_slice(config_json).map_err(|e| ModelError::Format(format!("config.json: {e}")))?;
        let vb = VarBuilder::from_slice_safetensors(weights, DTYPE, device).map_err(ModelError::format)?;
        let model = BertModel::load(vb, &cfg).map_err(ModelError::format)?;
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json).map_err(ModelError::tokenizer)?;
        // Inputs are never silently cut or padded by the tokenizer: too long is an error,
        // and padding is done here with an explicit mask.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(ModelError::tokenizer)?;
        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            dim: cfg.hidden_size,
            max_tokens: cfg.max_position_embeddings,
        })
    }

    /// The embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The most tokens one input may have.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token count of one input (with the special tokens the model adds).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenizer.encode(text, true).map_err(ModelError::tokenizer)?.get_ids().len())
    }

    /// Embeds `inputs` (1 to [`MAX_INPUTS`]). Runs on the inference pool
    /// ([`crate::llama::pool`]), which candle's parallel kernels then use, so embeddings
    /// and chat share the cores rather than each starting its own threads.
    pub fn embed(&self, inputs: &[String]) -> Result<Embeddings> {
        match crate::llama::pool() {
            Some(pool) => pool.install(|| self.embed_in_pool(inputs)),
            None => self.embed_in_pool(inputs),
        }
    }

    fn embed_in_pool(&self, inputs: &[String]) -> Result<Embeddings> {
        if inputs.is_empty() || inputs.len() > MAX_INPUTS {
            return Err(ModelError::InvalidRequest(format!("between 1 and {MAX_INPUTS} inputs, got {}", inputs.len())));
        }
        let mut encoded = Vec::with_capacity(inputs.len());
        for (i, text) in inputs.iter().enumerate() {
            let e = self.tokenizer.encode(text.as_str(), true).map_err(ModelError::tokenizer)?;
            let n = e.get_ids().len();
            if n > self.max_tokens {
                return Err(ModelError::InvalidRequest(format!(
                    "input {i} has {n} tokens; this model takes at most {}",
                    self.max_tokens
                )));
            }
            encoded.push(e.get_ids().to_vec());
        }
        let tokens = encoded.iter().map(Vec::len).sum();
        let len = encoded.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(inputs.len().saturating_mul(len));
        let mut mask = Vec::with_capacity(inputs.len().saturating_mul(len));
        for e in &encoded {
            ids.extend_from_slice(e);
            mask.extend(std::iter::repeat_n(1u32, e.len()));
            let pad = len.saturating_sub(e.len());
            ids.extend(std::iter::repeat_n(0u32, pad));
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        let vectors = self.run(ids, mask, inputs.len(), len).map_err(ModelError::inference)?;
        Ok(Embeddings { vectors, tokens })
    }

    fn run(&self, ids: Vec<u32>, mask: Vec<u32>, batch: usize, len: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, (batch, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (batch, len), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (batch, len, dim)
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (batch, len, 1)
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (batch, dim)
        let counts = m.sum(1)?; // (batch, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

/// Cosine similarity of two vectors (their dot product when both are unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}
