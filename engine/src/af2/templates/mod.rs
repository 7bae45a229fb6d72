//! Template embedding of the AlphaFold2 v2.3 monomer (model_1 / model_2 config): the template
//! pair stack (Algorithm 16) and pointwise attention (Algorithm 17) that add the templates to
//! the pair representation (Algorithm 2 lines 9-13, modules.py `TemplateEmbedding`), and the
//! template torsion-angle rows appended to the MSA (Algorithm 2 lines 7-8, supplement 1.7.2).
//!
//! Inputs are the template features of the official batch after the data pipeline
//! ([`TemplateBatch`]). Parameters load from the official scopes: [`SCOPE`] for the pair
//! embedding (the two template-pair-stack blocks stacked on a leading axis, read with
//! `Scope::layer`), [`TORSION_SCOPE`] for the torsion rows.

mod embedding;
pub mod features;
pub mod featurize;
pub mod library;
pub mod search;
mod torsion;

pub use embedding::{
    SingleTemplateEmbedding, TemplateEmbedding, TemplatePairBlock, TemplatePairEmbeddings,
    TemplatePairStack, TemplatePointwiseAttention,
};
pub use features::{atom37_to_torsion_angles, pseudo_beta, template_pair_features, TorsionAngles};
pub use torsion::TemplateTorsionEmbedding;

use ferrofold_kernels::Tensor;

/// The official scope of [`TemplateEmbedding`]'s parameters.
pub const SCOPE: &str = "alphafold/alphafold_iteration/evoformer/template_embedding";

/// The official scope holding [`TemplateTorsionEmbedding`]'s `template_single_embedding`
/// and `template_projection`.
pub const TORSION_SCOPE: &str = "alphafold/alphafold_iteration/evoformer";

/// Widths and settings of the template embedding (config `embeddings_and_evoformer.template`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TemplateConfig {
    /// Query pair channels: 128.
    pub c_z: usize,
    /// Template pair channels (`triangle_attention_ending_node.value_dim`): 64.
    pub c_t: usize,
    /// MSA channels of the torsion rows: 256.
    pub c_m: usize,
    /// Template pair stack blocks: 2.
    pub pair_stack_blocks: usize,
    /// Heads of the template stack's triangle attentions: 4.
    pub triangle_heads: usize,
    /// Hidden channels of the template stack's triangle multiplications: 64.
    pub triangle_mult_hidden: usize,
    /// Hidden width factor of the template stack's pair transition: 2.
    pub transition_factor: usize,
    /// Heads of the pointwise attention: 4.
    pub attention_heads: usize,
    /// Total query/key width of the pointwise attention (`key_dim`, over all heads): 64.
    pub attention_key_dim: usize,
    /// Total value width of the pointwise attention (`value_dim`): 64.
    pub attention_value_dim: usize,
    /// Distogram bins: 39, lower edges from 3.25 to 50.75 Å (the last bin open).
    pub dgram_bins: usize,
    pub dgram_min_bin: f32,
    pub dgram_max_bin: f32,
    /// `use_template_unit_vector`: False in every monomer config (the three channels are then
    /// zero but present).
    pub use_unit_vector: bool,
}

impl TemplateConfig {
    /// The v2.3 monomer config (model_1 and model_2; the other models have no templates).
    pub const MONOMER: Self = Self {
        c_z: 128,
        c_t: 64,
        c_m: 256,
        pair_stack_blocks: 2,
        triangle_heads: 4,
        triangle_mult_hidden: 64,
        transition_factor: 2,
        attention_heads: 4,
        attention_key_dim: 64,
        attention_value_dim: 64,
        dgram_bins: 39,
        dgram_min_bin: 3.25,
        dgram_max_bin: 50.75,
        use_unit_vector: false,
    };
}

/// The template features of the official batch (one ensemble member), for `T` templates
/// over the `L` query residues.
#[derive(Clone, Debug)]
pub struct TemplateBatch {
    /// `template_aatype` [T, L]: AF residue order, 20 = UNK, 21 = gap.
    pub aatype: Vec<usize>,
    /// `template_all_atom_positions` [T, L, 37, 3], Å.
    pub all_atom_positions: Tensor,
    /// `template_all_atom_masks` [T, L, 37].
    pub all_atom_masks: Tensor,
    /// `template_pseudo_beta` [T, L, 3]: CB, CA for glycine.
    pub pseudo_beta: Tensor,
    /// `template_pseudo_beta_mask` [T, L].
    pub pseudo_beta_mask: Tensor,
    /// `template_mask` [T]: 1 for a real template, 0 for a padding slot.
    pub template_mask: Vec<f32>,
}

