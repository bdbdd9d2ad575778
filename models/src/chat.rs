//! Chat models: a GGUF quantized llama (SmolLM2) on Veil's own CPU kernels
//! ([`crate::llama`]; candle's `quantized_llama` on CUDA and for weight formats the
//! kernels lack), its tokenizer built from the GGUF metadata, and its chat template
//! rendered with minijinja (the Jinja dialect Hugging Face templates are written in).

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf as _;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use crate::llama::{LoadError, Session, Weights};
use crate::{ModelError, Result};

/// The longest context a request may use (candle's rotary table size, kept for both
/// engines so they accept the same requests).
pub const MAX_CONTEXT: usize = MAX_SEQ_LEN;

/// Which forward pass runs the model.
#[derive(Clone)]
enum Engine {
    /// Veil's kernels (`veil-kernels`), CPU.
    Veil(Arc<Weights>),
    /// candle's `quantized_llama` (CUDA, or formats Veil's kernels lack).
    Candle(Box<ModelWeights>),
}

/// Which engine [`ChatModel::from_gguf_with`] loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// Veil's kernels on the CPU when they support every tensor; candle otherwise.
    Auto,
    /// Veil's kernels on the given tier, or an error.
    Veil(veil_kernels::Kernels),
    /// candle's `quantized_llama` (the reference the tests compare against).
    Candle,
}

/// ChatML, for a GGUF that carries no template.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Decoding parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// 0 for greedy decoding; otherwise the softmax temperature.
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1]; 1 samples from the whole distribution.
    pub top_p: f64,
    /// The sampler's seed: the same seed, prompt and parameters give the same text.
    pub seed: u64,
    /// Strings that end the answer; the answer excludes them.
    pub stop: Vec<String>,
}

impl Default for GenParams {
    fn default() -> Self {
        Self { max_tokens: 256, temperature: 0.0, top_p: 1.0, seed: 0, stop: Vec::new() }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer, or a stop string appeared.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The caller's callback asked to stop (e.g. the client went away).
    Cancelled,
}

/// The outcome of [`ChatModel::generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated text (without stop strings or the end-of-turn token).
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the end-of-turn token is not counted).
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Time to process the prompt and pick the first token.
    pub prompt_time: Duration,
    /// Time for the remaining tokens.
    pub generation_time: Duration,
}

/// A loaded chat model. Cloning is cheap (weights are shared); [`ChatModel::generate`]
/// takes `&self` and works on its own copy of the KV cache, so one model serves
/// concurrent requests.
#[derive(Clone)]
pub struct ChatModel {
    engine: Engine,
    tokenizer: Tokenizer,
    template: String,
    bos_token: String,
    eos_token: String,
    end_ids: Vec<u32>,
    context: usize,
    device: Device,
}

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel")
            .field("engine", &self.engine_name())
            .field("context", &self.context)
            .field("end_ids", &self.end_ids)
            .finish()
    }
}

fn meta_u64(ct: &gguf_file::Content, key: &str) -> Option<u64> {
    ct.metadata.get(key).and_then(|v| v.to_u64().ok())
}

fn meta_str<'a>(ct: &'a gguf_file::Content, key: &str) -> Option<&'a str> {
    ct.metadata.get(key).and_then(|v| v.to_string().ok()).map(String::as_str)
}

impl ChatModel {
    /// Loads a GGUF llama-architecture model from memory. The bytes are only read;
    /// the caller keeps (and wipes) them.
    pub fn from_gguf(bytes: &[u8], device: &Device) -> Result<Self> {
        Self::from_gguf_with(bytes, device, EngineChoice::Auto)
    }

    /// [`ChatModel::from_gguf`] on a chosen engine.
    pub fn from_gguf_with(bytes: &[u8], device: &Device, engine: EngineChoice) -> Result<Self> {
        // candle's loaders are not written for hostile input; a panic inside them is a
        // malformed model, not a crash of the runtime.
        std::panic::catch_unwind(AssertUnwindSafe(|| Self::load(bytes, device, engine)))
            .unwrap_or_else(|_| Err(ModelError::Format("the GGUF loader panicked on this file".into())))
    }

    /// `veil-kernels <tier>` or `candle`, for logs.
    pub fn engine_name(&self) -> String {
        match &self.engine {
            Engine::Veil(w) => format!("veil-kernels {} {}", w.kernels().level(), w.describe()),
            Engine::Candle(_) => "candle".into(),
        }
    }

