//! The AlphaFold2 monomer network (Alg 2) with recycling (Alg 30 inference form): input
//! and recycling embeddings, templates (models 1 and 2), the extra-MSA stack, 48
//! Evoformer blocks, the structure module and the heads.

use super::config::ModelConfig;
use super::embeddings::{self, EmbeddingFeatures, Embeddings, EmbeddingsConfig, RecyclingState};
use super::evoformer::{self, EvoformerConfig, EvoformerIteration};
use super::evoformer_stack::EvoformerStack;
use super::features::Features;
use super::features::TemplateFeatures;
use super::heads::{self, compute_aligned_error, compute_plddt, AlignedError, Heads, HeadsConfig};
use super::structure::{StructureConfig, StructureModule};
use super::templates::{
    self, TemplateBatch, TemplateConfig, TemplateEmbedding, TemplatePairEmbeddings,
    TemplateTorsionEmbedding,
};
use crate::nn::{add_update, Linear, LoadResult};
use ferrofold_io::weights::TensorStore;
use ferrofold_kernels::{Backend, Tensor};
use std::sync::Arc;
use std::time::Instant;

/// Everything one prediction returns (the last recycling iteration's outputs).
pub struct Prediction {
    pub final_atom_positions: Tensor,           // [L, 37, 3] Å
    pub final_atom_mask: Tensor,                // [L, 37]
    pub plddt: Vec<f32>,                        // [L], 0..100
    pub predicted_lddt_logits: Tensor,          // [L, 50]
    pub distogram_logits: Tensor,               // [L, L, 64]
    pub masked_msa_logits: Tensor,              // [S, L, 23]
    pub experimentally_resolved_logits: Tensor, // [L, 37]
    pub single: Tensor,                         // [L, 384]
    pub pair: Tensor,                           // [L, L, 128]
    pub msa_first_row: Tensor,                  // [L, 256]
    pub structure_module: Tensor,               // [L, 384]
    /// `_ptm` models: aligned error `[L, L]` (Å), its maximum, and pTM.
    pub aligned_error: Option<AlignedError>,
    pub pae_logits: Option<Tensor>, // [L, L, 64]
    /// Seconds per recycling iteration (the network; the heads, after the last, are not in it).
    pub iteration_s: Vec<f64>,
}

/// One iteration's outputs that the next one, or the heads after the last one, read.
struct Iteration {
    prev: RecyclingState,
    single: Tensor,
    structure_act: Tensor,
    atom37_mask: Tensor,
    /// The MSA representation `[S + T, L, c_m]`, its template rows after the first `num_msa`.
    msa: Tensor,
    num_msa: usize,
}

pub struct AlphaFold {
    pub config: ModelConfig,
    embeddings: Embeddings,
    /// Template pair embedding and template torsion rows (models 1 and 2).
    templates: Option<(TemplateEmbedding, TemplateTorsionEmbedding)>,
    extra_msa_stack: Vec<EvoformerIteration>,
    evoformer: EvoformerStack,
    single_activations: Linear,
    structure_module: StructureModule,
    heads: Heads,
}

impl AlphaFold {
    /// Builds the model from an official parameter file; a missing or misshaped parameter
    /// fails with its full key, and parameters the configuration does not use (for example
    /// a `_ptm` file loaded as a plain model) are refused. The model keeps the store: the
    /// Evoformer blocks are read from it as they run ([`EvoformerStack`]).
    pub fn load(store: Arc<TensorStore>, config: ModelConfig) -> anyhow::Result<Self> {
        let root = store.root_haiku();
        let stack = |scope: &str, n: usize, cfg: &EvoformerConfig| -> LoadResult<Vec<_>> {
            let p = root.sub(scope);
            (0..n)
                .map(|i| EvoformerIteration::load(&p.layer(i), cfg))
                .collect()
        };
        let emb = root.sub(embeddings::SCOPE);
        let model = Self {
            embeddings: Embeddings::load(&emb, &EmbeddingsConfig::MONOMER)?,
            templates: if config.templates {
                let cfg = TemplateConfig {
                    pair_stack_blocks: config.template_blocks,
                    ..TemplateConfig::MONOMER
                };
                Some((
                    TemplateEmbedding::load(&root.sub(templates::SCOPE), &cfg)?,
                    TemplateTorsionEmbedding::load(&root.sub(templates::TORSION_SCOPE), &cfg)?,
                ))
            } else {
                None
            },
            extra_msa_stack: stack(
                evoformer::EXTRA_MSA_SCOPE,
                config.extra_msa_blocks,
                &EvoformerConfig::EXTRA_MSA,
            )?,
            evoformer: EvoformerStack::load(
                Arc::clone(&store),
                evoformer::SCOPE,
                config.evoformer_blocks,
                EvoformerConfig::MAIN,
            )?,
            single_activations: Linear::load_haiku(&emb.sub("single_activations"), 256, 384, true)?,
            structure_module: StructureModule::load(
                &root.sub("alphafold/alphafold_iteration/structure_module"),
                StructureConfig::default(),
            )?,
            heads: Heads::load(&root.sub(heads::SCOPE), &HeadsConfig::MONOMER, config.ptm)?,
            config,
        };
        let unused = store.unused();
        if let Some(first) = unused.first() {
            anyhow::bail!(
                "{} parameters are not used by {} (e.g. `{first}`): is this the right model's file?",
                unused.len(),
                model.config.name
            );
        }
        Ok(model)
    }

