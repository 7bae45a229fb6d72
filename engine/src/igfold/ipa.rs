//! Invariant point attention (AF2 Algorithm 22) in IgFold's form: row-vector frames
//! (`global = local @ R + t`), scalar/point/pair logits each scaled by 1/sqrt(3), and the
//! post-norm `IPABlock` with a 3-layer ReLU transition.

use super::geometry::{apply_frame, Frames, Mat3, Vec3};
use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{
    softplus, Activation, Backend, MatView, PairMasking, PointAttention, Tensor,
};
use rayon::prelude::*;

const SCALAR_DIM: usize = 16;
const POINTS: usize = 4;
const LN_EPS: f32 = 1e-5;
const NORM_EPS: f32 = 1e-8;

struct InvariantPointAttention {
    heads: usize,
    pair_dim: usize,
    to_scalar_q: Linear,
    to_scalar_k: Linear,
    to_scalar_v: Linear,
    to_point_q: Linear,
    to_point_k: Linear,
    to_point_v: Linear,
    /// Weight of each head's squared point distances in its logits: half its softplus'ed
    /// `point_weights`, scaled by `(3 * POINTS * 4.5)^-0.5`, [H]
    point_weights: Tensor,
    to_pair_bias: Linear,
    to_out: Linear,
}

/// `(g - t) @ R^T`.
fn to_local(g: &[f32], r: &Mat3, t: &Vec3) -> Vec3 {
    let d = [g[0] - t[0], g[1] - t[1], g[2] - t[2]];
    std::array::from_fn(|c| d[0] * r[c][0] + d[1] * r[c][1] + d[2] * r[c][2])
}

impl InvariantPointAttention {
    fn load(p: &Scope<'_>, dim: usize, heads: usize, pair_dim: usize) -> LoadResult<Self> {
        let hs = heads * SCALAR_DIM;
        let hp = heads * POINTS * 3;
        let out_in = heads * (SCALAR_DIM + pair_dim + POINTS * 4);
        Ok(Self {
            heads,
            pair_dim,
            to_scalar_q: Linear::load_no_bias(&p.sub("to_scalar_q"), dim, hs)?,
            to_scalar_k: Linear::load_no_bias(&p.sub("to_scalar_k"), dim, hs)?,
            to_scalar_v: Linear::load_no_bias(&p.sub("to_scalar_v"), dim, hs)?,
            to_point_q: Linear::load_no_bias(&p.sub("to_point_q"), dim, hp)?,
            to_point_k: Linear::load_no_bias(&p.sub("to_point_k"), dim, hp)?,
            to_point_v: Linear::load_no_bias(&p.sub("to_point_v"), dim, hp)?,
            point_weights: Tensor::new(
                &[heads],
                p.get("point_weights", &[heads])?
                    .data()
                    .iter()
                    .map(|&w| 0.5 * softplus(w) * (3.0 * POINTS as f32 * 4.5).powf(-0.5))
                    .collect(),
            )
            .expect("one weight per head"),
            to_pair_bias: Linear::load(&p.sub("to_pairwise_attn_bias").sub("0"), pair_dim, heads)?,
            to_out: Linear::load(&p.sub("to_out"), out_in, dim)?,
        })
    }

    /// Projects `x @ W` into `[H, L, POINTS*3]` global points.
    fn global_points(&self, be: &dyn Backend, proj: &Linear, x: &Tensor, f: &Frames) -> Tensor {
        let (l, h, w) = (x.dim(0), self.heads, POINTS * 3);
        let local = proj.forward(be, x); // [L, H*4*3], channel = h*12 + d*3 + c
        let src = local.data();
        let mut out = Tensor::zeros(&[h, l, w]);
        for (hl, dst) in out.data_mut().chunks_mut(w).enumerate() {
            let (hh, i) = (hl / l, hl % l);
            for d in 0..POINTS {
                let p = &src[i * h * w + hh * w + d * 3..][..3];
                let p: Vec3 = [p[0], p[1], p[2]];
                dst[d * 3..d * 3 + 3].copy_from_slice(&apply_frame(&p, &f.rot[i], &f.trans[i]));
            }
        }
        out
    }

