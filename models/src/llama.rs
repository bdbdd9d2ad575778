//! The llama forward pass on Veil's quantized kernels (`veil-kernels`), for the CPU.
//!
//! Written for this project after candle-transformers' `quantized_llama` (same GGUF
//! tensor names and metadata keys, same rotary embedding convention), with the hot path
//! changed where candle's is slow on the CPU (docs/plans/issue-7-cpu-kernels.md):
//! - every matrix product goes through [`veil_kernels::matmul`]: SIMD integer dot
//!   products on 8-bit activations, one pass over the weights per call;
//! - the query/key/value projections and the gate/up projections are stacked into one
//!   matrix each (when their formats agree), so a layer makes four products, not seven;
//! - the KV cache is allocated once per request for its whole length, `[kv_head][pos][dim]`,
//!   and each step writes only its own positions: no copy of the cache per token, and
//!   grouped-query heads read their shared key/value head in place (no `repeat_kv`);
//! - the token embedding stays quantized (one row dequantized per token) instead of a
//!   113 MB f32 table;
//! - all parallel work runs on one rayon pool ([`pool`]); nothing else spins.
//!
//! Prompt tokens go through the same code as one batch (`m` rows): each weight block is
//! unpacked once for four activation rows, and attention runs over heads in parallel.

use std::io::{Read, Seek};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use veil_kernels::{ActKind, GROUP, KernelError, Kernels, Level, QActs, QType, QWeight};

use crate::{ModelError, Result};

/// The thread pool every CPU inference in the process runs on: one thread per core the
/// process may use (`RAYON_NUM_THREADS` overrides), created once. Chat generation and
/// embeddings both run inside it, so they share the cores instead of oversubscribing.
/// `None` when the OS refused the threads (logged; tried again at the next call): the
/// caller then runs on its own thread. (A one-thread pool made of the calling thread,
/// rayon's `use_current_thread`, would serve only the thread that built it and leave
/// every other caller waiting.)
pub fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    if let Some(p) = POOL.get() {
        return Some(p);
    }
    match rayon::ThreadPoolBuilder::new().thread_name(|i| format!("veil-infer-{i}")).build() {
        // Two first callers may both build one: the loser's pool is dropped.
        Ok(p) => Some(POOL.get_or_init(|| p)),
        Err(e) => {
            tracing::warn!(error = %e, "could not start the inference thread pool; this request runs on its own thread");
            None
        }
    }
}

/// Shape of the model, from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Per-head size.
    pub head_dim: usize,
    /// Feed-forward size.
    pub n_ff: usize,
    /// Layers.
    pub n_layer: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// RMS norm epsilon.
    pub eps: f32,
    /// Positions the rotary table covers.
    pub max_pos: usize,
}

/// Query, key and value projections: one stacked matrix, or three when their formats differ.
#[derive(Debug)]
enum Qkv {
    Fused(QWeight),
    Split([QWeight; 3]),
}

/// Gate and up projections, likewise.
#[derive(Debug)]
enum GateUp {
    Fused(QWeight),
    Split([QWeight; 2]),
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    qkv: Qkv,
    o: QWeight,
    ffn_norm: Vec<f32>,
    gate_up: GateUp,
    down: QWeight,
}

/// The weights of a llama-architecture GGUF, quantized, shared by every [`Session`].
#[derive(Debug)]
pub struct Weights {
    cfg: Config,
    embed: QWeight,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    head: QWeight,
    /// Rotary table: `[pos][head_dim / 2]` cosines and sines.
    cos: Vec<f32>,
    sin: Vec<f32>,
    kernels: Kernels,
}

fn qtype(t: GgmlDType) -> Option<QType> {
    Some(match t {
        GgmlDType::Q4_0 => QType::Q4_0,
        GgmlDType::Q4_1 => QType::Q4_1,
        GgmlDType::Q8_0 => QType::Q8_0,
        GgmlDType::Q4K => QType::Q4K,
        GgmlDType::Q6K => QType::Q6K,
        _ => return None,
    })
}

fn kerr(e: KernelError) -> ModelError {
    ModelError::Format(e.to_string())
}