    /// Runs `num_recycle + 1` iterations; iteration `r` reads `features[r]` (the last
    /// slice when there are fewer, as with deterministic features). Fails only if the
    /// parameter file can no longer be read.
    pub fn predict(
        &self,
        be: &dyn Backend,
        features: &[Features],
        num_recycle: usize,
    ) -> LoadResult<Prediction> {
        let l = features[0].len();
        let slice = |r: usize| &features[r.min(features.len() - 1)];
        let mut prev = RecyclingState::zeros(be, l, &EmbeddingsConfig::MONOMER);
        let mut times = Vec::with_capacity(num_recycle + 1);
        let mut templates = None;
        // Every iteration but the last only hands its state on (moved, not copied).
        for r in 0..num_recycle {
            let start = Instant::now();
            prev = self
                .iteration(be, slice(r), &prev, &mut templates, true)?
                .prev;
            times.push(start.elapsed().as_secs_f64());
        }
        let start = Instant::now();
        let it = self.iteration(be, slice(num_recycle), &prev, &mut templates, false)?;
        times.push(start.elapsed().as_secs_f64());
        // The heads read only the last iteration (the recycled state does not depend on them).
        let msa = be.slice_rows(&it.msa, 0..it.num_msa); // without the template rows
        drop(it.msa);
        let heads = self
            .heads
            .forward(be, &it.single, &it.structure_act, &it.prev.pair, &msa);
        drop(msa);
        let aligned_error = heads.predicted_aligned_error.as_ref().map(|logits| {
            let head = self.heads.predicted_aligned_error.as_ref();
            compute_aligned_error(be, logits, head.expect("ptm head").breaks(), None)
        });
        Ok(Prediction {
            plddt: compute_plddt(be, &heads.predicted_lddt),
            final_atom_positions: it.prev.pos,
            final_atom_mask: it.atom37_mask,
            predicted_lddt_logits: heads.predicted_lddt,
            distogram_logits: heads.distogram,
            masked_msa_logits: heads.masked_msa,
            experimentally_resolved_logits: heads.experimentally_resolved,
            single: it.single,
            pair: it.prev.pair,
            msa_first_row: it.prev.msa_first_row,
            structure_module: it.structure_act,
            aligned_error,
            pae_logits: heads.predicted_aligned_error,
            iteration_s: times,
        })
    }

