//! The plain-candle side of `benches/inference`, and the small in-process helpers that
//! script needs. Subcommands (one JSON line on stdout each):
//!
//! - `ids --model GGUF --messages FILE`: the chat prompt of `FILE` (a JSON list of
//!   `{"role", "content"}`) rendered and tokenised by the runtime's own code
//!   ([`veil_models::chat::ChatModel::encode_chat`]), so every engine gets the same ids.
//! - `gen --model GGUF --ids FILE [--tokens 64] [--warmup 1]`: candle's example path —
//!   `gguf_file::Content` + `quantized_llama::ModelWeights` straight from the file, no
//!   Veil code — then the ids greedily (`LogitsProcessor` ArgMax), a fixed number of
//!   tokens whatever they are. Load excluded; prompt time = the prompt's forward pass and
//!   the first token, generation time = the remaining tokens (as the runtime counts them).
//! - `gen --engine veil ...`: the same run on Veil's own kernels
//!   (`veil_models::llama::{Weights, Session}`, the runtime's default CPU path; the tier
//!   is `veil_kernels::Kernels::global()`, so `VEIL_KERNELS` picks a lower one).
//! - `load --model GGUF [--loader runtime] [--lock-memory 1]`: cold load of the plaintext
//!   file the way the runtime loads the unsealed bytes: read into memory, parse,
//!   `ModelWeights::from_gguf` (and, timed apart, the GGUF tokenizer the runtime also
//!   builds); with `--loader runtime`, the runtime's `ChatModel::from_gguf` instead; with
//!   `--lock-memory 1`, after `mlockall` as `veil serve` does.
//! - `api --url URL --ca-cert PEM --api-key K --messages FILE --model NAME [--tokens 64]`:
//!   one streaming chat completion through the runtime's OpenAI API after a warm-up
//!   request (`--warmup-tokens`, default 1) on the same keep-alive connection; client-side times of the first content
//!   chunk (prompt) and from there to the last one (generation).
//! - `synth --model GGUF --out FILE [--gib 2]`: a synthetic llama GGUF of about `--gib`
//!   GiB (hidden 2048, 32 heads, 4 KV heads, FFN 5632: a 1B-class shape, as many layers
//!   as the size takes), Q8_0 matrices of pseudo-random quants, with `--model`'s
//!   tokenizer and chat template: a model the runtime boots and serves (its answers are
//!   noise), for cold-start figures at a size SmolLM2 does not reach.
//! - `overhead [--iters N] [--dir DIR]`: the per-request security work of the runtime
//!   (authentication and rate limit, request validation, request and answer hashes, the
//!   receipt with its audit record), timed in-process with the runtime's own types.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf as _;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    cmd: String,
    kv: std::collections::HashMap<String, String>,
}

impl Args {
    fn get(&self, k: &str) -> Res<&str> {
        self.kv.get(k).map(String::as_str).ok_or_else(|| format!("--{k} is required").into())
    }
    fn num(&self, k: &str, default: usize) -> Res<usize> {
        Ok(match self.kv.get(k) {
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number"))?,
            None => default,
        })
    }
}

fn args() -> Res<Args> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or("usage: candle-plain ids|gen|load|api|overhead --key value ...")?;
    let mut kv = std::collections::HashMap::new();
    while let Some(k) = it.next() {
        let k = k.strip_prefix("--").ok_or_else(|| format!("unexpected argument {k}"))?.to_owned();
        let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
        kv.insert(k, v);
    }
    Ok(Args { cmd, kv })
}

