//! The template rows of the MSA (supplement 1.7.2; modules.py `EmbeddingsAndEvoformer`,
//! `embed_torsion_angles`).

use super::features::{template_torsion_features, TORSION_FEATURE_CHANNELS};
use super::{TemplateBatch, TemplateConfig};
use crate::nn::{Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Activation, Backend, Tensor};

/// Algorithm 2 lines 7-8: each template's torsion features (aatype one-hot, sin/cos of the
/// seven torsions and their pi-flipped alternatives, torsion mask) through
/// `template_single_embedding`, ReLU and `template_projection`, one extra MSA row per
/// template, masked by the template's psi-angle mask.
#[derive(Debug)]
pub struct TemplateTorsionEmbedding {
    single_embedding: Linear,
    projection: Linear,
}

impl TemplateTorsionEmbedding {
    /// `p`: the `evoformer` scope ([`super::TORSION_SCOPE`] in the official parameters),
    /// which holds `template_single_embedding` (57 → c_m) and `template_projection`.
    pub fn load(p: &Scope<'_>, cfg: &TemplateConfig) -> LoadResult<Self> {
        let c_m = cfg.c_m;
        Ok(Self {
            single_embedding: Linear::load_haiku(
                &p.sub("template_single_embedding"),
                TORSION_FEATURE_CHANNELS,
                c_m,
                true,
            )?,
            projection: Linear::load_haiku(&p.sub("template_projection"), c_m, c_m, true)?,
        })
    }

    /// The templates (only aatype, positions and atom masks are read; every template slot
    /// gives a row, `template_mask` is not used) → (rows `[T, L, c_m]` to append to the MSA
    /// activations, their mask `[T, L]` to append to `msa_mask`: the psi mask, which depends on
    /// one residue's backbone atoms only).
    pub fn forward(&self, be: &dyn Backend, batch: &TemplateBatch) -> (Tensor, Tensor) {
        batch.validate();
        let (t, l) = (batch.num_templates(), batch.num_res());
        let mut features = Vec::with_capacity(t * l * TORSION_FEATURE_CHANNELS);
        let mut mask = Vec::with_capacity(t * l);
        for i in 0..t {
            let (f, m) = template_torsion_features(&batch.template(i));
            features.extend_from_slice(f.data());
            mask.extend(m);
        }
        let features =
            Tensor::new(&[t, l, TORSION_FEATURE_CHANNELS], features).expect("[T, L, 57]");
        let mut act = self.single_embedding.forward(be, &features); // [T, L, c_m]
        be.activate(&mut act, Activation::Relu);
        let rows = self.projection.forward(be, &act); // [T, L, c_m]
        (rows, Tensor::new(&[t, l], mask).expect("[T, L]"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::features::atom37_to_torsion_angles;
    use super::super::test_support::golden_batch;
    use super::super::TORSION_SCOPE;
    use super::*;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    fn golden() -> (Golden, TemplateBatch) {
        let g = Golden::load("template_torsion_embedding");
        // this golden has only the atom features; the pseudo-beta is not read
        let aatype = g.input("template_aatype");
        let (t, l) = (aatype.dim(0), aatype.dim(1));
        let batch = TemplateBatch::new(
            aatype.data().iter().map(|&a| a as usize).collect(),
            g.input("template_all_atom_positions"),
            g.input("template_all_atom_masks"),
            vec![1.0; t],
        );
        assert_eq!(batch.num_res(), l);
        (g, batch)
    }

    /// `atom37_to_torsion_angles` on both templates: sin/cos, alternative sin/cos, mask.
    #[test]
    fn torsion_angles_match_official() {
        let (g, batch) = golden();
        let (t, l) = (batch.num_templates(), batch.num_res());
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for i in 0..t {
            let s = batch.template(i);
            let a = atom37_to_torsion_angles(s.aatype, s.positions, s.masks);
            parts[0].extend_from_slice(a.sin_cos.data());
            parts[1].extend_from_slice(a.alt_sin_cos.data());
            parts[2].extend_from_slice(a.mask.data());
        }
        let [sc, alt, mask] = parts;
        let sc = Tensor::new(&[t, l, 7, 2], sc).unwrap();
        let alt = Tensor::new(&[t, l, 7, 2], alt).unwrap();
        let mask = Tensor::new(&[t, l, 7], mask).unwrap();
        assert_close(
            &sc,
            &g.output(Some("torsion_angles_sin_cos")),
            TOL,
            "sin_cos",
        );
        assert_close(
            &alt,
            &g.output(Some("alt_torsion_angles_sin_cos")),
            TOL,
            "alt_sin_cos",
        );
        assert_eq!(mask, g.output(Some("torsion_angles_mask")));
    }

    #[test]
    fn template_torsion_rows_match_official() {
        let (g, batch) = golden();
        let module = TemplateTorsionEmbedding::load(
            &g.params().sub(TORSION_SCOPE),
            &TemplateConfig::MONOMER,
        )
        .unwrap();
        let (rows, mask) = module.forward(&CpuBackend, &batch);
        assert_close(&rows, &g.output(Some("msa")), TOL, "template msa rows");
        assert_eq!(mask, g.output(Some("msa_mask")));
    }

    /// The golden's inputs are the template_embedding golden's.
    #[test]
    fn same_templates_as_template_embedding() {
        let (_, batch) = golden();
        let other = golden_batch(&Golden::load("template_embedding"));
        assert_eq!(batch.aatype, other.aatype);
        assert_eq!(batch.all_atom_positions, other.all_atom_positions);
        assert_eq!(batch.pseudo_beta, other.pseudo_beta);
    }

    /// Relative to the largest |value|. Measured: sin/cos and alternative sin/cos 1.0e-6 / 1.0,
    /// template rows 7.8e-7 / 1.55.
    const TOL: f32 = 1e-5;
}
