//! Outer product mean (Algorithm 10 "OuterProductMean"): the MSA's update to the pair.
//!
//! As in the official code, `output_b` is added *before* the normalisation, and the
//! normalisation is `1e-3 + sum_s mask[s, i] * mask[s, j]` (not the plain row count), so a
//! pair with no unmasked row comes out as `1000 * output_b`.

use crate::chunk::for_row_chunks;
use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, MatView, OuterProductMeanParams, Tensor, OUTER_PRODUCT_NORM_EPS};
use rayon::prelude::*;

/// Floats in one chunk's `[rows, L, c, c]` outer-product buffer (two such live at once):
/// 8 MiB each.
const CHUNK_FLOATS: usize = 1 << 21;

/// Algorithm 10 "OuterProductMean".
#[derive(Debug)]
pub struct OuterProductMean {
    input_norm: LayerNorm,
    left: Linear,
    right: Linear,
    /// `output_w` `[c, c, c_z]` (left channel, right channel, out) as a linear layer
    /// `[c_z, c * c]`, input index `left * c + right`, with `output_b`.
    output: Linear,
    c_outer: usize,
}

impl OuterProductMean {
    /// Loads `layer_norm_input`, `left_projection`, `right_projection`, `output_w` and
    /// `output_b` under `p` (`.../evoformer_iteration/outer_product_mean`).
    pub fn load(p: &Scope<'_>, c_m: usize, c_outer: usize, c_z: usize) -> LoadResult<Self> {
        // [c, c, c_z] as [c_z, c * c]
        let w = p.get_owned_transposed("output_w", &[c_outer, c_outer, c_z], 2)?;
        Ok(Self {
            input_norm: LayerNorm::load_haiku(&p.sub("layer_norm_input"), c_m)?,
            left: Linear::load_haiku(&p.sub("left_projection"), c_m, c_outer, true)?,
            right: Linear::load_haiku(&p.sub("right_projection"), c_m, c_outer, true)?,
            output: Linear {
                w,
                b: Some(p.get_owned("output_b", &[c_z])?),
            },
            c_outer,
        })
    }

    /// msa `[S, L, c_m]`, msa_mask `[S, L]` → the pair update `[L, L, c_z]`.
    ///
    /// Memory beyond the output is `O(S * L * c)` plus one chunk of residue rows, or with
    /// few sequences (weights first) two `[S * c, L * c_z]` buffers, each at most the
    /// output's size.
    pub fn forward(&self, be: &dyn Backend, msa: &Tensor, msa_mask: &Tensor) -> Tensor {
        let fused = OuterProductMeanParams {
            input_norm: self.input_norm.params(),
            left: self.left.params(),
            right: self.right.params(),
            output: self.output.params(),
        };
        if let Some(update) = be.outer_product_mean(msa, msa_mask, &fused) {
            return update;
        }
        let (s, l, c) = (msa.dim(0), msa.dim(1), self.c_outer);
        let order = if s < c && s * c <= l {
            Order::WeightsFirst
        } else {
            Order::ProductsFirst {
                rows_per_chunk: (CHUNK_FLOATS / (l * c * c).max(1)).max(1),
            }
        };
        self.forward_with(be, msa, msa_mask, order)
    }

    fn forward_with(
        &self,
        be: &dyn Backend,
        msa: &Tensor,
        msa_mask: &Tensor,
        order: Order,
    ) -> Tensor {
        let (s, l) = (msa.dim(0), msa.dim(1));
        let c = self.c_outer;
        assert_eq!(
            msa.shape().len(),
            3,
            "outer product mean: msa must be [S, L, c_m]"
        );
        assert_eq!(
            msa_mask.shape(),
            [s, l],
            "outer product mean: mask must be [S, L]"
        );
        let c_z = self.output.w.dim(0);

        let x = self.input_norm.forward(be, msa); // [S, L, c_m]
        let masked = |lin: &Linear| {
            let mut a = lin.forward(be, &x); // [S, L, c]
            a.data_mut()
                .chunks_mut(c)
                .zip(msa_mask.data())
                .for_each(|(row, m)| row.iter_mut().for_each(|v| *v *= m));
            a
        };
        let left = masked(&self.left); // [S, L, c]
        let right = masked(&self.right); // [S, L, c]
        drop(x);

        // norm[i, j] = sum_s mask[s, i] * mask[s, j]
        let m = msa_mask.clone().reshape(&[1, s, l]).expect("same size"); // [1, S, L]
        let norm = be.batched_matmul(MatView::t(&m), MatView::n(&m)); // [1, L, L]

        let bias = self.output.b.as_ref().map(|b| b.data());
        let rows_per_chunk = match order {
            Order::WeightsFirst => {
                let mut sums = self.weights_first(be, &left, &right); // [1, L, L * c_z]
                normalise(sums.data_mut(), c_z, norm.data(), bias);
                return sums.reshape(&[l, l, c_z]).expect("same size");
            }
            Order::ProductsFirst { rows_per_chunk } => rows_per_chunk,
        };
        let right = right.reshape(&[1, s, l * c]).expect("same size"); // [1, S, L * c]
        for_row_chunks(be, l, rows_per_chunk, |rows| {
            let (i0, ci) = (rows.start, rows.len());
            let mut lc = Vec::with_capacity(s * ci * c);
            for row in left.data().chunks(l * c) {
                lc.extend_from_slice(&row[i0 * c..(i0 + ci) * c]);
            }
            let lc = Tensor::new(&[1, s, ci * c], lc).expect("left chunk"); // [1, S, ci * c]
                                                                            // outer[(i, a), (j, b)] = sum_s left[s, i, a] * right[s, j, b]
            let outer = be.batched_matmul(MatView::t(&lc), MatView::n(&right)); // [1, ci * c, L * c]
            let od = outer.data();
            // [ci * L, c * c]: pair (i, j), channels (a, b)
            let pairs = Tensor::par_blocks(&[ci * l, c * c], l * c * c, |i, dst| {
                for a in 0..c {
                    for j in 0..l {
                        let src = ((i * c + a) * l + j) * c;
                        let at = (j * c + a) * c;
                        dst[at..at + c].copy_from_slice(&od[src..src + c]);
                    }
                }
            });
            drop(outer);
            let out = self.output.forward(be, &pairs); // [ci * L, c_z], output_b added
            let mut out = out.reshape(&[ci, l, c_z]).expect("same size");
            normalise(
                out.data_mut(),
                c_z,
                &norm.data()[i0 * l..(i0 + ci) * l],
                None,
            );
            out
        })
    }

