//! Triangle multiplicative update as IgFold's trunk uses it (lucidrains layout: separate
//! left/right projections and gates, LayerNorm eps 1e-5), run as the backend's fused op.

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, Tensor, TriangleDirection, TriangleMultiplicationParams};

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
        let params = TriangleMultiplicationParams {
            input_norm: self.norm.params(),
            left_proj: self.left_proj.params(),
            left_gate: self.left_gate.params(),
            right_proj: self.right_proj.params(),
            right_gate: self.right_gate.params(),
            center_norm: self.to_out_norm.params(),
            output_proj: self.to_out.params(),
            output_gate: self.out_gate.params(),
        };
        be.triangle_multiplication(edges, &params, None, self.direction)
    }
}
