//! Outer product mean (Algorithm 10 "OuterProductMean"): the MSA's update to the pair.
//!
//! As in the official code, `output_b` is added *before* the normalisation, and the
//! normalisation is `1e-3 + sum_s mask[s, i] * mask[s, j]` (not the plain row count), so a
//! pair with no unmasked row comes out as `1000 * output_b`.

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, MatView, Tensor};
use rayon::prelude::*;

/// Added to the mask-product count before dividing (the official `epsilon`).
const NORM_EPS: f32 = 1e-3;

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
    /// Memory beyond the output is `O(S * L * c)` plus one chunk of residue rows.
    pub fn forward(&self, be: &dyn Backend, msa: &Tensor, msa_mask: &Tensor) -> Tensor {
        let per_row = msa.dim(1) * self.c_outer * self.c_outer;
        self.forward_chunked(be, msa, msa_mask, (CHUNK_FLOATS / per_row).max(1))
    }

    fn forward_chunked(
        &self,
        be: &dyn Backend,
        msa: &Tensor,
        msa_mask: &Tensor,
        rows_per_chunk: usize,
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
        let right = masked(&self.right)
            .reshape(&[1, s, l * c])
            .expect("same size"); // [1, S, L * c]
        drop(x);

        // norm[i, j] = sum_s mask[s, i] * mask[s, j]
        let m = msa_mask.clone().reshape(&[1, s, l]).expect("same size"); // [1, S, L]
        let norm = be.batched_matmul(MatView::t(&m), MatView::n(&m)); // [1, L, L]

        let mut out = Tensor::zeros(&[l, l, c_z]); // [L, L, c_z]
        for i0 in (0..l).step_by(rows_per_chunk) {
            let ci = rows_per_chunk.min(l - i0);
            let mut lc = Vec::with_capacity(s * ci * c);
            for row in left.data().chunks(l * c) {
                lc.extend_from_slice(&row[i0 * c..(i0 + ci) * c]);
            }
            let lc = Tensor::new(&[1, s, ci * c], lc).expect("left chunk"); // [1, S, ci * c]
                                                                            // outer[(i, a), (j, b)] = sum_s left[s, i, a] * right[s, j, b]
            let outer = be.batched_matmul(MatView::t(&lc), MatView::n(&right)); // [1, ci * c, L * c]
            let od = outer.data();
            let mut pairs = vec![0f32; ci * l * c * c]; // [ci, L, c, c]
            pairs
                .par_chunks_mut(l * c * c)
                .enumerate()
                .for_each(|(i, dst)| {
                    for a in 0..c {
                        for j in 0..l {
                            let src = ((i * c + a) * l + j) * c;
                            let at = (j * c + a) * c;
                            dst[at..at + c].copy_from_slice(&od[src..src + c]);
                        }
                    }
                });
            drop(outer);
            let pairs = Tensor::new(&[ci * l, c * c], pairs).expect("pair chunk"); // [ci * L, c * c]
            let upd = self.output.forward(be, &pairs); // [ci * L, c_z]
            out.data_mut()[i0 * l * c_z..(i0 + ci) * l * c_z]
                .par_chunks_mut(c_z)
                .zip(upd.data().par_chunks(c_z))
                .zip(&norm.data()[i0 * l..(i0 + ci) * l])
                .for_each(|((dst, src), n)| {
                    dst.iter_mut()
                        .zip(src)
                        .for_each(|(d, v)| *d = v / (NORM_EPS + n))
                });
        }
        out
    }
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
        assert_close(
            &opm.forward_chunked(&CpuBackend, &msa, &mask, 3),
            &want,
            1e-5,
            "outer_product_mean (chunks of 3)",
        );
    }
}