    /// `sum_{s,a} left[s, i, a] (sum_b right[s, j, b] output_w[a, b, :])`, the outer
    /// products' output linear without its bias, with the right side meeting the weights
    /// first: `2 S L c c_z (c + L)` operations against the official `2 L^2 c^2 (S + c_z)`,
    /// about `S / c` of them when `S` is small. left, right `[S, L, c]` → `[1, L, L * c_z]`.
    fn weights_first(&self, be: &dyn Backend, left: &Tensor, right: &Tensor) -> Tensor {
        let (s, l, c) = (left.dim(0), left.dim(1), self.c_outer);
        let c_z = self.output.w.dim(0);
        let w = self.output.w.data(); // [c_z, c * c], input a * c + b
        let w_right = Tensor::from_fn(&[c * c_z, c], |at| {
            let (az, b) = (at / c, at % c);
            w[(az % c_z) * c * c + (az / c_z) * c + b]
        }); // [(a, z), b]
        let r = be.linear(right, &w_right, None); // [S, L, c * c_z]: (s, j, a, z)
        let (rd, ld) = (r.data(), left.data());
        let mut rsa = vec![0f32; s * c * l * c_z]; // [(s, a), (j, z)]
        rsa.par_chunks_mut(l * c_z)
            .enumerate()
            .for_each(|(sa, dst)| {
                let (si, a) = (sa / c, sa % c);
                for (j, d) in dst.chunks_mut(c_z).enumerate() {
                    let at = ((si * l + j) * c + a) * c_z;
                    d.copy_from_slice(&rd[at..at + c_z]);
                }
            });
        drop(r);
        let rsa = Tensor::new(&[1, s * c, l * c_z], rsa).expect("[1, S * c, L * c_z]");
        let lsa = Tensor::from_fn(&[1, l, s * c], |at| {
            let (i, sa) = (at / (s * c), at % (s * c));
            ld[((sa / c) * l + i) * c + sa % c]
        }); // [1, L, (s, a)]
        be.batched_matmul(MatView::n(&lsa), MatView::n(&rsa)) // [1, L, L * c_z]
    }
}

/// How the outer products meet the output weights.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// The official order: a chunk of residue rows' `[rows, L, c, c]` outer products,
    /// then the output linear.
    ProductsFirst { rows_per_chunk: usize },
    /// [`OuterProductMean::weights_first`], for few sequences.
    WeightsFirst,
}

/// `x[p, :] = (x[p, :] + bias) / (OUTER_PRODUCT_NORM_EPS + norm[p])` for every pair `p`, rows
/// of `c_z` in parallel (`bias` `None` when `x` has it already).
fn normalise(x: &mut [f32], c_z: usize, norm: &[f32], bias: Option<&[f32]>) {
    if c_z == 0 {
        return;
    }
    x.par_chunks_mut(c_z)
        .zip(norm)
        .for_each(|(x, n)| match bias {
            Some(b) => x
                .iter_mut()
                .zip(b)
                .for_each(|(x, b)| *x = (*x + b) / (OUTER_PRODUCT_NORM_EPS + n)),
            None => x.iter_mut().for_each(|x| *x /= OUTER_PRODUCT_NORM_EPS + n),
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::af2::evoformer::SCOPE as EVO;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    #[test]
    fn outer_product_mean_matches_official() {
        let g = Golden::load("outer_product_mean");
        let opm =
            OuterProductMean::load(&g.params().sub(EVO).sub("outer_product_mean"), 256, 32, 128)
                .unwrap();
        let (msa, mask) = (g.input("msa_act"), g.input("msa_mask"));
        let want = g.output(None);
        assert_close(
            &opm.forward(&CpuBackend, &msa, &mask),
            &want,
            1e-5,
            "outer_product_mean",
        );
        // 11 residues in chunks of 3, 3, 3, 2.
        let chunks = Order::ProductsFirst { rows_per_chunk: 3 };
        assert_close(
            &opm.forward_with(&CpuBackend, &msa, &mask, chunks),
            &want,
            1e-5,
            "outer_product_mean (chunks of 3)",
        );
        assert_close(
            &opm.forward_with(&CpuBackend, &msa, &mask, Order::WeightsFirst),
            &want,
            1e-5,
            "outer_product_mean (weights first)",
        );
    }
}
