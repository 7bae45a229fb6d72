//! AlphaFold2's input feature pipeline: from a query sequence and an optional A3M
//! alignment to the processed [`Features`] of every recycling iteration
//! (`/work/shared/reference/af2-features.md`).
//!
//! Follows the official `pipeline.make_msa_features` and TF input pipeline
//! (`data_transforms.py`): the MSA is read in HHblits letters, mapped to AF classes and
//! deduplicated ([`msa`]); per recycling iteration ([`sample`]) `sample_msa` (query row
//! first), `make_masked_msa`, `nearest_neighbor_clusters`, `summarize_clusters`,
//! `crop_extra_msa`; then `make_msa_feat` ([`feats`]). Differences from the official
//! pipeline: no fixed-size padding (the model needs none; an MSA without extra rows gets
//! one masked-out extra row, as AF2's padding gives it), and the random draws come from
//! our own seeded generator ([`rng`]), since TensorFlow's cannot be reproduced. Each
//! iteration draws a fresh sample (`resample_msa_in_recycling`). Deterministic mode
//! takes the rows in order, masks nothing and keeps the first extra rows: it equals the
//! official formulas with the random parts switched off. Templates are not built here.

pub mod alphabet;
mod error;
pub mod feats;
pub mod msa;
pub mod raw;
pub mod rng;
pub mod sample;

#[cfg(test)]
mod tests;

use ferrofold_io::a3m::A3m;

pub use error::PipelineError;

use super::config::ModelConfig;
use super::features::Features;
use msa::RawMsa;
use rng::Rng;

/// BERT masking of the MSA (`data.common.masked_msa` and
/// `data.eval.masked_msa_replace_fraction`), applied at inference too.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedMsaConfig {
    pub uniform_prob: f32,
    pub profile_prob: f32,
    pub same_prob: f32,
    pub replace_fraction: f32,
}

impl Default for MaskedMsaConfig {
    /// AF2's values: 0.1, 0.1, 0.1 (0.7 on the mask token), replace fraction 0.15.
    fn default() -> Self {
        Self {
            uniform_prob: 0.1,
            profile_prob: 0.1,
            same_prob: 0.1,
            replace_fraction: 0.15,
        }
    }
}

/// What the pipeline builds.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// MSA cluster centres at most (S), the query included.
    pub max_msa_clusters: usize,
    /// Extra-MSA rows at most (X).
    pub max_extra_msa: usize,
    /// Slices built: `num_recycle + 1`.
    pub num_recycle: usize,
    pub seed: u64,
    /// First rows in order, no shuffling, no BERT masking.
    pub deterministic: bool,
    pub masked_msa: MaskedMsaConfig,
}

impl PipelineConfig {
    /// The official data settings of `model` (S 508 or 512, X 5120 or 1024, 3 recycles).
    pub fn for_model(model: &ModelConfig, seed: u64, deterministic: bool) -> Self {
        Self {
            max_msa_clusters: model.max_msa_clusters,
            max_extra_msa: model.max_extra_msa,
            num_recycle: model.num_recycle,
            seed,
            deterministic,
            masked_msa: MaskedMsaConfig::default(),
        }
    }

    fn validate(&self) -> Result<(), PipelineError> {
        let m = &self.masked_msa;
        let bad = |what: String| Err(PipelineError::Config(what));
        if self.max_msa_clusters == 0 {
            return bad("max_msa_clusters must be at least 1 (the query row)".into());
        }
        let probs = [
            m.uniform_prob,
            m.profile_prob,
            m.same_prob,
            m.replace_fraction,
        ];
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return bad(format!(
                "masked-MSA probabilities must lie in [0, 1]: {m:?}"
            ));
        }
        if m.uniform_prob + m.profile_prob + m.same_prob > 1.0 + 1e-6 {
            return bad(format!(
                "masked-MSA uniform + profile + same probabilities exceed 1: {m:?}"
            ));
        }
        Ok(())
    }
}

/// The query's AF classes (`restype_order_with_x`; lower case accepted).
pub fn encode_query(query: &str) -> Result<Vec<u8>, PipelineError> {
    if query.is_empty() {
        return Err(PipelineError::EmptyQuery);
    }
    query
        .chars()
        .enumerate()
        .map(|(i, c)| {
            u8::try_from(c).ok().and_then(alphabet::query_class).ok_or(
                PipelineError::QueryResidue {
                    position: i + 1,
                    residue: c,
                },
            )
        })
        .collect()
}

/// The features of every recycling iteration (`num_recycle + 1`), each from its own
/// MSA sample: iteration `r` draws from the seeded stream `(seed, r)`. Without `msa` the
/// query alone is the MSA; with it, its first record must be the query.
pub fn build_features(
    query: &str,
    msa: Option<&A3m>,
    cfg: &PipelineConfig,
) -> Result<Vec<Features>, PipelineError> {
    cfg.validate()?;
    let aatype = encode_query(query)?;
    let raw = match msa {
        None => RawMsa::single(&aatype),
        Some(a3m) => RawMsa::from_a3m(&query.to_ascii_uppercase(), a3m)?,
    };
    let profile = raw.profile();
    let iteration = |r: usize| {
        let mut rng = Rng::new(cfg.seed, r as u64);
        let rng = (!cfg.deterministic).then_some(&mut rng);
        feats::assemble(&aatype, &raw, &sample::sample(&raw, &profile, cfg, rng))
    };
    if cfg.deterministic {
        return Ok(vec![iteration(0); cfg.num_recycle + 1]);
    }
    Ok((0..=cfg.num_recycle).map(iteration).collect())
}
