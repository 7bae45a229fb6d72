//! Triangle multiplicative update as IgFold's trunk uses it (lucidrains layout: separate
//! left/right projections and gates, LayerNorm eps 1e-5).

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{sigmoid, Backend, Tensor, TriangleDirection};

const LN_EPS: f32 = 1e-5;

pub struct TriangleMultiplication {
    norm: LayerNorm,
    left_proj: Linear,
    right_proj: Linear,
    left_gate: Linear,
    right_gate: Linear,
    out_gate: Linear,
    to_out_norm: LayerNorm,
    to_out: Linear,
    direction: TriangleDirection,
}

impl TriangleMultiplication {
    pub fn load(
        p: &Scope<'_>,
        dim: usize,
        hidden: usize,
        direction: TriangleDirection,
    ) -> LoadResult<Self> {
        Ok(Self {
            norm: LayerNorm::load(&p.sub("norm"), dim, LN_EPS)?,
            left_proj: Linear::load(&p.sub("left_proj"), dim, hidden)?,
            right_proj: Linear::load(&p.sub("right_proj"), dim, hidden)?,
            left_gate: Linear::load(&p.sub("left_gate"), dim, hidden)?,
            right_gate: Linear::load(&p.sub("right_gate"), dim, hidden)?,
            out_gate: Linear::load(&p.sub("out_gate"), dim, dim)?,
            to_out_norm: LayerNorm::load(&p.sub("to_out_norm"), hidden, LN_EPS)?,
            to_out: Linear::load(&p.sub("to_out"), hidden, dim)?,
            direction,
        })
    }

    /// edges `[L, L, dim]` → the update `[L, L, dim]` (the caller adds the residual).
    pub fn forward(&self, be: &dyn Backend, edges: &Tensor) -> Tensor {
        let x = self.norm.forward(be, edges);
        let gated = |proj: &Linear, gate: &Linear| {
            let mut v = proj.forward(be, &x); // [L, L, hidden]
            let g = gate.forward(be, &x);
            v.data_mut()
                .iter_mut()
                .zip(g.data())
                .for_each(|(v, g)| *v *= sigmoid(*g));
            v
        };
        let left = gated(&self.left_proj, &self.left_gate);
        let right = gated(&self.right_proj, &self.right_gate);
        let mixed = be.triangle_multiply(&left, &right, self.direction); // [L, L, hidden]
        let mut out = self
            .to_out
            .forward(be, &self.to_out_norm.forward(be, &mixed));
        let g = self.out_gate.forward(be, &x);
        out.data_mut()
            .iter_mut()
            .zip(g.data())
            .for_each(|(o, g)| *o *= sigmoid(*g));
        out
    }
}
