//! The embeddings in front of the Evoformer stacks (modules.py `EmbeddingsAndEvoformer`
//! up to the extra-MSA stack, templates excluded): the input embedder (Algorithm 3), the
//! recycling embedder (Algorithm 32), the relative position encoding (Algorithms 4 and 5)
//! and the extra-MSA embedding (Algorithm 2, line 14).
//!
//! The official order of the additions is kept (it fixes the f32 rounding): pair =
//! `left_single_i + right_single_j`, then `+= prev_pos_linear(dgram)`, msa row 0
//! `+= LN(prev_msa_first_row)`, pair `+= LN(prev_pair)`, then `+= relpos`. Templates, when
//! enabled, add to the pair after that (not here).
//!
//! The one-hot inputs (relative offsets, distance bins, extra-MSA tokens) are never
//! materialised: a one-hot row times the weights is the weight row, exactly as the
//! official matmul computes it. Nothing is masked: padded residues get ordinary values.

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, Tensor};

/// The official scope of the embedding parameters.
pub const SCOPE: &str = "alphafold/alphafold_iteration/evoformer";

/// Residue type index of glycine (`residue_constants.restype_order['G']`).
const GLY: usize = 7;
/// atom37 indices of CA and CB.
const CA: usize = 1;
const CB: usize = 3;

/// Widths and bins of the embeddings (the v2.3 monomer config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingsConfig {
    /// `target_feat` channels: 22 (has_break, aatype one-hot of 21).
    pub target_feat_dim: usize,
    /// `msa_feat` channels: 49.
    pub msa_feat_dim: usize,
    /// MSA channels: 256.
    pub c_m: usize,
    /// Pair channels: 128.
    pub c_z: usize,
    /// Extra-MSA channels: 64.
    pub c_e: usize,
    /// Relative offsets are clipped to `±max_relative_feature` (32): `2 * 32 + 1` classes.
    pub max_relative_feature: i32,
    /// Recycled-distance bins (`prev_pos`): 15 lower edges from 3.25 to 20.75 Å.
    pub prev_pos_bins: DistanceBins,
}

impl EmbeddingsConfig {
    pub const MONOMER: Self = Self {
        target_feat_dim: 22,
        msa_feat_dim: 49,
        c_m: 256,
        c_z: 128,
        c_e: 64,
        max_relative_feature: 32,
        prev_pos_bins: DistanceBins {
            num_bins: 15,
            min_bin: 3.25,
            max_bin: 20.75,
        },
    };
}

/// Classes of the extra-MSA one-hot: 20 amino acids, X, gap, BERT mask.
pub const EXTRA_MSA_CLASSES: usize = 23;

/// A linear layer on a one-hot input: the weights kept as stored, `[in, out]`, so a class is
/// a row, looked up on the backend.
#[derive(Debug)]
struct OneHotLinear {
    w: Tensor, // [in, out]
    b: Tensor, // [out]
}

impl OneHotLinear {
    fn load(p: &Scope<'_>, d_in: usize, d_out: usize) -> LoadResult<Self> {
        Ok(Self {
            w: p.get_owned("weights", &[d_in, d_out])?,
            b: p.get_owned("bias", &[d_out])?,
        })
    }

    /// `one_hot(classes) W + b` for every class of `classes` (negative: the all-zero one-hot)
    /// → `classes.shape() + [out]`.
    fn embed(&self, be: &dyn Backend, classes: &Tensor) -> Tensor {
        be.one_hot_linear(classes, &self.w, &self.b)
    }
}

/// Algorithm 3 "InputEmbedder" (`preprocess_1d`, `preprocess_msa`, `left_single`, `right_single`).
#[derive(Debug)]
pub struct InputEmbedder {
    preprocess_1d: Linear,
    preprocess_msa: Linear,
    left_single: Linear,
    right_single: Linear,
}

