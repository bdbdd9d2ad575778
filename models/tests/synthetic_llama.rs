//! Veil's llama forward against candle's `quantized_llama` on small synthetic GGUF files,
//! one per weight format the kernels support (including the K-quants, which SmolLM2
//! does not use), and the loader's refusals and fallbacks. No model cache needed.

use std::io::Cursor;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use veil_kernels::{Kernels, Level};
use veil_models::llama::{LoadError, Session, Weights};

const EMBD: usize = 256;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FF: usize = 512;
const LAYERS: usize = 2;
const VOCAB: usize = 64;

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A 2-layer llama GGUF whose matrices are `ty` (norms f32), as bytes.
fn gguf(ty: GgmlDType, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let dev = Device::Cpu;
    let mut mat = |rows: usize, cols: usize, scale: f32, ty: GgmlDType| {
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.f() * scale).collect();
        QTensor::quantize(&Tensor::from_vec(v, (rows, cols), &dev).unwrap(), ty).unwrap()
    };
    let norm = |len: usize| {
        let v: Vec<f32> = (0..len).map(|i| 0.8 + (i % 7) as f32 * 0.05).collect();
        QTensor::quantize(&Tensor::from_vec(v, len, &dev).unwrap(), GgmlDType::F32).unwrap()
    };
    let kv = KV_HEADS * EMBD / HEADS;
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), mat(VOCAB, EMBD, 1.0, ty)),
        ("output_norm.weight".into(), norm(EMBD)),
        ("output.weight".into(), mat(VOCAB, EMBD, 0.2, ty)),
    ];
    for l in 0..LAYERS {
        let p = |s: &str| format!("blk.{l}.{s}.weight");
        tensors.push((p("attn_norm"), norm(EMBD)));
        tensors.push((p("attn_q"), mat(EMBD, EMBD, 0.15, ty)));
        tensors.push((p("attn_k"), mat(kv, EMBD, 0.15, ty)));
        tensors.push((p("attn_v"), mat(kv, EMBD, 0.15, ty)));
        tensors.push((p("attn_output"), mat(EMBD, EMBD, 0.1, ty)));
        tensors.push((p("ffn_norm"), norm(EMBD)));
        tensors.push((p("ffn_gate"), mat(FF, EMBD, 0.1, ty)));
        tensors.push((p("ffn_up"), mat(FF, EMBD, 0.1, ty)));
        tensors.push((p("ffn_down"), mat(EMBD, FF, 0.1, ty)));
    }
    use gguf_file::Value as V;
    let md: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llama".into())),
        ("llama.embedding_length", V::U32(EMBD as u32)),
        ("llama.attention.head_count", V::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", V::U32(KV_HEADS as u32)),
        ("llama.block_count", V::U32(LAYERS as u32)),
        ("llama.feed_forward_length", V::U32(FF as u32)),
        ("llama.rope.dimension_count", V::U32((EMBD / HEADS) as u32)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("llama.rope.freq_base", V::F32(10000.0)),
        ("llama.context_length", V::U32(128)),
    ];
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
    out.into_inner()
}

fn veil(bytes: &[u8], k: Kernels) -> Result<Weights, LoadError> {
    let mut c = Cursor::new(bytes);
    let ct = gguf_file::Content::read(&mut c).unwrap();
    Weights::from_gguf(&ct, &mut c, k)
}

fn candle_logits(bytes: &[u8], steps: &[&[u32]]) -> Vec<Vec<f32>> {
    let mut c = Cursor::new(bytes);
    let ct = gguf_file::Content::read(&mut c).unwrap();
    let mut m = ModelWeights::from_gguf(ct, &mut c, &Device::Cpu).unwrap();
    let mut pos = 0;
    steps
        .iter()
        .map(|ids| {
            let input = Tensor::new(*ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let l = m.forward(&input, pos).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
            pos += ids.len();
            l
        })
        .collect()
}

#[test]
fn every_format_and_tier_matches_candle_on_a_synthetic_llama() {
    let steps: [&[u32]; 4] = [&[3, 17, 42, 5, 9, 60, 1], &[12], &[33], &[7]];
    for ty in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
        let bytes = gguf(ty, 0x5eed ^ ty as u64);
        let reference = candle_logits(&bytes, &steps);
        for level in Level::ALL {
            let Some(k) = Kernels::new(level) else { continue };
            let w = veil(&bytes, k).unwrap_or_else(|e| panic!("{ty:?}: {e:?}"));
            let mut s = Session::new(&w, 16).unwrap();
            for (i, (ids, want)) in steps.iter().zip(&reference).enumerate() {
                let got = s.forward(ids).unwrap();
                assert_eq!(got.len(), VOCAB);
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                // Both engines quantize activations to 8 bits, differently rounded.
                assert!(worst <= 0.05 * scale, "{ty:?} {level} step {i}: off by {worst} (logits up to {scale})");
            }
            assert_eq!(s.len(), 10);
        }
    }
}

