//! Fused triangle multiplicative update on the CPU. Hidden channels go in blocks of
//! [`CHANNEL_BLOCK`]: for each, pair positions are normalised, projected (the block's four
//! input-side linears in one GEMM) and gated while in cache, the gated left/right sides
//! stored channel-first (`[hc, L*L]`) so that the per-channel triangle products are plain
//! GEMMs. Only the products of all channels are kept; the centre norm, output projection
//! and output gate (from the input normalised again) then run block by block of positions.

use super::{gemm_strided, layer_norm_row};
use crate::backend::{LinearParams, NormParams, TriangleDirection, TriangleMultiplicationParams};
use crate::{sigmoid, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::ops::Range;

/// Pair positions per task.
const BLOCK: usize = 256;

/// Hidden channels whose gated sides exist at once: a quarter of AF2's 128, so the update
/// holds about three pair-sized buffers at its peak instead of five.
const CHANNEL_BLOCK: usize = 32;

/// A buffer that parallel tasks write in disjoint ranges (it must outlive them: it is
/// built from a `Vec` that the caller keeps until the parallel loop ends).
struct Disjoint(*mut f32, usize);
// SAFETY: only used where every task writes its own ranges.
unsafe impl Sync for Disjoint {}
impl Disjoint {
    /// # Safety
    /// No other task may touch `start..start + len` while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(
            start.checked_add(len).is_some_and(|end| end <= self.1),
            "range inside the buffer"
        );
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Some output rows of a linear layer: weights `[rows, in]` and their biases.
struct LinearRows<'a> {
    w: &'a [f32],
    b: &'a [f32],
}

