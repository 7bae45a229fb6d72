//! The transition block (Algorithms 9 "MSATransition" and 15 "PairTransition"):
//! LayerNorm, Linear to `factor * c`, ReLU, Linear back to `c`.
//!
//! The official module takes a mask and never uses it, so padded positions come out as
//! ordinary numbers; this port takes no mask at all.

use crate::chunk::for_row_chunks;
use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, Tensor};

/// Fewest positions per pass (whole rows of the leading axis, at least one), and the CPU's
/// pass: its `[positions, factor * c]` hidden activation is 8 MiB for the pair transition and
/// 16 MiB for the MSA's.
const MIN_POSITIONS_PER_CHUNK: usize = 1 << 12;
/// A pass's hidden activation may take this fraction of the backend's chunk budget. On the
/// CPU's budget (4 Mi floats) that is never more than the minimum pass for AF2's hidden widths
/// (128 and up), so only a device backend's larger budget changes the passes.
const HIDDEN_SHARE_OF_CHUNK: usize = 8;

/// Algorithm 9 (MSA, `factor` 4) / Algorithm 15 (pair, `factor` 4; 2 in the template stack).
#[derive(Debug)]
pub struct Transition {
    input_norm: LayerNorm,
    transition1: Linear,
    transition2: Linear,
}

impl Transition {
    /// Loads `input_layer_norm`, `transition1` and `transition2` under `p`
    /// (e.g. `.../evoformer_iteration/msa_transition`).
    pub fn load(p: &Scope<'_>, channels: usize, factor: usize) -> LoadResult<Self> {
        let hidden = channels * factor;
        Ok(Self {
            input_norm: LayerNorm::load_haiku(&p.sub("input_layer_norm"), channels)?,
            transition1: Linear::load_haiku(&p.sub("transition1"), channels, hidden, true)?,
            transition2: Linear::load_haiku(&p.sub("transition2"), hidden, channels, true)?,
        })
    }

    /// `act` `[.., c]` → the update `[.., c]` (the caller adds the residual). A device
    /// backend's larger chunk budget takes larger passes (a GPU would otherwise launch each
    /// pass's six kernels and GEMMs thousands of times per transition at 4 096 residues).
    pub fn forward(&self, be: &dyn Backend, act: &Tensor) -> Tensor {
        let lead = act.dim(0).max(1);
        let per_lead = act.rows() / lead; // positions per row of the leading axis
        let hidden = self.transition1.w.dim(0);
        let budget = be.chunk_elements() / HIDDEN_SHARE_OF_CHUNK / hidden.max(1);
        let positions = MIN_POSITIONS_PER_CHUNK.max(budget);
        let chunk = (positions / per_lead.max(1)).max(1);
        for_row_chunks(be, act.dim(0), chunk, |r| {
            self.forward_rows(be, &be.slice_rows(act, r))
        })
    }

    fn forward_rows(&self, be: &dyn Backend, act: &Tensor) -> Tensor {
        let (first, second) = (self.transition1.params(), self.transition2.params());
        be.transition(act, &self.input_norm.params(), &first, &second) // [.., c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::af2::evoformer::SCOPE as EVO;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    fn check(name: &str, input: &str, channels: usize) {
        let g = Golden::load(name);
        let p = g.params().sub(EVO).sub(name);
        let t = Transition::load(&p, channels, 4).unwrap();
        let got = t.forward(&CpuBackend, &g.input(input));
        assert_close(&got, &g.output(None), 1e-5, name);
    }

    #[test]
    fn msa_transition_matches_official() {
        check("msa_transition", "msa_act", 256);
    }

    #[test]
    fn pair_transition_matches_official() {
        check("pair_transition", "pair_act", 128);
    }

    /// The row chunking changes nothing.
    #[test]
    fn chunked_rows_match_one_pass() {
        let g = Golden::load("pair_transition");
        let p = g.params().sub(EVO).sub("pair_transition");
        let t = Transition::load(&p, 128, 4).unwrap();
        let n = MIN_POSITIONS_PER_CHUNK + 37;
        let x = Tensor::from_fn(&[n, 128], |i| ((i * 7919) % 1013) as f32 / 500.0 - 1.0);
        let got = t.forward(&CpuBackend, &x);
        let tail = Tensor::new(
            &[37, 128],
            x.data()[MIN_POSITIONS_PER_CHUNK * 128..].to_vec(),
        )
        .unwrap();
        let want = t.forward_rows(&CpuBackend, &tail);
        let got_tail = Tensor::new(
            &[37, 128],
            got.data()[MIN_POSITIONS_PER_CHUNK * 128..].to_vec(),
        )
        .unwrap();
        assert_close(&got_tail, &want, 1e-6, "chunked transition");
    }
}
