//! The output heads of `AlphaFoldIteration` other than the structure module (modules.py)
//! and the confidence metrics computed from them (alphafold/common/confidence.py).
//!
//! Inputs, as the official model feeds them: the pLDDT head reads the structure module's
//! final single activations (`representations['structure_module']`), the experimentally
//! resolved head the Evoformer's `single`, the distogram and PAE heads the `pair`, the
//! masked MSA head the MSA representation (template rows cropped).

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Activation, Backend, Tensor};

/// The official scope holding every head (`<SCOPE>/predicted_lddt_head`, ...).
pub const SCOPE: &str = "alphafold/alphafold_iteration";

/// Widths and bins of the heads (the v2.3 monomer config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadsConfig {
    /// Single channels (Evoformer `single` and structure module): 384.
    pub c_s: usize,
    /// Pair channels: 128.
    pub c_z: usize,
    /// MSA channels: 256.
    pub c_m: usize,
    /// pLDDT head hidden channels: 128.
    pub plddt_channels: usize,
    /// pLDDT bins over [0, 1]: 50.
    pub plddt_bins: usize,
    /// Distogram bins: 64, with 63 edges evenly from `first_break` to `last_break` (Å).
    pub distogram_bins: usize,
    pub distogram_first_break: f32,
    pub distogram_last_break: f32,
    /// Masked MSA classes: 23.
    pub masked_msa_classes: usize,
    /// atom37 atoms of the experimentally resolved head: 37.
    pub atoms: usize,
    /// Aligned-error bins: 64, with 63 edges evenly from 0 to `max_error_bin` (31 Å).
    pub pae_bins: usize,
    pub max_error_bin: f32,
}

impl HeadsConfig {
    pub const MONOMER: Self = Self {
        c_s: 384,
        c_z: 128,
        c_m: 256,
        plddt_channels: 128,
        plddt_bins: 50,
        distogram_bins: 64,
        distogram_first_break: 2.3125,
        distogram_last_break: 21.6875,
        masked_msa_classes: 23,
        atoms: 37,
        pae_bins: 64,
        max_error_bin: 31.0,
    };
}

/// `jnp.linspace(start, stop, n)` in f32 (the end points exact).
fn linspace(start: f32, stop: f32, n: usize) -> Vec<f32> {
    let step = (stop as f64 - start as f64) / (n.max(2) - 1) as f64;
    (0..n)
        .map(|i| {
            if i + 1 == n {
                stop
            } else {
                (start as f64 + step * i as f64) as f32
            }
        })
        .collect()
}

/// Algorithm 29 "predictPerResidueLDDT_Ca" (`predicted_lddt_head`): LN, Linear, ReLU,
/// Linear, ReLU, Linear to the bin logits.
#[derive(Debug)]
pub struct PredictedLddtHead {
    input_layer_norm: LayerNorm,
    act_0: Linear,
    act_1: Linear,
    logits: Linear,
}

impl PredictedLddtHead {
    /// Loads `input_layer_norm`, `act_0`, `act_1` and `logits` under `p`
    /// (`<SCOPE>/predicted_lddt_head`).
    pub fn load(p: &Scope<'_>, cfg: &HeadsConfig) -> LoadResult<Self> {
        let (c_s, c) = (cfg.c_s, cfg.plddt_channels);
        Ok(Self {
            input_layer_norm: LayerNorm::load_haiku(&p.sub("input_layer_norm"), c_s)?,
            act_0: Linear::load_haiku(&p.sub("act_0"), c_s, c, true)?,
            act_1: Linear::load_haiku(&p.sub("act_1"), c, c, true)?,
            logits: Linear::load_haiku(&p.sub("logits"), c, cfg.plddt_bins, true)?,
        })
    }

    /// The structure module's final single activations `[L, c_s]` → logits `[L, 50]`.
    pub fn forward(&self, be: &dyn Backend, structure_single: &Tensor) -> Tensor {
        let x = self.input_layer_norm.forward(be, structure_single);
        let mut h = self.act_0.forward(be, &x);
        be.activate(&mut h, Activation::Relu);
        let mut h = self.act_1.forward(be, &h);
        be.activate(&mut h, Activation::Relu);
        self.logits.forward(be, &h)
    }
}