impl InputEmbedder {
    /// Loads `preprocess_1d`, `preprocess_msa`, `left_single` and `right_single` under `p`
    /// ([`SCOPE`]).
    pub fn load(p: &Scope<'_>, cfg: &EmbeddingsConfig) -> LoadResult<Self> {
        let (tf, mf) = (cfg.target_feat_dim, cfg.msa_feat_dim);
        Ok(Self {
            preprocess_1d: Linear::load_haiku(&p.sub("preprocess_1d"), tf, cfg.c_m, true)?,
            preprocess_msa: Linear::load_haiku(&p.sub("preprocess_msa"), mf, cfg.c_m, true)?,
            left_single: Linear::load_haiku(&p.sub("left_single"), tf, cfg.c_z, true)?,
            right_single: Linear::load_haiku(&p.sub("right_single"), tf, cfg.c_z, true)?,
        })
    }

    /// `target_feat` `[L, 22]`, `msa_feat` `[S, L, 49]` → (msa `[S, L, c_m]`, pair `[L, L, c_z]`).
    pub fn forward(
        &self,
        be: &dyn Backend,
        target_feat: &Tensor,
        msa_feat: &Tensor,
    ) -> (Tensor, Tensor) {
        let l = target_feat.dim(0);
        assert_eq!(msa_feat.dim(1), l, "msa_feat residues");
        // official: preprocess_1d[None] + preprocess_msa (the same sum, commuted). `single`
        // repeated over the MSA rows is a lookup of row i at every (s, i), on the backend.
        let single = self.preprocess_1d.forward(be, target_feat); // [L, c_m]
        let mut msa = self.preprocess_msa.forward(be, msa_feat); // [S, L, c_m]
        let (s, c_m) = (msa_feat.dim(0), single.dim(1));
        let residue = Tensor::from_fn(&[s, l], |k| (k % l) as f32); // [S, L]
        let repeated = be.one_hot_linear(&residue, &single, &Tensor::zeros(&[c_m])); // [S, L, c_m]
        be.add_assign(&mut msa, &repeated);
        let left = self.left_single.forward(be, target_feat); // [L, c_z]
        let right = self.right_single.forward(be, target_feat); // [L, c_z]
        let pair = be.outer_sum(&left, &right); // [L, L, c_z]
        (msa, pair)
    }
}

/// Algorithms 4 "relpos" and 5 "one_hot": `pair_activiations` (sic, the official name) on
/// `one_hot(clip(residue_index_i - residue_index_j + 32, 0, 64))`.
#[derive(Debug)]
pub struct RelativePositionEncoding {
    linear: OneHotLinear,
    max_relative_feature: i32,
}

impl RelativePositionEncoding {
    /// Loads `pair_activiations` under `p` ([`SCOPE`]).
    pub fn load(p: &Scope<'_>, cfg: &EmbeddingsConfig) -> LoadResult<Self> {
        let classes = 2 * cfg.max_relative_feature as usize + 1;
        Ok(Self {
            linear: OneHotLinear::load(&p.sub("pair_activiations"), classes, cfg.c_z)?,
            max_relative_feature: cfg.max_relative_feature,
        })
    }

    /// `residue_index` `[L]` → the pair embedding `[L, L, c_z]`.
    pub fn forward(&self, be: &dyn Backend, residue_index: &[i64]) -> Tensor {
        let l = residue_index.len();
        let m = self.max_relative_feature as i64;
        let classes = Tensor::from_fn(&[l, l], |ij| {
            let offset = residue_index[ij / l] - residue_index[ij % l];
            (offset + m).clamp(0, 2 * m) as f32
        });
        self.linear.embed(be, &classes)
    }
}

/// Distance bins of `dgram_from_positions`: `num_bins` lower edges evenly from `min_bin`
/// to `max_bin` (Å); the last bin is open-ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistanceBins {
    pub num_bins: usize,
    pub min_bin: f32,
    pub max_bin: f32,
}

impl DistanceBins {
    /// The squared lower edges (`jnp.square(jnp.linspace(min_bin, max_bin, num_bins))`).
    fn lower_breaks_sq(&self) -> Vec<f32> {
        let n = self.num_bins;
        let step = (self.max_bin as f64 - self.min_bin as f64) / (n.max(2) - 1) as f64;
        (0..n)
            .map(|i| {
                let e = (self.min_bin as f64 + step * i as f64) as f32;
                e * e
            })
            .collect()
    }