fn main() -> Res<()> {
    let a = args()?;
    let out = match a.cmd.as_str() {
        "ids" => ids(&a)?,
        "gen" => generate(&a)?,
        "load" => load(&a)?,
        "api" => api(&a)?,
        "overhead" => overhead(&a)?,
        "synth" => synth(&a)?,
        other => return Err(format!("unknown subcommand {other}").into()),
    };
    println!("{out}");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ids(a: &Args) -> Res<Value> {
    let bytes = std::fs::read(a.get("model")?)?;
    let model = veil_models::chat::ChatModel::from_gguf(&bytes, &Device::Cpu)?;
    let messages: Vec<veil_models::chat::Message> = serde_json::from_slice(&std::fs::read(a.get("messages")?)?)?;
    let text = model.render(&messages, true)?;
    let ids = model.encode_chat(&messages)?;
    Ok(json!({"ids": ids, "text": text}))
}

/// Runs `ids` greedily for `n` tokens (end-of-sequence tokens included: the count is
/// fixed); returns the tokens, the prompt time and the time of the other `n - 1`.
fn run_greedy(weights: &ModelWeights, ids: &[u32], n: usize) -> Res<(Vec<u32>, Duration, Duration)> {
    let dev = Device::Cpu;
    let mut model = weights.clone();
    let mut sampler = LogitsProcessor::from_sampling(0, Sampling::ArgMax);
    let t0 = Instant::now();
    let input = Tensor::new(ids, &dev)?.unsqueeze(0)?;
    let logits = model.forward(&input, 0)?.squeeze(0)?;
    let mut next = sampler.sample(&logits)?;
    let prompt = t0.elapsed();
    let mut out = vec![next];
    let t1 = Instant::now();
    while out.len() < n {
        let input = Tensor::new(&[next][..], &dev)?.unsqueeze(0)?;
        let pos = ids.len() + out.len() - 1;
        let logits = model.forward(&input, pos)?.squeeze(0)?;
        next = sampler.sample(&logits)?;
        out.push(next);
    }
    Ok((out, prompt, t1.elapsed()))
}

/// [`run_greedy`] on Veil's kernels.
fn run_greedy_veil(
    weights: &veil_models::llama::Weights,
    ids: &[u32],
    n: usize,
) -> Res<(Vec<u32>, Duration, Duration)> {
    let argmax = |l: &[f32]| l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32);
    let mut s = veil_models::llama::Session::new(weights, ids.len() + n)?;
    let t0 = Instant::now();
    let mut next = argmax(&s.forward(ids)?);
    let prompt = t0.elapsed();
    let mut out = vec![next];
    let t1 = Instant::now();
    while out.len() < n {
        next = argmax(&s.forward(&[next])?);
        out.push(next);
    }
    Ok((out, prompt, t1.elapsed()))
}

fn generate(a: &Args) -> Res<Value> {
    let path = a.get("model")?;
    let ids: Vec<u32> = serde_json::from_slice(&std::fs::read(a.get("ids")?)?)?;
    let n = a.num("tokens", 64)?;
    let veil = a.kv.get("engine").map(String::as_str) == Some("veil");
    let mut file = std::fs::File::open(path)?;
    let ct = gguf_file::Content::read(&mut file)?;
    let t = Instant::now();
    let (tokens, prompt, gen_time, load, engine, threads) = if veil {
        let k = veil_kernels::Kernels::global();
        let weights = veil_models::llama::Weights::from_gguf(&ct, &mut file, k)
            .map_err(|e| format!("Veil's kernels cannot load {path}: {e:?}"))?;
        let load = t.elapsed();
        for _ in 0..a.num("warmup", 1)? {
            run_greedy_veil(&weights, &ids, n)?;
        }
        let (tokens, prompt, gen_time) = run_greedy_veil(&weights, &ids, n)?;
        let engine = format!("veil-kernels-{}", k.level());
        (tokens, prompt, gen_time, load, engine, veil_models::llama::pool().map_or(1, |p| p.current_num_threads()))
    } else {
        let weights = ModelWeights::from_gguf(ct, &mut file, &Device::Cpu)?;
        let load = t.elapsed();
        for _ in 0..a.num("warmup", 1)? {
            run_greedy(&weights, &ids, n)?;
        }
        let (tokens, prompt, gen_time) = run_greedy(&weights, &ids, n)?;
        (tokens, prompt, gen_time, load, "candle-plain".to_owned(), candle_core::utils::get_num_threads())
    };
    // Decoding and end-of-sequence checks, after the timing.
    let ct = gguf_file::Content::read(&mut std::fs::File::open(path)?)?;
    let tok = tokenizers::Tokenizer::from_gguf(&ct)?;
    let ends: Vec<u32> = ["<|im_end|>", "<|endoftext|>"].iter().filter_map(|t| tok.token_to_id(t)).collect::<Vec<_>>();
    let first_end = tokens.iter().position(|t| ends.contains(t));
    let text = tok.decode(&tokens, true).map_err(|e| e.to_string())?;
    Ok(json!({
        "engine": engine,
        "threads": threads,
        "load_ms": ms(load),
        "prompt_tokens": ids.len(),
        "prompt_s": prompt.as_secs_f64(),
        "gen_tokens": tokens.len() - 1,
        "gen_s": gen_time.as_secs_f64(),
        "prompt_tps": ids.len() as f64 / prompt.as_secs_f64(),
        "gen_tps": (tokens.len() - 1) as f64 / gen_time.as_secs_f64(),
        "total_tokens": tokens.len(),
        "first_end_of_sequence": first_end,
        "tokens": tokens,
        "text": text,
    }))
}

