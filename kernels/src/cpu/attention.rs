//! CPU twins of the CUDA backend's attention kernels (`kernels/cuda/attention.cu`,
//! `softmax.cu`): the same maths in the same order, so the GPU kernels have a reference.
//! The gated attention streams keys in tiles of [`ATTENTION_KEY_TILE`] with an online
//! softmax, exactly the CUDA kernel's algorithm, and never holds more than one tile of
//! logits per query.

use crate::backend::{GatedAttention, MASK_BIAS};
use crate::{exp, sigmoid, Tensor};
use rayon::prelude::*;

/// Keys per tile of the streaming attention (the CUDA kernel's `FF_ATT_BK`).
pub const ATTENTION_KEY_TILE: usize = 32;

/// Queries per parallel task.
const QUERIES_PER_TASK: usize = 16;

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

/// The streaming gated attention ([`GatedAttention`]) → `[B, H, Q, Dv]`.
pub(super) fn gated_attention(a: &GatedAttention<'_>) -> Tensor {
    let (b, h, nq, nk, d, dv) = a.dims();
    let mut out = Tensor::zeros(&[b, h, nq, dv]);
    if out.is_empty() {
        return out;
    }
    let (q, k, v) = (a.q.data(), a.k.data(), a.v.data());
    out.data_mut()
        .par_chunks_mut(QUERIES_PER_TASK * dv)
        .enumerate()
        .for_each(|(task, dst)| {
            let mut qs = vec![0f32; d];
            let mut s = [0f32; ATTENTION_KEY_TILE];
            let mut o = vec![0f32; dv];
            for (r, orow) in dst.chunks_mut(dv).enumerate() {
                let row = task * QUERIES_PER_TASK + r; // (b, h, i) flattened
                let (bh, i) = (row / nq, row % nq);
                let (bi, hi) = (bh / h, bh % h);
                qs.iter_mut()
                    .zip(&q[row * d..(row + 1) * d])
                    .for_each(|(s, x)| *s = a.scale * x);
                let kb = &k[bh * nk * d..(bh + 1) * nk * d];
                let vb = &v[bh * nk * dv..(bh + 1) * nk * dv];
                let mask = a.mask.map(|m| &m.data()[bi * nk..(bi + 1) * nk]);
                let bias = a
                    .bias
                    .map(|t| &t.data()[(hi * nq + i) * nk..(hi * nq + i + 1) * nk]);
                let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
                o.fill(0.0);
                for k0 in (0..nk).step_by(ATTENTION_KEY_TILE) {
                    let n = ATTENTION_KEY_TILE.min(nk - k0);
                    for (j, s) in s[..n].iter_mut().enumerate() {
                        let key = &kb[(k0 + j) * d..(k0 + j + 1) * d];
                        let mut x: f32 = qs.iter().zip(key).map(|(a, b)| a * b).sum();
                        if let Some(mask) = mask {
                            x += MASK_BIAS * (mask[k0 + j] - 1.0);
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
                        let val = &vb[(k0 + j) * dv..(k0 + j + 1) * dv];
                        o.iter_mut().zip(val).for_each(|(o, v)| *o += p * v);
                    }
                    m = m_new;
                }
                let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
                orow.iter_mut().zip(&o).for_each(|(y, x)| *y = x * inv);
                if let Some(g) = a.gate {
                    let g = &g.data()[row * dv..(row + 1) * dv];
                    orow.iter_mut().zip(g).for_each(|(y, g)| *y *= sigmoid(*g));
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TriangleMultiplicationParams;
    use crate::backend::{Activation, Backend, MatView, TriangleDirection};
    use crate::cpu::tests::rand_tensor;
    use crate::CpuBackend;

    /// A backend with the CPU backend's ops but the trait's default (materialising)
    /// `gated_attention`.
    struct Materialising;
    impl Backend for Materialising {
        fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
            CpuBackend.linear(x, w, b)
        }
        fn batched_matmul(&self, a: MatView<'_>, b: MatView<'_>) -> Tensor {
            CpuBackend.batched_matmul(a, b)
        }
        fn layer_norm(&self, x: &Tensor, g: &Tensor, b: &Tensor, eps: f32) -> Tensor {
            CpuBackend.layer_norm(x, g, b, eps)
        }
        fn softmax(&self, x: &mut Tensor) {
            CpuBackend.softmax(x)
        }
        fn activate(&self, x: &mut Tensor, f: Activation) {
            CpuBackend.activate(x, f)
        }
        fn triangle_multiplication(
            &self,
            z: &Tensor,
            p: &TriangleMultiplicationParams<'_>,
            mask: Option<&Tensor>,
            dir: TriangleDirection,
        ) -> Tensor {
            CpuBackend.triangle_multiplication(z, p, mask, dir)
        }
    }

    /// The definition in f64: materialised logits, two-pass softmax.
    fn naive(a: &GatedAttention<'_>) -> Vec<f32> {
        let (b, h, nq, nk, d, dv) = a.dims();
        let mut out = vec![0f32; b * h * nq * dv];
        for bi in 0..b {
            for hi in 0..h {
                let bh = bi * h + hi;
                for i in 0..nq {
                    let row = bh * nq + i;
                    let logits: Vec<f64> = (0..nk)
                        .map(|j| {
                            let mut x = (0..d)
                                .map(|c| {
                                    (a.scale * a.q.data()[row * d + c]) as f64
                                        * a.k.data()[(bh * nk + j) * d + c] as f64
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
                            .map(|j| e[j] / sum * a.v.data()[(bh * nk + j) * dv + c] as f64)
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

    #[test]
    fn streaming_attention_matches_the_definition() {
        // Key counts below, at and across tile boundaries (not multiples of 32); MSA row
        // attention (8 heads of 32), triangle attention (4 of 32), extra-MSA heads of 8,
        // and a 64-wide head.
        for (b, h, nq, nk, d) in [
            (3, 2, 37, 45, 8),
            (3, 4, 5, 32, 32),
            (4, 8, 33, 65, 32),
            (3, 1, 17, 100, 64),
            (2, 2, 1, 1, 16),
        ] {
            let q = rand_tensor(&[b, h, nq, d], 1);
            let k = rand_tensor(&[b, h, nk, d], 2);
            let v = rand_tensor(&[b, h, nk, d], 3);
            let gate = rand_tensor(&[b, h, nq, d], 4);
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
                let streamed = CpuBackend.gated_attention(&a);
                assert_eq!(streamed.shape(), &[b, h, nq, d]);
                let materialised = Materialising.gated_attention(&a);
                let tag = format!("{b}x{h}x{nq}x{nk}x{d} {with_bias}/{with_mask}/{with_gate}");
                let e1 = max_rel_err(streamed.data(), &want);
                let e2 = max_rel_err(materialised.data(), &want);
                assert!(e1 < 1e-5, "streaming {tag}: {e1}");
                assert!(e2 < 1e-5, "materialising {tag}: {e2}");
            }
        }
    }

    #[test]
    fn fully_masked_rows_attend_uniformly() {
        let (b, h, nq, nk, d) = (2, 2, 3, 70, 16);
        let q = rand_tensor(&[b, h, nq, d], 6);
        let k = rand_tensor(&[b, h, nk, d], 7);
        let v = rand_tensor(&[b, h, nk, d], 8);
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
        let out = CpuBackend.gated_attention(&a);
        for bh in 0..b * h {
            for c in 0..d {
                let mean: f32 = (0..nk)
                    .map(|j| v.data()[(bh * nk + j) * d + c])
                    .sum::<f32>()
                    / nk as f32;
                for i in 0..nq {
                    let y = out.data()[(bh * nq + i) * d + c];
                    assert!((y - mean).abs() < 1e-5, "{y} vs uniform mean {mean}");
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