/// Concatenated weights `[sum rows, in]` and biases of row ranges of linears over the same
/// input.
fn stack_rows(parts: &[LinearRows<'_>]) -> (Vec<f32>, Vec<f32>) {
    let w = parts.iter().flat_map(|r| r.w).copied().collect();
    let b = parts.iter().flat_map(|r| r.b).copied().collect();
    (w, b)
}

/// `dst[o, q] = b[o] + sum_k w[o, k] x[q, k]` for a block `x` `[np, k]` → `[out, np]`.
fn project_block(w: &[f32], b: &[f32], x: &[f32], k: usize) -> Vec<f32> {
    let np = x.len() / k;
    let mut dst = vec![0f32; b.len() * np];
    dst.chunks_mut(np).zip(b).for_each(|(row, b)| row.fill(*b));
    gemm_strided(
        b.len(),
        np,
        k,
        &mut dst,
        w,
        (k as isize, 1),
        x,
        (1, k as isize),
        true,
        Parallelism::None,
    );
    dst
}

/// Normalises every column of a channel-first `[H, N]` block over its `H` channels.
#[inline(always)]
fn layer_norm_columns(x: &mut [f32], h: usize, norm: &NormParams<'_>) {
    let n = x.len() / h;
    let mut mean = vec![0f32; n];
    let mut sq = vec![0f32; n];
    for c in 0..h {
        mean.iter_mut()
            .zip(&x[c * n..(c + 1) * n])
            .for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= h as f32);
    for c in 0..h {
        for ((s, v), m) in sq.iter_mut().zip(&x[c * n..(c + 1) * n]).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    let inv: Vec<f32> = sq
        .iter()
        .map(|s| 1.0 / (s / h as f32 + norm.eps).sqrt())
        .collect();
    for c in 0..h {
        let (g, b) = (norm.gamma.data()[c], norm.beta.data()[c]);
        for ((v, m), i) in x[c * n..(c + 1) * n].iter_mut().zip(&mean).zip(&inv) {
            *v = (*v - m) * i * g + b;
        }
    }
}

/// Panics unless every parameter fits `c` input channels and `h` hidden channels.
pub(crate) fn check_shapes(p: &TriangleMultiplicationParams<'_>, c: usize, h: usize) {
    let lin = |name: &str, l: &LinearParams<'_>, out: usize, inp: usize| {
        assert!(
            l.w.shape() == [out, inp] && l.b.shape() == [out],
            "triangle multiplication: {name} is {:?}/{:?}, expected [{out}, {inp}]/[{out}]",
            l.w.shape(),
            l.b.shape()
        );
    };
    for (name, l) in [
        ("left_proj", &p.left_proj),
        ("left_gate", &p.left_gate),
        ("right_proj", &p.right_proj),
        ("right_gate", &p.right_gate),
    ] {
        lin(name, l, h, c);
    }
    lin("output_gate", &p.output_gate, c, c);
    lin("output_proj", &p.output_proj, c, h);
    for (name, n, dim) in [
        ("input_norm", &p.input_norm, c),
        ("center_norm", &p.center_norm, h),
    ] {
        assert!(
            n.gamma.len() == dim && n.beta.len() == dim,
            "triangle multiplication: {name} must have {dim} channels"
        );
    }
}

pub(super) fn triangle_multiplication(
    z: &Tensor,
    p: &TriangleMultiplicationParams<'_>,
    mask: Option<&Tensor>,
    dir: TriangleDirection,
) -> Tensor {
    triangle_multiplication_in_blocks(z, p, mask, dir, CHANNEL_BLOCK)
}

/// The update with the hidden channels' gated sides made `channel_block` channels at a
/// time (each block's triangle products kept, its sides freed).
fn triangle_multiplication_in_blocks(
    z: &Tensor,
    p: &TriangleMultiplicationParams<'_>,
    mask: Option<&Tensor>,
    dir: TriangleDirection,
    channel_block: usize,
) -> Tensor {
    let (l, c) = (z.dim(0), z.dim(2));
    assert!(
        z.shape() == [l, l, c],
        "triangle multiplication: pair must be [L, L, C]"
    );
    let h = p.left_proj.w.dim(0);
    check_shapes(p, c, h);
    if let Some(m) = mask {
        assert!(
            m.shape() == [l, l],
            "triangle multiplication: mask must be [L, L]"
        );
    }
    let n = l * l;
    let mask = mask.map(|m| m.data());

    let mut mixed = vec![0f32; h * n]; // [H, L, L] triangle products
    let (li, one) = (l as isize, 1);
    // (lhs, rhs) strides of the per-channel product `o = lhs rhs` over the sides a, b.
    let strides = match dir {
        TriangleDirection::Outgoing => ((li, one), (one, li)), // o_ij = sum_k a_ik b_jk
        TriangleDirection::Incoming => ((one, li), (li, one)), // o_ij = sum_k b_ki a_kj
    };
    for c0 in (0..h).step_by(channel_block.max(1)) {
        let channels = c0..(c0 + channel_block).min(h);
        let (a, b) = gated_sides(z, p, mask, channels.clone()); // [hc, L*L] each
        mixed[channels.start * n..channels.end * n]
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(ch, dst)| {
                let (a, b) = (&a[ch * n..(ch + 1) * n], &b[ch * n..(ch + 1) * n]);
                let (lhs, rhs) = match dir {
                    TriangleDirection::Outgoing => (a, b),
                    TriangleDirection::Incoming => (b, a),
                };
                gemm_strided(
                    l,
                    l,
                    l,
                    dst,
                    lhs,
                    strides.0,
                    rhs,
                    strides.1,
                    false,
                    Parallelism::None,
                );
            });
    }

    let (wo, bo) = (p.output_proj.w.data(), p.output_proj.b.data());
    let (wg, bg) = (p.output_gate.w.data(), p.output_gate.b.data());
    Tensor::par_blocks(&[l, l, c], BLOCK * c, |blk, out_blk| {
        let p0 = blk * BLOCK;
        let np = out_blk.len() / c;
        let mut t = vec![0f32; h * np]; // [H, np]
        for (ch, dst) in t.chunks_mut(np).enumerate() {
            dst.copy_from_slice(&mixed[ch * n + p0..ch * n + p0 + np]);
        }
        layer_norm_columns(&mut t, h, &p.center_norm);
        out_blk.chunks_mut(c).for_each(|r| r.copy_from_slice(bo));
        gemm_strided(
            np,
            c,
            h,
            out_blk,
            &t,
            (1, np as isize),
            wo,
            (1, h as isize),
            true,
            Parallelism::None,
        );
        // The output gate from the normalised input, [C, np].
        let gate = project_block(wg, bg, &normalised(z, p0, np, &p.input_norm), c);
        for (q, row) in out_blk.chunks_mut(c).enumerate() {
            for (o, y) in row.iter_mut().enumerate() {
                *y *= sigmoid(gate[o * np + q]);
            }
        }
    })
}