fn load(a: &Args) -> Res<Value> {
    let path = a.get("model")?;
    if a.num("lock-memory", 0)? == 1 {
        // As `veil serve` does at start (mlockall current + future, on fault).
        veil_enclave::serve::lock_memory()?;
    }
    let t0 = Instant::now();
    let bytes = std::fs::read(path)?;
    let read = t0.elapsed();
    if a.kv.get("loader").map(String::as_str) == Some("runtime") {
        // The runtime's own loader on the same bytes (weights and tokenizer together).
        let t1 = Instant::now();
        let model = veil_models::chat::ChatModel::from_gguf(&bytes, &Device::Cpu)?;
        let load = t1.elapsed();
        drop(model);
        return Ok(
            json!({"bytes": bytes.len(), "read_ms": ms(read), "chat_model_ms": ms(load), "total_ms": ms(t0.elapsed())}),
        );
    }
    let t1 = Instant::now();
    let mut cursor = Cursor::new(&bytes[..]);
    let ct = gguf_file::Content::read(&mut cursor)?;
    let tok_t = Instant::now();
    let tokenizer = tokenizers::Tokenizer::from_gguf(&ct)?;
    let tokenizer_time = tok_t.elapsed();
    let weights = ModelWeights::from_gguf(ct, &mut cursor, &Device::Cpu)?;
    let parse_and_weights = t1.elapsed().saturating_sub(tokenizer_time);
    let total = t0.elapsed().saturating_sub(tokenizer_time);
    drop((weights, tokenizer));
    Ok(json!({
        "bytes": bytes.len(),
        "read_ms": ms(read),
        "weights_ms": ms(parse_and_weights),
        "tokenizer_ms": ms(tokenizer_time),
        "total_ms": ms(total),
    }))
}

