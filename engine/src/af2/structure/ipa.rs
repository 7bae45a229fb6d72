//! Invariant point attention, AF2's own form (`folding.InvariantPointAttention`).

use super::rigid::{QuatAffine, Vec3};
use crate::nn::{merge_heads, split_heads, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{softplus, Backend, MatView, Tensor};
use rayon::prelude::*;

/// Sizes of the structure module's IPA (`model.heads.structure_module`, same in every model).
#[derive(Clone, Copy, Debug)]
pub struct IpaConfig {
    pub num_head: usize,
    pub num_scalar_qk: usize,
    pub num_point_qk: usize,
    pub num_scalar_v: usize,
    pub num_point_v: usize,
    /// Single channels, in and out (`num_channel`).
    pub num_channel: usize,
    /// Pair channels (`pair_channel` of the evoformer).
    pub pair_channel: usize,
}

impl Default for IpaConfig {
    fn default() -> Self {
        Self {
            num_head: 12,
            num_scalar_qk: 16,
            num_point_qk: 4,
            num_scalar_v: 16,
            num_point_v: 8,
            num_channel: 384,
            pair_channel: 128,
        }
    }
}

/// `dist_epsilon` under the point norms.
const DIST_EPS: f32 = 1e-8;

/// Alg 22 "InvariantPointAttention" (official `folding.InvariantPointAttention`).
#[derive(Debug)]
pub struct InvariantPointAttention {
    cfg: IpaConfig,
    q_scalar: Linear,
    kv_scalar: Linear,
    q_point_local: Linear,
    kv_point_local: Linear,
    /// softplus(trainable_point_weights) * sqrt(2 / (9 num_point_qk) / 3), [H]
    point_weights: Vec<f32>,
    attention_2d: Linear,
    output_projection: Linear,
}

impl InvariantPointAttention {
    /// Loads from the `invariant_point_attention` scope.
    pub fn load(p: &Scope<'_>, cfg: IpaConfig) -> LoadResult<Self> {
        let (c, h) = (cfg.num_channel, cfg.num_head);
        let (sqk, pqk, sv, pv) = (
            cfg.num_scalar_qk,
            cfg.num_point_qk,
            cfg.num_scalar_v,
            cfg.num_point_v,
        );
        let out_in = h * (sv + 4 * pv + cfg.pair_channel);
        // np.sqrt in f64, then cast to f32 when it meets the f32 parameters
        let point_w = (1.0 / (3.0 * (pqk.max(1) as f64) * 9.0 / 2.0)).sqrt() as f32;
        let tpw = p.get_owned("trainable_point_weights", &[h])?;
        Ok(Self {
            cfg,
            q_scalar: Linear::load_haiku(&p.sub("q_scalar"), c, h * sqk, true)?,
            kv_scalar: Linear::load_haiku(&p.sub("kv_scalar"), c, h * (sv + sqk), true)?,
            q_point_local: Linear::load_haiku(&p.sub("q_point_local"), c, h * 3 * pqk, true)?,
            kv_point_local: Linear::load_haiku(
                &p.sub("kv_point_local"),
                c,
                h * 3 * (pqk + pv),
                true,
            )?,
            point_weights: tpw.data().iter().map(|&w| point_w * softplus(w)).collect(),
            attention_2d: Linear::load_haiku(&p.sub("attention_2d"), cfg.pair_channel, h, true)?,
            output_projection: Linear::load_haiku(&p.sub("output_projection"), out_in, c, true)?,
        })
    }

    /// Points of a `[N, 3*H*P]` projection (x block, y block, z block; within a block channel
    /// `h*P + p`) mapped to the global frame: `[N][H*P]` of xyz.
    fn global_points(proj: &Tensor, affine: &[QuatAffine]) -> Vec<Vec<Vec3>> {
        let w = proj.dim(-1) / 3;
        proj.data()
            .chunks(3 * w)
            .zip(affine)
            .map(|(row, a)| {
                (0..w)
                    .map(|j| a.apply_to_point(&[row[j], row[w + j], row[2 * w + j]]))
                    .collect()
            })
            .collect()
    }

    /// `inputs_1d` [N, C], `inputs_2d` [N, N, C_z], `mask` [N] (the sequence mask),
    /// `affine` [N] frames (nm) → the update [N, C] (the caller adds the residual).
    pub fn forward(
        &self,
        be: &dyn Backend,
        inputs_1d: &Tensor,
        inputs_2d: &Tensor,
        mask: &[f32],
        affine: &[QuatAffine],
    ) -> Tensor {
        let cfg = &self.cfg;
        let n = inputs_1d.rows();
        let (h, sqk, pqk, pv, cz) = (
            cfg.num_head,
            cfg.num_scalar_qk,
            cfg.num_point_qk,
            cfg.num_point_v,
            cfg.pair_channel,
        );
        assert_eq!(inputs_2d.shape(), &[n, n, cz], "IPA pair shape");
        assert_eq!(
            (mask.len(), affine.len()),
            (n, n),
            "IPA mask / affine length"
        );

        // scalar queries, keys, values: q [H, N, Sqk] (pre-scaled), k [H, N, Sqk], v [H, N, Sv]
        let scalar_w = (1.0 / (3.0 * sqk.max(1) as f64)).sqrt() as f32;
        let mut q = split_heads(&self.q_scalar.forward(be, inputs_1d), h);
        q.data_mut().iter_mut().for_each(|x| *x *= scalar_w);
        let kv = split_heads(&self.kv_scalar.forward(be, inputs_1d), h); // [H, N, Sqk+Sv]
        let (k, v) = kv.split_last(sqk);

        // points in the global frame: q [N][H*Pqk], kv [N][H*(Pqk+Pv)]
        let q_pts = Self::global_points(&self.q_point_local.forward(be, inputs_1d), affine);
        let kv_pts = Self::global_points(&self.kv_point_local.forward(be, inputs_1d), affine);
        let pkv = pqk + pv;

        // logits [H, N, N] = scalar + point + sqrt(1/3) * pair bias - 1e5 (1 - mask_i mask_j)
        let mut logits = be.batched_matmul(MatView::n(&q), MatView::t(&k));
        let bias_2d = self.attention_2d.forward(be, inputs_2d); // [N, N, H]
        let w2d = (1.0f64 / 3.0).sqrt() as f32;
        let bias_2d = bias_2d.data();
        logits
            .data_mut()
            .par_chunks_mut(n * n)
            .enumerate()
            .for_each(|(hi, plane)| {
                let pw = self.point_weights[hi];
                for (ij, x) in plane.iter_mut().enumerate() {
                    let (i, j) = (ij / n, ij % n);
                    let mut point = 0f32;
                    for p in 0..pqk {
                        let (a, b) = (&q_pts[i][hi * pqk + p], &kv_pts[j][hi * pkv + p]);
                        let d: Vec3 = std::array::from_fn(|c| a[c] - b[c]);
                        let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                        point += pw * d2;
                    }
                    *x += -0.5 * point;
                    *x += w2d * bias_2d[ij * h + hi];
                    *x -= 1e5 * (1.0 - mask[i] * mask[j]);
                }
            });
        be.softmax(&mut logits);
        let attn = logits; // [H, N, N]

        // scalar result [N, H*Sv]
        let result_scalar = merge_heads(&be.batched_matmul(MatView::n(&attn), MatView::n(&v)));

        // point result: per coordinate [H, N, Pv] global, then back to each query's frame
        let v_coord = |c: usize| {
            Tensor::from_fn(&[h, n, pv], |idx| {
                let (hi, rest) = (idx / (n * pv), idx % (n * pv));
                let (j, p) = (rest / pv, rest % pv);
                kv_pts[j][hi * pkv + pqk + p][c]
            })
        };
        let res_global: Vec<Tensor> = (0..3)
            .map(|c| be.batched_matmul(MatView::n(&attn), MatView::n(&v_coord(c))))
            .collect(); // 3 x [H, N, Pv]
        let hp = h * pv;
        let mut local = vec![[0f32; 3]; n * hp]; // [N, H*Pv] of xyz, query-local
        for (i, a) in affine.iter().enumerate() {
            for hi in 0..h {
                for p in 0..pv {
                    let g = std::array::from_fn(|c| res_global[c].data()[(hi * n + i) * pv + p]);
                    local[i * hp + hi * pv + p] = a.invert_point(&g);
                }
            }
        }

        // attention over the pair [N, H*C_z]: out[i, h, c] = sum_j attn[h, i, j] z[i, j, c]
        let attn_by_query = attn.swap_leading_axes(); // [N, H, N]
        let result_2d = be
            .batched_matmul(MatView::n(&attn_by_query), MatView::n(inputs_2d))
            .reshape(&[n, h * cz])
            .expect("same size");

        // concat [scalar | x | y | z | norm | pair] → [N, H*(Sv + 4 Pv + C_z)]
        let sv_w = h * cfg.num_scalar_v;
        let width = sv_w + 4 * hp + h * cz;
        let mut feats = Tensor::zeros(&[n, width]);
        for (i, row) in feats.data_mut().chunks_mut(width).enumerate() {
            row[..sv_w].copy_from_slice(&result_scalar.data()[i * sv_w..][..sv_w]);
            for j in 0..hp {
                let p = local[i * hp + j];
                for c in 0..3 {
                    row[sv_w + c * hp + j] = p[c];
                }
                row[sv_w + 3 * hp + j] =
                    (DIST_EPS + p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            }
            row[sv_w + 4 * hp..].copy_from_slice(&result_2d.data()[i * h * cz..][..h * cz]);
        }
        self.output_projection.forward(be, &feats)
    }
}