/// Pair positions `p0..p0 + np` of `z` `[L*L, C]` through the input layer norm → `[np, C]`.
fn normalised(z: &Tensor, p0: usize, np: usize, norm: &NormParams<'_>) -> Vec<f32> {
    let c = z.dim(2);
    let mut x = vec![0f32; np * c];
    x.chunks_mut(c)
        .zip(z.data()[p0 * c..(p0 + np) * c].chunks(c))
        .for_each(|(d, s)| layer_norm_row(s, d, norm.gamma.data(), norm.beta.data(), norm.eps));
    x
}

/// The gated, masked left and right sides of hidden channels `channels`, channel-first
/// (`[hc, L*L]` each): `proj * sigmoid(gate) * mask` from the normalised pair.
fn gated_sides<'a>(
    z: &Tensor,
    p: &TriangleMultiplicationParams<'a>,
    mask: Option<&[f32]>,
    channels: Range<usize>,
) -> (Vec<f32>, Vec<f32>) {
    let (l, c) = (z.dim(0), z.dim(2));
    let (n, hc) = (l * l, channels.len());
    let rows = |lin: LinearParams<'a>| LinearRows {
        w: &lin.w.data()[channels.start * c..channels.end * c],
        b: &lin.b.data()[channels.clone()],
    };
    // [4 hc, C]: left projection, left gate, right projection, right gate
    let (w_in, b_in) = stack_rows(&[
        rows(p.left_proj),
        rows(p.left_gate),
        rows(p.right_proj),
        rows(p.right_gate),
    ]);
    let mut a = vec![0f32; hc * n];
    let mut b = vec![0f32; hc * n];
    let (da, db) = (
        Disjoint(a.as_mut_ptr(), a.len()),
        Disjoint(b.as_mut_ptr(), b.len()),
    );
    (0..n.div_ceil(BLOCK)).into_par_iter().for_each(|blk| {
        let p0 = blk * BLOCK;
        let np = BLOCK.min(n - p0);
        let x = normalised(z, p0, np, &p.input_norm);
        let proj = project_block(&w_in, &b_in, &x, c); // [4 hc, np]
        for (side, dst) in [(0, &da), (2, &db)] {
            for ch in 0..hc {
                let v = &proj[(side * hc + ch) * np..][..np];
                let g = &proj[((side + 1) * hc + ch) * np..][..np];
                // SAFETY: positions p0..p0 + np of every channel belong to this block only.
                let d = unsafe { dst.range(ch * n + p0, np) };
                d.iter_mut()
                    .zip(v)
                    .zip(g)
                    .for_each(|((d, v), g)| *d = v * sigmoid(*g));
                if let Some(m) = mask {
                    d.iter_mut().zip(&m[p0..p0 + np]).for_each(|(d, m)| *d *= m);
                }
            }
        }
    });
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::NormParams;
    use crate::cpu::tests::rand_tensor;

    /// Plain per-element evaluation of the update, straight from the definition.
    fn naive(
        z: &Tensor,
        p: &TriangleMultiplicationParams<'_>,
        mask: &[f32],
        dir: TriangleDirection,
    ) -> Vec<f32> {
        let (l, c) = (z.dim(0), z.dim(2));
        let h = p.left_proj.w.dim(0);
        let ln = |v: &[f32], n: &NormParams<'_>| -> Vec<f32> {
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
            v.iter()
                .enumerate()
                .map(|(i, x)| {
                    (x - mean) / (var + n.eps).sqrt() * n.gamma.data()[i] + n.beta.data()[i]
                })
                .collect()
        };
        let lin = |v: &[f32], q: &LinearParams<'_>, o: usize| -> f32 {
            let k = v.len();
            (0..k).map(|i| v[i] * q.w.data()[o * k + i]).sum::<f32>() + q.b.data()[o]
        };
        let x: Vec<Vec<f32>> = z.data().chunks(c).map(|r| ln(r, &p.input_norm)).collect();
        let side = |pp: &LinearParams<'_>, pg: &LinearParams<'_>| -> Vec<Vec<f32>> {
            x.iter()
                .enumerate()
                .map(|(pos, r)| {
                    (0..h)
                        .map(|o| lin(r, pp, o) * sigmoid(lin(r, pg, o)) * mask[pos])
                        .collect()
                })
                .collect()
        };
        let (a, b) = (
            side(&p.left_proj, &p.left_gate),
            side(&p.right_proj, &p.right_gate),
        );
        let mut out = vec![0f32; l * l * c];
        for i in 0..l {
            for j in 0..l {
                let o: Vec<f32> = (0..h)
                    .map(|ch| {
                        (0..l)
                            .map(|k| match dir {
                                TriangleDirection::Outgoing => a[i * l + k][ch] * b[j * l + k][ch],
                                TriangleDirection::Incoming => a[k * l + j][ch] * b[k * l + i][ch],
                            })
                            .sum()
                    })
                    .collect();
                let o = ln(&o, &p.center_norm);
                for ch in 0..c {
                    let g = sigmoid(lin(&x[i * l + j], &p.output_gate, ch));
                    out[(i * l + j) * c + ch] = lin(&o, &p.output_proj, ch) * g;
                }
            }
        }
        out
    }

    #[test]
    fn fused_update_matches_definition() {
        let (l, c, h) = (23, 5, 6);
        let z = rand_tensor(&[l, l, c], 11);
        let t = |shape: &[usize], seed| rand_tensor(shape, seed);
        let (w1, b1, w2, b2, w3, b3, w4, b4) = (
            t(&[h, c], 1),
            t(&[h], 2),
            t(&[h, c], 3),
            t(&[h], 4),
            t(&[h, c], 5),
            t(&[h], 6),
            t(&[h, c], 7),
            t(&[h], 8),
        );
        let (wo, bo, wg, bg) = (t(&[c, h], 9), t(&[c], 10), t(&[c, c], 12), t(&[c], 13));
        // L = 23 makes L*L = 529 span three position blocks, the last one partial.
        let (g1, be1, g2, be2) = (t(&[c], 14), t(&[c], 15), t(&[h], 16), t(&[h], 17));
        let p = TriangleMultiplicationParams {
            input_norm: NormParams {
                gamma: &g1,
                beta: &be1,
                eps: 1e-5,
            },
            left_proj: LinearParams { w: &w1, b: &b1 },
            left_gate: LinearParams { w: &w2, b: &b2 },
            right_proj: LinearParams { w: &w3, b: &b3 },
            right_gate: LinearParams { w: &w4, b: &b4 },
            center_norm: NormParams {
                gamma: &g2,
                beta: &be2,
                eps: 1e-5,
            },
            output_proj: LinearParams { w: &wo, b: &bo },
            output_gate: LinearParams { w: &wg, b: &bg },
        };
        let mask = Tensor::from_fn(&[l, l], |i| if i % 5 == 3 { 0.0 } else { 1.0 });
        for dir in [TriangleDirection::Outgoing, TriangleDirection::Incoming] {
            let want = naive(&z, &p, mask.data(), dir);
            // All 6 hidden channels at once, and in blocks of 4 + 2 and of 1.
            for block in [CHANNEL_BLOCK, 4, 1] {
                let got = triangle_multiplication_in_blocks(&z, &p, Some(&mask), dir, block);
                let err = got
                    .data()
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    err < 1e-4,
                    "{dir:?}, channel block {block}: max error {err}"
                );
            }
        }
    }
}