    /// x `[L, dim]`, pair `[L, L, pair_dim]`; `mask[i] && mask[j]` gates pair (i, j) with
    /// `-f32::MAX` as IgFold does (a fully masked row attends uniformly).
    fn forward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        pair: &Tensor,
        frames: &Frames,
        mask: Option<&[bool]>,
    ) -> Tensor {
        let (l, h) = (x.dim(0), self.heads);
        let scalar_scale = (3.0 * SCALAR_DIM as f32).powf(-0.5);
        let pair_scale = 3f32.powf(-0.5);
        let split = |t: Tensor| crate::nn::split_heads(&t, h); // [H, L, 16]
        let qs = split(self.to_scalar_q.forward(be, x));
        let ks = split(self.to_scalar_k.forward(be, x));
        let vs = split(self.to_scalar_v.forward(be, x));
        let qp = self.global_points(be, &self.to_point_q, x, frames); // [H, L, 12]
        let kp = self.global_points(be, &self.to_point_k, x, frames);
        let vp = self.global_points(be, &self.to_point_v, x, frames);
        let bias = self.to_pair_bias.forward(be, pair); // [L, L, H]

        let mut attn = be.batched_matmul(MatView::n(&qs), MatView::t(&ks)); // [H, L, L]
        let mask = mask.map(|m| {
            Tensor::new(&[l], m.iter().map(|&k| k as u8 as f32).collect()).expect("one per residue")
        });
        be.point_attention_weights(
            &mut attn,
            &PointAttention {
                q_points: &qp,
                k_points: &kp,
                point_weights: &self.point_weights,
                scalar_scale,
                pair_bias: &bias,
                pair_scale,
                mask: mask.as_ref(),
                masking: PairMasking::Fill(-f32::MAX),
            },
        );

        let os = be.batched_matmul(MatView::n(&attn), MatView::n(&vs)); // [H, L, 16]
        let opg = be.batched_matmul(MatView::n(&attn), MatView::n(&vp)); // [H, L, 12]

        // attention over the pair: r[i, h, c] = sum_j attn[h, i, j] pair[i, j, c]
        let attn_by_query = be.swap_leading_axes(&attn); // [L, H, L]
        let r = be.batched_matmul(MatView::n(&attn_by_query), MatView::n(pair)); // [L, H, C]
        let (os, opg, r) = (os.data(), opg.data(), r.data());
        let (pdim, sd) = (self.pair_dim, SCALAR_DIM);
        let width = h * (sd + POINTS * 4 + pdim);
        let mut cat = Tensor::zeros(&[l, width]);
        cat.data_mut()
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(i, row)| {
                let (s_off, p_off, n_off, r_off) =
                    (0, h * sd, h * (sd + POINTS * 3), h * (sd + POINTS * 4));
                for hh in 0..h {
                    row[s_off + hh * sd..s_off + (hh + 1) * sd]
                        .copy_from_slice(&os[(hh * l + i) * sd..(hh * l + i + 1) * sd]);
                    for d in 0..POINTS {
                        let g = &opg[(hh * l + i) * POINTS * 3 + d * 3..][..3];
                        let p = to_local(g, &frames.rot[i], &frames.trans[i]);
                        row[p_off + (hh * POINTS + d) * 3..][..3].copy_from_slice(&p);
                        row[n_off + hh * POINTS + d] =
                            (p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + NORM_EPS).sqrt();
                    }
                }
                row[r_off..].copy_from_slice(&r[i * h * pdim..(i + 1) * h * pdim]);
            });
        self.to_out.forward(be, &cat)
    }
}

/// IgFold's `IPABlock` (post-norm): `x = LN(x + IPA(x)); x = LN(x + FF(x))`.
pub struct IpaBlock {
    attn: InvariantPointAttention,
    attn_norm: LayerNorm,
    ff: [Linear; 3],
    ff_norm: LayerNorm,
}

impl IpaBlock {
    pub fn load(p: &Scope<'_>, dim: usize, heads: usize) -> LoadResult<Self> {
        let ff = p.sub("ff");
        Ok(Self {
            attn: InvariantPointAttention::load(&p.sub("attn"), dim, heads, dim)?,
            attn_norm: LayerNorm::load(&p.sub("attn_norm"), dim, LN_EPS)?,
            ff: [
                Linear::load(&ff.sub("0"), dim, dim)?,
                Linear::load(&ff.sub("2"), dim, dim)?,
                Linear::load(&ff.sub("4"), dim, dim)?,
            ],
            ff_norm: LayerNorm::load(&p.sub("ff_norm"), dim, LN_EPS)?,
        })
    }

    pub fn forward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        pair: &Tensor,
        frames: &Frames,
        mask: Option<&[bool]>,
    ) -> Tensor {
        let mut a = self.attn.forward(be, x, pair, frames, mask);
        be.add_assign(&mut a, x);
        let x = self.attn_norm.forward(be, &a);
        let mut f = self.ff[0].forward(be, &x);
        be.activate(&mut f, Activation::Relu);
        let mut f = self.ff[1].forward(be, &f);
        be.activate(&mut f, Activation::Relu);
        let mut f = self.ff[2].forward(be, &f);
        be.add_assign(&mut f, &x);
        self.ff_norm.forward(be, &f)
    }
}