/// The tensors of one GGUF, read under a byte budget: candle checks that each tensor
/// lies inside the file but not that tensors do not overlap, so without the budget a
/// small file whose many tensors share one region would make the loader copy that
/// region once per tensor.
struct Source<'a, R> {
    ct: &'a gguf_file::Content,
    reader: &'a mut R,
    budget: u64,
    file_len: u64,
}

impl<R: Read + Seek> Source<'_, R> {
    fn spend(&mut self, name: &str, size: u64) -> std::result::Result<(), LoadError> {
        self.budget = self.budget.checked_sub(size).ok_or_else(|| {
            ModelError::Format(format!("{name}: the tensors claim more bytes than the file's {}", self.file_len))
        })?;
        Ok(())
    }

    /// A tensor through candle (norms: small, any float format), its size charged to
    /// the budget before it is read.
    fn tensor(&mut self, name: &str) -> std::result::Result<QTensor, LoadError> {
        let info =
            self.ct.tensor_infos.get(name).ok_or_else(|| ModelError::Format(format!("the GGUF lacks {name}")))?;
        let (bs, ts) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
        let size = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|n| bs > 0 && n % bs == 0)
            .and_then(|n| (n / bs).checked_mul(ts))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| ModelError::Format(format!("{name}: {:?} is not a whole number of blocks", info.shape)))?;
        self.spend(name, size)?;
        Ok(self.ct.tensor(self.reader, name, &Device::Cpu).map_err(|e| ModelError::Format(format!("{name}: {e}")))?)
    }

    /// The format of matrix `name`, if it is one these kernels run.
    fn qtype(&self, name: &str) -> std::result::Result<QType, LoadError> {
        let info =
            self.ct.tensor_infos.get(name).ok_or_else(|| ModelError::Format(format!("the GGUF lacks {name}")))?;
        qtype(info.ggml_dtype).ok_or_else(|| LoadError::Unsupported(format!("{name} is {:?}", info.ggml_dtype)))
    }

    /// The matrices `parts` (name, rows), all `cols` wide and of one format, stacked in
    /// that order. Their bytes go from the reader straight into the one buffer: a 2 GiB
    /// model read through candle's `QTensor` was copied four times on its way into the
    /// kernels' layout, which made the runtime's load 3× candle's (docs/decisions.md).
    fn matrix(&mut self, parts: &[(&str, usize)], cols: usize) -> std::result::Result<QWeight, LoadError> {
        let (first, _) = parts.first().ok_or_else(|| ModelError::Format("no matrix named".into()))?;
        let ty = self.qtype(first)?;
        let mut rows = 0usize;
        let mut plan = Vec::with_capacity(parts.len());
        for &(name, r) in parts {
            let info =
                self.ct.tensor_infos.get(name).ok_or_else(|| ModelError::Format(format!("the GGUF lacks {name}")))?;
            if self.qtype(name)? != ty {
                return Err(
                    ModelError::Format(format!("{name} is {:?}, not {ty:?} as {first}", info.ggml_dtype)).into()
                );
            }
            if info.shape.dims() != [r, cols] {
                return Err(ModelError::Format(format!("{name} has shape {:?}, not [{r}, {cols}]", info.shape)).into());
            }
            let size = ty
                .row_bytes(cols)
                .map_err(kerr)?
                .checked_mul(r)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| ModelError::Format(format!("{name}: size overflows")))?;
            self.spend(name, size)?;
            let at = self
                .ct
                .tensor_data_offset
                .checked_add(info.offset)
                .ok_or_else(|| ModelError::Format(format!("{name}: offset overflows")))?;
            rows = rows.checked_add(r).ok_or_else(|| ModelError::Format("row count overflows".into()))?;
            plan.push((name, at, size));
        }
        let total: u64 = plan.iter().map(|p| p.2).sum(); // each within the file's length
        let total = usize::try_from(total).map_err(ModelError::format)?;
        // Room for the interleaved layout's padding rows (up to one group), which is made
        // in place: capacity not written is not touched.
        let pad = ty.row_bytes(cols).map_err(kerr)?.saturating_mul(GROUP);
        let mut data = Vec::new();
        data.try_reserve_exact(total.saturating_add(pad))
            .map_err(|_| ModelError::Format(format!("{first}: cannot allocate {total} bytes")))?;
        for (name, at, size) in plan {
            self.reader.seek(std::io::SeekFrom::Start(at)).map_err(ModelError::format)?;
            let got = self.reader.by_ref().take(size).read_to_end(&mut data).map_err(ModelError::format)?;
            if u64::try_from(got).ok() != Some(size) {
                return Err(ModelError::Format(format!("{name}: the file ends inside the tensor")).into());
            }
        }
        Ok(QWeight::new(ty, rows, cols, data).map_err(kerr)?)
    }
}

