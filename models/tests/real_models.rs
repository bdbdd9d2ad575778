//! SmolLM2 and MiniLM from the project's model cache (`scripts/fetch-models`), loaded
//! from memory as the runtime loads them.

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use veil_models::ModelError;
use veil_models::chat::{ChatModel, FinishReason, GenParams, Message};
use veil_models::embed::{Embedder, cosine};

fn cache() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/models"))
}

fn read(rel: &str) -> Vec<u8> {
    let p = cache().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-models)", p.display()))
}

fn smollm() -> &'static ChatModel {
    static M: OnceLock<ChatModel> = OnceLock::new();
    M.get_or_init(|| ChatModel::from_gguf(&read("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"), &Device::Cpu).unwrap())
}

fn minilm() -> &'static Embedder {
    static M: OnceLock<Embedder> = OnceLock::new();
    M.get_or_init(|| {
        Embedder::from_safetensors(
            &read("minilm/model.safetensors"),
            &read("minilm/config.json"),
            &read("minilm/tokenizer.json"),
            &Device::Cpu,
        )
        .unwrap()
    })
}

fn user(text: &str) -> Vec<Message> {
    vec![Message { role: "user".into(), content: text.into() }]
}

#[test]
fn chat_template_and_tokenizer_match_the_model() {
    let m = smollm();
    let prompt = m.render(&user("Hi"), true).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = m.encode(&prompt).unwrap();
    // Special tokens are single ids (1 = <|im_start|>, 2 = <|im_end|>).
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    // SmolLM's pre-tokenizer: digits one by one, no prefix space.
    let digits = m.encode("2024").unwrap();
    assert_eq!(digits.len(), 4, "{digits:?}");
    let hello = m.encode("Hello").unwrap();
    assert_eq!(m.tokenizer().decode(&hello, false).unwrap(), "Hello");
    assert_eq!(hello.len(), 1, "{hello:?}");
    assert!(m.context_length() >= 2048);
}