    /// The bin of a squared distance, as the official one-hot: `d2 > lower_k && d2 <
    /// upper_k` (`upper_k` = the next lower edge, 1e8 for the last bin). `None` below the
    /// first edge, or on an edge exactly.
    fn bin(lower_sq: &[f32], d2: f32) -> Option<usize> {
        let n = lower_sq.len();
        (0..n).find(|&k| {
            let upper = if k + 1 < n { lower_sq[k + 1] } else { 1e8 };
            d2 > lower_sq[k] && d2 < upper
        })
    }
}

/// Official `pseudo_beta_fn` (no mask): CB, or CA for glycine, of atom37 positions
/// `[L, 37, 3]` → `[L][3]`.
pub fn pseudo_beta(aatype: &[usize], atom37_positions: &Tensor) -> Vec<[f32; 3]> {
    let l = aatype.len();
    assert_eq!(atom37_positions.shape(), &[l, 37, 3], "atom37 positions");
    let x = atom37_positions.data();
    aatype
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let at = if a == GLY { CA } else { CB };
            let o = (i * 37 + at) * 3;
            [x[o], x[o + 1], x[o + 2]]
        })
        .collect()
}

/// Official `dgram_from_positions`: positions `[L][3]` → one-hot distance bins `[L, L, bins]`.
pub fn dgram_from_positions(positions: &[[f32; 3]], bins: &DistanceBins) -> Tensor {
    let l = positions.len();
    let lower = bins.lower_breaks_sq();
    let mut out = Tensor::zeros(&[l, l, bins.num_bins]);
    for (ij, dst) in out.data_mut().chunks_mut(bins.num_bins).enumerate() {
        if let Some(k) = DistanceBins::bin(&lower, dist2(&positions[ij / l], &positions[ij % l])) {
            dst[k] = 1.0;
        }
    }
    out
}

