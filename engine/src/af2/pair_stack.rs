//! The pair-representation updates that Evoformer blocks (Algorithm 6 lines 5-9) and
//! template pair blocks (Algorithm 16) share: triangle multiplications, triangle
//! attentions and the pair transition, each added as a residual.

use super::attention::{TriangleAttention, TriangleOrientation};
use super::transition::Transition;
use super::triangle_multiplication::TriangleMultiplication;
use crate::nn::{add_update, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, Tensor, TriangleDirection};

/// Widths of a pair stack.
#[derive(Clone, Copy, Debug)]
pub struct PairStackDims {
    /// Pair channels (128 in the Evoformer, 64 in the template stack).
    pub channels: usize,
    pub tri_mul_hidden: usize,
    pub attention_heads: usize,
    pub transition_factor: usize,
}

/// Which updates come first: the Evoformer multiplies then attends, the template stack
/// attends then multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairOrder {
    MultiplicationsFirst,
    AttentionsFirst,
}

#[derive(Debug)]
pub struct PairStack {
    tri_mul_outgoing: TriangleMultiplication,
    tri_mul_incoming: TriangleMultiplication,
    tri_att_starting: TriangleAttention,
    tri_att_ending: TriangleAttention,
    pair_transition: Transition,
    order: PairOrder,
}

impl PairStack {
    /// Loads the five modules under the block's scope `p` (their official names).
    pub fn load(p: &Scope<'_>, d: PairStackDims, order: PairOrder) -> LoadResult<Self> {
        let c = d.channels;
        let tri_mul =
            |name: &str, dir| TriangleMultiplication::load(&p.sub(name), c, d.tri_mul_hidden, dir);
        let tri_att = |name: &str, orientation| {
            TriangleAttention::load(&p.sub(name), c, d.attention_heads, orientation)
        };
        Ok(Self {
            tri_mul_outgoing: tri_mul(
                "triangle_multiplication_outgoing",
                TriangleDirection::Outgoing,
            )?,
            tri_mul_incoming: tri_mul(
                "triangle_multiplication_incoming",
                TriangleDirection::Incoming,
            )?,
            tri_att_starting: tri_att(
                "triangle_attention_starting_node",
                TriangleOrientation::PerRow,
            )?,
            tri_att_ending: tri_att(
                "triangle_attention_ending_node",
                TriangleOrientation::PerColumn,
            )?,
            pair_transition: Transition::load(&p.sub("pair_transition"), c, d.transition_factor)?,
            order,
        })
    }

    /// pair `[L, L, c]`, pair_mask `[L, L]` → the updated pair (residual adds included).
    pub fn forward(&self, be: &dyn Backend, mut pair: Tensor, pair_mask: &Tensor) -> Tensor {
        let multiplications = |pair: &mut Tensor| {
            add_update(be, pair, |p| {
                self.tri_mul_outgoing.forward(be, p, pair_mask)
            }); // [L, L, c]
            add_update(be, pair, |p| {
                self.tri_mul_incoming.forward(be, p, pair_mask)
            });
        };
        let attentions = |pair: &mut Tensor| {
            add_update(be, pair, |p| {
                self.tri_att_starting.forward(be, p, pair_mask)
            }); // [L, L, c]
            add_update(be, pair, |p| self.tri_att_ending.forward(be, p, pair_mask));
        };
        match self.order {
            PairOrder::MultiplicationsFirst => {
                multiplications(&mut pair);
                attentions(&mut pair);
            }
            PairOrder::AttentionsFirst => {
                attentions(&mut pair);
                multiplications(&mut pair);
            }
        }
        add_update(be, &mut pair, |p| self.pair_transition.forward(be, p)); // [L, L, c]
        pair
    }
}
