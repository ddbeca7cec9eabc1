//! The embedded model's forward pass (its own crate so that tests, built unoptimised, still run
//! it optimised): a llama-architecture transformer (SmolLM2) over quantised
//! GGUF weights, written for one CPU and small models.
//!
//! candle's own `quantized_llama` runs a generic per-row kernel and several hundred small tensor
//! operations per token, which held SmolLM2-135M to about 55 tokens/s on two cores. Here:
//!
//! - Weights stay in the file's blocks: Q4_1 (the layers of the shipped GGUF) and Q8_0 (its
//!   embedding, which doubles as the output layer) are used as they are — no re-quantisation, no
//!   cache file, the fewest bytes read per token. Any other tensor type is dequantised by candle
//!   and quantised to Q8_0 at load.
//! - Activations are quantised to Q8 blocks once per matrix-vector product, and each block's
//!   integer dot product runs on AVX2 (`vpmaddubsw`/`vpmaddwd`) through `safe_arch`'s safe
//!   wrappers, with a portable fallback on other CPUs.
//! - The rows of each product are split between the cores (rayon); a prompt is fed as a batch,
//!   each weight row reused for every prompt token while it is in cache.
//! - The KV cache is f32, in the order attention reads it.

use std::io::{Read, Seek};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};
use rayon::prelude::*;

/// Values per quantisation block (Q4_1, Q8_0).
const BLOCK: usize = 32;
/// Rows per unit of parallel work in a matrix-vector product.
const ROWS_PER_TASK: usize = 64;
/// Positions of KV cache kept allocated between requests.
const KEEP_POSITIONS: usize = 2048;

/// A weight matrix in quantised blocks, row-major: row `r` is blocks `r*nb .. (r+1)*nb`.
struct Matrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
}

enum Blocks {
    /// `value = d * q + m`, `q` in 0..16: low nibbles are values 0..16, high nibbles 16..32.
    Q4_1 {
        qs: Vec<[u8; 16]>,
        d: Vec<f32>,
        m: Vec<f32>,
    },
    /// `value = d * q`.
    Q8_0 { qs: Vec<[i8; 32]>, d: Vec<f32> },
}

/// A vector quantised to Q8 blocks: `value = d * q`; `s` is `d * Σq` per block (for Q4_1's offset).
#[derive(Default)]
struct Quantised {
    qs: Vec<[i8; 32]>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl Quantised {
    fn from(x: &[f32]) -> Self {
        let mut out = Self::default();
        for chunk in x.chunks(BLOCK) {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut q = [0i8; 32];
            let mut sum = 0i32;
            for (o, v) in q.iter_mut().zip(chunk) {
                // |v * inv| ≤ 127 by construction.
                *o = (v * inv).round() as i8;
                sum += i32::from(*o);
            }
            out.qs.push(q);
            out.d.push(d);
            out.s.push(d * sum as f32);
        }
        out
    }
}

impl Matrix {
    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Row `r` dotted with the quantised vector `x`.
    fn dot(&self, r: usize, x: &Quantised) -> f32 {
        let nb = self.blocks_per_row();
        let span = r * nb..(r + 1) * nb;
        match &self.blocks {
            Blocks::Q4_1 { qs, d, m } => {
                let offset: f32 = m[span.clone()].iter().zip(&x.s).map(|(m, s)| m * s).sum();
                kernel::q4_1(&qs[span.clone()], &d[span], &x.qs, &x.d) + offset
            }
            Blocks::Q8_0 { qs, d } => kernel::q8_0(&qs[span.clone()], &d[span], &x.qs, &x.d),
        }
    }

