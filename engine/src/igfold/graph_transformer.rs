//! IgFold's graph transformer layer: node attention whose keys and values carry the
//! projected edge features, then a feed-forward, each closed by a gated residual.

use crate::nn::{merge_heads, split_heads, LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{sigmoid, softmax_row, Activation, Backend, MatView, Tensor};
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
        be.activate(&mut h, Activation::Gelu);
        self.ff_gate.apply(&self.ff_out.forward(be, &h), &nodes)
    }

    /// `o_i = sum_j softmax_j(q_i . (k_j + e_ij) / sqrt(d)) (v_j + e_ij)` per head, where
    /// `e_ij = W_e z_ij + b_e` is added to keys and values alike. Returns `[L, 256]` before
    /// `to_out`.
    ///
    /// `e` is never formed: `q_i . e_ij = (W_e^T q_i) . z_ij + q_i . b_e` and
    /// `sum_j a_ij e_ij = W_e (sum_j a_ij z_ij) + b_e`, so each head works on the 64-wide
    /// edges instead of a `[L, L, 256]` projection (16x fewer operations).
    fn attention(&self, be: &dyn Backend, x: &Tensor, edges: &Tensor) -> Tensor {
        let (l, c) = (x.dim(0), edges.dim(2));
        let scale = (HEAD_DIM as f32).powf(-0.5);
        let q = self.to_q.forward(be, x); // [L, 256]
        let kv = self.to_kv.forward(be, x); // [L, 512]: k | v
        let (k, v) = kv.split_last(INNER);
        let (q, k, v) = (
            split_heads(&q, HEADS),
            split_heads(&k, HEADS),
            split_heads(&v, HEADS),
        ); // [H, L, 32]
        let we = self
            .edges_to_kv
            .w
            .clone()
            .reshape(&[HEADS, HEAD_DIM, c])
            .expect("[256, c]"); // [H, 32, c]
        let b_e = self
            .edges_to_kv
            .b
            .as_ref()
            .expect("edges_to_kv has a bias")
            .data();

        let qe = be
            .batched_matmul(MatView::n(&q), MatView::n(&we))
            .swap_leading_axes(); // [L, H, c]
        let edge_logits = be.batched_matmul(MatView::n(edges), MatView::t(&qe)); // [L, L, H]
        let mut logits = be.batched_matmul(MatView::n(&q), MatView::t(&k)); // [H, L, L]
        let (qd, el) = (q.data(), edge_logits.data());
        logits
            .data_mut()
            .par_chunks_mut(l)
            .enumerate()
            .for_each(|(hi, row)| {
                let (h, i) = (hi / l, hi % l);
                let qb: f32 = (0..HEAD_DIM)
                    .map(|d| qd[hi * HEAD_DIM + d] * b_e[h * HEAD_DIM + d])
                    .sum();
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (*v + el[(i * l + j) * HEADS + h] + qb) * scale;
                }
                softmax_row(row);
            });
        let attn = logits; // [H, L, L]

        let values = be.batched_matmul(MatView::n(&attn), MatView::n(&v)); // [H, L, 32]
        let pooled = be
            .batched_matmul(MatView::n(&attn.swap_leading_axes()), MatView::n(edges)) // [L, H, c]
            .swap_leading_axes(); // [H, L, c]
        let edge_values = be.batched_matmul(MatView::n(&pooled), MatView::t(&we)); // [H, L, 32]
        let mut out = merge_heads(&values);
        let ev = merge_heads(&edge_values);
        for (row, erow) in out
            .data_mut()
            .chunks_mut(INNER)
            .zip(ev.data().chunks(INNER))
        {
            for ((o, e), b) in row.iter_mut().zip(erow).zip(b_e) {
                *o += e + b;
            }
        }
        out
    }
}
