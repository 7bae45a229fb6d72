//! The structure module (AF2 supplement §1.8): invariant point attention (Alg 22), the fold
//! iteration (Alg 20 lines 6-10 + 21, backbone update Alg 23) and the side chains (Alg 24/25),
//! following `alphafold/model/folding.py`, `quat_affine.py`, `r3.py` and `all_atom.py` (v2.3).
//!
//! Units as in the official code: backbone affines are in nm inside the loop; the side-chain
//! module sees them scaled by `position_scale` (10), so frames and atoms come out in Å.

pub mod all_atom;
pub mod ipa;
pub mod residue_constants;
pub mod rigid;

pub use ipa::{InvariantPointAttention, IpaConfig};
pub use rigid::{QuatAffine, Rigid, Rot3, Vec3};

use crate::nn::{add_assign, LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{relu, Backend, Tensor};

/// Sizes of `model.heads.structure_module` (model_1..5 share them).
#[derive(Clone, Copy, Debug)]
pub struct StructureConfig {
    pub ipa: IpaConfig,
    pub num_layer_in_transition: usize,
    pub position_scale: f32,
    /// `sidechain.num_channel`
    pub sidechain_channel: usize,
    /// `sidechain.num_residual_block`
    pub sidechain_blocks: usize,
}

impl Default for StructureConfig {
    fn default() -> Self {
        Self {
            ipa: IpaConfig::default(),
            num_layer_in_transition: 3,
            position_scale: 10.0,
            sidechain_channel: 128,
            sidechain_blocks: 2,
        }
    }
}

/// Haiku's name for the `i`-th call of a module named `name` in one scope (`name`, `name_1`, ...).
fn haiku_name(name: &str, i: usize) -> String {
    if i == 0 {
        name.to_string()
    } else {
        format!("{name}_{i}")
    }
}

/// `jax.nn.relu` on a copy.
fn relu_of(be: &dyn Backend, x: &Tensor) -> Tensor {
    let mut y = x.clone();
    be.map(&mut y, relu);
    y
}

/// What the side-chain module returns (`MultiRigidSidechain`'s dict).
#[derive(Debug, Clone)]
pub struct SidechainOutput {
    /// [N, 7, 2] (sin, cos) of omega, phi, psi, chi1..4, l2-normalised
    pub angles_sin_cos: Tensor,
    /// [N, 7, 2] before normalisation
    pub unnormalized_angles_sin_cos: Tensor,
    /// [N][8] rigid-group frames, global, Å
    pub frames: Vec<[Rigid; 8]>,
    /// [N, 14, 3] atom14 positions, Å (zero for absent atoms)
    pub atom_pos: Tensor,
}

impl SidechainOutput {
    /// Frame rotations as [N, 8, 3, 3] (row-major xx..zz).
    pub fn frames_rot(&self) -> Tensor {
        let data = self
            .frames
            .iter()
            .flatten()
            .flat_map(|f| f.rot.concat())
            .collect();
        Tensor::new(&[self.frames.len(), 8, 3, 3], data).expect("sizes")
    }

    /// Frame translations as [N, 8, 3].
    pub fn frames_trans(&self) -> Tensor {
        let data = self.frames.iter().flatten().flat_map(|f| f.trans).collect();
        Tensor::new(&[self.frames.len(), 8, 3], data).expect("sizes")
    }
}

/// Alg 24 "computeAllAtomCoordinates" with its angle resnet (`folding.MultiRigidSidechain`).
#[derive(Debug)]
pub struct MultiRigidSidechain {
    /// one per input representation (act, initial_act)
    input_projection: [Linear; 2],
    /// (resblock1, resblock2) per residual block
    resblocks: Vec<(Linear, Linear)>,
    unnormalized_angles: Linear,
}

impl MultiRigidSidechain {
    /// Loads from the `rigid_sidechain` scope.
    pub fn load(p: &Scope<'_>, single: usize, cfg: &StructureConfig) -> LoadResult<Self> {
        let c = cfg.sidechain_channel;
        let proj =
            |i| Linear::load_haiku(&p.sub(haiku_name("input_projection", i)), single, c, true);
        let resblocks = (0..cfg.sidechain_blocks)
            .map(|i| {
                Ok((
                    Linear::load_haiku(&p.sub(haiku_name("resblock1", i)), c, c, true)?,
                    Linear::load_haiku(&p.sub(haiku_name("resblock2", i)), c, c, true)?,
                ))
            })
            .collect::<LoadResult<_>>()?;
        Ok(Self {
            input_projection: [proj(0)?, proj(1)?],
            resblocks,
            unnormalized_angles: Linear::load_haiku(&p.sub("unnormalized_angles"), c, 14, true)?,
        })
    }

    /// `affine` [N] backbone frames in Å, `act` and `initial_act` [N, C], `aatype` [N].
    pub fn forward(
        &self,
        be: &dyn Backend,
        affine: &[QuatAffine],
        act: &Tensor,
        initial_act: &Tensor,
        aatype: &[usize],
    ) -> SidechainOutput {
        let n = act.rows();
        // sum of Linear(relu(x)) over [act, initial_act]: [N, C_sc]
        let mut a = self.input_projection[0].forward(be, &relu_of(be, act));
        add_assign(
            &mut a,
            &self.input_projection[1].forward(be, &relu_of(be, initial_act)),
        );
        for (l1, l2) in &self.resblocks {
            let h = l1.forward(be, &relu_of(be, &a));
            let h = l2.forward(be, &relu_of(be, &h));
            add_assign(&mut a, &h);
        }
        let unnorm = self
            .unnormalized_angles
            .forward(be, &relu_of(be, &a))
            .reshape(&[n, 7, 2])
            .expect("14 = 7 x 2"); // [N, 7, 2]
                                   // l2_normalize(axis=-1, eps=1e-12): x / sqrt(max(sum x^2, eps))
        let mut angles = unnorm.clone(); // [N, 7, 2]
        for pair in angles.data_mut().chunks_mut(2) {
            let norm = (pair[0] * pair[0] + pair[1] * pair[1]).max(1e-12).sqrt();
            pair.iter_mut().for_each(|x| *x /= norm);
        }
        let backb: Vec<Rigid> = affine.iter().map(Rigid::from_quat_affine).collect();
        let frames = all_atom::torsion_angles_to_frames(aatype, &backb, angles.data());
        let atoms = all_atom::frames_and_literature_positions_to_atom14_pos(aatype, &frames);
        let atom_pos = Tensor::new(
            &[n, 14, 3],
            atoms.iter().flatten().flatten().copied().collect(),
        )
        .expect("sizes"); // [N, 14, 3]
        SidechainOutput {
            angles_sin_cos: angles,
            unnormalized_angles_sin_cos: unnorm,
            frames,
            atom_pos,
        }
    }
}

/// Output of one fold iteration.
#[derive(Debug, Clone)]
pub struct FoldIterationOutput {
    /// [N, C] the new single activations (`new_activations['act']`)
    pub act: Tensor,
    /// [N] the updated backbone frames, nm (`outputs['affine']` = `new_activations['affine']`)
    pub affine: Vec<QuatAffine>,
    /// the side chains built on `affine` scaled to Å
    pub sidechain: SidechainOutput,
}

/// Affines as a [N, 7] tensor (quaternion w, x, y, z; translation).
pub fn affines_to_tensor(affine: &[QuatAffine]) -> Tensor {
    let data = affine.iter().flat_map(|a| a.to_tensor()).collect();
    Tensor::new(&[affine.len(), 7], data).expect("sizes")
}

/// Affines from a [N, 7] tensor (no re-normalisation, as `QuatAffine.from_tensor`).
pub fn affines_from_tensor(t: &Tensor) -> Vec<QuatAffine> {
    assert_eq!(t.dim(-1), 7, "affine tensor [N, 7]");
    t.data().chunks(7).map(QuatAffine::from_tensor).collect()
}

/// Alg 20 lines 6-10 + 21 (`folding.FoldIteration`, `update_affine=True`, no dropout):
/// IPA, LN, 3-layer transition, LN, backbone update (Alg 23), side chains (Alg 24).
#[derive(Debug)]
pub struct FoldIteration {
    cfg: StructureConfig,
    ipa: InvariantPointAttention,
    attention_layer_norm: LayerNorm,
    transition: Vec<Linear>,
    transition_layer_norm: LayerNorm,
    affine_update: Linear,
    sidechain: MultiRigidSidechain,
}

impl FoldIteration {
    /// Loads from the `fold_iteration` scope (`.../structure_module/fold_iteration`).
    pub fn load(p: &Scope<'_>, cfg: StructureConfig) -> LoadResult<Self> {
        let c = cfg.ipa.num_channel;
        Ok(Self {
            cfg,
            ipa: InvariantPointAttention::load(&p.sub("invariant_point_attention"), cfg.ipa)?,
            attention_layer_norm: LayerNorm::load_haiku(&p.sub("attention_layer_norm"), c)?,
            transition: (0..cfg.num_layer_in_transition)
                .map(|i| Linear::load_haiku(&p.sub(haiku_name("transition", i)), c, c, true))
                .collect::<LoadResult<_>>()?,
            transition_layer_norm: LayerNorm::load_haiku(&p.sub("transition_layer_norm"), c)?,
            affine_update: Linear::load_haiku(&p.sub("affine_update"), c, 6, true)?,
            sidechain: MultiRigidSidechain::load(&p.sub("rigid_sidechain"), c, &cfg)?,
        })
    }

    /// `act` [N, C], `affine` [N] (nm), `seq_mask` [N], `initial_act` [N, C] (the normed single
    /// representation), `pair` [N, N, C_z] (the normed pair, `static_feat_2d`), `aatype` [N].
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        be: &dyn Backend,
        act: &Tensor,
        affine: &[QuatAffine],
        seq_mask: &[f32],
        initial_act: &Tensor,
        pair: &Tensor,
        aatype: &[usize],
    ) -> FoldIterationOutput {
        // attention (Alg 20 lines 6-8)
        let mut x = act.clone(); // [N, C]
        add_assign(&mut x, &self.ipa.forward(be, act, pair, seq_mask, affine));
        let x = self.attention_layer_norm.forward(be, &x);

        // transition (lines 8-9)
        let last = self.transition.len() - 1;
        let mut t = x.clone();
        for (i, l) in self.transition.iter().enumerate() {
            t = l.forward(be, &t);
            if i < last {
                be.map(&mut t, relu);
            }
        }
        add_assign(&mut t, &x);
        let act = self.transition_layer_norm.forward(be, &t); // [N, C]

        // backbone update (line 10, Alg 23)
        let update = self.affine_update.forward(be, &act); // [N, 6]
        let affine: Vec<QuatAffine> = affine
            .iter()
            .zip(update.data().chunks(6))
            .map(|(a, u)| a.pre_compose(u))
            .collect();

        // side chains (line 11, Alg 24) on frames in Å
        let scaled: Vec<QuatAffine> = affine
            .iter()
            .map(|a| a.scale_translation(self.cfg.position_scale))
            .collect();
        let sidechain = self
            .sidechain
            .forward(be, &scaled, &act, initial_act, aatype);
        FoldIterationOutput {
            act,
            affine,
            sidechain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    fn fold_scope(g: &Golden) -> Scope<'_> {
        g.params()
            .sub("alphafold")
            .sub("alphafold_iteration")
            .sub("structure_module")
            .sub("fold_iteration")
    }

    #[test]
    fn invariant_point_attention_matches_golden() {
        let g = Golden::load("invariant_point_attention");
        let ipa = InvariantPointAttention::load(
            &fold_scope(&g).sub("invariant_point_attention"),
            IpaConfig::default(),
        )
        .unwrap();
        let affine = affines_from_tensor(&g.input("affine"));
        let out = ipa.forward(
            &CpuBackend,
            &g.input("single_act"),
            &g.input("pair_act"),
            g.input("seq_mask").data(),
            &affine,
        );
        assert_close(&out, &g.output(None), 1e-5, "ipa");
    }

    #[test]
    fn fold_iteration_matches_golden() {
        let g = Golden::load("fold_iteration");
        let fold = FoldIteration::load(&fold_scope(&g), StructureConfig::default()).unwrap();
        let aatype: Vec<usize> = g
            .input("aatype")
            .data()
            .iter()
            .map(|&a| a as usize)
            .collect();
        let out = fold.forward(
            &CpuBackend,
            &g.input("single_act"),
            &affines_from_tensor(&g.input("affine")),
            g.input("seq_mask").data(),
            &g.input("initial_act"),
            &g.input("pair_act"),
            &aatype,
        );
        let sc = &out.sidechain;
        let tol = 1e-5; // measured: <= 1.9e-6 x max|value| (angles_sin_cos), see the report
        assert_close(&out.act, &g.output(Some("act")), tol, "act");
        assert_close(
            &affines_to_tensor(&out.affine),
            &g.output(Some("affine")),
            tol,
            "affine",
        );
        let want = |n| g.output(Some(n));
        assert_close(
            &sc.angles_sin_cos,
            &want("angles_sin_cos"),
            tol,
            "angles_sin_cos",
        );
        assert_close(
            &sc.unnormalized_angles_sin_cos,
            &want("unnormalized_angles_sin_cos"),
            tol,
            "unnormalized_angles_sin_cos",
        );
        assert_close(&sc.frames_rot(), &want("frames_rot"), tol, "frames_rot");
        assert_close(
            &sc.frames_trans(),
            &want("frames_trans"),
            tol,
            "frames_trans",
        );
        assert_close(&sc.atom_pos, &want("atom_pos"), tol, "atom_pos");
    }
}