fn synth(a: &Args) -> Res<Value> {
    use candle_core::quantized::{GgmlDType, QTensor, ggml_file::qtensor_from_ggml};
    use gguf_file::Value as V;
    const EMBD: usize = 2048;
    const HEADS: usize = 32;
    const KV_HEADS: usize = 4;
    const FF: usize = 5632;
    // Q8_0: 32 weights in 34 bytes (an f16 scale, then 32 i8).
    const BLOCK: usize = 32;
    const BLOCK_BYTES: usize = 34;
    let gib = a.num("gib", 2)?;
    let mut src = std::fs::File::open(a.get("model")?)?;
    let base = gguf_file::Content::read(&mut src)?;
    let vocab = match base.metadata.get("tokenizer.ggml.tokens") {
        Some(V::Array(t)) => t.len(),
        _ => return Err("--model: no tokenizer.ggml.tokens in its metadata".into()),
    };
    let tied = !base.tensor_infos.contains_key("output.weight");
    let kv = KV_HEADS * EMBD / HEADS;
    let per_layer = 2 * EMBD * EMBD + 2 * kv * EMBD + 3 * EMBD * FF;
    let fixed = vocab * EMBD * if tied { 1 } else { 2 };
    let target = gib << 30;
    let layers = ((target * BLOCK / BLOCK_BYTES).saturating_sub(fixed) / per_layer).max(1);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    // Rows of Q8_0 blocks: scale 2^-8 (f16 0x1C00), quants from an xorshift stream.
    let mut mat = |rows: usize, cols: usize| -> Res<QTensor> {
        let blocks = rows * cols / BLOCK;
        let mut raw = vec![0u8; blocks * BLOCK_BYTES];
        for b in raw.chunks_exact_mut(BLOCK_BYTES) {
            b[..2].copy_from_slice(&0x1C00u16.to_le_bytes());
            for q in b[2..].chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bytes = state.to_le_bytes();
                q.copy_from_slice(&bytes[..q.len()]);
            }
        }
        Ok(qtensor_from_ggml(GgmlDType::Q8_0, &raw, vec![rows, cols], &Device::Cpu)?)
    };
    let norm = |len: usize| -> Res<QTensor> {
        Ok(QTensor::quantize(&Tensor::ones(len, candle_core::DType::F32, &Device::Cpu)?, GgmlDType::F32)?)
    };
    let mut tensors: Vec<(String, QTensor)> = vec![("token_embd.weight".into(), mat(vocab, EMBD)?)];
    tensors.push(("output_norm.weight".into(), norm(EMBD)?));
    if !tied {
        tensors.push(("output.weight".into(), mat(vocab, EMBD)?));
    }
    for l in 0..layers {
        let p = |s: &str| format!("blk.{l}.{s}.weight");
        tensors.push((p("attn_norm"), norm(EMBD)?));
        tensors.push((p("attn_q"), mat(EMBD, EMBD)?));
        tensors.push((p("attn_k"), mat(kv, EMBD)?));
        tensors.push((p("attn_v"), mat(kv, EMBD)?));
        tensors.push((p("attn_output"), mat(EMBD, EMBD)?));
        tensors.push((p("ffn_norm"), norm(EMBD)?));
        tensors.push((p("ffn_gate"), mat(FF, EMBD)?));
        tensors.push((p("ffn_up"), mat(FF, EMBD)?));
        tensors.push((p("ffn_down"), mat(EMBD, FF)?));
    }
    // The tokenizer and chat template from the base model; the shape is ours.
    let mut md: Vec<(String, V)> = base
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer.") || k.as_str() == "general.architecture")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    md.extend([
        ("general.name".into(), V::String(format!("veil-synthetic-{gib}gib"))),
        ("llama.embedding_length".into(), V::U32(EMBD as u32)),
        ("llama.attention.head_count".into(), V::U32(HEADS as u32)),
        ("llama.attention.head_count_kv".into(), V::U32(KV_HEADS as u32)),
        ("llama.block_count".into(), V::U32(layers as u32)),
        ("llama.feed_forward_length".into(), V::U32(FF as u32)),
        ("llama.rope.dimension_count".into(), V::U32((EMBD / HEADS) as u32)),
        ("llama.attention.layer_norm_rms_epsilon".into(), V::F32(1e-5)),
        ("llama.rope.freq_base".into(), V::F32(10000.0)),
        ("llama.context_length".into(), V::U32(2048)),
        ("llama.vocab_size".into(), V::U32(vocab as u32)),
    ]);
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let out = a.get("out")?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    gguf_file::write(&mut w, &md_refs, &t_refs)?;
    std::io::Write::flush(&mut w)?;
    let bytes = std::fs::metadata(out)?.len();
    Ok(json!({"out": out, "bytes": bytes, "layers": layers, "vocab": vocab, "tied_embeddings": tied}))
}