    fn load(bytes: &[u8], device: &Device, choice: EngineChoice) -> Result<Self> {
        let mut cursor = Cursor::new(bytes);
        let ct = gguf_file::Content::read(&mut cursor).map_err(ModelError::format)?;
        match meta_str(&ct, "general.architecture") {
            Some("llama") => {}
            other => {
                return Err(ModelError::Format(format!(
                    "architecture {other:?} is not supported (llama-architecture GGUF only)"
                )));
            }
        }
        let mut tokenizer = Tokenizer::from_gguf(&ct).map_err(ModelError::tokenizer)?;
        match meta_str(&ct, "tokenizer.ggml.pre") {
            // SmolLM's pre-tokenizer (llama.cpp `smollm`): digits split one by one, then
            // GPT-2 byte-level splitting without a prefix space. candle does not know the
            // name and would add a prefix space, giving ids llama.cpp does not.
            Some("smollm") => {
                let pre = Sequence::new(vec![
                    PreTokenizerWrapper::from(Digits::new(true)),
                    ByteLevel::new(false, true, true).into(),
                ]);
                tokenizer.with_pre_tokenizer(Some(pre));
            }
            Some(p @ ("qwen2" | "smaug-bpe" | "lfm2" | "llama3")) => tracing::debug!(pre = p, "GGUF pre-tokenizer"),
            other => tracing::warn!(pre = ?other, "unknown GGUF pre-tokenizer; using GPT-2 byte-level splitting"),
        }
        let template = meta_str(&ct, "tokenizer.chat_template").unwrap_or(CHATML).to_owned();
        let token = |key: &str| {
            meta_u64(&ct, key).and_then(|id| u32::try_from(id).ok()).and_then(|id| tokenizer.id_to_token(id))
        };
        let bos_token = token("tokenizer.ggml.bos_token_id").unwrap_or_default();
        let eos_token = token("tokenizer.ggml.eos_token_id").unwrap_or_default();
        let mut end_ids: Vec<u32> = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", eos_token.as_str()]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        end_ids.sort_unstable();
        end_ids.dedup();
        if end_ids.is_empty() {
            return Err(ModelError::Format("the GGUF names no end-of-sequence token".into()));
        }
        let context = meta_u64(&ct, "llama.context_length")
            .and_then(|c| usize::try_from(c).ok())
            .unwrap_or(2048)
            .min(MAX_CONTEXT);
        let kernels = match choice {
            EngineChoice::Veil(k) => Some(k),
            EngineChoice::Auto if device.is_cpu() => {
                if let Some(Err(v)) = veil_kernels::Kernels::requested() {
                    tracing::warn!(value = %v, "VEIL_KERNELS names no kernel tier this CPU has; using the best it has");
                }
                Some(veil_kernels::Kernels::global())
            }
            EngineChoice::Auto | EngineChoice::Candle => None,
        };
        let veil = match kernels {
            Some(k) => match Weights::from_gguf(&ct, &mut cursor, k) {
                Ok(w) => Some(w),
                Err(LoadError::Model(e)) => return Err(e),
                Err(LoadError::Unsupported(why)) if choice == EngineChoice::Auto => {
                    tracing::warn!(%why, "Veil's CPU kernels cannot run this model; using candle's quantized_llama");
                    None
                }
                Err(LoadError::Unsupported(why)) => return Err(ModelError::Format(why)),
            },
            None => None,
        };
        let engine = match veil {
            Some(w) => Engine::Veil(Arc::new(w)),
            None => {
                Engine::Candle(Box::new(ModelWeights::from_gguf(ct, &mut cursor, device).map_err(ModelError::format)?))
            }
        };
        Ok(Self { engine, tokenizer, template, bos_token, eos_token, end_ids, context, device: device.clone() })
    }

