//! The structure module (AF2 supplement §1.8): the head itself (Alg 20, [`StructureModule`]),
//! invariant point attention (Alg 22), the fold iteration (Alg 20 lines 6-10 + 21, backbone
//! update Alg 23) and the side chains (Alg 24/25), following `alphafold/model/folding.py`,
//! `quat_affine.py`, `r3.py` and `all_atom.py` (v2.3).
//!
//! Units as in the official code: backbone affines are in nm inside the loop; the side-chain
//! module sees them scaled by `position_scale` (10), so frames and atoms come out in Å.

pub mod all_atom;
pub mod ipa;
pub mod residue_constants;
pub mod rigid;

pub use ipa::{InvariantPointAttention, IpaConfig};
pub use rigid::{QuatAffine, Rigid, Rot3, Vec3};

use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Activation, Backend, Tensor};

/// Sizes of `model.heads.structure_module` (model_1..5 share them).
#[derive(Clone, Copy, Debug)]
pub struct StructureConfig {
    pub ipa: IpaConfig,
    /// Channels of the single representation fed in (`seq_channel` of the evoformer).
    pub seq_channel: usize,
    /// Fold iterations, all with the same weights (`num_layer`).
    pub num_layer: usize,
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
            seq_channel: 384,
            num_layer: 8,
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
    be.activate(&mut y, Activation::Relu);
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
        be.add_assign(
            &mut a,
            &self.input_projection[1].forward(be, &relu_of(be, initial_act)),
        );
        for (l1, l2) in &self.resblocks {
            let h = l1.forward(be, &relu_of(be, &a));
            let h = l2.forward(be, &relu_of(be, &h));
            be.add_assign(&mut a, &h);
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
        be.add_assign(&mut x, &self.ipa.forward(be, act, pair, seq_mask, affine));
        let x = self.attention_layer_norm.forward(be, &x);

        // transition (lines 8-9)
        let last = self.transition.len() - 1;
        let mut t = x.clone();
        for (i, l) in self.transition.iter().enumerate() {
            t = l.forward(be, &t);
            if i < last {
                be.activate(&mut t, Activation::Relu);
            }
        }
        be.add_assign(&mut t, &x);
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

/// What [`StructureModule::forward`] returns: `StructureModule.__call__`'s dict at inference,
/// with the side chains of the last iteration only.
#[derive(Debug, Clone)]
pub struct StructureModuleOutput {
    /// [N, C] `representations['structure_module']`, the last iteration's activations
    pub act: Tensor,
    /// [num_layer, N, 7] `traj`: each iteration's backbone affine, quaternion (w, x, y, z) and
    /// translation in Å (× `position_scale`)
    pub traj: Tensor,
    /// the last iteration's side chains (`sidechains[-1]`); `atom_pos` [N, 14, 3] is
    /// `final_atom14_positions`, Å
    pub sidechain: SidechainOutput,
    /// [N, 14] `final_atom14_mask` (`atom14_atom_exists`)
    pub atom14_mask: Tensor,
    /// [N, 37, 3] `final_atom_positions`, Å, zero for atoms the residue type lacks
    pub atom37_positions: Tensor,
    /// [N, 37] `final_atom_mask` (`atom37_atom_exists`)
    pub atom37_mask: Tensor,
}

impl StructureModuleOutput {
    /// [N, 14, 3] `final_atom14_positions`, Å.
    pub fn atom14_positions(&self) -> &Tensor {
        &self.sidechain.atom_pos
    }

    /// [N, 7] `final_affines` (`traj[-1]`).
    pub fn final_affines(&self) -> Tensor {
        let (l, n) = (self.traj.dim(0), self.traj.dim(1));
        let data = self.traj.data()[(l - 1) * n * 7..].to_vec();
        Tensor::new(&[n, 7], data).expect("sizes")
    }
}

/// Alg 20 "StructureModule" at inference (`folding.StructureModule` with `generate_affines`,
/// no dropout): LN of the single and pair representations, `initial_projection`, then
/// `num_layer` fold iterations sharing one set of weights, starting from identity frames.
#[derive(Debug)]
pub struct StructureModule {
    cfg: StructureConfig,
    single_layer_norm: LayerNorm,
    initial_projection: Linear,
    pair_layer_norm: LayerNorm,
    fold_iteration: FoldIteration,
}

impl StructureModule {
    /// Loads from the `structure_module` scope (`alphafold/alphafold_iteration/structure_module`
    /// in the official npz).
    pub fn load(p: &Scope<'_>, cfg: StructureConfig) -> LoadResult<Self> {
        let c = cfg.ipa.num_channel;
        Ok(Self {
            cfg,
            single_layer_norm: LayerNorm::load_haiku(&p.sub("single_layer_norm"), cfg.seq_channel)?,
            initial_projection: Linear::load_haiku(
                &p.sub("initial_projection"),
                cfg.seq_channel,
                c,
                true,
            )?,
            pair_layer_norm: LayerNorm::load_haiku(
                &p.sub("pair_layer_norm"),
                cfg.ipa.pair_channel,
            )?,
            fold_iteration: FoldIteration::load(&p.sub("fold_iteration"), cfg)?,
        })
    }

    /// `single` [N, C_s] and `pair` [N, N, C_z] (the evoformer's outputs), `seq_mask` [N]
    /// (1 real, 0 padding; only IPA reads it), `aatype` [N] restype indices (0..=20, 20 = UNK).
    pub fn forward(
        &self,
        be: &dyn Backend,
        single: &Tensor,
        pair: &Tensor,
        seq_mask: &[f32],
        aatype: &[usize],
    ) -> StructureModuleOutput {
        let n = aatype.len();
        let cfg = &self.cfg;
        assert_eq!(single.shape(), &[n, cfg.seq_channel], "single shape");
        assert_eq!(pair.shape(), &[n, n, cfg.ipa.pair_channel], "pair shape");
        assert_eq!(seq_mask.len(), n, "seq_mask length");
        assert!(cfg.num_layer > 0, "at least one fold iteration");

        let initial_act = self.single_layer_norm.forward(be, single); // [N, C_s]
        let mut act = self.initial_projection.forward(be, &initial_act); // [N, C]
        let pair = self.pair_layer_norm.forward(be, pair); // [N, N, C_z]
        let mut affine = vec![QuatAffine::identity(); n];
        let mut traj = Vec::with_capacity(cfg.num_layer * n * 7);
        let mut sidechain = None;
        for _ in 0..cfg.num_layer {
            let out = self.fold_iteration.forward(
                be,
                &act,
                &affine,
                seq_mask,
                &initial_act,
                &pair,
                aatype,
            );
            traj.extend(
                out.affine
                    .iter()
                    .flat_map(|a| a.scale_translation(cfg.position_scale).to_tensor()),
            );
            act = out.act;
            affine = out.affine;
            sidechain = Some(out.sidechain);
        }
        let sidechain = sidechain.expect("num_layer > 0");
        StructureModuleOutput {
            act,
            traj: Tensor::new(&[cfg.num_layer, n, 7], traj).expect("sizes"),
            atom14_mask: all_atom::atom14_mask(aatype),
            atom37_positions: all_atom::atom14_to_atom37(aatype, &sidechain.atom_pos),
            atom37_mask: all_atom::atom37_mask(aatype),
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
    fn structure_module_matches_golden() {
        let g = Golden::load("structure_module");
        let p = g
            .params()
            .sub("alphafold")
            .sub("alphafold_iteration")
            .sub("structure_module");
        let sm = StructureModule::load(&p, StructureConfig::default()).unwrap();
        let aatype: Vec<usize> = g
            .input("aatype")
            .data()
            .iter()
            .map(|&a| a as usize)
            .collect();
        assert!(
            aatype.contains(&7) && aatype.contains(&20),
            "GLY and UNK covered"
        );

        // the batch features the official module reads are what the tables give for aatype
        let a37_to_a14: Vec<f32> = aatype
            .iter()
            .flat_map(|&aa| residue_constants::RESTYPE_ATOM37_TO_ATOM14[aa].map(|i| i as f32))
            .collect();
        assert_eq!(a37_to_a14, g.input("residx_atom37_to_atom14").data());
        let mask14 = all_atom::atom14_mask(&aatype);
        assert_eq!(mask14.data(), g.input("atom14_atom_exists").data());

        let seq_mask = g.input("seq_mask");
        assert_eq!(
            seq_mask.data().last(),
            Some(&0.0),
            "last residue is padding"
        );
        let out = sm.forward(
            &CpuBackend,
            &g.input("single"),
            &g.input("pair"),
            seq_mask.data(),
            &aatype,
        );
        let want = |n| g.output(Some(n));
        // Tolerances are relative to max(1, max |value|). Measured max abs diff (CPU backend):
        // act 1.3e-5 (|x| <= 5.8), traj 1.5e-4 (<= 64 Å), atom14/atom37 positions 1.8e-4 Å
        // (<= 68 Å), angles_sin_cos 1.2e-5, unnormalized 3.6e-6. For scale, the official
        // module run un-jitted differs from its jitted golden by 1.5e-4 / 2.4e-3 / 2.5e-3 /
        // 2.6e-4 / 3.0e-5: eight chained iterations amplify f32 rounding, and the angles are
        // l2-normalised from vectors as short as 0.096. So: 1e-4 (>= 25x margin), 5e-4 for
        // the normalised angles (40x margin, and above the JAX eager/jit spread).
        let tol = 1e-4;
        assert_close(
            &out.act,
            &want("representations/structure_module"),
            tol,
            "act",
        );
        assert_close(&out.traj, &want("traj"), tol, "traj");
        let n7 = aatype.len() * 7;
        assert_eq!(out.final_affines().data(), &out.traj.data()[7 * n7..]);
        assert_close(
            &out.sidechain.angles_sin_cos,
            &want("sidechains/angles_sin_cos"),
            5e-4,
            "angles_sin_cos",
        );
        assert_close(
            &out.sidechain.unnormalized_angles_sin_cos,
            &want("sidechains/unnormalized_angles_sin_cos"),
            tol,
            "unnormalized_angles_sin_cos",
        );
        assert_close(
            out.atom14_positions(),
            &want("final_atom14_positions"),
            tol,
            "final_atom14_positions",
        );
        assert_close(
            &out.atom37_positions,
            &want("final_atom_positions"),
            tol,
            "final_atom_positions",
        );
        assert_eq!(out.atom37_mask.shape(), &[aatype.len(), 37]);
        assert_eq!(out.atom37_mask.data(), want("final_atom_mask").data());
        assert_eq!(out.atom37_mask.data(), g.input("atom37_atom_exists").data());
        assert_eq!(out.atom14_mask.data(), mask14.data());
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