/// Supplement 1.9.8 "Distogram prediction" (`distogram_head`): `half_logits` symmetrised,
/// `logits_ij = h_ij + h_ji`.
#[derive(Debug)]
pub struct DistogramHead {
    half_logits: Linear,
    bin_edges: Vec<f32>,
}

impl DistogramHead {
    /// Loads `half_logits` under `p` (`<SCOPE>/distogram_head`).
    pub fn load(p: &Scope<'_>, cfg: &HeadsConfig) -> LoadResult<Self> {
        let n = cfg.distogram_bins;
        Ok(Self {
            half_logits: Linear::load_haiku(&p.sub("half_logits"), cfg.c_z, n, true)?,
            bin_edges: linspace(cfg.distogram_first_break, cfg.distogram_last_break, n - 1),
        })
    }

    /// The bin edges (Å), `bins - 1` of them (the official `bin_edges`).
    pub fn bin_edges(&self) -> &[f32] {
        &self.bin_edges
    }

    /// pair `[L, L, c_z]` → logits `[L, L, bins]`, symmetric in `i, j` (on the backend:
    /// the logits stay where the pair is).
    pub fn forward(&self, be: &dyn Backend, pair: &Tensor) -> Tensor {
        let half = self.half_logits.forward(be, pair); // [L, L, bins]
        let mut logits = be.swap_leading_axes(&half); // h_ji
        be.add_assign(&mut logits, &half);
        logits
    }
}

/// Supplement 1.9.9 "Masked MSA prediction" (`masked_msa_head`): one Linear to 23 classes.
#[derive(Debug)]
pub struct MaskedMsaHead {
    logits: Linear,
}

impl MaskedMsaHead {
    /// Loads `logits` under `p` (`<SCOPE>/masked_msa_head`).
    pub fn load(p: &Scope<'_>, cfg: &HeadsConfig) -> LoadResult<Self> {
        Ok(Self {
            logits: Linear::load_haiku(&p.sub("logits"), cfg.c_m, cfg.masked_msa_classes, true)?,
        })
    }

    /// msa `[S, L, c_m]` → logits `[S, L, 23]`.
    pub fn forward(&self, be: &dyn Backend, msa: &Tensor) -> Tensor {
        self.logits.forward(be, msa)
    }
}

/// Supplement 1.9.10 "Experimentally resolved prediction" (`experimentally_resolved_head`):
/// one Linear to the 37 atom37 logits (sigmoid gives the probabilities).
#[derive(Debug)]
pub struct ExperimentallyResolvedHead {
    logits: Linear,
}

impl ExperimentallyResolvedHead {
    /// Loads `logits` under `p` (`<SCOPE>/experimentally_resolved_head`).
    pub fn load(p: &Scope<'_>, cfg: &HeadsConfig) -> LoadResult<Self> {
        Ok(Self {
            logits: Linear::load_haiku(&p.sub("logits"), cfg.c_s, cfg.atoms, true)?,
        })
    }

    /// single `[L, c_s]` → logits `[L, 37]`.
    pub fn forward(&self, be: &dyn Backend, single: &Tensor) -> Tensor {
        self.logits.forward(be, single)
    }
}

/// Supplement 1.9.7 "TM-score prediction" (`predicted_aligned_error_head`, `_ptm` models
/// only): one Linear to 64 aligned-error bins.
#[derive(Debug)]
pub struct PredictedAlignedErrorHead {
    logits: Linear,
    breaks: Vec<f32>,
}

impl PredictedAlignedErrorHead {
    /// Loads `logits` under `p` (`<SCOPE>/predicted_aligned_error_head`).
    pub fn load(p: &Scope<'_>, cfg: &HeadsConfig) -> LoadResult<Self> {
        let n = cfg.pae_bins;
        Ok(Self {
            logits: Linear::load_haiku(&p.sub("logits"), cfg.c_z, n, true)?,
            breaks: linspace(0.0, cfg.max_error_bin, n - 1),
        })
    }