/// Why the Veil kernels cannot run a file (the caller falls back to candle's path).
#[derive(Debug)]
pub enum LoadError {
    /// A tensor format or model feature these kernels do not have.
    Unsupported(String),
    /// The file is malformed.
    Model(ModelError),
}

impl From<ModelError> for LoadError {
    fn from(e: ModelError) -> Self {
        LoadError::Model(e)
    }
}

impl Weights {
    /// Reads the weights of `ct` from `reader` (the GGUF's bytes).
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        kernels: Kernels,
    ) -> std::result::Result<Weights, LoadError> {
        let md = |k: &str| {
            ct.metadata
                .get(k)
                .ok_or_else(|| ModelError::Format(format!("the GGUF lacks {k}")))
                .and_then(|v| v.to_u64().map_err(ModelError::format))
                .and_then(|v| usize::try_from(v).map_err(ModelError::format))
        };
        if ct.metadata.get("llama.expert_count").and_then(|v| v.to_u64().ok()).unwrap_or(0) > 1 {
            return Err(LoadError::Unsupported("mixture-of-experts layers".into()));
        }
        let n_embd = md("llama.embedding_length")?;
        let n_head = md("llama.attention.head_count")?;
        let n_kv_head = md("llama.attention.head_count_kv")?;
        let n_layer = md("llama.block_count")?;
        let n_ff = md("llama.feed_forward_length")?;
        let eps = ct
            .metadata
            .get("llama.attention.layer_norm_rms_epsilon")
            .and_then(|v| v.to_f32().ok())
            .ok_or_else(|| ModelError::Format("the GGUF lacks llama.attention.layer_norm_rms_epsilon".into()))?;
        let freq_base = ct.metadata.get("llama.rope.freq_base").and_then(|v| v.to_f32().ok()).unwrap_or(10_000.0);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || n_embd % n_head != 0 || n_layer == 0 {
            return Err(
                ModelError::Format(format!("{n_head} heads, {n_kv_head} key/value heads, width {n_embd}")).into()
            );
        }
        let head_dim = n_embd / n_head;
        if head_dim % 2 != 0 || md("llama.rope.dimension_count").unwrap_or(head_dim) != head_dim {
            return Err(LoadError::Unsupported("a rotary dimension other than the head size".into()));
        }
        if !(eps.is_finite() && eps > 0.0 && freq_base.is_finite() && freq_base > 0.0) {
            return Err(ModelError::Format(format!("norm epsilon {eps}, rope base {freq_base}")).into());
        }
        let max_pos = md("llama.context_length").unwrap_or(4096).clamp(1, crate::chat::MAX_CONTEXT);

        let file_len = reader.seek(std::io::SeekFrom::End(0)).map_err(ModelError::format)?;
        let mut src = Source { ct, reader, budget: file_len, file_len };
        // The SIMD tiers multiply 32-block formats fastest in 8-row interleaved groups
        // (veil_kernels' format docs); the scalar tier reads either layout, so weights
        // loaded for it stay as in the file. Not the embedding: it is read a row at a time.
        let lay = |w: QWeight| -> std::result::Result<QWeight, LoadError> {
            if kernels.level() == Level::Scalar { Ok(w) } else { Ok(w.interleave().map_err(kerr)?) }
        };
        let vector = |t: QTensor, name: &str, len: usize| -> std::result::Result<Vec<f32>, LoadError> {
            let v = t
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(ModelError::format)?;
            if v.len() != len {
                return Err(ModelError::Format(format!("{name} has {} values, not {len}", v.len())).into());
            }
            Ok(v)
        };

        let n_vocab =
            ct.tensor_infos.get("token_embd.weight").and_then(|i| i.shape.dims().first().copied()).unwrap_or(0);
        let embed = src.matrix(&[("token_embd.weight", n_vocab)], n_embd)?;
        let head = if ct.tensor_infos.contains_key("output.weight") {
            lay(src.matrix(&[("output.weight", n_vocab)], n_embd)?)?
        } else {
            lay(embed.clone())? // tied embeddings
        };
        let norm = vector(src.tensor("output_norm.weight")?, "output_norm.weight", n_embd)?;
        let kv = n_kv_head * head_dim;
        // Capped: the count comes from the file, the tensors it names are checked below.
        let mut layers = Vec::with_capacity(n_layer.min(256));
        for l in 0..n_layer {
            let p = |s: &str| format!("blk.{l}.{s}.weight");
            let (q, k, v) = (p("attn_q"), p("attn_k"), p("attn_v"));
            // Matrices of one format are stacked as they are read (one product each).
            let qkv = if src.qtype(&q)? == src.qtype(&k)? && src.qtype(&k)? == src.qtype(&v)? {
                Qkv::Fused(lay(src.matrix(&[(&q, n_embd), (&k, kv), (&v, kv)], n_embd)?)?)
            } else {
                Qkv::Split([
                    lay(src.matrix(&[(&q, n_embd)], n_embd)?)?,
                    lay(src.matrix(&[(&k, kv)], n_embd)?)?,
                    lay(src.matrix(&[(&v, kv)], n_embd)?)?,
                ])
            };
            let (gate, up) = (p("ffn_gate"), p("ffn_up"));
            let gate_up = if src.qtype(&gate)? == src.qtype(&up)? {
                GateUp::Fused(lay(src.matrix(&[(&gate, n_ff), (&up, n_ff)], n_embd)?)?)
            } else {
                GateUp::Split([lay(src.matrix(&[(&gate, n_ff)], n_embd)?)?, lay(src.matrix(&[(&up, n_ff)], n_embd)?)?])
            };
            layers.push(Layer {
                attn_norm: vector(src.tensor(&p("attn_norm"))?, &p("attn_norm"), n_embd)?,
                qkv,
                o: lay(src.matrix(&[(&p("attn_output"), n_embd)], n_embd)?)?,
                ffn_norm: vector(src.tensor(&p("ffn_norm"))?, &p("ffn_norm"), n_embd)?,
                gate_up,
                down: lay(src.matrix(&[(&p("ffn_down"), n_embd)], n_ff)?)?,
            });
        }
        // As candle's quantized_llama: θ_i = base^(-2i/d), angles in f32.
        let half = head_dim / 2;
        let theta: Vec<f32> = (0..half).map(|i| 1.0 / freq_base.powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for pos in 0..max_pos {
            for &t in &theta {
                let a = pos as f32 * t;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cfg = Config { n_embd, n_head, n_kv_head, head_dim, n_ff, n_layer, n_vocab, eps, max_pos };
        Ok(Weights { cfg, embed, layers, norm, head, cos, sin, kernels })
    }

    /// The model's shape.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The kernel tier in use.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The same weights on another kernel tier (tests compare tiers on one model).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// The formats of the matrices, for the load log: e.g. `Q4_1 (head Q8_0)`.
    pub fn describe(&self) -> String {
        let mut tys: Vec<&str> = Vec::new();
        for l in &self.layers {
            let ws: Vec<&QWeight> = match (&l.qkv, &l.gate_up) {
                (Qkv::Fused(a), GateUp::Fused(b)) => vec![a, b, &l.o, &l.down],
                (Qkv::Fused(a), GateUp::Split(b)) => vec![a, &b[0], &b[1], &l.o, &l.down],
                (Qkv::Split(a), GateUp::Fused(b)) => vec![&a[0], &a[1], &a[2], b, &l.o, &l.down],
                (Qkv::Split(a), GateUp::Split(b)) => vec![&a[0], &a[1], &a[2], &b[0], &b[1], &l.o, &l.down],
            };
            for w in ws {
                if !tys.contains(&w.ty().name()) {
                    tys.push(w.ty().name());
                }
            }
        }
        format!("{} (head {})", tys.join("+"), self.head.ty().name())
    }
}

/// One request's state: its KV cache and scratch buffers.
#[derive(Debug)]
pub struct Session<'w> {
    w: &'w Weights,
    cap: usize,
    len: usize,
    /// Per layer `[kv_head][cap][head_dim]`.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl<'w> Session<'w> {
    /// A session for at most `cap` positions (prompt and answer).
    pub fn new(w: &'w Weights, cap: usize) -> Result<Session<'w>> {
        if cap == 0 || cap > w.cfg.max_pos {
            return Err(ModelError::InvalidRequest(format!(
                "{cap} positions requested; the model has {}",
                w.cfg.max_pos
            )));
        }
        let per = w.cfg.n_kv_head * cap * w.cfg.head_dim;
        let k = (0..w.cfg.n_layer).map(|_| vec![0f32; per]).collect();
        let v = (0..w.cfg.n_layer).map(|_| vec![0f32; per]).collect();
        Ok(Session { w, cap, len: 0, k, v })
    }

    /// Positions used so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been run yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs `ids` at the next positions and returns the logits of the last one.
    ///
    /// Runs on [`pool`]: this thread and one [`Team`] worker per other pool thread,
    /// which spin for work for the length of the pass (see [`Team`] for why).
    pub fn forward(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let w: &'w Weights = self.w;
        let Some(pool) = pool() else {
            return self.forward_in_pool(&Team::new(w.kernels, 1), ids);
        };
        pool.install(|| {
            let threads = rayon::current_num_threads();
            let team = Team::new(w.kernels, threads);
            rayon::scope(|s| {
                for _ in 1..threads {
                    s.spawn(|_| team.work());
                }
                // Stops the workers however the pass ends (a panic included), so the
                // scope can end.
                let _stop = StopOnDrop(&team);
                self.forward_in_pool(&team, ids)
            })
        })
    }

    fn forward_in_pool(&mut self, team: &Team<'w>, ids: &[u32]) -> Result<Vec<f32>> {
        let w: &'w Weights = self.w;
        let c = &w.cfg;
        let m = ids.len();
        let pos0 = self.len;
        if m == 0 || pos0 + m > self.cap {
            return Err(ModelError::InvalidRequest(format!(
                "{m} tokens at position {pos0} exceed the session's {} positions",
                self.cap
            )));
        }
        let (d, hd, kvd) = (c.n_embd, c.head_dim, c.n_kv_head * c.head_dim);
        let mut x = vec![0f32; m * d];
        for (row, &id) in x.chunks_exact_mut(d).zip(ids) {
            let id = usize::try_from(id).unwrap_or(usize::MAX);
            w.embed
                .dequantize_row(id, row)
                .map_err(|_| ModelError::InvalidRequest(format!("token id {id} is outside the vocabulary")))?;
        }
        let mut h = vec![0f32; m * d];
        let mut q = vec![0f32; m * d];
        let mut k = vec![0f32; m * kvd];
        let mut v = vec![0f32; m * kvd];
        let mut att = vec![0f32; m * d];
        let mut o = vec![0f32; m * d];
        let mut gu = vec![0f32; m * 2 * c.n_ff];
        let mut act = vec![0f32; m * c.n_ff];
        let mut qkv = Vec::new();
        for (l, layer) in w.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.eps, &mut h);
            match &layer.qkv {
                Qkv::Fused(wqkv) => {
                    qkv.resize(m * (d + 2 * kvd), 0.0);
                    team.matmul(wqkv, &h, m, &mut qkv)?;
                    for (i, row) in qkv.chunks_exact(d + 2 * kvd).enumerate() {
                        q[i * d..(i + 1) * d].copy_from_slice(&row[..d]);
                        k[i * kvd..(i + 1) * kvd].copy_from_slice(&row[d..d + kvd]);
                        v[i * kvd..(i + 1) * kvd].copy_from_slice(&row[d + kvd..]);
                    }
                }
                Qkv::Split([wq, wk, wv]) => {
                    team.matmul(wq, &h, m, &mut q)?;
                    team.matmul(wk, &h, m, &mut k)?;
                    team.matmul(wv, &h, m, &mut v)?;
                }
            }
            for i in 0..m {
                let pos = pos0 + i;
                rope(&mut q[i * d..(i + 1) * d], hd, pos, &w.cos, &w.sin);
                rope(&mut k[i * kvd..(i + 1) * kvd], hd, pos, &w.cos, &w.sin);
                for kh in 0..c.n_kv_head {
                    let at = (kh * self.cap + pos) * hd;
                    self.k[l][at..at + hd].copy_from_slice(&k[i * kvd + kh * hd..i * kvd + (kh + 1) * hd]);
                    self.v[l][at..at + hd].copy_from_slice(&v[i * kvd + kh * hd..i * kvd + (kh + 1) * hd]);
                }
            }
            attention(c, &q, &self.k[l], &self.v[l], self.cap, pos0, m, &mut att);
            team.matmul(&layer.o, &att, m, &mut o)?;
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

            rms_norm(&x, &layer.ffn_norm, c.eps, &mut h);
            let f = c.n_ff;
            match &layer.gate_up {
                GateUp::Fused(wgu) => team.matmul(wgu, &h, m, &mut gu)?,
                GateUp::Split([wg, wu]) => {
                    let (mut gt, mut ut) = (vec![0f32; m * f], vec![0f32; m * f]);
                    team.matmul(wg, &h, m, &mut gt)?;
                    team.matmul(wu, &h, m, &mut ut)?;
                    // The fused layout: row i = [gate_i, up_i].
                    for (i, dst) in gu.chunks_exact_mut(2 * f).enumerate() {
                        dst[..f].copy_from_slice(&gt[i * f..(i + 1) * f]);
                        dst[f..].copy_from_slice(&ut[i * f..(i + 1) * f]);
                    }
                }
            }
            for (a, row) in act.chunks_exact_mut(f).zip(gu.chunks_exact(2 * f)) {
                let (g, u) = row.split_at(f);
                for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            }
            team.matmul(&layer.down, &act, m, &mut o)?;
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
        }
        self.len += m;
        let last = &x[(m - 1) * d..];
        let mut hn = vec![0f32; d];
        rms_norm(last, &w.norm, c.eps, &mut hn);
        let mut logits = vec![0f32; c.n_vocab];
        team.matmul(&w.head, &hn, 1, &mut logits)?;
        Ok(logits)
    }
}