    /// `out[t][r] = row r · xs[t]` for every row, the work split between the cores.
    fn apply(&self, xs: &[Quantised], out: &mut [Vec<f32>]) {
        debug_assert_eq!(xs.len(), out.len());
        if xs.is_empty() {
            return;
        }
        for o in out.iter_mut() {
            o.clear();
            o.resize(self.rows, 0.0);
        }
        if let [x] = xs {
            out[0]
                .par_chunks_mut(ROWS_PER_TASK)
                .enumerate()
                .for_each(|(task, chunk)| {
                    for (i, o) in chunk.iter_mut().enumerate() {
                        *o = self.dot(task * ROWS_PER_TASK + i, x);
                    }
                });
            return;
        }
        // A batch (a prompt): the rows are split between the cores as for one token, and each
        // row, once loaded, is used for every token of the batch (each weight read once).
        let n = xs.len();
        let mut by_row = vec![0f32; self.rows * n];
        by_row
            .par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (i, row) in chunk.chunks_exact_mut(n).enumerate() {
                    let r = task * ROWS_PER_TASK + i;
                    for (o, x) in row.iter_mut().zip(xs) {
                        *o = self.dot(r, x);
                    }
                }
            });
        for (r, row) in by_row.chunks_exact(n).enumerate() {
            for (o, v) in out.iter_mut().zip(row) {
                o[r] = *v;
            }
        }
    }

    /// The same matrix in Q8_0 blocks.
    fn into_q8_0(self) -> Self {
        if matches!(self.blocks, Blocks::Q8_0 { .. }) {
            return self;
        }
        let dense: Vec<f32> = (0..self.rows).flat_map(|r| self.row(r)).collect();
        let q = Quantised::from(&dense);
        Self {
            rows: self.rows,
            cols: self.cols,
            blocks: Blocks::Q8_0 { qs: q.qs, d: q.d },
        }
    }

    /// Row `r` as f32s (the embedding lookup).
    fn row(&self, r: usize) -> Vec<f32> {
        let nb = self.blocks_per_row();
        let mut out = Vec::with_capacity(self.cols);
        for b in r * nb..(r + 1) * nb {
            match &self.blocks {
                Blocks::Q4_1 { qs, d, m } => {
                    let (lo, hi): (Vec<f32>, Vec<f32>) = qs[b]
                        .iter()
                        .map(|q| {
                            (
                                d[b] * f32::from(q & 0x0F) + m[b],
                                d[b] * f32::from(q >> 4) + m[b],
                            )
                        })
                        .unzip();
                    out.extend(lo);
                    out.extend(hi);
                }
                Blocks::Q8_0 { qs, d } => out.extend(qs[b].iter().map(|q| d[b] * f32::from(*q))),
            }
        }
        out
    }

    fn load<R: Read + Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        name: &str,
    ) -> Result<Self, String> {
        let tensor = content
            .tensor(reader, name, &Device::Cpu)
            .map_err(|e| format!("{name}: {e}"))?;
        let (rows, cols) = tensor.shape().dims2().map_err(|e| format!("{name}: {e}"))?;
        if !cols.is_multiple_of(BLOCK) {
            return Err(format!(
                "{name}: {cols} columns is not a multiple of {BLOCK}"
            ));
        }
        let data = tensor.data().map_err(|e| format!("{name}: {e}"))?;
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let blocks = match tensor.dtype() {
            GgmlDType::Q4_1 => {
                let raw = data.chunks_exact(20);
                Blocks::Q4_1 {
                    d: raw.clone().map(|b| f16(&b[0..2])).collect(),
                    m: raw.clone().map(|b| f16(&b[2..4])).collect(),
                    qs: raw
                        .map(|b| b[4..20].try_into().unwrap_or([0; 16]))
                        .collect(),
                }
            }
            GgmlDType::Q8_0 => {
                let raw = data.chunks_exact(34);
                Blocks::Q8_0 {
                    d: raw.clone().map(|b| f16(&b[0..2])).collect(),
                    qs: raw
                        .map(|b| std::array::from_fn(|i| i8::from_le_bytes([b[2 + i]])))
                        .collect(),
                }
            }
            _ => {
                let dense: Vec<f32> = tensor
                    .dequantize(&Device::Cpu)
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .map_err(|e| format!("{name}: {e}"))?;
                let q = Quantised::from(&dense);
                Blocks::Q8_0 { qs: q.qs, d: q.d }
            }
        };
        let expected = rows * cols / BLOCK;
        let got = match &blocks {
            Blocks::Q4_1 { d, .. } | Blocks::Q8_0 { d, .. } => d.len(),
        };
        if got != expected {
            return Err(format!("{name}: {got} blocks, expected {expected}"));
        }
        Ok(Self { rows, cols, blocks })
    }
}