    /// The most tokens (prompt and answer together) one request may use.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Renders `messages` with the model's chat template.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        // Hugging Face renders templates with trim_blocks and lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.render_str(&self.template, ctx).map_err(|e| ModelError::Template(e.to_string()))
    }

    /// Token ids of `text`, special tokens in it recognised, nothing added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, false).map_err(ModelError::tokenizer)?.get_ids().to_vec())
    }

    /// The chat prompt for `messages`, tokenised, ready for an assistant turn.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode(&self.render(messages, true)?)
    }

    fn runner(&self, positions: usize) -> Result<Runner<'_>> {
        Ok(match &self.engine {
            Engine::Veil(w) => Runner::Veil(Session::new(w, positions)?),
            Engine::Candle(w) => Runner::Candle(Box::new((**w).clone()), &self.device),
        })
    }

    /// The logits for the token after `prompt` (tests compare engines and llama.cpp).
    pub fn next_logits(&self, prompt: &[u32]) -> Result<Vec<f32>> {
        if prompt.is_empty() || prompt.len() > self.context {
            return Err(ModelError::InvalidRequest(format!("{} prompt tokens", prompt.len())));
        }
        let mut r = self.runner(prompt.len())?;
        r.forward(prompt, 0)?.to_vec1::<f32>().map_err(ModelError::inference)
    }

    /// Generates an answer to `prompt` (token ids). `on_text` receives the answer's
    /// text as it becomes final (never a partial UTF-8 character, never the start of a
    /// stop string that may still complete) and returns `false` to stop early.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenParams,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(ModelError::InvalidRequest("the prompt is empty".into()));
        }
        if params.max_tokens == 0 {
            return Err(ModelError::InvalidRequest("max_tokens must be at least 1".into()));
        }
        let budget = prompt.len().saturating_add(params.max_tokens);
        if budget > self.context {
            return Err(ModelError::InvalidRequest(format!(
                "the prompt ({} tokens) plus max_tokens ({}) exceeds the context length ({})",
                prompt.len(),
                params.max_tokens,
                self.context
            )));
        }
        if !(params.temperature.is_finite() && params.temperature >= 0.0) {
            return Err(ModelError::InvalidRequest("temperature must be a finite number >= 0".into()));
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(ModelError::InvalidRequest("top_p must be in (0, 1]".into()));
        }
        let sampling = if params.temperature == 0.0 {
            Sampling::ArgMax
        } else if params.top_p < 1.0 {
            Sampling::TopP { p: params.top_p, temperature: params.temperature }
        } else {
            Sampling::All { temperature: params.temperature }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut model = self.runner(budget)?;
        let step = |model: &mut Runner<'_>, ids: &[u32], pos: usize, sampler: &mut LogitsProcessor| -> Result<u32> {
            let logits = model.forward(ids, pos)?;
            sampler.sample(&logits).map_err(ModelError::inference)
        };

        let started = Instant::now();
        let mut next = step(&mut model, prompt, 0, &mut sampler)?;
        let prompt_time = started.elapsed();
        let started = Instant::now();

        let mut ids: Vec<u32> = Vec::new();
        let mut emitted = 0usize; // bytes of `text` handed to on_text
        let mut text = String::new();
        let finish = loop {
            if self.end_ids.contains(&next) {
                break FinishReason::Stop;
            }
            ids.push(next);
            let decoded = self.tokenizer.decode(&ids, true).map_err(ModelError::tokenizer)?;
            if let Some(cut) =
                params.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| decoded.find(s.as_str())).min()
            {
                text = decoded.get(..cut).unwrap_or_default().to_owned();
                break FinishReason::Stop;
            }
            let end = final_len(&decoded, &params.stop);
            // Emit only when what was emitted is still a prefix (byte-level decoding is
            // prefix-stable except for a trailing incomplete character, held back).
            if end > emitted && decoded.get(..emitted) == text.get(..emitted) {
                if let Some(chunk) = decoded.get(emitted..end) {
                    if !on_text(chunk) {
                        text = decoded;
                        emitted = end;
                        break FinishReason::Cancelled;
                    }
                    emitted = end;
                }
            }
            text = decoded;
            if ids.len() >= params.max_tokens {
                break FinishReason::Length;
            }
            let pos = prompt.len().saturating_add(ids.len()).saturating_sub(1);
            next = step(&mut model, &[next], pos, &mut sampler)?;
        };
        if finish != FinishReason::Cancelled {
            // Whatever was held back is final now.
            let text = text.trim_end_matches('\u{FFFD}');
            if let Some(rest) = text.get(emitted..).filter(|r| !r.is_empty()) {
                on_text(rest);
            }
        }
        let text = text.trim_end_matches('\u{FFFD}').to_owned();
        Ok(Generation {
            text,
            prompt_tokens: prompt.len(),
            completion_tokens: ids.len(),
            finish_reason: finish,
            prompt_time,
            generation_time: started.elapsed(),
        })
    }
}

/// One request's forward state on either engine.
enum Runner<'a> {
    Veil(Session<'a>),
    Candle(Box<ModelWeights>, &'a Device),
}

impl Runner<'_> {
    /// Logits after running `ids` at positions `pos..`.
    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Tensor> {
        match self {
            Runner::Veil(s) => {
                debug_assert_eq!(s.len(), pos);
                let logits = s.forward(ids)?;
                let n = logits.len();
                Tensor::from_vec(logits, n, &Device::Cpu).map_err(ModelError::inference)
            }
            Runner::Candle(model, device) => {
                let input = Tensor::new(ids, device).and_then(|t| t.unsqueeze(0)).map_err(ModelError::inference)?;
                model.forward(&input, pos).and_then(|l| l.squeeze(0)).map_err(ModelError::inference)
            }
        }
    }
}

/// How much of `decoded` is final: without a trailing incomplete character (U+FFFD
/// from a partial UTF-8 sequence) and without a suffix that begins a stop string.
fn final_len(decoded: &str, stops: &[String]) -> usize {
    let trimmed = decoded.trim_end_matches('\u{FFFD}');
    let mut end = trimmed.len();
    for s in stops {
        // The longest proper prefix of `s` that `trimmed` ends with.
        let cuts: Vec<usize> = s.char_indices().skip(1).map(|(i, _)| i).collect();
        for &i in cuts.iter().rev() {
            if let Some(p) = s.get(..i) {
                if trimmed.ends_with(p) {
                    end = end.min(trimmed.len().saturating_sub(p.len()));
                    break;
                }
            }
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_len_holds_back_partial_characters_and_stop_prefixes() {
        assert_eq!(final_len("hello", &[]), 5);
        assert_eq!(final_len("hello\u{FFFD}", &[]), 5);
        assert_eq!(final_len("hello wo", &["world".into()]), 6);
        assert_eq!(final_len("hello w", &["world".into()]), 6);
        assert_eq!(final_len("hello", &["xyz".into()]), 5);
        assert_eq!(final_len("ab\n", &["\n\n".into()]), 2);
        assert_eq!(final_len("é", &["éa".into()]), 0);
        // The longest prefix counts: "aba" begins "abab", not just "a".
        assert_eq!(final_len("xaba", &["abab".into()]), 1);
    }
}