/// Below this many multiply-adds a product runs on the calling thread alone.
const SERIAL_WORK: usize = 1 << 16;

/// The threads of one forward pass.
///
/// A token's forward pass is ~120 matrix products of ~50–100 µs each. Handing each one
/// to idle pool threads costs a wake-up (a futex and, in a VM, an inter-processor
/// interrupt: tens of µs), which at two threads ate most of the second thread's gain. So
/// for the length of one pass the other pool threads spin on `epoch` for the next
/// product (as llama.cpp's threads do between graph nodes), and stop when the pass ends.
///
/// No thread ever waits for work it has not claimed: each product is cut into chunks
/// that the calling thread and the workers claim from an atomic counter, and the caller
/// waits only for chunks a running worker has claimed. So if the workers never start
/// (every pool thread busy with another pass), the caller does all the work itself and
/// nothing deadlocks.
struct Team<'s> {
    kernels: Kernels,
    threads: usize,
    epoch: AtomicUsize,
    job: Mutex<Option<Arc<Job<'s>>>>,
    stop: AtomicBool,
}

type ChunkResult = (usize, std::result::Result<Vec<f32>, KernelError>);

/// One matrix product, cut into `chunks` row ranges of `per` rows.
struct Job<'s> {
    w: &'s QWeight,
    acts: QActs,
    per: usize,
    chunks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Chunks computed by workers: (chunk, `[row][m]` values).
    results: Mutex<Vec<ChunkResult>>,
}