impl TemplateBatch {
    /// A batch from the atom features, with the pseudo-beta computed as the pipeline's
    /// `make_pseudo_beta('template_')` does ([`pseudo_beta`]).
    pub fn new(
        aatype: Vec<usize>,
        all_atom_positions: Tensor,
        all_atom_masks: Tensor,
        template_mask: Vec<f32>,
    ) -> Self {
        let t = template_mask.len();
        let l = aatype.len() / t.max(1);
        let (pb, pb_mask) = pseudo_beta(&aatype, all_atom_positions.data(), all_atom_masks.data());
        let batch = Self {
            aatype,
            all_atom_positions,
            all_atom_masks,
            pseudo_beta: Tensor::new(&[t, l, 3], pb).expect("pseudo-beta [T, L, 3]"),
            pseudo_beta_mask: Tensor::new(&[t, l], pb_mask).expect("pseudo-beta mask [T, L]"),
            template_mask,
        };
        batch.validate();
        batch
    }

    pub fn num_templates(&self) -> usize {
        self.template_mask.len()
    }

    pub fn num_res(&self) -> usize {
        self.aatype.len() / self.num_templates().max(1)
    }

    /// Panics unless every feature has the shape the docs give.
    pub fn validate(&self) {
        let (t, l) = (self.num_templates(), self.num_res());
        assert_eq!(self.aatype.len(), t * l, "template_aatype [T, L]");
        assert_eq!(
            self.all_atom_positions.shape(),
            [t, l, 37, 3],
            "template_all_atom_positions [T, L, 37, 3]"
        );
        assert_eq!(
            self.all_atom_masks.shape(),
            [t, l, 37],
            "template_all_atom_masks [T, L, 37]"
        );
        assert_eq!(
            self.pseudo_beta.shape(),
            [t, l, 3],
            "template_pseudo_beta [T, L, 3]"
        );
        assert_eq!(
            self.pseudo_beta_mask.shape(),
            [t, l],
            "template_pseudo_beta_mask [T, L]"
        );
    }

    /// The features of template `t`.
    pub fn template(&self, t: usize) -> SingleTemplate<'_> {
        let l = self.num_res();
        fn slice(x: &Tensor, t: usize, len: usize) -> &[f32] {
            &x.data()[t * len..(t + 1) * len]
        }
        SingleTemplate {
            aatype: &self.aatype[t * l..(t + 1) * l],
            positions: slice(&self.all_atom_positions, t, l * 37 * 3),
            masks: slice(&self.all_atom_masks, t, l * 37),
            pseudo_beta: slice(&self.pseudo_beta, t, l * 3),
            pseudo_beta_mask: slice(&self.pseudo_beta_mask, t, l),
        }
    }
}

/// One template's features (a view into a [`TemplateBatch`]), over `L` residues.
#[derive(Clone, Copy, Debug)]
pub struct SingleTemplate<'a> {
    /// [L]
    pub aatype: &'a [usize],
    /// [L, 37, 3]
    pub positions: &'a [f32],
    /// [L, 37]
    pub masks: &'a [f32],
    /// [L, 3]
    pub pseudo_beta: &'a [f32],
    /// [L]
    pub pseudo_beta_mask: &'a [f32],
}

impl SingleTemplate<'_> {
    pub fn num_res(&self) -> usize {
        self.aatype.len()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::af2::golden::Golden;

    /// The template batch of a template golden (`input/template_*`).
    pub fn golden_batch(g: &Golden) -> TemplateBatch {
        let aatype = g.input("template_aatype");
        let t = aatype.dim(0);
        TemplateBatch {
            aatype: aatype.data().iter().map(|&a| a as usize).collect(),
            all_atom_positions: g.input("template_all_atom_positions"),
            all_atom_masks: g.input("template_all_atom_masks"),
            pseudo_beta: g.input("template_pseudo_beta"),
            pseudo_beta_mask: g.input("template_pseudo_beta_mask"),
            template_mask: vec![1.0; t],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::golden_batch;
    use super::*;
    use crate::af2::golden::Golden;

    /// `TemplateBatch::new` computes the golden's pseudo-beta features (GLY, gap included).
    #[test]
    fn pseudo_beta_matches_official() {
        let g = Golden::load("template_embedding");
        let want = golden_batch(&g);
        let got = TemplateBatch::new(
            want.aatype.clone(),
            want.all_atom_positions.clone(),
            want.all_atom_masks.clone(),
            vec![1.0, 0.0],
        );
        assert_eq!(got.pseudo_beta, want.pseudo_beta);
        assert_eq!(got.pseudo_beta_mask, want.pseudo_beta_mask);
    }
}
