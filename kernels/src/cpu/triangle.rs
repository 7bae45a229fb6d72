//! Fused triangle multiplicative update on the CPU. Work is split in blocks of pair
//! positions: each block is normalised, projected (all five input-side linears in one
//! GEMM) and gated while it is in cache; the gated left/right activations are stored
//! channel-first (`[H, L*L]`) so that the per-channel triangle products are plain GEMMs;
//! the centre norm, output projection and output gate again run block by block.

use super::{gemm_strided, layer_norm_row};
use crate::backend::{LinearParams, NormParams, TriangleDirection, TriangleMultiplicationParams};
use crate::{sigmoid, Backend, CpuBackend, MatView, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// Pair positions per task.
const BLOCK: usize = 256;

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

/// Concatenated weights `[sum out, in]` and biases of several linears over the same input.
fn stack(layers: &[LinearParams<'_>]) -> (Vec<f32>, Vec<f32>) {
    let w = layers.iter().flat_map(|l| l.w.data()).copied().collect();
    let b = layers.iter().flat_map(|l| l.b.data()).copied().collect();
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
fn check_shapes(p: &TriangleMultiplicationParams<'_>, c: usize, h: usize) {
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
    let (w_in, b_in) = stack(&[
        p.left_proj,
        p.left_gate,
        p.right_proj,
        p.right_gate,
        p.output_gate,
    ]);
    let mask = mask.map(|m| m.data());

    let mut a = vec![0f32; h * n]; // [H, L, L] gated left
    let mut b = vec![0f32; h * n]; // [H, L, L] gated right
    let mut gate = vec![0f32; n * c]; // [L*L, C] sigmoid of the output gate
    let (da, db) = (
        Disjoint(a.as_mut_ptr(), a.len()),
        Disjoint(b.as_mut_ptr(), b.len()),
    );
    gate.par_chunks_mut(BLOCK * c)
        .enumerate()
        .for_each(|(blk, gate_blk)| {
            let p0 = blk * BLOCK;
            let np = gate_blk.len() / c;
            let mut x = vec![0f32; np * c];
            let norm = &p.input_norm;
            x.chunks_mut(c)
                .zip(z.data()[p0 * c..(p0 + np) * c].chunks(c))
                .for_each(|(d, s)| {
                    layer_norm_row(s, d, norm.gamma.data(), norm.beta.data(), norm.eps)
                });
            let mut proj = project_block(&w_in, &b_in, &x, c); // [4H + C, np]
            proj.iter_mut()
                .skip(h * np)
                .take(h * np)
                .for_each(|g| *g = sigmoid(*g));
            proj.iter_mut()
                .skip(3 * h * np)
                .for_each(|g| *g = sigmoid(*g));
            for (side, dst) in [(0, &da), (2, &db)] {
                for ch in 0..h {
                    let v = &proj[(side * h + ch) * np..][..np];
                    let g = &proj[((side + 1) * h + ch) * np..][..np];
                    // SAFETY: positions p0..p0 + np of every channel belong to this block only.
                    let d = unsafe { dst.range(ch * n + p0, np) };
                    d.iter_mut()
                        .zip(v)
                        .zip(g)
                        .for_each(|((d, v), g)| *d = v * g);
                    if let Some(m) = mask {
                        d.iter_mut().zip(&m[p0..p0 + np]).for_each(|(d, m)| *d *= m);
                    }
                }
            }
            for (q, row) in gate_blk.chunks_mut(c).enumerate() {
                for (o, g) in row.iter_mut().enumerate() {
                    *g = proj[(4 * h + o) * np + q];
                }
            }
        });

    let a = Tensor::new(&[h, l, l], a).expect("left block");
    let b = Tensor::new(&[h, l, l], b).expect("right block");
    let mixed = match dir {
        // o_ij = sum_k a_ik b_jk
        TriangleDirection::Outgoing => CpuBackend.batched_matmul(MatView::n(&a), MatView::t(&b)),
        // o_ij = sum_k a_kj b_ki
        TriangleDirection::Incoming => CpuBackend.batched_matmul(MatView::t(&b), MatView::n(&a)),
    }; // [H, L, L]
    drop((a, b));

    let mixed = mixed.data();
    let (wo, bo) = (p.output_proj.w.data(), p.output_proj.b.data());
    let mut out = Tensor::zeros(&[l, l, c]);
    out.data_mut()
        .par_chunks_mut(BLOCK * c)
        .zip(gate.par_chunks(BLOCK * c))
        .enumerate()
        .for_each(|(blk, (out_blk, gate_blk))| {
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
            out_blk.iter_mut().zip(gate_blk).for_each(|(o, g)| *o *= g);
        });
    out
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
            let got = CpuBackend.triangle_multiplication(&z, &p, Some(&mask), dir);
            let want = naive(&z, &p, mask.data(), dir);
            let err = got
                .data()
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{dir:?}: max error {err}");
        }
    }
}