/// One SSE stream; returns (send time, first content, last content, event payloads).
async fn stream(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> Res<(Instant, Option<Instant>, Option<Instant>, Vec<Value>)> {
    let t0 = Instant::now();
    let mut resp = client.post(url).bearer_auth(key).json(body).send().await?;
    if !resp.status().is_success() {
        return Err(format!("{}: {}", resp.status(), resp.text().await?).into());
    }
    let (mut first, mut last) = (None, None);
    let mut buf = Vec::<u8>::new();
    let mut events = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let ev: Vec<u8> = buf.drain(..end + 2).collect();
            let line = String::from_utf8_lossy(&ev);
            let Some(data) = line.trim().strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data)?;
            let content = v.pointer("/choices/0/delta/content").and_then(Value::as_str).unwrap_or("");
            if !content.is_empty() {
                first.get_or_insert(now);
                last = Some(now);
            }
            events.push(v);
        }
    }
    Ok((t0, first, last, events))
}

fn api(a: &Args) -> Res<Value> {
    let url = format!("{}/v1/chat/completions", a.get("url")?);
    let key = a.get("api-key")?.to_owned();
    let messages: Value = serde_json::from_slice(&std::fs::read(a.get("messages")?)?)?;
    let n = a.num("tokens", 64)?;
    let model = a.get("model")?.to_owned();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(a.get("ca-cert")?)?)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let client = reqwest::Client::builder().add_root_certificate(ca).http1_only().build()?;
        // Warm-up on the same keep-alive connection (TLS handshake, first-request paths).
        let warm_tokens = a.num("warmup-tokens", 1)?;
        let warm =
            json!({"model": model, "messages": messages, "max_tokens": warm_tokens, "temperature": 0, "stream": true});
        for _ in 0..a.num("warmup", 1)? {
            stream(&client, &url, &key, &warm).await?;
        }
        let body = json!({"model": model, "messages": messages, "max_tokens": n, "temperature": 0, "stream": true});
        let (t0, first, last, events) = stream(&client, &url, &key, &body).await?;
        let end = Instant::now();
        let (first, last) = (first.ok_or("no content arrived")?, last.ok_or("no content arrived")?);
        let text: String =
            events.iter().filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
        let usage = events.iter().find_map(|v| v.get("usage").cloned()).unwrap_or(Value::Null);
        let receipt = events.iter().any(|v| v.get("veil_receipt").is_some());
        let finish = events
            .iter()
            .find_map(|v| v.pointer("/choices/0/finish_reason").and_then(Value::as_str).map(str::to_owned));
        let prompt_tokens = usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
        let completion = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        let prompt = first.duration_since(t0);
        let gen_time = last.duration_since(first);
        let content_chunks = events
            .iter()
            .filter(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str).is_some_and(|c| !c.is_empty()))
            .count();
        Ok::<Value, Box<dyn std::error::Error>>(json!({
            "engine": "veil-runtime",
            "prompt_tokens": prompt_tokens,
            "prompt_s": prompt.as_secs_f64(),
            "gen_tokens": completion.saturating_sub(1),
            "gen_s": gen_time.as_secs_f64(),
            "prompt_tps": prompt_tokens as f64 / prompt.as_secs_f64(),
            "gen_tps": completion.saturating_sub(1) as f64 / gen_time.as_secs_f64(),
            "total_tokens": completion,
            "request_s": end.duration_since(t0).as_secs_f64(),
            "content_chunks": content_chunks,
            "finish_reason": finish,
            "receipt": receipt,
            "text": text,
        }))
    })
}

/// The request body fields the runtime reads (`api.rs` `ChatRequest`), for the
/// validation step.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
}