impl Job<'_> {
    fn rows(&self, c: usize) -> std::ops::Range<usize> {
        c * self.per..((c + 1) * self.per).min(self.w.rows())
    }
}

struct StopOnDrop<'t, 's>(&'t Team<'s>);

struct CountOnDrop<'a>(&'a AtomicUsize);

impl Drop for CountOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

impl Drop for StopOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

impl<'s> Team<'s> {
    fn new(kernels: Kernels, threads: usize) -> Self {
        Team { kernels, threads, epoch: AtomicUsize::new(0), job: Mutex::new(None), stop: AtomicBool::new(false) }
    }

    /// A worker: claims chunks of each new product until the pass ends.
    fn work(&self) {
        let mut seen = 0;
        let mut spins = 0u32;
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch == seen {
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                spins = spins.wrapping_add(1);
                // Mostly a pause; now and then give the core away in case it is shared.
                if spins % 8192 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            seen = epoch;
            let job = self.job.lock().ok().and_then(|j| j.clone());
            let Some(job) = job else { continue };
            loop {
                let c = job.next.fetch_add(1, Ordering::AcqRel);
                if c >= job.chunks {
                    break;
                }
                // Counts the chunk as done however it ends, so a panic here cannot leave
                // the caller waiting for it forever (its result is then missing, which the
                // caller reports as an error).
                let _counted = CountOnDrop(&job.done);
                let r = job.rows(c);
                let mut out = vec![0f32; r.len() * job.acts.rows()];
                let res = veil_kernels::matmul_rows(self.kernels, job.w, &job.acts, r, &mut out).map(|()| out);
                if let Ok(mut results) = job.results.lock() {
                    results.push((c, res));
                }
            }
        }
    }