    /// The bin edges (Å), `bins - 1` of them (the official `breaks`).
    pub fn breaks(&self) -> &[f32] {
        &self.breaks
    }

    /// pair `[L, L, c_z]` → logits `[L, L, 64]`.
    pub fn forward(&self, be: &dyn Backend, pair: &Tensor) -> Tensor {
        self.logits.forward(be, pair)
    }
}

/// Official `compute_plddt`: logits `[L, bins]` → per-residue pLDDT `[L]` in 0..100, the
/// expected bin centre `(k + 0.5) / bins` times 100 (on the backend, in f32 where the official
/// code sums f64 bin centres: about 1e-5 apart).
pub fn compute_plddt(be: &dyn Backend, logits: &Tensor) -> Vec<f32> {
    let n = logits.dim(-1);
    let width = 1.0 / n as f32;
    let centers = Tensor::from_fn(&[1, n], |k| 0.5 * width + k as f32 * width);
    let expected = be.softmax_expectations(logits, &centers); // [L, 1]
    expected.data().iter().map(|e| e * 100.0).collect()
}

/// Official `_calculate_bin_centers`: edges + half a step, and a catch-all centre one step
/// past the last (f32 as numpy on f32 breaks).
fn bin_centers(breaks: &[f32]) -> Vec<f32> {
    let step = breaks[1] - breaks[0];
    let mut c: Vec<f32> = breaks.iter().map(|b| b + step / 2.0).collect();
    c.push(c[c.len() - 1] + step);
    c
}

/// The aligned-error head's confidence metrics (official `compute_predicted_aligned_error`
/// and `predicted_tm_score`).
#[derive(Clone, Debug)]
pub struct AlignedError {
    /// `predicted_aligned_error` `[L, L]` (Å): expected error of residue `j` in frame `i`.
    pub predicted_aligned_error: Tensor,
    /// `max_predicted_aligned_error` (Å): the last bin centre (31.75).
    pub max_predicted_aligned_error: f32,
    /// `ptm`.
    pub ptm: f32,
}

/// Official `compute_predicted_aligned_error` and `predicted_tm_score` (pTM, no `asym_id`)
/// from PAE logits `[L, L, bins]`, their `breaks`, and `residue_weights` `[L]` (all ones when
/// `None`, as the monomer model uses it).
///
/// Each pair's expected error and expected TM term come from one pass over the logits on the
/// backend ([`Backend::softmax_expectations`], in fp32), so only `[L, L, 2]` leaves the
/// device. pTM: `d0 = 1.24 (max(sum w, 19) - 15)^(1/3) - 1.8`; per alignment frame `i`,
/// the TM terms averaged over residues `j` weighted `w_i w_j`; the frame with the largest
/// `score_i * w_i` wins. (With weights that are not all ones this
/// is ColabFold's fork: DeepMind's v2.3 takes `int(sum w)` residues and only supports all
/// ones; the two agree whenever DeepMind's runs.)
pub fn compute_aligned_error(
    be: &dyn Backend,
    logits: &Tensor,
    breaks: &[f32],
    residue_weights: Option<&[f32]>,
) -> AlignedError {
    let (l, n) = (logits.dim(0), logits.dim(-1));
    assert_eq!(logits.shape(), &[l, l, n], "pae logits [L, L, bins]");
    let centers = bin_centers(breaks);
    assert_eq!(centers.len(), n, "breaks are bins - 1");
    let ones = vec![1f32; l];
    let w = residue_weights.unwrap_or(&ones);
    assert_eq!(w.len(), l, "residue_weights [L]");
    let sum_w: f64 = w.iter().map(|&x| x as f64).sum();
    let d0 = 1.24 * (sum_w.max(19.0) - 15.0).powf(1.0 / 3.0) - 1.8;
    let d0_sq = d0 * d0;
    let tm_per_bin = centers
        .iter()
        .map(|&c| (1.0 / (1.0 + (c * c) as f64 / d0_sq)) as f32);
    let weights: Vec<f32> = centers.iter().copied().chain(tm_per_bin).collect();
    let weights = Tensor::new(&[2, n], weights).expect("[2, bins]");
    let expected = be.softmax_expectations(logits, &weights); // [L, L, 2]
    let pairs = expected.data().chunks(2);
    let (pae, term): (Vec<f32>, Vec<f32>) = pairs.map(|e| (e[0], e[1])).unzip(); // [L, L] each
    let mut best = (f64::NEG_INFINITY, 0.0);
    for i in 0..l {
        let pw: Vec<f64> = w.iter().map(|&wj| (w[i] * wj) as f64).collect();
        let norm = 1e-8 + pw.iter().sum::<f64>();
        let score: f64 = (0..l).map(|j| term[i * l + j] as f64 * pw[j] / norm).sum();
        let key = score * w[i] as f64;
        if key > best.0 {
            best = (key, score); // first maximum, as np.argmax
        }
    }
    AlignedError {
        predicted_aligned_error: Tensor::new(&[l, l], pae).expect("[L, L]"),
        max_predicted_aligned_error: centers[n - 1],
        ptm: best.1 as f32,
    }
}