/// Squared distance, summed x, y, z as the official `jnp.sum(..., axis=-1)`.
fn dist2(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

/// What the previous recycling iteration hands on (all zeros before the first).
#[derive(Clone, Debug)]
pub struct RecyclingState {
    /// `final_atom_positions` `[L, 37, 3]` (Å).
    pub pos: Tensor,
    /// `msa_first_row` `[L, c_m]`.
    pub msa_first_row: Tensor,
    /// `pair` `[L, L, c_z]`.
    pub pair: Tensor,
}

impl RecyclingState {
    /// The first iteration's state: zeros, as the official model starts recycling (the pair
    /// where the backend keeps its results).
    pub fn zeros(be: &dyn Backend, num_res: usize, cfg: &EmbeddingsConfig) -> Self {
        Self {
            pos: Tensor::zeros(&[num_res, 37, 3]),
            msa_first_row: Tensor::zeros(&[num_res, cfg.c_m]),
            pair: be.zeros(&[num_res, num_res, cfg.c_z]),
        }
    }
}

/// Algorithm 32 "RecyclingEmbedder" (`prev_pos_linear`, `prev_msa_first_row_norm`,
/// `prev_pair_norm`).
#[derive(Debug)]
pub struct RecyclingEmbedder {
    prev_pos_linear: OneHotLinear,
    prev_msa_first_row_norm: LayerNorm,
    prev_pair_norm: LayerNorm,
    bins: DistanceBins,
}

impl RecyclingEmbedder {
    /// Loads `prev_pos_linear`, `prev_msa_first_row_norm` and `prev_pair_norm` under `p`
    /// ([`SCOPE`]).
    pub fn load(p: &Scope<'_>, cfg: &EmbeddingsConfig) -> LoadResult<Self> {
        let bins = cfg.prev_pos_bins;
        Ok(Self {
            prev_pos_linear: OneHotLinear::load(&p.sub("prev_pos_linear"), bins.num_bins, cfg.c_z)?,
            prev_msa_first_row_norm: LayerNorm::load_haiku(
                &p.sub("prev_msa_first_row_norm"),
                cfg.c_m,
            )?,
            prev_pair_norm: LayerNorm::load_haiku(&p.sub("prev_pair_norm"), cfg.c_z)?,
            bins,
        })
    }

    /// `prev_pos_linear(dgram(pseudo_beta(prev_pos)))` `[L, L, c_z]`.
    pub fn pos_embedding(&self, be: &dyn Backend, aatype: &[usize], prev_pos: &Tensor) -> Tensor {
        let pb = pseudo_beta(aatype, prev_pos);
        let l = pb.len();
        let lower = self.bins.lower_breaks_sq();
        let bins = Tensor::from_fn(&[l, l], |ij| {
            DistanceBins::bin(&lower, dist2(&pb[ij / l], &pb[ij % l])).map_or(-1.0, |k| k as f32)
        });
        self.prev_pos_linear.embed(be, &bins)
    }

    /// `LN(prev_msa_first_row)` `[L, c_m]`.
    pub fn msa_first_row_embedding(&self, be: &dyn Backend, prev: &Tensor) -> Tensor {
        self.prev_msa_first_row_norm.forward(be, prev)
    }

    /// `LN(prev_pair)` `[L, L, c_z]`.
    pub fn pair_embedding(&self, be: &dyn Backend, prev: &Tensor) -> Tensor {
        self.prev_pair_norm.forward(be, prev)
    }

    /// Adds the recycled state to msa `[S, L, c_m]` (row 0) and pair `[L, L, c_z]`, in the
    /// official order.
    pub fn forward(
        &self,
        be: &dyn Backend,
        msa: &mut Tensor,
        pair: &mut Tensor,
        aatype: &[usize],
        prev: &RecyclingState,
    ) {
        be.add_assign(pair, &self.pos_embedding(be, aatype, &prev.pos));
        let row0 = self.msa_first_row_embedding(be, &prev.msa_first_row); // [L, c_m]
        let mut first = be.slice_rows(msa, 0..1); // [1, L, c_m]
        let row0 = row0.reshape(first.shape()).expect("one MSA row");
        be.add_assign(&mut first, &row0);
        be.write_rows(msa, 0, &first);
        be.add_assign(pair, &self.pair_embedding(be, &prev.pair));
    }
}

/// Algorithm 2 line 14 (the extra-MSA embedding): `extra_msa_activations` on
/// `[one_hot(extra_msa, 23), extra_has_deletion, extra_deletion_value]`.
#[derive(Debug)]
pub struct ExtraMsaEmbedder {
    /// The one-hot rows `[23, c_e]` and the bias.
    classes: OneHotLinear,
    /// The rows of `extra_has_deletion` and `extra_deletion_value` as a linear layer's
    /// weights `[c_e, 2]`.
    deletion: Tensor,
}

impl ExtraMsaEmbedder {
    /// Loads `extra_msa_activations` under `p` ([`SCOPE`]).
    pub fn load(p: &Scope<'_>, cfg: &EmbeddingsConfig) -> LoadResult<Self> {
        let p = p.sub("extra_msa_activations");
        let OneHotLinear { w, b } = OneHotLinear::load(&p, EXTRA_MSA_CLASSES + 2, cfg.c_e)?;
        Ok(Self {
            deletion: w
                .slice_rows(EXTRA_MSA_CLASSES..EXTRA_MSA_CLASSES + 2)
                .transposed(),
            classes: OneHotLinear {
                w: w.slice_rows(0..EXTRA_MSA_CLASSES),
                b,
            },
        })
    }

    /// `extra_msa` class ids `[S_e, L]` (0..=22 as floats; any other value one-hots to
    /// zeros, as `jax.nn.one_hot`), `has_deletion` and `deletion_value` `[S_e, L]` →
    /// `[S_e, L, c_e]`: the class's row plus the bias by lookup, and the two deletion
    /// features through their rows, on the backend (the host builds only `[S_e, L, 2]`).
    pub fn forward(
        &self,
        be: &dyn Backend,
        extra_msa: &Tensor,
        has_deletion: &Tensor,
        deletion_value: &Tensor,
    ) -> Tensor {
        let shape = extra_msa.shape();
        assert_eq!(shape.len(), 2, "extra_msa [S_e, L]");
        assert_eq!(has_deletion.shape(), shape, "extra_has_deletion shape");
        assert_eq!(deletion_value.shape(), shape, "extra_deletion_value shape");
        let valid = |t: f32| t >= 0.0 && t < EXTRA_MSA_CLASSES as f32 && t.fract() == 0.0;
        let classes = Tensor::from_fn(shape, |n| {
            let t = extra_msa.data()[n];
            if valid(t) {
                t
            } else {
                -1.0
            }
        }); // [S_e, L]
        let (hd, dv) = (has_deletion.data(), deletion_value.data());
        let deletions = Tensor::from_fn(&[shape[0], shape[1], 2], |k| {
            if k % 2 == 0 {
                hd[k / 2]
            } else {
                dv[k / 2]
            }
        }); // [S_e, L, 2]
        let mut out = self.classes.embed(be, &classes); // [S_e, L, c_e]
        be.add_assign(&mut out, &be.linear(&deletions, &self.deletion, None));
        out
    }
}

/// The features the embeddings read (one ensemble member; no leading ensemble axis).
#[derive(Clone, Copy, Debug)]
pub struct EmbeddingFeatures<'a> {
    /// `[L]`, 0..=20 (20 = unknown).
    pub aatype: &'a [usize],
    /// `[L]`.
    pub residue_index: &'a [i64],
    /// `[L, 22]`.
    pub target_feat: &'a Tensor,
    /// `[S, L, 49]`.
    pub msa_feat: &'a Tensor,
    /// `[S_e, L]` class ids 0..=22.
    pub extra_msa: &'a Tensor,
    /// `[S_e, L]`.
    pub extra_has_deletion: &'a Tensor,
    /// `[S_e, L]`.
    pub extra_deletion_value: &'a Tensor,
}