    /// `out = x · wᵀ` (`x`: `m × cols`, `out`: `m × rows`), shared with the workers.
    fn matmul(&self, w: &'s QWeight, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        let ierr = |e: KernelError| ModelError::Inference(e.to_string());
        let mut acts = QActs::default();
        acts.quantize(x, m, w.cols(), ActKind::for_type(w.ty())).map_err(ierr)?;
        let n = w.rows();
        if out.len() != n * m {
            return Err(ModelError::Inference(format!("{} outputs for {m}×{n}", out.len())));
        }
        // The kernels write `[row][m]`; `scatter_rows` puts each piece into `[m][row]`.
        let mut scratch = Vec::new();
        let mut rows_into_out = |r: std::ops::Range<usize>, acts: &QActs, out: &mut [f32]| {
            if m == 1 {
                let o = out.get_mut(r.clone()).ok_or_else(|| KernelError::Shape("rows past the output".into()))?;
                return veil_kernels::matmul_rows(self.kernels, w, acts, r, o);
            }
            scratch.resize(r.len() * m, 0.0);
            let start = r.start;
            veil_kernels::matmul_rows(self.kernels, w, acts, r, &mut scratch)?;
            veil_kernels::scatter_rows(&scratch, m, start, out)
        };
        if self.threads == 1 || n * m * w.cols() < SERIAL_WORK {
            rows_into_out(0..n, &acts, out).map_err(ierr)?;
        } else {
            // A few chunks per thread, in whole 8-row groups (`QWeight::row_align`).
            let per = n.div_ceil(if m == 1 { self.threads } else { 4 * self.threads }).next_multiple_of(GROUP);
            let chunks = n.div_ceil(per);
            let job = Arc::new(Job {
                w,
                acts,
                per,
                chunks,
                next: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                results: Mutex::new(Vec::with_capacity(chunks)),
            });
            if let Ok(mut slot) = self.job.lock() {
                *slot = Some(job.clone());
            }
            self.epoch.fetch_add(1, Ordering::AcqRel);
            let mut result = Ok(());
            let mut chunks_mine = 0;
            loop {
                let c = job.next.fetch_add(1, Ordering::AcqRel);
                if c >= chunks {
                    break;
                }
                chunks_mine += 1;
                result = result.and(rows_into_out(job.rows(c), &job.acts, out));
                job.done.fetch_add(1, Ordering::Release);
            }
            // Only chunks a running worker claimed are outstanding.
            while job.done.load(Ordering::Acquire) < chunks {
                std::hint::spin_loop();
            }
            result.map_err(ierr)?;
            let results = std::mem::take(
                &mut *job.results.lock().map_err(|_| ModelError::Inference("a worker panicked".into()))?,
            );
            if results.len() + chunks_mine != chunks {
                return Err(ModelError::Inference("a worker failed mid-product".into()));
            }
            for (c, v) in results {
                let v = v.map_err(ierr)?;
                veil_kernels::scatter_rows(&v, m, job.rows(c).start, out).map_err(ierr)?;
            }
        }
        Ok(())
    }
}