#[test]
fn the_loader_refuses_or_hands_back_what_it_cannot_run() {
    // f16 matrices: no kernel here, so `Unsupported` (the chat model falls back to candle).
    let bytes = gguf(GgmlDType::F16, 1);
    assert!(matches!(veil(&bytes, Kernels::scalar()), Err(LoadError::Unsupported(_))));
    // A session longer than the model's context, and tokens past it or the vocabulary.
    let w = veil(&gguf(GgmlDType::Q8_0, 2), Kernels::scalar()).unwrap();
    assert!(Session::new(&w, 129).is_err());
    assert!(Session::new(&w, 0).is_err());
    let mut s = Session::new(&w, 4).unwrap();
    assert!(s.forward(&[VOCAB as u32]).is_err());
    assert!(s.forward(&[]).is_err());
    assert!(s.forward(&[1, 2, 3, 4, 5]).is_err());
    s.forward(&[1, 2, 3, 4]).unwrap();
    assert!(s.forward(&[1]).is_err(), "the session is full");
    // Truncated files and bad metadata are errors, not panics.
    let good = gguf(GgmlDType::Q4_1, 3);
    for cut in [good.len() / 2, good.len() - 1] {
        let mut c = Cursor::new(&good[..cut]);
        if let Ok(ct) = gguf_file::Content::read(&mut c) {
            assert!(Weights::from_gguf(&ct, &mut c, Kernels::scalar()).is_err());
        }
    }
    let mut c = Cursor::new(&good[..]);
    let mut ct = gguf_file::Content::read(&mut c).unwrap();
    ct.metadata.insert("llama.attention.head_count_kv".into(), gguf_file::Value::U32(3));
    assert!(matches!(Weights::from_gguf(&ct, &mut c, Kernels::scalar()), Err(LoadError::Model(_))));
    ct.metadata.insert("llama.attention.head_count_kv".into(), gguf_file::Value::U32(2));
    ct.metadata.insert("llama.block_count".into(), gguf_file::Value::U64(1 << 40));
    assert!(matches!(Weights::from_gguf(&ct, &mut c, Kernels::scalar()), Err(LoadError::Model(_))));
    veil_models::llama::fuzz_gguf(&good);
    veil_models::llama::fuzz_gguf(&good[..100]);
}

/// The loader reads matrices straight from the file's bytes; a file whose tensors
/// overlap (so that reading them all would copy more than the file), or that points a
/// tensor past its end, is refused with the reason.
#[test]
fn the_loader_reads_each_byte_of_the_file_at_most_once() {
    let good = gguf(GgmlDType::Q8_0, 4);
    let load = |edit: &dyn Fn(&mut gguf_file::Content)| {
        let mut c = Cursor::new(&good[..]);
        let mut ct = gguf_file::Content::read(&mut c).unwrap();
        edit(&mut ct);
        match Weights::from_gguf(&ct, &mut c, Kernels::scalar()) {
            Err(LoadError::Model(e)) => e.to_string(),
            Err(LoadError::Unsupported(e)) => panic!("unsupported, not refused: {e}"),
            Ok(_) => panic!("loaded"),
        }
    };
    // Every layer's down projection on top of layer 0's FFN gate: together more bytes
    // than the file.
    let overlap = load(&|ct| {
        let at = ct.tensor_infos["blk.0.ffn_gate.weight"].offset;
        for (name, info) in ct.tensor_infos.iter_mut() {
            if name.ends_with("ffn_up.weight") || name.ends_with("ffn_down.weight") || name.ends_with("attn_q.weight") {
                info.offset = at;
            }
        }
        // Many more layers than the file has, all reading the same tensors.
        ct.metadata.insert("llama.block_count".into(), gguf_file::Value::U32(64));
        for l in 2..64 {
            for t in
                ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
            {
                let i = &ct.tensor_infos[&format!("blk.0.{t}.weight")];
                let info = gguf_file::TensorInfo { ggml_dtype: i.ggml_dtype, shape: i.shape.clone(), offset: i.offset };
                ct.tensor_infos.insert(format!("blk.{l}.{t}.weight"), info);
            }
        }
    });
    assert!(overlap.contains("claim more bytes than the file"), "{overlap}");
    let past_end = load(&|ct| {
        ct.tensor_infos.get_mut("blk.1.ffn_down.weight").unwrap().offset = good.len() as u64;
    });
    assert!(past_end.contains("blk.1.ffn_down.weight") && past_end.contains("ends inside"), "{past_end}");
}

/// Fuzz finding (2026-12-04, `gguf_llama`): candle's GGUF parser divides by
/// `general.alignment`, so 0 there is a panic inside candle (`gguf_file.rs`, `div_ceil`).
/// The runtime's loader catches it and refuses the model with a format error. (That the
/// fuzz entry point keeps the panic from libFuzzer's hook is `tests/fuzz_gguf_hook.rs`,
/// alone in its binary because the panic hook is global.)
#[test]
fn a_zero_alignment_that_panics_candles_parser_is_a_format_error() {
    let mut f = b"GGUF".to_vec();
    f.extend(3u32.to_le_bytes()); // version
    f.extend(0u64.to_le_bytes()); // tensors
    f.extend(1u64.to_le_bytes()); // metadata entries
    let key = b"general.alignment";
    f.extend((key.len() as u64).to_le_bytes());
    f.extend(key);
    f.extend(4u32.to_le_bytes()); // u32
    f.extend(0u32.to_le_bytes());
    // candle 0.11.1 panics on it (were it to return an error instead, the outcome below
    // would be the same).
    let e = veil_models::chat::ChatModel::from_gguf(&f, &Device::Cpu).unwrap_err();
    assert!(matches!(e, veil_models::ModelError::Format(_)), "{e}");
}