/// The stacks' inputs.
#[derive(Debug)]
pub struct Embedded {
    /// `[S, L, c_m]`, the Evoformer's MSA input (template rows are appended later).
    pub msa: Tensor,
    /// `[L, L, c_z]`, before the template embedding.
    pub pair: Tensor,
    /// `[S_e, L, c_e]`, the extra-MSA stack's MSA input.
    pub extra_msa: Tensor,
}

/// Everything in `EmbeddingsAndEvoformer` before the stacks except the templates.
#[derive(Debug)]
pub struct Embeddings {
    pub input: InputEmbedder,
    pub recycling: RecyclingEmbedder,
    pub relpos: RelativePositionEncoding,
    pub extra_msa: ExtraMsaEmbedder,
}

impl Embeddings {
    /// Loads every embedding under `p` ([`SCOPE`]).
    pub fn load(p: &Scope<'_>, cfg: &EmbeddingsConfig) -> LoadResult<Self> {
        Ok(Self {
            input: InputEmbedder::load(p, cfg)?,
            recycling: RecyclingEmbedder::load(p, cfg)?,
            relpos: RelativePositionEncoding::load(p, cfg)?,
            extra_msa: ExtraMsaEmbedder::load(p, cfg)?,
        })
    }

    pub fn forward(
        &self,
        be: &dyn Backend,
        f: &EmbeddingFeatures<'_>,
        prev: &RecyclingState,
    ) -> Embedded {
        let (mut msa, mut pair) = self.input.forward(be, f.target_feat, f.msa_feat);
        self.recycling
            .forward(be, &mut msa, &mut pair, f.aatype, prev);
        be.add_assign(&mut pair, &self.relpos.forward(be, f.residue_index));
        let extra_msa = self.extra_msa.forward(
            be,
            f.extra_msa,
            f.extra_has_deletion,
            f.extra_deletion_value,
        );
        Embedded {
            msa,
            pair,
            extra_msa,
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

    fn load(g: &Golden) -> Embeddings {
        Embeddings::load(&g.params().sub(SCOPE), &EmbeddingsConfig::MONOMER).unwrap()
    }

    fn ints<T: TryFrom<i64>>(t: &Tensor) -> Vec<T>
    where
        T::Error: std::fmt::Debug,
    {
        t.data()
            .iter()
            .map(|&v| T::try_from(v as i64).unwrap())
            .collect()
    }

    struct Inputs {
        aatype: Vec<usize>,
        residue_index: Vec<i64>,
        prev: RecyclingState,
    }

    fn inputs(g: &Golden) -> Inputs {
        Inputs {
            aatype: ints(&g.input("aatype")),
            residue_index: ints(&g.input("residue_index")),
            prev: RecyclingState {
                pos: g.input("prev_pos"),
                msa_first_row: g.input("prev_msa_first_row"),
                pair: g.input("prev_pair"),
            },
        }
    }

    #[test]
    fn input_embedder_matches_official() {
        let g = Golden::load("embeddings");
        let e = load(&g);
        let (msa, pair) =
            e.input
                .forward(&CpuBackend, &g.input("target_feat"), &g.input("msa_feat"));
        check(&msa, &g.output(Some("input_embedder/msa")), "input msa");
        check(&pair, &g.output(Some("input_embedder/pair")), "input pair");
    }

    #[test]
    fn relative_position_encoding_matches_official() {
        let g = Golden::load("embeddings");
        let e = load(&g);
        let got = e.relpos.forward(&CpuBackend, &inputs(&g).residue_index);
        check(&got, &g.output(Some("relpos")), "relpos");
    }

    #[test]
    fn recycling_embedder_matches_official() {
        let g = Golden::load("embeddings");
        let e = load(&g);
        let i = inputs(&g);
        let bins = EmbeddingsConfig::MONOMER.prev_pos_bins;
        let dgram = dgram_from_positions(&pseudo_beta(&i.aatype, &i.prev.pos), &bins);
        let want = g.output(Some("recycle/prev_pos_dgram"));
        assert_eq!(dgram, want, "dgram");
        let rec = &e.recycling;
        let got = rec.pos_embedding(&CpuBackend, &i.aatype, &i.prev.pos);
        check(&got, &g.output(Some("recycle/prev_pos_linear")), "prev_pos");
        let got = rec.msa_first_row_embedding(&CpuBackend, &i.prev.msa_first_row);
        let want = g.output(Some("recycle/prev_msa_first_row_norm"));
        check(&got, &want, "prev_msa_first_row_norm");
        let got = rec.pair_embedding(&CpuBackend, &i.prev.pair);
        check(
            &got,
            &g.output(Some("recycle/prev_pair_norm")),
            "prev_pair_norm",
        );
    }

    #[test]
    fn extra_msa_embedder_matches_official() {
        let g = Golden::load("embeddings");
        let e = load(&g);
        let got = e.extra_msa.forward(
            &CpuBackend,
            &g.input("extra_msa"),
            &g.input("extra_has_deletion"),
            &g.input("extra_deletion_value"),
        );
        check(&got, &g.output(Some("extra_msa")), "extra_msa");
    }

    /// All of it: the Evoformer stacks' inputs.
    #[test]
    fn embeddings_match_official() {
        let g = Golden::load("embeddings");
        let e = load(&g);
        let i = inputs(&g);
        let (target_feat, msa_feat) = (g.input("target_feat"), g.input("msa_feat"));
        let extra_msa = g.input("extra_msa");
        let (has_del, del_val) = (
            g.input("extra_has_deletion"),
            g.input("extra_deletion_value"),
        );
        let f = EmbeddingFeatures {
            aatype: &i.aatype,
            residue_index: &i.residue_index,
            target_feat: &target_feat,
            msa_feat: &msa_feat,
            extra_msa: &extra_msa,
            extra_has_deletion: &has_del,
            extra_deletion_value: &del_val,
        };
        let out = e.forward(&CpuBackend, &f, &i.prev);
        check(&out.msa, &g.output(Some("msa")), "msa");
        check(&out.pair, &g.output(Some("pair")), "pair");
        check(&out.extra_msa, &g.output(Some("extra_msa")), "extra_msa");
    }

    /// A squared distance on an edge is in no bin (the official strict comparisons), nor is
    /// one below the first edge; the last bin is open-ended.
    #[test]
    fn distance_bins_follow_official_edges() {
        let bins = EmbeddingsConfig::MONOMER.prev_pos_bins;
        let lower = bins.lower_breaks_sq();
        assert_eq!(lower[0], 3.25 * 3.25);
        assert_eq!(lower[14], 20.75 * 20.75);
        assert_eq!(DistanceBins::bin(&lower, 3.0 * 3.0), None);
        assert_eq!(DistanceBins::bin(&lower, 3.25 * 3.25), None);
        assert_eq!(DistanceBins::bin(&lower, 4.0 * 4.0), Some(0));
        assert_eq!(DistanceBins::bin(&lower, 4.5 * 4.5), None);
        assert_eq!(DistanceBins::bin(&lower, 100.0 * 100.0), Some(14));
    }
}