/// `out = x / rms(x) · w`, per row of `w.len()`.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum();
        let scale = 1.0 / (ss / d as f32 + eps).sqrt();
        for ((o, &x), &w) in or.iter_mut().zip(xr).zip(w) {
            *o = x * scale * w;
        }
    }
}

/// Rotates each head of `x` (adjacent pairs, GGML's llama convention) for `pos`.
fn rope(x: &mut [f32], hd: usize, pos: usize, cos: &[f32], sin: &[f32]) {
    let half = hd / 2;
    let (c, s) = (&cos[pos * half..(pos + 1) * half], &sin[pos * half..(pos + 1) * half]);
    for head in x.chunks_exact_mut(hd) {
        for ((p, &c), &s) in head.chunks_exact_mut(2).zip(c).zip(s) {
            let (a, b) = (p[0], p[1]);
            p[0] = a * c - b * s;
            p[1] = a * s + b * c;
        }
    }
}

/// `a · b` in eight running sums, so that it vectorizes (one running sum is a serial
/// chain of dependent adds the compiler may not reorder).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Causal attention of `m` queries at positions `pos0..` over the cache prefix
/// `0..pos0 + m`; grouped heads read their key/value head in place. On the calling
/// thread: at these sizes it is a few percent of a pass (a long-context model would
/// want it on the team).
#[allow(clippy::too_many_arguments)]
fn attention(c: &Config, q: &[f32], kc: &[f32], vc: &[f32], cap: usize, pos0: usize, m: usize, out: &mut [f32]) {
    let (hd, d) = (c.head_dim, c.n_embd);
    let group = c.n_head / c.n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    // One head, all queries: into `o` laid out [m][hd].
    let head = |h: usize, o: &mut [f32]| {
        let kh = h / group;
        let (kb, vb) = (&kc[kh * cap * hd..(kh + 1) * cap * hd], &vc[kh * cap * hd..(kh + 1) * cap * hd]);
        let mut scores = vec![0f32; pos0 + m];
        for i in 0..m {
            let n = pos0 + i + 1;
            let qi = &q[i * d + h * hd..i * d + (h + 1) * hd];
            let mut max = f32::NEG_INFINITY;
            for (t, s) in scores[..n].iter_mut().enumerate() {
                let kt = &kb[t * hd..(t + 1) * hd];
                *s = dot(qi, kt) * scale;
                max = max.max(*s);
            }
            let mut sum = 0f32;
            for s in &mut scores[..n] {
                *s = (*s - max).exp();
                sum += *s;
            }
            let oi = &mut o[i * hd..(i + 1) * hd];
            oi.fill(0.0);
            for (t, &s) in scores[..n].iter().enumerate() {
                let p = s / sum;
                for (o, &v) in oi.iter_mut().zip(&vb[t * hd..(t + 1) * hd]) {
                    *o += p * v;
                }
            }
        }
    };
    let mut heads = vec![0f32; c.n_head * m * hd];
    heads.chunks_mut(m * hd).enumerate().for_each(|(h, o)| head(h, o));
    for (h, ho) in heads.chunks_exact(m * hd).enumerate() {
        for i in 0..m {
            out[i * d + h * hd..i * d + (h + 1) * hd].copy_from_slice(&ho[i * hd..(i + 1) * hd]);
        }
    }
}