#[test]
fn greedy_answer_is_sensible_deterministic_and_streams_the_same_text() {
    let m = smollm();
    let prompt = m.encode_chat(&user("What is the capital of France? Answer in one word.")).unwrap();
    let params = GenParams { max_tokens: 24, ..GenParams::default() };
    let mut streamed = String::new();
    let a = m
        .generate(&prompt, &params, |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert!(a.text.contains("Paris"), "{:?}", a.text);
    assert_eq!(streamed, a.text);
    assert_eq!(a.prompt_tokens, prompt.len());
    assert!(a.completion_tokens >= 1 && a.completion_tokens <= 24);
    let b = m.generate(&prompt, &params, |_| true).unwrap();
    assert_eq!(a.text, b.text);
}

#[test]
fn sampling_is_reproducible_by_seed_and_limits_hold() {
    let m = smollm();
    let prompt = m.encode_chat(&user("Write a sentence about the sea.")).unwrap();
    let p = |seed| GenParams { max_tokens: 12, temperature: 0.9, top_p: 0.95, seed, stop: vec![] };
    let a = m.generate(&prompt, &p(7), |_| true).unwrap();
    let b = m.generate(&prompt, &p(7), |_| true).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!((a.finish_reason, a.completion_tokens), (FinishReason::Length, 12));
    // Some other seed gives another text (10 tries: sampling at 0.9 is not degenerate).
    assert!((8..18).any(|s| m.generate(&prompt, &p(s), |_| true).unwrap().text != a.text));

    // A stop string ends the answer and is not part of it; nothing past it is streamed.
    let prompt = m.encode_chat(&user("What is the capital of France? Answer in one word.")).unwrap();
    let stop = GenParams { max_tokens: 24, stop: vec!["Paris".into()], ..GenParams::default() };
    let mut streamed = String::new();
    let g = m
        .generate(&prompt, &stop, |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(g.finish_reason, FinishReason::Stop);
    assert!(!g.text.contains("Paris") && !streamed.contains("Paris"), "{:?}", g.text);
    assert_eq!(streamed, g.text);

    // The callback can cancel.
    let mut calls = 0;
    let c = m
        .generate(&prompt, &GenParams { max_tokens: 24, ..GenParams::default() }, |_| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!((c.finish_reason, calls), (FinishReason::Cancelled, 1));
}

#[test]
fn bad_requests_are_typed_errors() {
    let m = smollm();
    let too_long = vec![42u32; m.context_length()];
    let e = m.generate(&too_long, &GenParams { max_tokens: 1, ..GenParams::default() }, |_| true).unwrap_err();
    assert!(matches!(e, ModelError::InvalidRequest(ref s) if s.contains("context length")), "{e}");
    assert!(matches!(m.generate(&[], &GenParams::default(), |_| true), Err(ModelError::InvalidRequest(_))));
    let bad = GenParams { temperature: f64::NAN, ..GenParams::default() };
    assert!(matches!(m.generate(&[1], &bad, |_| true), Err(ModelError::InvalidRequest(_))));
    let bad = GenParams { top_p: 0.0, ..GenParams::default() };
    assert!(matches!(m.generate(&[1], &bad, |_| true), Err(ModelError::InvalidRequest(_))));
    let bad = GenParams { max_tokens: 0, ..GenParams::default() };
    assert!(matches!(m.generate(&[1], &bad, |_| true), Err(ModelError::InvalidRequest(_))));
}

#[test]
fn malformed_models_are_refused_without_panicking() {
    let gguf = read("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    for bytes in [&gguf[..0], &gguf[..4], &gguf[..1000], &gguf[..gguf.len() / 2], b"GGUF\x03\0\0\0garbage".as_slice()] {
        let e = ChatModel::from_gguf(bytes, &Device::Cpu).unwrap_err();
        assert!(matches!(e, ModelError::Format(_) | ModelError::Tokenizer(_)), "{e}");
    }
    let st = read("minilm/model.safetensors");
    let cfg = read("minilm/config.json");
    let tok = read("minilm/tokenizer.json");
    assert!(Embedder::from_safetensors(&st[..1000], &cfg, &tok, &Device::Cpu).is_err());
    assert!(Embedder::from_safetensors(&st, b"{}", &tok, &Device::Cpu).is_err());
    assert!(Embedder::from_safetensors(&st, &cfg, b"not json", &Device::Cpu).is_err());
}

#[test]
fn embeddings_rank_a_paraphrase_above_an_unrelated_sentence() {
    let e = minilm();
    let inputs: Vec<String> =
        ["The cat sits on the mat.", "A cat is sitting on a rug.", "Quarterly revenue rose by four percent."]
            .map(String::from)
            .to_vec();
    let out = e.embed(&inputs).unwrap();
    assert_eq!(out.vectors.len(), 3);
    for v in &out.vectors {
        assert_eq!(v.len(), e.dim());
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "norm {n}");
    }
    let para = cosine(&out.vectors[0], &out.vectors[1]);
    let other = cosine(&out.vectors[0], &out.vectors[2]);
    assert!(para > 0.6 && other < 0.2 && para > other + 0.4, "paraphrase {para}, unrelated {other}");
    // Padding does not change a vector: alone or in a batch, the same embedding.
    let alone = e.embed(&inputs[..1]).unwrap();
    assert!(cosine(&alone.vectors[0], &out.vectors[0]) > 0.9999);
    assert_eq!(out.tokens, inputs.iter().map(|t| e.count_tokens(t).unwrap()).sum::<usize>());
}

#[test]
fn embedding_limits_are_typed_errors() {
    let e = minilm();
    assert!(matches!(e.embed(&[]), Err(ModelError::InvalidRequest(_))));
    let long = "word ".repeat(e.max_tokens() + 10);
    let err = e.embed(&[long]).unwrap_err();
    assert!(matches!(err, ModelError::InvalidRequest(ref s) if s.contains("tokens")), "{err}");
}

/// llama.cpp's logits for the same prompt, recorded once by `scripts/llama-ref`.
fn llama_cpp_ref(name: &str) -> serde_json::Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    serde_json::from_str(&std::fs::read_to_string(format!("{p}{name}")).unwrap()).unwrap()
}

fn top(logits: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.truncate(n);
    idx
}

/// Veil's kernels against llama.cpp on the chat prompts: the same ids from our tokenizer,
/// the same next token, the same top-5 set (within a tolerance where llama.cpp's own
/// ranks are nearly tied), and each of llama.cpp's top-20 logits within 0.75 (measured:
/// 0.47 and 0.44; an exact f32 forward is itself 0.21 from llama.cpp here, and both
/// engines' 8-bit activations add error of that order).
#[test]
fn next_token_logits_match_llama_cpp() {
    let m = smollm();
    let r = llama_cpp_ref("llama_cpp_ref.json");
    for p in r["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let ids: Vec<u32> = p["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(m.encode(p["text"].as_str().unwrap()).unwrap(), ids, "{name}: tokenizer differs from llama.cpp");
        let logits = m.next_logits(&ids).unwrap();
        let want: Vec<(usize, f32)> = p["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap() as f32))
            .collect();
        let ours = top(&logits, 5);
        assert_eq!(ours[0], want[0].0, "{name}: top-1 {ours:?} vs llama.cpp {want:?}");
        // Top-5 as a set, except where llama.cpp's 5th and 6th are within 0.1 of each other.
        let theirs: Vec<usize> = want.iter().take(5).map(|w| w.0).collect();
        for id in &theirs {
            let cut = want[4].1 - 0.1;
            assert!(
                ours.contains(id) || want.iter().find(|w| w.0 == *id).unwrap().1 < cut,
                "{name}: llama.cpp's top-5 {theirs:?} vs ours {ours:?}"
            );
        }
        let worst = want.iter().map(|&(id, l)| (logits[id] - l).abs()).fold(0f32, f32::max);
        assert!(worst < 0.75, "{name}: a top-20 logit differs from llama.cpp's by {worst}");
        eprintln!("{name}: top-5 {ours:?}, largest top-20 logit difference from llama.cpp {worst:.3}");
    }
}

/// Veil's forward pass and candle's `quantized_llama` on the same file: the same next
/// token, logits close, and every kernel tier generates the same greedy text.
#[test]
fn veil_kernels_agree_with_candle_and_every_tier_gives_the_same_text() {
    use veil_kernels::{Kernels, Level};
    use veil_models::chat::EngineChoice;
    let bytes = read("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let candle = ChatModel::from_gguf_with(&bytes, &Device::Cpu, EngineChoice::Candle).unwrap();
    let prompt = candle.encode_chat(&user("What is the capital of France? Answer in one word.")).unwrap();
    let reference = candle.next_logits(&prompt).unwrap();
    let params = GenParams { max_tokens: 16, ..GenParams::default() };
    let mut texts = Vec::new();
    for level in Level::ALL {
        let Some(k) = Kernels::new(level) else {
            eprintln!("{level} not available on this CPU: not compared");
            continue;
        };
        let m = ChatModel::from_gguf_with(&bytes, &Device::Cpu, EngineChoice::Veil(k)).unwrap();
        assert!(m.engine_name().starts_with(&format!("veil-kernels {level}")), "{}", m.engine_name());
        let logits = m.next_logits(&prompt).unwrap();
        assert_eq!(top(&logits, 1), top(&reference, 1), "{level}");
        let worst = top(&reference, 20).iter().map(|&i| (logits[i] - reference[i]).abs()).fold(0f32, f32::max);
        // Both quantize activations to 8 bits, in blocks of 32, but candle rounds the
        // block sums through f16 and the two differ in every product's rounding; over 30
        // layers that moves logits of ~30 by up to ~0.7 here (docs/decisions.md).
        eprintln!("{level}: top-20 logits differ from candle's by up to {worst}");
        assert!(worst < 1.0, "{level}: top-20 logits differ from candle's by up to {worst}");
        texts.push((level, m.generate(&prompt, &params, |_| true).unwrap().text));
    }
    let candle_text = candle.generate(&prompt, &params, |_| true).unwrap().text;
    assert!(candle_text.contains("Paris"), "{candle_text:?}");
    for (level, t) in &texts {
        assert_eq!(t, &texts[0].1, "{level} differs from the scalar tier");
        assert!(t.contains("Paris"), "{level}: {t:?}");
    }
}

/// Concurrent generations on one model share the one inference pool: more passes than
/// pool threads at once must neither deadlock (a pass waits only for work a running
/// worker claimed) nor change any answer.
#[test]
fn concurrent_generations_share_the_pool_and_get_the_serial_answers() {
    let m = smollm();
    let prompts: Vec<Vec<u32>> = ["Name a colour.", "What is 2 + 2?", "Say hello.", "Name a fruit."]
        .iter()
        .map(|q| m.encode_chat(&user(q)).unwrap())
        .collect();
    let params = GenParams { max_tokens: 12, ..GenParams::default() };
    let serial: Vec<String> = prompts.iter().map(|p| m.generate(p, &params, |_| true).unwrap().text).collect();
    let concurrent: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> =
            prompts.iter().map(|p| s.spawn(|| m.generate(p, &params, |_| true).unwrap().text)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(serial, concurrent);
    assert!(veil_models::llama::pool().expect("the inference pool starts here").current_num_threads() >= 1);
}