fn vector<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    name: &str,
) -> Result<Vec<f32>, String> {
    content
        .tensor(reader, name, &Device::Cpu)
        .and_then(|t| t.dequantize(&Device::Cpu))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .map_err(|e| format!("{name}: {e}"))
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Query, key and value projections stacked: one product per token instead of three.
    qkv: Matrix,
    output: Matrix,
    ffn_norm: Vec<f32>,
    /// Gate and up projections stacked.
    gate_up: Matrix,
    down: Matrix,
    /// Keys and values of every fed position, `kv_dim` floats each.
    keys: Vec<f32>,
    values: Vec<f32>,
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    dim: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    context: usize,
}

impl Shape {
    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// The model, its KV cache and its position.
pub struct Engine {
    shape: Shape,
    embedding: Matrix,
    /// `output.weight`, or the embedding when the model ties them (SmolLM2 does).
    output: Option<Matrix>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// cos and sin per (position, pair), for the rotary embedding.
    rope: Vec<(f32, f32)>,
    position: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shape", &self.shape)
            .field("layers", &self.layers.len())
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

fn metadata_u32(content: &gguf_file::Content, key: &str) -> Result<usize, String> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .ok_or_else(|| format!("the model file has no {key}"))
}

fn metadata_f32(content: &gguf_file::Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// Stacks matrices with the same number of columns into one (in Q8_0 when their block types
/// differ, as in files quantised with a finer type for some tensors).
fn stack(parts: Vec<Matrix>) -> Result<Matrix, String> {
    let mixed = parts
        .windows(2)
        .any(|w| std::mem::discriminant(&w[0].blocks) != std::mem::discriminant(&w[1].blocks));
    let parts: Vec<Matrix> = if mixed {
        parts.into_iter().map(Matrix::into_q8_0).collect()
    } else {
        parts
    };
    let cols = parts.first().map_or(0, |m| m.cols);
    let rows = parts.iter().map(|m| m.rows).sum();
    let mut q4 = (Vec::new(), Vec::new(), Vec::new());
    let mut q8 = (Vec::new(), Vec::new());
    for part in parts {
        if part.cols != cols {
            return Err("stacked matrices differ in width".to_owned());
        }
        match part.blocks {
            Blocks::Q4_1 { qs, d, m } => {
                q4.0.extend(qs);
                q4.1.extend(d);
                q4.2.extend(m);
            }
            Blocks::Q8_0 { qs, d } => {
                q8.0.extend(qs);
                q8.1.extend(d);
            }
        }
    }
    let blocks = match (q4.1.is_empty(), q8.1.is_empty()) {
        (false, true) => Blocks::Q4_1 {
            qs: q4.0,
            d: q4.1,
            m: q4.2,
        },
        _ => Blocks::Q8_0 { qs: q8.0, d: q8.1 },
    };
    Ok(Matrix { rows, cols, blocks })
}

impl Engine {
    /// Reads a llama-architecture GGUF.
    pub fn load<R: Read + Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
    ) -> Result<Self, String> {
        let layers = metadata_u32(content, "llama.block_count")?;
        let dim = metadata_u32(content, "llama.embedding_length")?;
        let heads = metadata_u32(content, "llama.attention.head_count")?;
        let kv_heads = metadata_u32(content, "llama.attention.head_count_kv").unwrap_or(heads);
        let shape = Shape {
            dim,
            hidden: metadata_u32(content, "llama.feed_forward_length")?,
            heads,
            kv_heads,
            head_dim: dim / heads,
            eps: metadata_f32(content, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            context: metadata_u32(content, "llama.context_length").unwrap_or(2048),
        };
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !shape.head_dim.is_multiple_of(2)
        {
            return Err(format!("unsupported attention shape: {shape:?}"));
        }
        let base = metadata_f32(content, "llama.rope.freq_base").unwrap_or(10_000.0);
        let pairs = shape.head_dim / 2;
        let rope = (0..shape.context)
            .flat_map(|p| {
                (0..pairs).map(move |i| {
                    let theta = p as f32 / base.powf(2.0 * i as f32 / shape.head_dim as f32);
                    (theta.cos(), theta.sin())
                })
            })
            .collect();
        let mut blocks = Vec::with_capacity(layers);
        for l in 0..layers {
            let name = |n: &str| format!("blk.{l}.{n}.weight");
            let mut matrix = |n: &str| Matrix::load(content, reader, &name(n));
            let qkv = stack(vec![
                matrix("attn_q")?,
                matrix("attn_k")?,
                matrix("attn_v")?,
            ])?;
            let gate_up = stack(vec![matrix("ffn_gate")?, matrix("ffn_up")?])?;
            let output = matrix("attn_output")?;
            let down = matrix("ffn_down")?;
            blocks.push(Layer {
                attn_norm: vector(content, reader, &name("attn_norm"))?,
                ffn_norm: vector(content, reader, &name("ffn_norm"))?,
                qkv,
                output,
                gate_up,
                down,
                keys: Vec::new(),
                values: Vec::new(),
            });
        }
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(Matrix::load(content, reader, "output.weight")?)
        } else {
            None
        };
        Ok(Self {
            shape,
            embedding: Matrix::load(content, reader, "token_embd.weight")?,
            output,
            output_norm: vector(content, reader, "output_norm.weight")?,
            layers: blocks,
            rope,
            position: 0,
        })
    }

    /// Forgets every fed token (a new conversation). The cache keeps room for
    /// [`KEEP_POSITIONS`] positions; a longer request's extra memory (up to 1.5 KiB per position
    /// and layer at the full window) is given back.
    pub fn clear(&mut self) {
        self.position = 0;
        let keep = KEEP_POSITIONS * self.shape.kv_dim();
        for layer in &mut self.layers {
            for cache in [&mut layer.keys, &mut layer.values] {
                cache.clear();
                cache.shrink_to(keep);
            }
        }
    }

    /// Feeds `ids` after what was fed before; returns the logits after the last of them.
    pub fn forward(&mut self, ids: &[u32]) -> Result<Vec<f32>, String> {
        let s = self.shape;
        if ids.is_empty() {
            return Err("nothing to feed".to_owned());
        }
        if self.position + ids.len() > s.context {
            return Err(format!(
                "{} tokens exceed the model's window of {}",
                self.position + ids.len(),
                s.context
            ));
        }
        let mut xs: Vec<Vec<f32>> = ids
            .iter()
            .map(|&id| {
                let id = id as usize;
                if id < self.embedding.rows {
                    Ok(self.embedding.row(id))
                } else {
                    Err(format!("token id {id} is outside the vocabulary"))
                }
            })
            .collect::<Result<_, _>>()?;
        let n = ids.len();
        let mut qkv = vec![Vec::new(); n];
        let mut attended = vec![Vec::new(); n];
        let mut projected = vec![Vec::new(); n];
        let mut gate_up = vec![Vec::new(); n];
        let mut down = vec![Vec::new(); n];
        let kv_dim = s.kv_dim();
        let start = self.position;
        for layer in &mut self.layers {
            let normed: Vec<Quantised> = xs
                .iter()
                .map(|x| Quantised::from(&rms_norm(x, &layer.attn_norm, s.eps)))
                .collect();
            layer.qkv.apply(&normed, &mut qkv);
            for (t, row) in qkv.iter_mut().enumerate() {
                let position = start + t;
                let table = &self.rope[position * s.head_dim / 2..(position + 1) * s.head_dim / 2];
                let (q, kv) = row.split_at_mut(s.dim);
                for head in q.chunks_exact_mut(s.head_dim) {
                    rotate(head, table);
                }
                let (k, v) = kv.split_at_mut(kv_dim);
                for head in k.chunks_exact_mut(s.head_dim) {
                    rotate(head, table);
                }
                layer.keys.extend_from_slice(k);
                layer.values.extend_from_slice(v);
            }
            let (keys, values) = (&layer.keys, &layer.values);
            attended
                .par_iter_mut()
                .zip(qkv.par_iter())
                .enumerate()
                .for_each(|(t, (out, row))| {
                    *out = attend(&s, &row[..s.dim], keys, values, start + t + 1);
                });
            let attended_q: Vec<Quantised> = attended.iter().map(|a| Quantised::from(a)).collect();
            layer.output.apply(&attended_q, &mut projected);
            for (x, p) in xs.iter_mut().zip(&projected) {
                add(x, p);
            }
            let normed: Vec<Quantised> = xs
                .iter()
                .map(|x| Quantised::from(&rms_norm(x, &layer.ffn_norm, s.eps)))
                .collect();
            layer.gate_up.apply(&normed, &mut gate_up);
            let activated: Vec<Quantised> = gate_up
                .iter()
                .map(|gu| {
                    let (gate, up) = gu.split_at(s.hidden);
                    let h: Vec<f32> = gate.iter().zip(up).map(|(g, u)| silu(*g) * u).collect();
                    Quantised::from(&h)
                })
                .collect();
            layer.down.apply(&activated, &mut down);
            for (x, d) in xs.iter_mut().zip(&down) {
                add(x, d);
            }
        }
        self.position += n;
        let last = xs.last().map(|x| rms_norm(x, &self.output_norm, s.eps));
        let last = Quantised::from(&last.unwrap_or_default());
        let mut logits = vec![Vec::new()];
        self.output
            .as_ref()
            .unwrap_or(&self.embedding)
            .apply(std::slice::from_ref(&last), &mut logits);
        Ok(logits.pop().unwrap_or_default())
    }
}

fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mean = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    x.iter().zip(weight).map(|(v, w)| v * scale * w).collect()
}

