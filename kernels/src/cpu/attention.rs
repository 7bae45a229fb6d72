//! The CPU gated attention ([`GatedAttention`]) and the CPU twins of the CUDA backend's
//! kernels (`kernels/cuda/attention.cu`, `softmax.cu`).
//!
//! Two paths, the same maths: for many queries and keys, each batch row's heads go through
//! two GEMMs around a materialised softmax of at most [`GEMM_QUERY_BLOCK`] queries' logits
//! per thread (never the whole `[B, H, Q, K]`); for few (template pointwise attention: one query, four keys) a
//! streaming loop over key tiles of [`ATTENTION_KEY_TILE`] with an online softmax, exactly
//! the CUDA kernel's algorithm, which is also its reference.

use std::ops::Range;

use super::{gemm_strided, softmax_row_unscaled};
use crate::backend::{GatedAttention, MASK_BIAS};
use crate::{exp, sigmoid, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// Keys per tile of the streaming attention (the CUDA kernel's `FF_ATT_BK`).
pub const ATTENTION_KEY_TILE: usize = 32;

/// Queries and keys from which a head goes through GEMMs rather than the streaming loop.
const GEMM_MIN_LEN: usize = 8;

/// Most queries whose logits one thread holds at a time (`[block, K]`).
const GEMM_QUERY_BLOCK: usize = 128;

/// Multiply-adds below which parallel tasks are grouped (rayon's per-task cost).
const TASK_MIN_WORK: usize = 1 << 15;

/// `x` rounded to the nearest bf16 (ties to even; NaN stays NaN), as an f32: what the CUDA
/// kernels' bf16 storage keeps of a value (`cvt.rn.bf16.f32`).
pub fn round_to_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let u = x.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

/// The sizes of one call and where batch row `b`'s rows start.
#[derive(Clone, Copy)]
struct Dims {
    h: usize,
    nq: usize,
    nk: usize,
    d: usize,
    dv: usize,
}

impl Dims {
    /// Offset of `[b, n, head, 0]` in a `[B, N, H, width]` tensor.
    fn at(&self, b: usize, n: usize, rows: usize, head: usize, width: usize) -> usize {
        ((b * rows + n) * self.h + head) * width
    }
}

/// One parallel task: queries `queries` of batch row `bi`, whose key mask adds
/// `mask_bias` to the logits (`None` when every key is kept: it would add zeros).
struct Task<'a, 'b> {
    a: &'b GatedAttention<'a>,
    dims: Dims,
    bi: usize,
    queries: Range<usize>,
    mask_bias: Option<Vec<f32>>,
}

/// `MASK_BIAS * (mask - 1)` per key, `None` when every key is kept.
fn key_mask_bias(mask: Option<&[f32]>) -> Option<Vec<f32>> {
    let mask = mask.filter(|m| m.iter().any(|&m| m != 1.0))?;
    Some(mask.iter().map(|m| MASK_BIAS * (m - 1.0)).collect())
}

thread_local! {
    /// Per-thread query, logit and output buffers of [`gemm_query_block`], reused across
    /// tasks (a fresh `[queries, K]` per task cost as much as its softmax). Nothing inside
    /// its borrow may call into rayon (the GEMMs run with `Parallelism::None`): a stolen
    /// task on the same thread would find the buffer borrowed.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Which algorithm runs each head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Path {
    Gemm,
    Streaming,
}

/// The gated attention → `[B, Q, H, Dv]`, on the path that suits its sizes.
pub(super) fn gated_attention(a: &GatedAttention<'_>) -> Tensor {
    let (_, _, nq, nk, _, _) = a.dims();
    let path = if nq >= GEMM_MIN_LEN && nk >= GEMM_MIN_LEN {
        Path::Gemm
    } else {
        Path::Streaming
    };
    gated_attention_on(a, path)
}

/// The gated attention on a given path. Tasks are batch rows, split by queries when there
/// are fewer rows than threads to share them.
pub(super) fn gated_attention_on(a: &GatedAttention<'_>, path: Path) -> Tensor {
    let (b, h, nq, nk, d, dv) = a.dims();
    let dims = Dims { h, nq, nk, d, dv };
    let shape = [b, nq, h, dv];
    if shape.contains(&0) || nk == 0 {
        return Tensor::zeros(&shape); // no keys: nothing to average (the CUDA kernel's zeros)
    }
    let row = h * dv;
    let splits = (4 * rayon::current_num_threads()).div_ceil(b).min(nq);
    let per_task = nq.div_ceil(splits);
    // Batch rows per block: several when each is tiny (one query over four keys).
    let rows_per_block = TASK_MIN_WORK.div_ceil(nq * nk * h * (d + dv)).max(1);
    Tensor::par_blocks(&shape, rows_per_block * nq * row, |blk, block| {
        block
            .par_chunks_mut(nq * row)
            .with_min_len(rows_per_block)
            .enumerate()
            .for_each(|(r, ob)| {
                let bi = blk * rows_per_block + r;
                ob.par_chunks_mut(per_task * row)
                    .enumerate()
                    .for_each(|(t, dst)| {
                        let task = Task {
                            a,
                            dims,
                            bi,
                            queries: t * per_task..t * per_task + dst.len() / row,
                            mask_bias: key_mask_bias(
                                a.mask.map(|m| &m.data()[bi * nk..(bi + 1) * nk]),
                            ),
                        };
                        match path {
                            Path::Gemm => gemm_rows(&task, dst),
                            Path::Streaming => streaming_rows(&task, dst),
                        }
                    })
            })
    })
}

/// `dst = sigmoid(gate) * scale * o`, `scale` being the softmax's `1 / sum`.
fn write_gated(gate: Option<&[f32]>, o: &[f32], scale: f32, dst: &mut [f32]) {
    match gate {
        Some(g) => {
            for ((y, o), g) in dst.iter_mut().zip(o).zip(g) {
                *y = scale * o * sigmoid(*g);
            }
        }
        None => dst.iter_mut().zip(o).for_each(|(y, o)| *y = scale * o),
    }
}

/// Query `i`'s gate of head `head` in batch row `bi`, `[Dv]`.
fn gate_row<'t>(
    a: &GatedAttention<'t>,
    dims: Dims,
    bi: usize,
    i: usize,
    head: usize,
) -> Option<&'t [f32]> {
    a.gate
        .map(|g| &g.data()[dims.at(bi, i, dims.nq, head, dims.dv)..][..dims.dv])
}

