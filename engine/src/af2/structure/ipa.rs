//! Invariant point attention, AF2's own form (`folding.InvariantPointAttention`).

use super::rigid::QuatAffine;
use crate::nn::{merge_heads, split_heads, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{softplus, Backend, MatView, PairMasking, PointAttention, Tensor};

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
    /// Half of softplus(trainable_point_weights) * sqrt(2 / (27 num_point_qk)): the weight of a
    /// head's squared point distances in its logits, [H]
    point_weights: Tensor,
    attention_2d: Linear,
    /// `output_projection` split by its input columns: the scalar and point results
    /// `[C, H*(Sv + 4 Pv)]` with the bias, and the pair result `[C, H*C_z]`, so the pair result
    /// (the widest) stays where the backend made it.
    output_local: Linear,
    output_pair: Linear,
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
        let output = Linear::load_haiku(&p.sub("output_projection"), out_in, c, true)?;
        let (w_local, w_pair) = output.w.split_last(h * (sv + 4 * pv));
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
            point_weights: Tensor::new(
                &[h],
                tpw.data()
                    .iter()
                    .map(|&w| 0.5 * point_w * softplus(w))
                    .collect(),
            )
            .expect("one weight per head"),
            attention_2d: Linear::load_haiku(&p.sub("attention_2d"), cfg.pair_channel, h, true)?,
            output_local: Linear {
                w: w_local,
                b: output.b,
            },
            output_pair: Linear { w: w_pair, b: None },
        })
    }

    /// Points of a `[N, 3*H*P]` projection (x block, y block, z block; within a block channel
    /// `h*P + p`) mapped to the global frame: `[H, N, P*3]`, each point's xyz together.
    fn global_points(proj: &Tensor, affine: &[QuatAffine], heads: usize) -> Tensor {
        let (n, w) = (proj.rows(), proj.dim(-1) / 3);
        let points = w / heads;
        let src = proj.data();
        let mut out = Tensor::zeros(&[heads, n, 3 * points]);
        for (hn, dst) in out.data_mut().chunks_mut(3 * points).enumerate() {
            let (hh, i) = (hn / n, hn % n);
            let row = &src[i * 3 * w..][..3 * w];
            for (p, xyz) in dst.chunks_mut(3).enumerate() {
                let j = hh * points + p;
                xyz.copy_from_slice(&affine[i].apply_to_point(&[
                    row[j],
                    row[w + j],
                    row[2 * w + j],
                ]));
            }
        }
        out
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

        // points in the global frame: q [H, N, Pqk*3], k [H, N, Pqk*3], v [H, N, Pv*3]
        let q_points = Self::global_points(&self.q_point_local.forward(be, inputs_1d), affine, h);
        let kv_points = Self::global_points(&self.kv_point_local.forward(be, inputs_1d), affine, h);
        let (k_points, v_points) = kv_points.split_last(3 * pqk);

        // attention [H, N, N]: softmax of scalar + point + sqrt(1/3) * pair bias
        // - 1e5 (1 - mask_i mask_j)
        let mut attn = be.batched_matmul(MatView::n(&q), MatView::t(&k));
        let bias_2d = self.attention_2d.forward(be, inputs_2d); // [N, N, H]
        let mask = Tensor::new(&[n], mask.to_vec()).expect("length checked");
        be.point_attention_weights(
            &mut attn,
            &PointAttention {
                q_points: &q_points,
                k_points: &k_points,
                point_weights: &self.point_weights,
                scalar_scale: 1.0,
                pair_bias: &bias_2d,
                pair_scale: (1.0f64 / 3.0).sqrt() as f32,
                mask: Some(&mask),
                masking: PairMasking::Shift(-1e5),
            },
        );

        // scalar result [N, H*Sv]
        let result_scalar = merge_heads(&be.batched_matmul(MatView::n(&attn), MatView::n(&v)));

        // point result [H, N, Pv*3] in the global frame, then in each query's own frame
        let res_global = be.batched_matmul(MatView::n(&attn), MatView::n(&v_points));
        let res_global = res_global.data();
        let hp = h * pv;
        let mut local = vec![[0f32; 3]; n * hp]; // [N, H*Pv] of xyz, query-local
        for (i, a) in affine.iter().enumerate() {
            for hi in 0..h {
                for p in 0..pv {
                    let g = &res_global[((hi * n + i) * pv + p) * 3..][..3];
                    local[i * hp + hi * pv + p] = a.invert_point(&[g[0], g[1], g[2]]);
                }
            }
        }

        // attention over the pair [N, H*C_z]: out[i, h, c] = sum_j attn[h, i, j] z[i, j, c]
        let attn_by_query = be.swap_leading_axes(&attn); // [N, H, N]
        let result_2d = be
            .batched_matmul(MatView::n(&attn_by_query), MatView::n(inputs_2d))
            .reshape(&[n, h * cz])
            .expect("same size");

        // concat [scalar | x | y | z | norm] → [N, H*(Sv + 4 Pv)]; the pair result's part of
        // the output projection is added on the backend
        let sv_w = h * cfg.num_scalar_v;
        let width = sv_w + 4 * hp;
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
        }
        let mut out = self.output_local.forward(be, &feats); // [N, C]
        be.add_assign(&mut out, &self.output_pair.forward(be, &result_2d));
        out
    }
}