/// Every head's logits.
#[derive(Debug)]
pub struct HeadOutputs {
    /// `[L, 50]`.
    pub predicted_lddt: Tensor,
    /// `[L, L, 64]`.
    pub distogram: Tensor,
    /// `[S, L, 23]`.
    pub masked_msa: Tensor,
    /// `[L, 37]`.
    pub experimentally_resolved: Tensor,
    /// `[L, L, 64]`, `_ptm` models only.
    pub predicted_aligned_error: Option<Tensor>,
}

/// The heads of one model (the structure module aside).
#[derive(Debug)]
pub struct Heads {
    pub predicted_lddt: PredictedLddtHead,
    pub distogram: DistogramHead,
    pub masked_msa: MaskedMsaHead,
    pub experimentally_resolved: ExperimentallyResolvedHead,
    pub predicted_aligned_error: Option<PredictedAlignedErrorHead>,
}

impl Heads {
    /// Loads every head under `p` ([`SCOPE`]); the aligned-error head when `ptm`.
    pub fn load(p: &Scope<'_>, cfg: &HeadsConfig, ptm: bool) -> LoadResult<Self> {
        Ok(Self {
            predicted_lddt: PredictedLddtHead::load(&p.sub("predicted_lddt_head"), cfg)?,
            distogram: DistogramHead::load(&p.sub("distogram_head"), cfg)?,
            masked_msa: MaskedMsaHead::load(&p.sub("masked_msa_head"), cfg)?,
            experimentally_resolved: ExperimentallyResolvedHead::load(
                &p.sub("experimentally_resolved_head"),
                cfg,
            )?,
            predicted_aligned_error: if ptm {
                Some(PredictedAlignedErrorHead::load(
                    &p.sub("predicted_aligned_error_head"),
                    cfg,
                )?)
            } else {
                None
            },
        })
    }

