//! CPU backend: `gemm` for products, rayon for everything row-parallel.

mod attention;
mod triangle;

#[cfg(feature = "cuda")]
pub(crate) use triangle::check_shapes as check_triangle_shapes;

pub use attention::{round_to_bf16, ATTENTION_KEY_TILE};

use crate::backend::{
    Activation, Backend, GatedAttention, MatView, TriangleDirection, TriangleMultiplicationParams,
};
use crate::{exp, reduce, Tensor};
use crate::{gelu, relu, sigmoid};
use gemm::Parallelism;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The CPU backend. Threads come from rayon's global pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// Most rows of one task's GEMM in `linear` (fewer when that leaves threads idle).
const LINEAR_ROWS: usize = 1024;

/// Rows handed to one rayon task in row-wise ops.
const ROWS_PER_TASK: usize = 64;

/// `dst[m, n] (+)= sum_k lhs[m, k] rhs[k, n]` on strided slices.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: &[f32],
    lhs_strides: (isize, isize),
    rhs: &[f32],
    rhs_strides: (isize, isize),
    accumulate: bool,
    par: Parallelism,
) {
    let (dst, len) = (dst.as_mut_ptr().cast::<MaybeUninit<f32>>(), dst.len());
    // SAFETY: `dst` is `len` initialised floats.
    unsafe {
        gemm_into(
            m,
            n,
            k,
            std::slice::from_raw_parts_mut(dst, len),
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            accumulate,
            par,
        )
    }
}

