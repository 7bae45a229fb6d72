//! The 48-block Evoformer stack (Algorithm 6) with its parameters read from the parameter
//! file block by block as the blocks run: the next block is read on a helper thread while
//! the current one computes, so a run holds two blocks' parameters (about 7 MiB each)
//! instead of all 335 MiB, and concurrent runs share the file through the page cache. The
//! file must stay unchanged until the prediction ends (its checksums are checked on open).
//! A backend that keeps layers ([`Backend::keeps_layers`]: one with a device, where the
//! weights stay uploaded) gets the blocks read once and kept for every recycling iteration.

use std::sync::{Arc, OnceLock};

use crate::af2::evoformer::{EvoformerConfig, EvoformerIteration};
use crate::nn::LoadResult;
use ferrofold_io::weights::TensorStore;
use ferrofold_kernels::{Backend, Tensor};

#[derive(Debug)]
pub struct EvoformerStack {
    store: Arc<TensorStore>,
    /// The stacked blocks' scope, e.g. [`crate::af2::evoformer::SCOPE`].
    scope: &'static str,
    blocks: usize,
    cfg: EvoformerConfig,
    /// Every block, once a backend that keeps layers has run the stack.
    kept: OnceLock<Vec<EvoformerIteration>>,
}

impl EvoformerStack {
    /// Reads every block once, so a missing or misshaped parameter fails here with its
    /// full name (and every one is marked used), then keeps only the store.
    pub fn load(
        store: Arc<TensorStore>,
        scope: &'static str,
        blocks: usize,
        cfg: EvoformerConfig,
    ) -> LoadResult<Self> {
        let stack = Self {
            store,
            scope,
            blocks,
            cfg,
            kept: OnceLock::new(),
        };
        for i in 0..blocks {
            stack.block(i)?;
        }
        Ok(stack)
    }

    fn block(&self, i: usize) -> LoadResult<EvoformerIteration> {
        let p = self.store.root_haiku().sub(self.scope).layer(i);
        EvoformerIteration::load(&p, &self.cfg)
    }

    /// msa `[S, L, c_m]`, pair `[L, L, c_z]` through every block; fails only if the
    /// parameter file can no longer be read.
    pub fn forward(
        &self,
        be: &dyn Backend,
        mut msa: Tensor,
        msa_mask: &Tensor,
        mut pair: Tensor,
        pair_mask: &Tensor,
    ) -> LoadResult<(Tensor, Tensor)> {
        if be.keeps_layers() {
            if self.kept.get().is_none() {
                let blocks = (0..self.blocks).map(|i| self.block(i));
                let _ = self.kept.set(blocks.collect::<LoadResult<_>>()?);
            }
            for block in self.kept.get().expect("set above") {
                (msa, pair) = block.forward(be, msa, msa_mask, pair, pair_mask);
            }
            return Ok((msa, pair));
        }
        std::thread::scope(|s| {
            let mut next = (self.blocks > 0).then(|| s.spawn(|| self.block(0)));
            for i in 0..self.blocks {
                let loader = next.take().expect("block i is being read");
                let block = loader
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                if i + 1 < self.blocks {
                    next = Some(s.spawn(move || self.block(i + 1)));
                }
                (msa, pair) = block.forward(be, msa, msa_mask, pair, pair_mask);
            }
            Ok((msa, pair))
        })
    }
}
