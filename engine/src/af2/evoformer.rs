//! One Evoformer block (Algorithm 6 "EvoformerStack", lines 2-10; modules.py
//! `EvoformerIteration`), for both the main stack and the extra-MSA stack (Algorithm 18),
//! which differs only in its widths and in using MSA column *global* attention.
//!
//! Inference only: dropout is off. The order is the official v2.3 monomer one
//! (`outer_product_mean.first` = False), each step a residual add:
//! MSA row attention with pair bias, MSA column (global) attention, MSA transition,
//! outer product mean (into the pair), triangle multiplication outgoing, incoming,
//! triangle attention starting node, ending node, pair transition.

use crate::af2::attention::{
    MsaColumnAttention, MsaColumnGlobalAttention, MsaRowAttentionWithPairBias,
};
use crate::af2::outer_product_mean::OuterProductMean;
use crate::af2::pair_stack::{PairOrder, PairStack, PairStackDims};
use crate::af2::transition::Transition;
use crate::nn::{add_update, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, Tensor};

/// The official scope of the main Evoformer stack's (stacked) block parameters.
pub const SCOPE: &str = "alphafold/alphafold_iteration/evoformer/evoformer_iteration";

/// The official scope of the extra-MSA stack's (stacked) block parameters.
pub const EXTRA_MSA_SCOPE: &str = "alphafold/alphafold_iteration/evoformer/extra_msa_stack";

/// Widths of an Evoformer block (the v2.3 monomer config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvoformerConfig {
    /// MSA channels: 256 (main), 64 (extra-MSA stack).
    pub c_m: usize,
    /// Pair channels: 128.
    pub c_z: usize,
    /// Heads of the MSA row and column attentions: 8.
    pub msa_heads: usize,
    /// Heads of the triangle attentions: 4.
    pub pair_heads: usize,
    /// Hidden width factor of both transitions: 4.
    pub transition_factor: usize,
    /// Outer product mean channels: 32.
    pub c_outer: usize,
    /// Triangle multiplication hidden channels: 128.
    pub c_tri_mul: usize,
    /// The extra-MSA stack (Algorithm 18): column *global* attention, parameters under
    /// `msa_column_global_attention`.
    pub is_extra_msa: bool,
}

impl EvoformerConfig {
    /// The main stack (48 blocks of [`SCOPE`]).
    pub const MAIN: Self = Self {
        c_m: 256,
        c_z: 128,
        msa_heads: 8,
        pair_heads: 4,
        transition_factor: 4,
        c_outer: 32,
        c_tri_mul: 128,
        is_extra_msa: false,
    };

    /// The extra-MSA stack (4 blocks of [`EXTRA_MSA_SCOPE`]).
    pub const EXTRA_MSA: Self = Self {
        c_m: 64,
        is_extra_msa: true,
        ..Self::MAIN
    };
}

/// Column attention over the MSA: Algorithm 8 (main stack) or 19 (extra-MSA stack).
#[derive(Debug)]
enum ColumnAttention {
    Full(MsaColumnAttention),
    Global(MsaColumnGlobalAttention),
}

impl ColumnAttention {
    fn forward(&self, be: &dyn Backend, msa: &Tensor, msa_mask: &Tensor) -> Tensor {
        match self {
            Self::Full(a) => a.forward(be, msa, msa_mask),
            Self::Global(a) => a.forward(be, msa, msa_mask),
        }
    }
}

/// Algorithm 6 lines 2-10: one Evoformer block (main or extra-MSA stack).
#[derive(Debug)]
pub struct EvoformerIteration {
    row_attention: MsaRowAttentionWithPairBias,
    column_attention: ColumnAttention,
    msa_transition: Transition,
    outer_product_mean: OuterProductMean,
    pair_stack: PairStack,
}