fn overhead(a: &Args) -> Res<Value> {
    use sha2::Digest as _;
    use veil_enclave::serve::receipt::{ReceiptClaims, Signer, sha256_hex};
    let iters = a.num("iters", 2000)?;
    let dir = PathBuf::from(a.get("dir")?);
    let key = veil_enclave::serve::RuntimeKey::generate()?;
    let audit =
        std::sync::Arc::new(veil_enclave::serve::audit::AuditLog::open(&dir.join("audit.log"), key.pkcs8(), &key.jwk)?);
    let signer = Signer::new(key.pkcs8(), &key.jwk)?.with_audit(audit.clone());
    let api_key = "bench-key-0123456789abcdef";
    let configured: [u8; 32] = sha2::Sha256::digest(api_key.as_bytes()).into();
    let limiter = veil_kbs::limit::Limiter::new(veil_kbs::limit::Quota { per_sec: 1e9, burst: 1e9 });
    let body = serde_json::to_vec(&json!({
        "model": "smollm2", "max_tokens": 64, "temperature": 0, "stream": true,
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Write a short story about a lighthouse keeper who finds a message in a bottle."}],
    }))?;
    // A 64-token answer's worth of text (~300 bytes), as the receipt hashes it.
    let answer = "Once upon a time, on a rocky island far from the mainland, there lived an old lighthouse keeper named \
                  Elias. Every night he climbed the winding stairs to light the lamp, and every morning he walked the \
                  shore looking for whatever the sea had brought him. One grey morning he found a small green bottle.";
    let mut samples = Vec::with_capacity(iters);
    let started = Instant::now();
    for i in 0..iters {
        let t = Instant::now();
        // Authentication: the bearer key's SHA-256, compared branch-free with the
        // configured digests; then the caller's token bucket.
        let digest: [u8; 32] = sha2::Sha256::digest(std::hint::black_box(api_key).as_bytes()).into();
        let diff = configured.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if std::hint::black_box(diff) != 0 {
            return Err("auth".into());
        }
        limiter.admit(&"key:bench".to_owned()).map_err(|_| "rate limited")?;
        // Validation: the typed parse and the refusal of unsupported fields.
        let req: ChatRequest = serde_json::from_slice(std::hint::black_box(&body))?;
        if !req.rest.is_empty() || req.messages.is_empty() {
            return Err("validation".into());
        }
        // The receipt: request and answer hashes, audit record, ES256 signature.
        let claims = ReceiptClaims {
            req: sha256_hex(&body),
            resp: sha256_hex(answer.as_bytes()),
            model: req.model,
            manifest: format!("sha256:{}", "ab".repeat(32)),
            id: format!("chatcmpl-{i:024x}"),
            iat: 0,
            seq: 0,
        };
        let token = signer.issue(claims, "key:bench")?;
        std::hint::black_box(token);
        samples.push(t.elapsed());
    }
    let mean = started.elapsed() / u32::try_from(iters).unwrap_or(u32::MAX);
    // The runtime's timer signs a checkpoint (ES256 + fdatasync) every 10 s if anything
    // was written; timed here to be charged pro rata.
    let mut cps = Vec::new();
    for _ in 0..20 {
        signer.issue(
            ReceiptClaims {
                req: String::new(),
                resp: String::new(),
                model: String::new(),
                manifest: String::new(),
                id: String::new(),
                iat: 0,
                seq: 0,
            },
            "key:bench",
        )?;
        let t = Instant::now();
        audit.checkpoint()?;
        cps.push(t.elapsed());
    }
    samples.sort_unstable();
    cps.sort_unstable();
    let pct = |v: &[Duration], p: f64| v.get(((v.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    Ok(json!({
        "iters": iters,
        "median_us": pct(&samples, 0.5).as_secs_f64() * 1e6,
        "p99_us": pct(&samples, 0.99).as_secs_f64() * 1e6,
        "mean_us": mean.as_secs_f64() * 1e6,
        "max_us": samples.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
        "slow_over_1ms": samples.iter().filter(|d| d.as_micros() > 1000).count(),
        "timer_checkpoint_median_us": pct(&cps, 0.5).as_secs_f64() * 1e6,
        "audit_checkpoint_every": veil_enclave::serve::audit::CHECKPOINT_EVERY,
        "timer_checkpoint_secs": veil_enclave::serve::AUDIT_CHECKPOINT_INTERVAL.as_secs_f64(),
    }))
}