/// The task's queries in equal blocks of at most [`GEMM_QUERY_BLOCK`] (513 queries are
/// five blocks of 103, not four of 128 and a one-row GEMM), every head.
fn gemm_rows(t: &Task<'_, '_>, dst: &mut [f32]) {
    let row = t.dims.h * t.dims.dv;
    let n = t.queries.len();
    let per_block = n.div_ceil(n.div_ceil(GEMM_QUERY_BLOCK).max(1));
    for (blk, dst) in dst.chunks_mut(per_block * row).enumerate() {
        let start = t.queries.start + blk * per_block;
        gemm_query_block(t, start..start + dst.len() / row, dst);
    }
}

/// Queries `queries` of batch row `bi`, every head: logits `[n, K]` = scaled queries times
/// keys (one GEMM), masked and biased softmax per row, times values (a second GEMM), the
/// softmax's scale applied to the output.
fn gemm_query_block(t: &Task<'_, '_>, queries: Range<usize>, dst: &mut [f32]) {
    let (a, dims, bi, mask_bias) = (t.a, t.dims, t.bi, t.mask_bias.as_deref());
    let Dims { h, nq, nk, d, dv } = dims;
    let n = queries.len();
    let (q, k, v) = (a.q.data(), a.k.data(), a.v.data());
    SCRATCH.with_borrow_mut(|scratch| {
        let len = n * (d + nk + dv + 1);
        if scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        let (qs, rest) = scratch.split_at_mut(n * d); // [n, D]
        let (p, rest) = rest.split_at_mut(n * nk); // [n, K]
        let (o, rest) = rest.split_at_mut(n * dv); // [n, Dv]
        let scales = &mut rest[..n]; // [n]
        for head in 0..h {
            for (r, i) in queries.clone().enumerate() {
                let src = &q[dims.at(bi, i, nq, head, d)..][..d];
                qs[r * d..(r + 1) * d]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(s, x)| *s = a.scale * x);
            }
            // Keys as a [D, K] operand: element (c, j) at j * H * D + c.
            let keys = &k[dims.at(bi, 0, nk, head, d)..];
            let (hd, hdv) = ((h * d) as isize, (h * dv) as isize);
            gemm_strided(
                n,
                nk,
                d,
                p,
                qs,
                (d as isize, 1),
                keys,
                (1, hd),
                false,
                Parallelism::None,
            );
            for (r, i) in queries.clone().enumerate() {
                let bias = a.bias.map(|t| &t.data()[(head * nq + i) * nk..][..nk]);
                let row = &mut p[r * nk..(r + 1) * nk];
                scales[r] = softmax_row_unscaled(row, [mask_bias, bias]);
            }
            let values = &v[dims.at(bi, 0, nk, head, dv)..]; // [K, Dv], rows H * Dv apart
            gemm_strided(
                n,
                dv,
                nk,
                o,
                p,
                (nk as isize, 1),
                values,
                (hdv, 1),
                false,
                Parallelism::None,
            );
            for (r, i) in queries.clone().enumerate() {
                let at = (r * h + head) * dv;
                write_gated(
                    gate_row(a, dims, bi, i, head),
                    &o[r * dv..(r + 1) * dv],
                    scales[r],
                    &mut dst[at..at + dv],
                );
            }
        }
    });
}