/// The rotary embedding on one head, adjacent pairs rotated (GGUF's llama layout).
fn rotate(head: &mut [f32], table: &[(f32, f32)]) {
    for (pair, (cos, sin)) in head.chunks_exact_mut(2).zip(table) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos - b * sin;
        pair[1] = a * sin + b * cos;
    }
}

/// Causal attention of one token's query over the first `len` cached positions.
fn attend(s: &Shape, q: &[f32], keys: &[f32], values: &[f32], len: usize) -> Vec<f32> {
    let kv_dim = s.kv_dim();
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let mut out = vec![0f32; s.dim];
    let mut scores = vec![0f32; len];
    for (h, (query, out)) in q
        .chunks_exact(s.head_dim)
        .zip(out.chunks_exact_mut(s.head_dim))
        .enumerate()
    {
        let offset = (h / group) * s.head_dim;
        for (p, score) in scores.iter_mut().enumerate() {
            let key = &keys[p * kv_dim + offset..p * kv_dim + offset + s.head_dim];
            *score = dot(query, key) * scale;
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let mut total = 0.0;
        for score in scores.iter_mut() {
            *score = (*score - max).exp();
            total += *score;
        }
        for (p, score) in scores.iter().enumerate() {
            let value = &values[p * kv_dim + offset..p * kv_dim + offset + s.head_dim];
            let weight = score / total;
            for (o, v) in out.iter_mut().zip(value) {
                *o += weight * v;
            }
        }
    }
    out
}

/// f32 dot product in eight lanes (so the compiler vectorises it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum::<f32>()
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Block dot products: AVX2 where the build targets it (`.cargo/config.toml` sets x86-64-v3),
/// plain Rust elsewhere. Both return `Σ_b wd[b] · xd[b] · (w_b · x_b)`.
mod kernel {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    mod simd {
        use safe_arch::*;

        fn sum(v: m256) -> f32 {
            v.to_array().iter().sum()
        }

        /// `acc + scale · Σ pairs`: the sixteen i16 pair sums of a block reduced to eight i32
        /// lanes, as floats, scaled and added.
        fn accumulate(acc: m256, products: m256i, scale: f32) -> m256 {
            let sums = mul_i16_horizontal_add_m256i(products, set_splat_i16_m256i(1));
            fused_mul_add_m256(
                convert_to_m256_from_i32_m256i(sums),
                set_splat_m256(scale),
                acc,
            )
        }

        pub fn q4_1(w: &[[u8; 16]], wd: &[f32], x: &[[i8; 32]], xd: &[f32]) -> f32 {
            let mask = set_splat_i8_m128i(0x0F);
            let mut acc = zeroed_m256();
            for ((w, wd), (x, xd)) in w.iter().zip(wd).zip(x.iter().zip(xd)) {
                let packed = m128i::from(*w);
                let lo = bitand_m128i(packed, mask);
                let hi = bitand_m128i(shr_imm_u16_m128i::<4>(packed), mask);
                let q = set_m128i_m256i(hi, lo);
                let products = mul_u8i8_add_horizontal_saturating_m256i(q, m256i::from(*x));
                acc = accumulate(acc, products, wd * xd);
            }
            sum(acc)
        }

        pub fn q8_0(w: &[[i8; 32]], wd: &[f32], x: &[[i8; 32]], xd: &[f32]) -> f32 {
            let mut acc = zeroed_m256();
            for ((w, wd), (x, xd)) in w.iter().zip(wd).zip(x.iter().zip(xd)) {
                let w = m256i::from(*w);
                let x = m256i::from(*x);
                // vpmaddubsw multiplies unsigned by signed: move w's sign onto x.
                let products = mul_u8i8_add_horizontal_saturating_m256i(
                    abs_i8_m256i(w),
                    sign_apply_i8_m256i(x, w),
                );
                acc = accumulate(acc, products, wd * xd);
            }
            sum(acc)
        }
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    pub use simd::{q4_1, q8_0};

    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    pub use portable::{q4_1, q8_0};

    #[cfg_attr(
        all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ),
        allow(dead_code)
    )]
    pub mod portable {
        pub fn q4_1(w: &[[u8; 16]], wd: &[f32], x: &[[i8; 32]], xd: &[f32]) -> f32 {
            let mut total = 0f32;
            for ((w, wd), (x, xd)) in w.iter().zip(wd).zip(x.iter().zip(xd)) {
                let mut s = 0i32;
                for i in 0..16 {
                    s += i32::from(w[i] & 0x0F) * i32::from(x[i]);
                    s += i32::from(w[i] >> 4) * i32::from(x[i + 16]);
                }
                total += wd * xd * s as f32;
            }
            total
        }

        pub fn q8_0(w: &[[i8; 32]], wd: &[f32], x: &[[i8; 32]], xd: &[f32]) -> f32 {
            let mut total = 0f32;
            for ((w, wd), (x, xd)) in w.iter().zip(wd).zip(x.iter().zip(xd)) {
                let s: i32 = w
                    .iter()
                    .zip(x)
                    .map(|(a, b)| i32::from(*a) * i32::from(*b))
                    .sum();
                total += wd * xd * s as f32;
            }
            total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_kernels_agree_with_the_portable_ones_and_with_f32() {
        let x = random(576, 1);
        let q = Quantised::from(&x);
        let w = random(576, 2);
        let w8 = Quantised::from(&w);
        let exact = dot(&x, &w);
        let q8 = kernel::q8_0(&w8.qs, &w8.d, &q.qs, &q.d);
        let portable = kernel::portable::q8_0(&w8.qs, &w8.d, &q.qs, &q.d);
        assert!((q8 - portable).abs() < 1e-3, "{q8} vs {portable}");
        assert!(
            (q8 - exact).abs() < 0.05 * exact.abs().max(1.0),
            "{q8} vs {exact}"
        );

        // Q4_1: nibbles 0..16 with a per-block scale and minimum.
        let nb = 576 / BLOCK;
        let qs: Vec<[u8; 16]> = (0..nb)
            .map(|b| {
                std::array::from_fn(|i| {
                    ((b * 7 + i * 3) % 16) as u8 | ((((b + i * 5) % 16) as u8) << 4)
                })
            })
            .collect();
        let d: Vec<f32> = (0..nb).map(|b| 0.01 + b as f32 * 0.001).collect();
        let m: Vec<f32> = (0..nb).map(|b| -0.08 + b as f32 * 0.002).collect();
        let matrix = Matrix {
            rows: 1,
            cols: 576,
            blocks: Blocks::Q4_1 { qs, d, m },
        };
        let dense = matrix.row(0);
        let exact = dot(&dense, &x);
        let got = matrix.dot(0, &q);
        let portable = {
            let Blocks::Q4_1 { qs, d, m } = &matrix.blocks else {
                unreachable!()
            };
            kernel::portable::q4_1(qs, d, &q.qs, &q.d)
                + m.iter().zip(&q.s).map(|(m, s)| m * s).sum::<f32>()
        };
        assert!((got - portable).abs() < 1e-3, "{got} vs {portable}");
        assert!(
            (got - exact).abs() < 0.02 * exact.abs().max(1.0),
            "{got} vs {exact}"
        );
    }

    #[test]
    fn matrices_of_different_block_types_stack_in_q8_0() {
        let nb = 2;
        let q4 = Matrix {
            rows: 1,
            cols: 64,
            blocks: Blocks::Q4_1 {
                qs: (0..nb)
                    .map(|b| std::array::from_fn(|i| (b * 16 + i) as u8))
                    .collect(),
                d: vec![0.02; nb],
                m: vec![-0.1; nb],
            },
        };
        let w = Quantised::from(&random(128, 7));
        let q8 = Matrix {
            rows: 2,
            cols: 64,
            blocks: Blocks::Q8_0 { qs: w.qs, d: w.d },
        };
        let rows: Vec<Vec<f32>> = vec![q4.row(0), q8.row(0), q8.row(1)];
        let stacked = stack(vec![q4, q8]).unwrap();
        assert!(matches!(stacked.blocks, Blocks::Q8_0 { .. }));
        assert_eq!(stacked.rows, 3);
        for (r, want) in rows.iter().enumerate() {
            for (got, want) in stacked.row(r).iter().zip(want) {
                assert!((got - want).abs() < 0.01, "row {r}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn a_batch_gives_the_same_rows_as_one_at_a_time() {
        let rows = 130;
        let w = Quantised::from(&random(rows * 64, 3));
        let matrix = Matrix {
            rows,
            cols: 64,
            blocks: Blocks::Q8_0 { qs: w.qs, d: w.d },
        };
        let xs: Vec<Quantised> = (0..5)
            .map(|i| Quantised::from(&random(64, 10 + i)))
            .collect();
        let mut batch = vec![Vec::new(); xs.len()];
        matrix.apply(&xs, &mut batch);
        for (x, row) in xs.iter().zip(&batch) {
            let mut one = vec![Vec::new()];
            matrix.apply(std::slice::from_ref(x), &mut one);
            assert_eq!(&one[0], row);
        }
    }
}