/// The fuzz entry point (`fuzz/fuzz_targets/gguf_llama.rs`): a hostile GGUF through
/// candle's header parser (its panics are caught, as [`crate::chat::ChatModel`] catches
/// them) and then through [`Weights::from_gguf`] and one forward step *uncaught*, so a
/// panic in Veil's own loader or forward pass is a crash the fuzzer reports.
#[doc(hidden)]
pub fn fuzz_gguf(data: &[u8]) {
    let mut cursor = std::io::Cursor::new(data);
    // libFuzzer's panic hook aborts on every panic, caught or not, and candle's parser
    // panics on some headers (`general.alignment` = 0 divides by zero), which the runtime
    // catches: silence the hook for candle's parse alone (the fuzzer runs one thread).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gguf_file::Content::read(&mut cursor)));
    std::panic::set_hook(hook);
    let Ok(Ok(ct)) = parsed else {
        return;
    };
    // Shapes this large would only make the fuzzer run out of memory, not find bugs.
    if ct.tensor_infos.values().any(|t| t.shape.elem_count() > 1 << 22) {
        return;
    }
    if let Ok(w) = Weights::from_gguf(&ct, &mut cursor, Kernels::scalar()) {
        if let Ok(mut s) = Session::new(&w, 4.min(w.config().max_pos)) {
            let _ = s.forward(&[0, 1]);
        }
    }
}