    /// `single` `[L, c_s]` (Evoformer), `structure_single` `[L, c_s]` (structure module's
    /// final act), `pair` `[L, L, c_z]`, `msa` `[S, L, c_m]`.
    pub fn forward(
        &self,
        be: &dyn Backend,
        single: &Tensor,
        structure_single: &Tensor,
        pair: &Tensor,
        msa: &Tensor,
    ) -> HeadOutputs {
        HeadOutputs {
            predicted_lddt: self.predicted_lddt.forward(be, structure_single),
            distogram: self.distogram.forward(be, pair),
            masked_msa: self.masked_msa.forward(be, msa),
            experimentally_resolved: self.experimentally_resolved.forward(be, single),
            predicted_aligned_error: self
                .predicted_aligned_error
                .as_ref()
                .map(|h| h.forward(be, pair)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::af2::golden::{assert_close_strict, Golden};
    use ferrofold_kernels::CpuBackend;

    const TOL: f32 = 1e-5;

    fn check(got: &Tensor, want: &Tensor, what: &str) {
        assert_close_strict(got, want, TOL, what);
    }

    fn heads(g: &Golden) -> Heads {
        Heads::load(&g.params().sub(SCOPE), &HeadsConfig::MONOMER, true).unwrap()
    }

    fn forward(g: &Golden) -> HeadOutputs {
        heads(g).forward(
            &CpuBackend,
            &g.input("single"),
            &g.input("structure_module"),
            &g.input("pair"),
            &g.input("msa"),
        )
    }

    fn vector(v: Vec<f32>) -> Tensor {
        Tensor::new(&[v.len()], v).unwrap()
    }

    #[test]
    fn predicted_lddt_head_matches_official() {
        let g = Golden::load("heads");
        let out = forward(&g);
        let want = g.output(Some("predicted_lddt/logits"));
        check(&out.predicted_lddt, &want, "plddt logits");
        let plddt = vector(compute_plddt(&CpuBackend, &want));
        let want = g.output(Some("confidence/plddt"));
        check(&plddt, &want, "plddt");
    }

    #[test]
    fn distogram_head_matches_official() {
        let g = Golden::load("heads");
        let h = heads(&g);
        let out = forward(&g);
        let want = g.output(Some("distogram/logits"));
        check(&out.distogram, &want, "distogram logits");
        let edges = vector(h.distogram.bin_edges().to_vec());
        assert_eq!(edges, g.output(Some("distogram/bin_edges")), "bin edges");
    }

    #[test]
    fn masked_msa_head_matches_official() {
        let g = Golden::load("heads");
        let want = g.output(Some("masked_msa/logits"));
        check(&forward(&g).masked_msa, &want, "masked msa logits");
    }

    #[test]
    fn experimentally_resolved_head_matches_official() {
        let g = Golden::load("heads");
        let want = g.output(Some("experimentally_resolved/logits"));
        let got = forward(&g).experimentally_resolved;
        check(&got, &want, "experimentally resolved logits");
    }

    #[test]
    fn predicted_aligned_error_head_and_ptm_match_official() {
        let g = Golden::load("heads");
        let h = heads(&g);
        let got = forward(&g).predicted_aligned_error.unwrap();
        let want = g.output(Some("predicted_aligned_error/logits"));
        check(&got, &want, "pae logits");
        let breaks = h
            .predicted_aligned_error
            .as_ref()
            .unwrap()
            .breaks()
            .to_vec();
        assert_eq!(
            vector(breaks.clone()),
            g.output(Some("predicted_aligned_error/breaks")),
            "breaks"
        );
        // the metrics, from the stored logits (as confidence.py reads them)
        let c = |n: &str| g.output(Some(&format!("confidence/{n}")));
        let mut probs = want.clone();
        CpuBackend.softmax(&mut probs);
        check(&probs, &c("aligned_confidence_probs"), "pae probs");
        let metrics = |logits: &Tensor, w: Option<&[f32]>| {
            compute_aligned_error(&CpuBackend, logits, &breaks, w)
        };
        let ae = metrics(&want, None);
        let e = &ae.predicted_aligned_error;
        check(e, &c("predicted_aligned_error"), "pae");
        let max = vector(vec![ae.max_predicted_aligned_error]);
        assert_eq!(max, c("max_predicted_aligned_error"), "max pae");
        let ptm = |logits: &Tensor, w: Option<&[f32]>| vector(vec![metrics(logits, w).ptm]);
        check(&vector(vec![ae.ptm]), &c("ptm"), "ptm");
        let w = g.input("residue_weights");
        let got = ptm(&want, Some(w.data()));
        check(&got, &c("ptm_weighted"), "ptm weighted");
        // L = 32 (d0 not clipped at 19 residues)
        let logits = g.input("pae_logits_32");
        check(&ptm(&logits, None), &c("ptm_32"), "ptm L=32");
        let w = g.input("residue_weights_32");
        let got = ptm(&logits, Some(w.data()));
        check(&got, &c("ptm_32_weighted"), "ptm L=32 weighted");
    }
}