    /// One pass of the network (`AlphaFoldIteration`). `templates` holds the template pair
    /// embeddings a device backend keeps between iterations; `more` says whether another
    /// iteration follows (the last one frees them once it has attended to them).
    fn iteration(
        &self,
        be: &dyn Backend,
        f: &Features,
        prev: &RecyclingState,
        templates: &mut Option<KeptTemplates>,
        more: bool,
    ) -> LoadResult<Iteration> {
        let l = f.len();
        let emb = self.embeddings.forward(
            be,
            &EmbeddingFeatures {
                aatype: &f.aatype,
                residue_index: &f.residue_index,
                target_feat: &f.target_feat,
                msa_feat: &f.msa_feat,
                extra_msa: &f.extra_msa,
                extra_has_deletion: &f.extra_has_deletion,
                extra_deletion_value: &f.extra_deletion_value,
            },
            prev,
        );
        let seq = f.seq_mask.data();
        let pair_mask = Tensor::from_fn(&[l, l], |k| seq[k / l] * seq[k % l]); // [L, L]
        let (mut msa, mut pair) = (emb.msa, emb.pair);
        let mut msa_mask = f.msa_mask.clone();
        let num_msa = msa.dim(0);
        if let (Some((pair_embedding, torsion)), Some(tf)) = (&self.templates, &f.templates) {
            let batch = template_batch(tf);
            // The templates' pair embeddings read neither the recycled state nor the MSA: the
            // same templates and sequence mask give the same embeddings, so a device backend
            // keeps them for the next iteration (`[L, L, c_t]` per template held through the
            // Evoformer). The CPU frees them: recomputing them costs a few per cent of an
            // iteration, holding them host memory.
            let same = templates
                .as_ref()
                .is_some_and(|k| k.templates == *tf && k.seq_mask == f.seq_mask);
            if !same {
                *templates = None; // the stale ones freed before the new are made
                *templates = Some(KeptTemplates {
                    templates: tf.clone(),
                    seq_mask: f.seq_mask.clone(),
                    embedded: pair_embedding.embed_templates(be, &pair_mask, &batch),
                });
            }
            let embedded = &templates.as_ref().expect("set above").embedded;
            add_update(be, &mut pair, |p| pair_embedding.attend(be, p, embedded));
            if !(more && be.keeps_layers()) {
                *templates = None;
            }
            let (rows, mask) = torsion.forward(be, &batch); // [T, L, c_m], [T, L]
            msa = concat_rows(be, &msa, &rows);
            msa_mask = concat_rows(be, &msa_mask, &mask);
        }
        let mut extra = emb.extra_msa;
        for block in &self.extra_msa_stack {
            (extra, pair) = block.forward(be, extra, &f.extra_msa_mask, pair, &pair_mask);
        }
        drop(extra); // only the pair carries the extra MSA on
        let (msa, pair) = self
            .evoformer
            .forward(be, msa, &msa_mask, pair, &pair_mask)?;
        let c_m = msa.dim(2);
        let msa_first_row = be.slice_rows(&msa, 0..1).reshape(&[l, c_m]).expect("row 0");
        let single = self.single_activations.forward(be, &msa_first_row); // [L, 384]
        let sm = self
            .structure_module
            .forward(be, &single, &pair, seq, &f.aatype);
        Ok(Iteration {
            prev: RecyclingState {
                pos: sm.atom37_positions,
                msa_first_row,
                pair,
            },
            single,
            structure_act: sm.act,
            atom37_mask: sm.atom37_mask,
            msa,
            num_msa,
        })
    }
}

/// Template pair embeddings kept between iterations, with the inputs they were made from.
struct KeptTemplates {
    templates: TemplateFeatures,
    seq_mask: Tensor,
    embedded: TemplatePairEmbeddings,
}

fn template_batch(t: &TemplateFeatures) -> TemplateBatch {
    TemplateBatch::new(
        t.aatype.data().iter().map(|&v| v as usize).collect(),
        t.all_atom_positions.clone(),
        t.all_atom_masks.clone(),
        t.mask.data().to_vec(),
    )
}

/// A conservative estimate of the peak memory (bytes) of one prediction with `l` residues,
/// `s` MSA rows (template rows included) and `x` extra-MSA rows, beyond the parameters:
/// the pair representation and its copies (the fused triangle update holds about three
/// `[L, L, 128]` f32 tensors besides the pair; a dozen are counted), the MSA and extra-MSA activations with their
/// attention and transition temporaries, and chunked attention logits (64 MiB).
pub fn estimate_peak_bytes(l: usize, s: usize, x: usize) -> u64 {
    let (l, s, x) = (l as u64, s as u64, x as u64);
    let pair = l * l * 128 * 4;
    let msa = s * l * 256 * 4;
    let extra = x * l * 64 * 4;
    12 * pair + 8 * msa + 8 * extra + (64 << 20)
}

/// Rows of `b` appended to `a` along the leading axis (same trailing shape), where `be` keeps
/// its tensors.
fn concat_rows(be: &dyn Backend, a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(
        a.shape()[1..],
        b.shape()[1..],
        "concat_rows trailing shapes"
    );
    let mut shape = a.shape().to_vec();
    shape[0] += b.dim(0);
    let mut out = be.zeros(&shape);
    be.write_rows(&mut out, 0, a);
    be.write_rows(&mut out, a.dim(0), b);
    out
}
