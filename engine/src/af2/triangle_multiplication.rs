//! Triangle multiplicative update (Algorithms 11 "TriangleMultiplicationOutgoing" and 12
//! "TriangleMultiplicationIncoming"), the official unfused layout
//! (`fuse_projection_weights = False`), run as the backend's fused op.
//!
//! The official order, which the fused op reproduces exactly: `x = LN(z)`;
//! `left = mask * left_projection(x) * sigmoid(left_gate(x))` (right alike);
//! outgoing `o_ij = sum_k left_ik right_jk` (`ikc,jkc->ijc`), incoming
//! `o_ij = sum_k left_kj right_ki` (`kjc,kic->ijc`); the update is
//! `output_projection(center_layer_norm(o)) * sigmoid(gating_linear(x))`, not masked.

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, Tensor, TriangleDirection, TriangleMultiplicationParams};

/// Algorithm 11 (outgoing) / Algorithm 12 (incoming).
#[derive(Debug)]
pub struct TriangleMultiplication {
    input_norm: LayerNorm,
    left_proj: Linear,
    left_gate: Linear,
    right_proj: Linear,
    right_gate: Linear,
    center_norm: LayerNorm,
    output_proj: Linear,
    output_gate: Linear,
    direction: TriangleDirection,
}

impl TriangleMultiplication {
    /// Loads the module under `p` (`.../triangle_multiplication_outgoing` or `_incoming`);
    /// `c_z` pair channels, `hidden` the `num_intermediate_channel` (128 in the Evoformer,
    /// 64 in the template pair stack).
    pub fn load(
        p: &Scope<'_>,
        c_z: usize,
        hidden: usize,
        direction: TriangleDirection,
    ) -> LoadResult<Self> {
        let lin = |name: &str, d_in, d_out| Linear::load_haiku(&p.sub(name), d_in, d_out, true);
        Ok(Self {
            input_norm: LayerNorm::load_haiku(&p.sub("layer_norm_input"), c_z)?,
            left_proj: lin("left_projection", c_z, hidden)?,
            left_gate: lin("left_gate", c_z, hidden)?,
            right_proj: lin("right_projection", c_z, hidden)?,
            right_gate: lin("right_gate", c_z, hidden)?,
            center_norm: LayerNorm::load_haiku(&p.sub("center_layer_norm"), hidden)?,
            output_proj: lin("output_projection", hidden, c_z)?,
            output_gate: lin("gating_linear", c_z, c_z)?,
            direction,
        })
    }

    /// pair `[L, L, c_z]`, pair_mask `[L, L]` → the update `[L, L, c_z]` (the caller adds
    /// the residual).
    pub fn forward(&self, be: &dyn Backend, pair: &Tensor, pair_mask: &Tensor) -> Tensor {
        let params = TriangleMultiplicationParams {
            input_norm: self.input_norm.params(),
            left_proj: self.left_proj.params(),
            left_gate: self.left_gate.params(),
            right_proj: self.right_proj.params(),
            right_gate: self.right_gate.params(),
            center_norm: self.center_norm.params(),
            output_proj: self.output_proj.params(),
            output_gate: self.output_gate.params(),
        };
        be.triangle_multiplication(pair, &params, Some(pair_mask), self.direction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::af2::evoformer::SCOPE as EVO;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    fn check(name: &str, direction: TriangleDirection) {
        let g = Golden::load(name);
        let t = TriangleMultiplication::load(&g.params().sub(EVO).sub(name), 128, 128, direction)
            .unwrap();
        let got = t.forward(&CpuBackend, &g.input("pair_act"), &g.input("pair_mask"));
        assert_close(&got, &g.output(None), 1e-5, name);
    }

    #[test]
    fn triangle_multiplication_outgoing_matches_official() {
        check(
            "triangle_multiplication_outgoing",
            TriangleDirection::Outgoing,
        );
    }

    #[test]
    fn triangle_multiplication_incoming_matches_official() {
        check(
            "triangle_multiplication_incoming",
            TriangleDirection::Incoming,
        );
    }
}
