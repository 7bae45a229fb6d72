//! IgFold's graph transformer layer: node attention whose keys and values carry the
//! projected edge features, then a feed-forward, each closed by a gated residual.

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{gelu, sigmoid, softmax_row, Backend, Tensor};
use rayon::prelude::*;

const HEADS: usize = 8;
const HEAD_DIM: usize = 32;
const INNER: usize = HEADS * HEAD_DIM;
const LN_EPS: f32 = 1e-5;

/// `x * g + res * (1 - g)` with `g = sigmoid(w . [x, res, x - res])`, row by row.
struct GatedResidual {
    w: Tensor, // [1, 3*dim]
}

impl GatedResidual {
    fn load(p: &Scope<'_>, dim: usize) -> LoadResult<Self> {
        Ok(Self {
            w: p.sub("proj")
                .sub("0")
                .get("weight", &[1, 3 * dim])
                .cloned()?,
        })
    }

    fn apply(&self, x: &Tensor, res: &Tensor) -> Tensor {
        let dim = x.dim(-1);
        let w = self.w.data();
        let mut out = x.clone();
        for (o, r) in out.data_mut().chunks_mut(dim).zip(res.data().chunks(dim)) {
            let s: f32 = (0..dim)
                .map(|c| w[c] * o[c] + w[dim + c] * r[c] + w[2 * dim + c] * (o[c] - r[c]))
                .sum();
            let g = sigmoid(s);
            for (v, r) in o.iter_mut().zip(r) {
                *v = *v * g + r * (1.0 - g);
            }
        }
        out
    }
}

pub struct GraphTransformerLayer {
    attn_norm: LayerNorm,
    to_q: Linear,
    to_kv: Linear,
    edges_to_kv: Linear,
    to_out: Linear,
    attn_gate: GatedResidual,
    ff_norm: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    ff_gate: GatedResidual,
}

impl GraphTransformerLayer {
    /// `p` is the scope of one `GraphTransformer` layer (`...layers.0`).
    pub fn load(p: &Scope<'_>, dim: usize, edge_dim: usize) -> LoadResult<Self> {
        let attn = p.sub("0").sub("0");
        let ff = p.sub("1").sub("0");
        Ok(Self {
            attn_norm: LayerNorm::load(&attn.sub("norm"), dim, LN_EPS)?,
            to_q: Linear::load(&attn.sub("fn").sub("to_q"), dim, INNER)?,
            to_kv: Linear::load(&attn.sub("fn").sub("to_kv"), dim, 2 * INNER)?,
            edges_to_kv: Linear::load(&attn.sub("fn").sub("edges_to_kv"), edge_dim, INNER)?,
            to_out: Linear::load(&attn.sub("fn").sub("to_out"), INNER, dim)?,
            attn_gate: GatedResidual::load(&p.sub("0").sub("1"), dim)?,
            ff_norm: LayerNorm::load(&ff.sub("norm"), dim, LN_EPS)?,
            ff_in: Linear::load(&ff.sub("fn").sub("0"), dim, 4 * dim)?,
            ff_out: Linear::load(&ff.sub("fn").sub("2"), 4 * dim, dim)?,
            ff_gate: GatedResidual::load(&p.sub("1").sub("1"), dim)?,
        })
    }

    /// nodes `[L, dim]`, edges `[L, L, edge_dim]` (read only) → new nodes.
    pub fn forward(&self, be: &dyn Backend, nodes: &Tensor, edges: &Tensor) -> Tensor {
        let attended = self.attention(be, &self.attn_norm.forward(be, nodes), edges);
        let nodes = self
            .attn_gate
            .apply(&self.to_out.forward(be, &attended), nodes);
        let mut h = self.ff_in.forward(be, &self.ff_norm.forward(be, &nodes));
        be.map(&mut h, gelu);
        self.ff_gate.apply(&self.ff_out.forward(be, &h), &nodes)
    }

    /// `o_i = sum_j softmax_j(q_i . (k_j + e_ij) / sqrt(d)) (v_j + e_ij)` per head, where
    /// the same edge projection `e` is added to keys and values. Returns `[L, 256]` before
    /// `to_out`.
    fn attention(&self, be: &dyn Backend, x: &Tensor, edges: &Tensor) -> Tensor {
        let l = x.dim(0);
        let q = self.to_q.forward(be, x); // [L, 256]
        let kv = self.to_kv.forward(be, x); // [L, 512]: k | v
        let e = self.edges_to_kv.forward(be, edges); // [L, L, 256]
        let (q, kv, e) = (q.data(), kv.data(), e.data());
        let scale = (HEAD_DIM as f32).powf(-0.5);
        let mut out = Tensor::zeros(&[l, INNER]);
        out.data_mut()
            .par_chunks_mut(INNER)
            .enumerate()
            .for_each(|(i, out_i)| {
                let qi = &q[i * INNER..(i + 1) * INNER];
                let ei = &e[i * l * INNER..(i + 1) * l * INNER];
                let mut logits = vec![0f32; l];
                for h in 0..HEADS {
                    let hd = h * HEAD_DIM..(h + 1) * HEAD_DIM;
                    let qh = &qi[hd.clone()];
                    for (j, lg) in logits.iter_mut().enumerate() {
                        let kj = &kv[j * 2 * INNER + hd.start..j * 2 * INNER + hd.end];
                        let eij = &ei[j * INNER + hd.start..j * INNER + hd.end];
                        let s: f32 = (0..HEAD_DIM).map(|d| qh[d] * (kj[d] + eij[d])).sum();
                        *lg = s * scale;
                    }
                    softmax_row(&mut logits);
                    let oh = &mut out_i[hd.clone()];
                    for (j, a) in logits.iter().enumerate() {
                        let vj =
                            &kv[j * 2 * INNER + INNER + hd.start..j * 2 * INNER + INNER + hd.end];
                        let eij = &ei[j * INNER + hd.start..j * INNER + hd.end];
                        for d in 0..HEAD_DIM {
                            oh[d] += a * (vj[d] + eij[d]);
                        }
                    }
                }
            });
        out
    }
}