impl EvoformerIteration {
    /// Loads one block from the `evoformer_iteration` (or `extra_msa_stack`) scope; with the
    /// official npz, pass `scope.layer(i)` for block `i`.
    pub fn load(p: &Scope<'_>, cfg: &EvoformerConfig) -> LoadResult<Self> {
        let (c_m, c_z) = (cfg.c_m, cfg.c_z);
        let column_attention = if cfg.is_extra_msa {
            ColumnAttention::Global(MsaColumnGlobalAttention::load(
                &p.sub("msa_column_global_attention"),
                c_m,
                cfg.msa_heads,
            )?)
        } else {
            ColumnAttention::Full(MsaColumnAttention::load(
                &p.sub("msa_column_attention"),
                c_m,
                cfg.msa_heads,
            )?)
        };
        Ok(Self {
            row_attention: MsaRowAttentionWithPairBias::load(
                &p.sub("msa_row_attention_with_pair_bias"),
                c_m,
                c_z,
                cfg.msa_heads,
            )?,
            column_attention,
            msa_transition: Transition::load(&p.sub("msa_transition"), c_m, cfg.transition_factor)?,
            outer_product_mean: OuterProductMean::load(
                &p.sub("outer_product_mean"),
                c_m,
                cfg.c_outer,
                c_z,
            )?,
            pair_stack: PairStack::load(
                p,
                PairStackDims {
                    channels: c_z,
                    tri_mul_hidden: cfg.c_tri_mul,
                    attention_heads: cfg.pair_heads,
                    transition_factor: cfg.transition_factor,
                },
                PairOrder::MultiplicationsFirst,
            )?,
        })
    }

    /// msa `[S, L, c_m]`, msa_mask `[S, L]`, pair `[L, L, c_z]`, pair_mask `[L, L]` → the
    /// updated (msa, pair), residual adds included.
    pub fn forward(
        &self,
        be: &dyn Backend,
        mut msa: Tensor,
        msa_mask: &Tensor,
        mut pair: Tensor,
        pair_mask: &Tensor,
    ) -> (Tensor, Tensor) {
        let (s, l) = (msa.dim(0), msa.dim(1));
        assert_eq!(msa.shape().len(), 3, "evoformer: msa must be [S, L, c_m]");
        assert_eq!(
            msa_mask.shape(),
            [s, l],
            "evoformer: msa_mask must be [S, L]"
        );
        assert_eq!(
            pair.shape(),
            [l, l, pair.dim(-1)],
            "evoformer: pair must be [L, L, c_z]"
        );
        assert_eq!(
            pair_mask.shape(),
            [l, l],
            "evoformer: pair_mask must be [L, L]"
        );

        add_update(be, &mut msa, |m| {
            self.row_attention.forward(be, m, msa_mask, &pair)
        }); // [S, L, c_m]
        add_update(be, &mut msa, |m| {
            self.column_attention.forward(be, m, msa_mask)
        });
        add_update(be, &mut msa, |m| self.msa_transition.forward(be, m));
        be.add_assign(
            &mut pair,
            &self.outer_product_mean.forward(be, &msa, msa_mask),
        ); // [L, L, c_z]
        (msa, self.pair_stack.forward(be, pair, pair_mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    #[test]
    fn evoformer_iteration_matches_official() {
        let g = Golden::load("evoformer_iteration");
        let block =
            EvoformerIteration::load(&g.params().sub(SCOPE), &EvoformerConfig::MAIN).unwrap();
        let (msa, pair) = block.forward(
            &CpuBackend,
            g.input("msa_act"),
            &g.input("msa_mask"),
            g.input("pair_act"),
            &g.input("pair_mask"),
        );
        assert_close(&msa, &g.output(Some("msa")), TOL, "evoformer_iteration msa");
        assert_close(
            &pair,
            &g.output(Some("pair")),
            TOL,
            "evoformer_iteration pair",
        );
    }

    /// Relative to the largest |value|. Measured on the golden: msa 2.0e-6 / 5.30 (3.8e-7),
    /// pair 5.3e-6 / 6.33 (8.3e-7).
    const TOL: f32 = 1e-5;
}