/// [`gemm_strided`] into a destination that may be uninitialised when `accumulate` is off:
/// the gemm crate then writes all `m * n` elements without reading them.
///
/// # Safety
/// With `accumulate` on, `dst`'s first `m * n` elements must be initialised.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [MaybeUninit<f32>],
    lhs: &[f32],
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (isize, isize),
    accumulate: bool,
    par: Parallelism,
) {
    // Strides are non-negative here, so the last element each operand touches is at
    // (rows - 1) * rs + (cols - 1) * cs; checking it makes the unsafe call sound.
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows.max(1) - 1) * rs as usize + (cols.max(1) - 1) * cs as usize
    };
    assert!(lhs_rs >= 0 && lhs_cs >= 0 && rhs_rs >= 0 && rhs_cs >= 0);
    assert!(dst.len() >= m * n, "gemm: destination too small");
    assert!(
        m * k == 0 || last(m, k, lhs_rs, lhs_cs) < lhs.len(),
        "gemm: left operand too small"
    );
    assert!(
        k * n == 0 || last(k, n, rhs_rs, rhs_cs) < rhs.len(),
        "gemm: right operand too small"
    );
    // The gemm crate is column-major: its kernels store contiguous columns of `dst` and
    // read its left operand without packing when that operand's columns are contiguous.
    // Row-major `dst = lhs rhs` is column-major `dst^T = rhs^T lhs^T`, so it gets the
    // operands swapped: `dst`'s rows become its columns, and a right operand with
    // contiguous rows (weights, values) is read in place.
    // SAFETY: the asserts above keep every index the kernel touches inside the slices.
    unsafe {
        gemm::gemm(
            n,
            m,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            n as isize,
            1,
            accumulate,
            rhs.as_ptr(),
            rhs_rs,
            rhs_cs,
            lhs.as_ptr(),
            lhs_rs,
            lhs_cs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Shape and (row, column) strides of one batch item of a rank-3 operand as used.
fn operand(v: &MatView<'_>) -> (usize, usize, usize, (isize, isize)) {
    let (b, r, c) = v.dims();
    // Row and column strides of the operand as read: the stored row is its column when read
    // transposed.
    let stored_cols = v.tensor.dim(2) as isize;
    let strides = if v.trans {
        (1, stored_cols)
    } else {
        (stored_cols, 1)
    };
    (b, r, c, strides)
}

fn par_for(work: usize) -> Parallelism {
    if work < 1 << 16 {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    }
}

impl Backend for CpuBackend {
    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        let (n_out, k) = (w.dim(0), w.dim(1));
        assert_eq!(
            x.dim(-1),
            k,
            "linear: input {:?} vs weight {:?}",
            x.shape(),
            w.shape()
        );
        let mut shape = x.shape().to_vec();
        *shape.last_mut().unwrap() = n_out;
        if let Some(b) = b {
            assert_eq!(b.len(), n_out, "linear: bias length");
        }
        // Row blocks in parallel, each a single-threaded gemm that packs the weight once
        // for LINEAR_ROWS rows (blocks of 64 rows re-packed a 256 x 1024 weight 16x as often
        // as they used it), into an output the same task writes whole: bias rows and an
        // accumulating GEMM, or a GEMM that overwrites (no zeroing pass first).
        let (xd, wd) = (x.data(), w.data());
        let m = x.rows();
        let rows_per_task = m
            .div_ceil(2 * rayon::current_num_threads())
            .clamp(ROWS_PER_TASK, LINEAR_ROWS);
        // SAFETY: every block is written whole, as said above.
        unsafe {
            Tensor::par_blocks_uninit(&shape, rows_per_task * n_out, |blk, dst| {
                let r0 = blk * rows_per_task;
                let rows = dst.len() / n_out;
                if let Some(b) = b {
                    for row in dst.chunks_mut(n_out) {
                        row.iter_mut().zip(b.data()).for_each(|(d, v)| {
                            d.write(*v);
                        });
                    }
                }
                gemm_into(
                    rows,
                    n_out,
                    k,
                    dst,
                    &xd[r0 * k..(r0 + rows) * k],
                    (k as isize, 1),
                    wd,
                    (1, k as isize),
                    b.is_some(),
                    Parallelism::None,
                );
            })
        }
    }

    fn batched_matmul(&self, a: MatView<'_>, b: MatView<'_>) -> Tensor {
        let (ba, m, k, sa) = operand(&a);
        let (bb, k2, n, sb) = operand(&b);
        assert!(
            ba == bb && k == k2,
            "batched_matmul: {:?}{} x {:?}{}",
            a.tensor.shape(),
            if a.trans { "^T" } else { "" },
            b.tensor.shape(),
            if b.trans { "^T" } else { "" }
        );
        let mut out = Tensor::zeros(&[ba, m, n]);
        let (ad, bd) = (a.tensor.data(), b.tensor.data());
        let inner = if ba >= rayon::current_num_threads() {
            Parallelism::None
        } else {
            par_for(m * n * k)
        };
        out.data_mut()
            .par_chunks_mut((m * n).max(1))
            .enumerate()
            .for_each(|(i, dst)| {
                let (ai, bi) = (
                    &ad[i * m * k..(i + 1) * m * k],
                    &bd[i * k * n..(i + 1) * k * n],
                );
                gemm_strided(m, n, k, dst, ai, sa, bi, sb, false, inner);
            });
        out
    }

    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Tensor {
        let c = x.dim(-1);
        assert!(
            gamma.len() == c && beta.len() == c,
            "layer_norm: {:?} vs {c}",
            gamma.shape()
        );
        let (g, b) = (gamma.data(), beta.data());
        let rows = c * ROWS_PER_TASK;
        Tensor::par_blocks(x.shape(), rows, |blk, dst| {
            dst.chunks_mut(c)
                .zip(x.data()[blk * rows..].chunks(c))
                .for_each(|(d, s)| layer_norm_row(s, d, g, b, eps))
        })
    }

    fn softmax(&self, x: &mut Tensor) {
        let c = x.dim(-1);
        x.data_mut()
            .par_chunks_mut(c * ROWS_PER_TASK)
            .for_each(|rows| rows.chunks_mut(c).for_each(softmax_row));
    }

    fn activate(&self, x: &mut Tensor, f: Activation) {
        fn apply(x: &mut Tensor, f: impl Fn(f32) -> f32 + Sync) {
            x.data_mut()
                .par_chunks_mut(4096)
                .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
        }
        match f {
            Activation::Relu => apply(x, relu),
            Activation::Gelu => apply(x, gelu),
            Activation::Sigmoid => apply(x, sigmoid),
        }
    }

    fn gated_attention(&self, a: &GatedAttention<'_>) -> Tensor {
        attention::gated_attention(a)
    }

    fn triangle_multiplication(
        &self,
        z: &Tensor,
        p: &TriangleMultiplicationParams<'_>,
        mask: Option<&Tensor>,
        dir: TriangleDirection,
    ) -> Tensor {
        triangle::triangle_multiplication(z, p, mask, dir)
    }
}

/// Layer normalisation of one row `src` into `dst`.
#[inline(always)]
fn layer_norm_row(src: &[f32], dst: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let c = src.len() as f32;
    let mean = reduce::sum(src) / c;
    let var = reduce::sum_sq_dev(src, mean) / c;
    let inv = 1.0 / (var + eps).sqrt();
    for (((d, v), g), b) in dst.iter_mut().zip(src).zip(gamma).zip(beta) {
        *d = (v - mean) * inv * g + b;
    }
}

/// Numerically stable softmax of one row. A row whose maximum is -inf stays all-zero
/// rather than NaN.
pub fn softmax_row(row: &mut [f32]) {
    let inv = softmax_row_unscaled(row, [None, None]);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The softmax of `row + biases` without its final scaling: adds the biases present (in
/// order; attention passes a key mask's bias, then a pair bias), replaces every element by
/// `e^(x - max)` and returns the scale, `1 / sum` (0 for a row whose maximum is -inf, which
/// becomes all zeros). Attention folds that scale into its much narrower output: two passes
/// over the logits instead of four (three with both biases). Attention spends about as long
/// here as in its GEMMs (one `exp` per logit), so AVX-512 CPUs get a 16-wide copy of the
/// loop.
pub(crate) fn softmax_row_unscaled(row: &mut [f32], biases: [Option<&[f32]>; 2]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { softmax_row_unscaled_avx512(row, biases) };
    }
    softmax_row_unscaled_portable(row, biases)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn softmax_row_unscaled_avx512(row: &mut [f32], biases: [Option<&[f32]>; 2]) -> f32 {
    softmax_row_unscaled_portable(row, biases)
}

#[inline(always)]
fn softmax_row_unscaled_portable(row: &mut [f32], biases: [Option<&[f32]>; 2]) -> f32 {
    let max = match biases {
        [None, None] => reduce::max(row),
        [Some(b), None] | [None, Some(b)] => reduce::add_max(row, b),
        [Some(b), Some(c)] => {
            // Both (a partly masked row with a pair bias): one pass more.
            assert_eq!(row.len(), b.len(), "softmax bias length");
            row.iter_mut().zip(b).for_each(|(x, b)| *x += b);
            reduce::add_max(row, c)
        }
    };
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return 0.0;
    }
    1.0 / reduce::map_sum(row, |v| exp(v - max))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Tensor::from_fn(shape, |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
    }

    #[test]
    fn linear_matches_naive() {
        let x = rand_tensor(&[3, 70, 17], 1);
        let w = rand_tensor(&[9, 17], 2);
        let b = rand_tensor(&[9], 3);
        let y = CpuBackend.linear(&x, &w, Some(&b));
        assert_eq!(y.shape(), &[3, 70, 9]);
        for r in 0..210 {
            for o in 0..9 {
                let want: f32 = (0..17)
                    .map(|k| x.data()[r * 17 + k] * w.data()[o * 17 + k])
                    .sum::<f32>()
                    + b.data()[o];
                assert!((y.data()[r * 9 + o] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn products_agree_with_the_definition() {
        for (m, n, k) in [(3, 4, 5), (33, 33, 32), (64, 64, 64), (70, 65, 40)] {
            let a = rand_tensor(&[2, m, k], 9);
            let bt = rand_tensor(&[2, n, k], 10);
            let b = rand_tensor(&[2, k, n], 11);
            for (got, bmat, trans) in [
                (
                    CpuBackend.batched_matmul(MatView::n(&a), MatView::t(&bt)),
                    &bt,
                    true,
                ),
                (
                    CpuBackend.batched_matmul(MatView::n(&a), MatView::n(&b)),
                    &b,
                    false,
                ),
            ] {
                for bi in 0..2 {
                    for i in 0..m {
                        for j in 0..n {
                            let want: f32 = (0..k)
                                .map(|p| {
                                    let bv = if trans {
                                        bmat.data()[bi * n * k + j * k + p]
                                    } else {
                                        bmat.data()[bi * k * n + p * n + j]
                                    };
                                    a.data()[bi * m * k + i * k + p] * bv
                                })
                                .sum();
                            let g = got.data()[bi * m * n + i * n + j];
                            assert!((g - want).abs() < 1e-4, "{m}x{n}x{k}: {g} vs {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn batched_matmul_transposes() {
        let a = rand_tensor(&[2, 5, 7], 4); // used as [2, 7, 5]^T
        let b = rand_tensor(&[2, 3, 5], 5); // used as [2, 5, 3]^T
        let c = CpuBackend.batched_matmul(MatView::t(&a), MatView::t(&b)); // [2, 7, 3]
        assert_eq!(c.shape(), &[2, 7, 3]);
        for bi in 0..2 {
            for i in 0..7 {
                for j in 0..3 {
                    let want: f32 = (0..5)
                        .map(|k| a.data()[bi * 35 + k * 7 + i] * b.data()[bi * 15 + j * 5 + k])
                        .sum();
                    assert!((c.data()[bi * 21 + i * 3 + j] - want).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn layer_norm_and_softmax() {
        let x = rand_tensor(&[4, 10], 8);
        let g = Tensor::full(&[10], 2.0);
        let b = Tensor::full(&[10], 0.5);
        let y = CpuBackend.layer_norm(&x, &g, &b, 1e-5);
        for row in y.data().chunks(10) {
            let mean: f32 = row.iter().sum::<f32>() / 10.0;
            assert!((mean - 0.5).abs() < 1e-5);
        }
        let mut s = x.clone();
        CpuBackend.softmax(&mut s);
        for row in s.data().chunks(10) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let mut masked = Tensor::full(&[1, 3], f32::NEG_INFINITY);
        CpuBackend.softmax(&mut masked);
        assert_eq!(masked.data(), &[0.0, 0.0, 0.0]);
    }
}
