//! The `cuda` build on a real GPU: the runtime's CUDA path (candle's `quantized_llama`
//! on the device [`veil_models::select_device`] picks, as `veil serve` loads it) against
//! the same GGUF on the CPU (candle's `quantized_llama`, and Veil's kernels, the CPU
//! engine the runtime serves with).
//!
//! ```text
//! cargo build --release -p veil-models --features cuda --example gpu_check
//! gpu_check MODEL.gguf [TOKENS]
//! ```
//!
//! Prints one JSON object: the device, the first-token logits of each engine compared
//! with candle on the CPU (argmax, largest difference), the greedy answers and their
//! common prefix, load, prompt and generation times. Exits non-zero when no CUDA device
//! is found, a run fails, the GPU's first token differs from the CPU's, or the greedy
//! answers part within their first 32 characters; later tokens may part where two
//! candidates are nearly tied, which the output shows rather than fails.
use std::error::Error;
use std::time::Instant;

use candle_core::Device;
use serde_json::{Value, json};
use veil_models::chat::{ChatModel, EngineChoice, GenParams, Message};

type Res<T> = Result<T, Box<dyn Error>>;

fn argmax(l: &[f32]) -> usize {
    l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// The greedy answer of `m` to `ids`: its text, token count and timings, as JSON.
fn answer(m: &ChatModel, ids: &[u32], tokens: usize) -> Res<Value> {
    let params = GenParams { max_tokens: tokens, ..GenParams::default() };
    let t = Instant::now();
    let g = m.generate(ids, &params, |_| true)?;
    let total = t.elapsed();
    let gen_s = g.generation_time.as_secs_f64();
    Ok(json!({
        "engine": m.engine_name(),
        "text": g.text,
        "completion_tokens": g.completion_tokens,
        "prompt_ms": g.prompt_time.as_secs_f64() * 1e3,
        "generation_ms": gen_s * 1e3,
        "generation_tokens_per_s": if gen_s > 0.0 { (g.completion_tokens.saturating_sub(1)) as f64 / gen_s } else { 0.0 },
        "total_ms": total.as_secs_f64() * 1e3,
    }))
}

fn top(l: &[f32], n: usize) -> Vec<usize> {
    let mut i: Vec<usize> = (0..l.len()).collect();
    i.sort_by(|a, b| l[*b].total_cmp(&l[*a]));
    i.truncate(n);
    i
}

fn compare(reference: &[f32], other: &[f32]) -> Value {
    let range = reference.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
        - reference.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let max_diff = reference.iter().zip(other).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let top10 = top(reference, 10);
    let top10_diff = top10.iter().map(|&i| (reference[i] - other[i]).abs()).fold(0f32, f32::max);
    let other5 = top(other, 5);
    json!({
        "argmax": argmax(other),
        "same_argmax": argmax(reference) == argmax(other),
        "top5_in_reference_top10": other5.iter().filter(|i| top10.contains(i)).count(),
        "max_abs_diff_reference_top10": top10_diff,
        "max_abs_diff": max_diff,
        "max_abs_diff_of_range": max_diff / range,
        "len": other.len(),
    })
}

fn common_prefix_chars(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: gpu_check MODEL.gguf [TOKENS]")?;
    let tokens: usize = args.next().map_or(Ok(64), |t| t.parse())?;
    let gpu = veil_models::select_device(true);
    if !gpu.is_cuda() {
        let why = Device::new_cuda(0).err().map_or_else(|| "the `cuda` feature is off".into(), |e| e.to_string());
        return Err(format!("no CUDA device ({why}): this check needs the `cuda` build on a machine with a GPU").into());
    }
    let bytes = std::fs::read(&path)?;
    let t = Instant::now();
    let on_gpu = ChatModel::from_gguf(&bytes, &gpu)?;
    let gpu_load_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let candle_cpu = ChatModel::from_gguf_with(&bytes, &Device::Cpu, EngineChoice::Candle)?;
    let candle_load_ms = t.elapsed().as_secs_f64() * 1e3;
    let veil_cpu = ChatModel::from_gguf(&bytes, &Device::Cpu)?;
    let messages = [Message {
        role: "user".into(),
        content: "What is the capital of France? Answer in one sentence, then name two other French cities.".into(),
    }];
    let ids = veil_cpu.encode_chat(&messages)?;
    let reference = candle_cpu.next_logits(&ids)?;
    let first_gpu = on_gpu.next_logits(&ids)?;
    let first_veil = veil_cpu.next_logits(&ids)?;
    let gpu_vs_cpu = compare(&reference, &first_gpu);
    let text = |v: &Value| v["text"].as_str().unwrap_or_default().to_owned();
    // Warm the GPU once (kernel loading, cuBLAS handles) before the timed answer.
    answer(&on_gpu, &ids, 4)?;
    let a_gpu = answer(&on_gpu, &ids, tokens)?;
    let a_cpu = answer(&candle_cpu, &ids, tokens)?;
    let a_veil = answer(&veil_cpu, &ids, tokens)?;
    // The same first token, and the same greedy answer as candle on the CPU up to 32
    // characters (or all of it): the engines round differently (the GPU's prompt
    // matrix products run in reduced precision), so later near-ties may part.
    let (tg, tc) = (text(&a_gpu), text(&a_cpu));
    let agree = common_prefix_chars(&tg, &tc) >= tg.chars().count().max(tc.chars().count()).min(32);
    let pass = gpu_vs_cpu["same_argmax"] == json!(true) && agree;
    let out = json!({
        "device": veil_models::device_name(&gpu),
        "prompt_tokens": ids.len(),
        "load_ms": {"cuda": gpu_load_ms, "candle_cpu": candle_load_ms},
        "first_token_vs_candle_cpu": {"cuda": gpu_vs_cpu, "veil_cpu": compare(&reference, &first_veil)},
        "answers": {"cuda": a_gpu, "candle_cpu": a_cpu, "veil_cpu": a_veil},
        "common_prefix_chars": {
            "cuda_vs_candle_cpu": common_prefix_chars(&text(&a_gpu), &text(&a_cpu)),
            "cuda_vs_veil_cpu": common_prefix_chars(&text(&a_gpu), &text(&a_veil)),
            "answer_chars": text(&a_cpu).chars().count(),
        },
        "pass": pass,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !pass {
        return Err("the GPU's answer disagrees with the CPU's (first token or the start of the greedy answer)".into());
    }
    Ok(())
}