/// Queries `queries` of batch row `bi`, every head, streamed over key tiles with an online
/// softmax: the CUDA kernel's algorithm.
fn streaming_rows(t: &Task<'_, '_>, dst: &mut [f32]) {
    let (a, dims, bi, mask_bias) = (t.a, t.dims, t.bi, t.mask_bias.as_deref());
    let Dims { h, nq, nk, d, dv } = dims;
    let (q, k, v) = (a.q.data(), a.k.data(), a.v.data());
    let mut qs = vec![0f32; d];
    let mut s = [0f32; ATTENTION_KEY_TILE];
    let mut o = vec![0f32; dv];
    for (r, i) in t.queries.clone().enumerate() {
        for head in 0..h {
            qs.iter_mut()
                .zip(&q[dims.at(bi, i, nq, head, d)..][..d])
                .for_each(|(s, x)| *s = a.scale * x);
            let bias = a
                .bias
                .map(|t| &t.data()[(head * nq + i) * nk..(head * nq + i + 1) * nk]);
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            o.fill(0.0);
            for k0 in (0..nk).step_by(ATTENTION_KEY_TILE) {
                let n = ATTENTION_KEY_TILE.min(nk - k0);
                for (j, s) in s[..n].iter_mut().enumerate() {
                    let key = &k[dims.at(bi, k0 + j, nk, head, d)..][..d];
                    let mut x: f32 = qs.iter().zip(key).map(|(a, b)| a * b).sum();
                    if let Some(mask_bias) = mask_bias {
                        x += mask_bias[k0 + j];
                    }
                    if let Some(bias) = bias {
                        x += bias[k0 + j];
                    }
                    *s = x;
                }
                let tile_max = s[..n].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let m_new = m.max(tile_max);
                let corr = exp(m - m_new); // 0 on the first tile (clamped: ~1e-38)
                let corr = if m == f32::NEG_INFINITY { 0.0 } else { corr };
                l *= corr;
                o.iter_mut().for_each(|x| *x *= corr);
                for (j, s) in s[..n].iter().enumerate() {
                    let p = exp(s - m_new);
                    l += p;
                    let val = &v[dims.at(bi, k0 + j, nk, head, dv)..][..dv];
                    o.iter_mut().zip(val).for_each(|(o, v)| *o += p * v);
                }
                m = m_new;
            }
            let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
            let at = (r * h + head) * dv;
            write_gated(
                gate_row(a, dims, bi, i, head),
                &o,
                inv,
                &mut dst[at..at + dv],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::cpu::tests::rand_tensor;
    use crate::CpuBackend;

    /// The definition in f64: materialised logits, two-pass softmax.
    fn naive(a: &GatedAttention<'_>) -> Vec<f32> {
        let (b, h, nq, nk, d, dv) = a.dims();
        let mut out = vec![0f32; b * h * nq * dv];
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..nq {
                    let row = (bi * nq + i) * h + hi; // [b, i, h]
                    let key = |j: usize| (bi * nk + j) * h + hi; // [b, j, h]
                    let logits: Vec<f64> = (0..nk)
                        .map(|j| {
                            let mut x = (0..d)
                                .map(|c| {
                                    (a.scale * a.q.data()[row * d + c]) as f64
                                        * a.k.data()[key(j) * d + c] as f64
                                })
                                .sum::<f64>() as f32;
                            if let Some(m) = a.mask {
                                x += MASK_BIAS * (m.data()[bi * nk + j] - 1.0);
                            }
                            if let Some(t) = a.bias {
                                x += t.data()[(hi * nq + i) * nk + j];
                            }
                            x as f64
                        })
                        .collect();
                    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = logits.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..dv {
                        let mut y = (0..nk)
                            .map(|j| e[j] / sum * a.v.data()[key(j) * dv + c] as f64)
                            .sum::<f64>() as f32;
                        if let Some(g) = a.gate {
                            y *= 1.0 / (1.0 + (-g.data()[row * dv + c]).exp());
                        }
                        out[row * dv + c] = y;
                    }
                }
            }
        }
        out
    }

    fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
        let scale = want.iter().map(|x| x.abs()).fold(0f32, f32::max).max(1e-6);
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
            / scale
    }

    /// Key masks with partial rows, a fully masked row (attends uniformly, as AF2) and a
    /// fully kept row.
    fn key_mask(b: usize, nk: usize) -> Tensor {
        Tensor::from_fn(&[b, nk], |i| {
            let (bi, j) = (i / nk, i % nk);
            match bi % 3 {
                0 => f32::from((j * 7 + bi) % 5 != 0),
                1 => 0.0,
                _ => 1.0,
            }
        })
    }

    /// Both paths against the definition on random inputs of one shape, with and without
    /// bias, mask and gate.
    fn check_shape(b: usize, h: usize, nq: usize, nk: usize, d: usize) {
        let q = rand_tensor(&[b, nq, h, d], 1);
        let k = rand_tensor(&[b, nk, h, d], 2);
        let v = rand_tensor(&[b, nk, h, d], 3);
        let gate = rand_tensor(&[b, nq, h, d], 4);
        let mut bias = rand_tensor(&[h, nq, nk], 5);
        bias.data_mut().iter_mut().for_each(|x| *x *= 4.0);
        let mask = key_mask(b, nk);
        for (with_bias, with_mask, with_gate) in [
            (true, true, true),
            (false, false, false),
            (true, false, true),
        ] {
            let a = GatedAttention {
                q: &q,
                k: &k,
                v: &v,
                bias: with_bias.then_some(&bias),
                mask: with_mask.then_some(&mask),
                gate: with_gate.then_some(&gate),
                scale: (d as f32).powf(-0.5),
            };
            let want = naive(&a);
            let tag = format!("{b}x{h}x{nq}x{nk}x{d} {with_bias}/{with_mask}/{with_gate}");
            for path in [Path::Gemm, Path::Streaming] {
                let got = gated_attention_on(&a, path);
                assert_eq!(got.shape(), &[b, nq, h, d]);
                let e = max_rel_err(got.data(), &want);
                assert!(e < 1e-5, "{path:?} {tag}: {e}");
            }
            assert_eq!(CpuBackend.gated_attention(&a).shape(), &[b, nq, h, d]);
        }
    }

    #[test]
    fn both_paths_match_the_definition() {
        // Key counts below, at and across tile boundaries (not multiples of 32); MSA row
        // attention (8 heads of 32), triangle attention (4 of 32), extra-MSA heads of 8,
        // a 64-wide head, one query over four keys (template pointwise attention), a
        // single batch row (queries split across tasks) and no keys at all.
        for (b, h, nq, nk, d) in [
            (3, 2, 37, 45, 8),
            (3, 4, 5, 32, 32),
            (4, 8, 33, 65, 32),
            (3, 1, 17, 100, 64),
            (2, 2, 1, 1, 16),
            (5, 4, 1, 4, 16),
            (1, 8, 67, 67, 32),
            (2, 2, 3, 0, 16),
        ] {
            check_shape(b, h, nq, nk, d);
        }
    }

    #[test]
    fn long_query_runs_go_in_blocks() {
        // One thread: 300 queries of 3 batch rows are 2 tasks of 150, each run as two query
        // blocks of 75.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| check_shape(3, 2, 300, 40, 16));
    }

    #[test]
    fn fully_masked_rows_attend_uniformly() {
        let (b, h, nq, nk, d) = (2, 2, 9, 70, 16);
        let q = rand_tensor(&[b, nq, h, d], 6);
        let k = rand_tensor(&[b, nk, h, d], 7);
        let v = rand_tensor(&[b, nk, h, d], 8);
        let bias = rand_tensor(&[h, nq, nk], 9);
        let mask = Tensor::zeros(&[b, nk]);
        let a = GatedAttention {
            q: &q,
            k: &k,
            v: &v,
            bias: Some(&bias),
            mask: Some(&mask),
            gate: None,
            scale: 0.25,
        };
        for path in [Path::Gemm, Path::Streaming] {
            let out = gated_attention_on(&a, path);
            for (bi, hi, c) in
                (0..b).flat_map(|bi| (0..h).flat_map(move |hi| (0..d).map(move |c| (bi, hi, c))))
            {
                let mean: f32 = (0..nk)
                    .map(|j| v.data()[((bi * nk + j) * h + hi) * d + c])
                    .sum::<f32>()
                    / nk as f32;
                for i in 0..nq {
                    let y = out.data()[((bi * nq + i) * h + hi) * d + c];
                    assert!(
                        (y - mean).abs() < 1e-5,
                        "{path:?}: {y} vs uniform mean {mean}"
                    );
                }
            }
        }
    }

    #[test]
    fn masked_softmax_matches_the_definition() {
        let (b, h, nq, nk) = (3, 2, 5, 40);
        let x = rand_tensor(&[b, h, nq, nk], 10);
        let bias = rand_tensor(&[h, nq, nk], 11);
        let mask = key_mask(b, nk);
        let mut got = x.clone();
        CpuBackend.masked_softmax(&mut got, Some(&bias), Some(&mask), 0.7);
        for row in 0..b * h * nq {
            let (bi, hq) = (row / (h * nq), row % (h * nq));
            let l: Vec<f64> = (0..nk)
                .map(|j| {
                    let v = 0.7 * x.data()[row * nk + j]
                        + MASK_BIAS * (mask.data()[bi * nk + j] - 1.0)
                        + bias.data()[hq * nk + j];
                    v as f64
                })
                .collect();
            let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = l.iter().map(|v| (v - max).exp()).sum();
            for (j, lj) in l.iter().enumerate() {
                let want = ((lj - max).exp() / sum) as f32;
                let g = got.data()[row * nk + j];
                assert!((g - want).abs() < 1e-6, "row {row} key {j}: {g} vs {want}");
            }
        }
        let mut inf = Tensor::full(&[1, 1, 1, 4], f32::NEG_INFINITY);
        CpuBackend.masked_softmax(&mut inf, None, None, 1.0);
        assert_eq!(inf.data(), &[0.0; 4]);
    }

    #[test]
    fn bf16_rounding_is_nearest_even() {
        assert_eq!(round_to_bf16(1.0), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even mantissa (1.0).
        assert_eq!(round_to_bf16(1.0 + 1.0 / 256.0), 1.0);
        // Just above halfway rounds up.
        assert_eq!(round_to_bf16(1.0 + 1.0 / 256.0 + 1e-6), 1.0 + 1.0 / 128.0);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
        assert_eq!(round_to_bf16(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
        assert!(round_to_bf16(f32::NAN).is_nan());
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
        for x in [0.1f32, -3.7, 1234.5, 1e-20] {
            assert!((round_to_bf16(x) - x).abs() <= x.abs() / 256.0);
        }
    }
}
