//! One recycling iteration's MSA sample, the ensembled transforms of AF2's input pipeline
//! (`data_transforms.py`) up to `make_msa_feat`, in their order:
//! `sample_msa` (query first, the other rows shuffled; the first S are cluster centres,
//! the rest extra rows), `make_masked_msa` (BERT replacement of centre positions),
//! `nearest_neighbor_clusters` and `summarize_clusters` (over ALL extra rows, before the
//! crop), then `crop_extra_msa` (a random subset of at most X extra rows).
//!
//! Deterministic mode keeps the rows in order, masks nothing and keeps the first X extra
//! rows; the formulas are otherwise the same.

use rayon::prelude::*;

use super::alphabet::{GAP, MASK_TOKEN, MSA_CLASSES};
use super::msa::{RawMsa, PROFILE_CLASSES};
use super::rng::Rng;
use super::{MaskedMsaConfig, PipelineConfig};

/// The sampled MSA of one recycling iteration; rows refer to the [`RawMsa`].
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub width: usize,
    /// Raw row of each cluster centre (`[0]` = 0, the query).
    pub centres: Vec<usize>,
    /// Centre classes after BERT masking, `[S, L]` (22 = mask token).
    pub msa: Vec<u8>,
    /// Positions replaced by BERT masking, `[S, L]`.
    pub bert_mask: Vec<bool>,
    /// Raw row of each extra row kept by the crop, in output order.
    pub extra: Vec<usize>,
    /// Centre each non-centre row is assigned to, for every non-centre row before the
    /// crop (in `sample_msa` order).
    pub assignment: Vec<(usize, usize)>,
    /// `cluster_profile` `[S, L, 23]`.
    pub cluster_profile: Vec<f32>,
    /// `cluster_deletion_mean` `[S, L]`.
    pub cluster_deletion_mean: Vec<f32>,
}

impl Sample {
    pub fn num_centres(&self) -> usize {
        self.centres.len()
    }
}

/// Samples one iteration; `rng` is `None` in deterministic mode.
pub fn sample(
    raw: &RawMsa,
    profile: &[f32],
    cfg: &PipelineConfig,
    mut rng: Option<&mut Rng>,
) -> Sample {
    let l = raw.width;
    // sample_msa: [0] + shuffled(1..N), split at S.
    let mut order: Vec<usize> = (0..raw.rows).collect();
    if let Some(rng) = rng.as_deref_mut() {
        rng.shuffle(&mut order[1..]);
    }
    let num_sel = cfg.max_msa_clusters.min(raw.rows);
    let (centres, not_sel) = order.split_at(num_sel);

    // make_masked_msa on the centres.
    let true_msa: Vec<u8> = centres.iter().flat_map(|&i| raw.row(i)).copied().collect();
    let (msa, bert_mask) = match rng.as_deref_mut() {
        Some(rng) => masked_msa(&true_msa, l, profile, &cfg.masked_msa, rng),
        None => (true_msa, vec![false; num_sel * l]),
    };

    // nearest_neighbor_clusters: weights 1 for the 20 aa and X, 0 for gap and mask token.
    let keys: Vec<Vec<u8>> = msa
        .chunks(l)
        .map(|row| {
            row.iter()
                .map(|&c| if c >= GAP { u8::MAX } else { c })
                .collect()
        })
        .collect();
    let assignment: Vec<(usize, usize)> = not_sel
        .par_iter()
        .map(|&e| {
            let row = raw.row(e);
            // tf.argmax: the first of equal maxima.
            let mut best = (0usize, 0usize);
            for (s, key) in keys.iter().enumerate() {
                let agree = row.iter().zip(key).filter(|(a, b)| a == b).count();
                if agree > best.1 || s == 0 {
                    best = (s, agree);
                }
            }
            (e, best.0)
        })
        .collect();

    let (cluster_profile, cluster_deletion_mean) =
        summarize_clusters(raw, centres, &msa, &assignment);

    // crop_extra_msa: a random subset (in random order) of at most X extra rows.
    let mut extra = not_sel.to_vec();
    if let Some(rng) = rng {
        let take = cfg.max_extra_msa.min(extra.len());
        for i in 0..take {
            let j = i + rng.below(extra.len() - i);
            extra.swap(i, j);
        }
    }
    extra.truncate(cfg.max_extra_msa);

    Sample {
        width: l,
        centres: centres.to_vec(),
        msa,
        bert_mask,
        extra,
        assignment,
        cluster_profile,
        cluster_deletion_mean,
    }
}

/// `make_masked_msa`: each position is replaced with probability `replace_fraction` by a
/// draw from `uniform_prob`·uniform(20 aa) + `profile_prob`·profile + `same_prob`·itself,
/// the remaining probability on the mask token (`shaped_categorical`, ε = 1e-10).
fn masked_msa(
    msa: &[u8],
    l: usize,
    profile: &[f32],
    cfg: &MaskedMsaConfig,
    rng: &mut Rng,
) -> (Vec<u8>, Vec<bool>) {
    const EPS: f64 = 1e-10;
    let mask_prob = (1.0 - cfg.uniform_prob - cfg.profile_prob - cfg.same_prob) as f64;
    let mut out = msa.to_vec();
    let mut bert = vec![false; msa.len()];
    for (n, (&true_class, (o, b))) in msa
        .iter()
        .zip(out.iter_mut().zip(bert.iter_mut()))
        .enumerate()
    {
        if rng.uniform() >= cfg.replace_fraction as f64 {
            continue;
        }
        *b = true;
        let col = n % l;
        let mut probs = [0f64; MSA_CLASSES];
        for (c, p) in probs.iter_mut().enumerate() {
            let mut v = EPS;
            if c < 20 {
                v += cfg.uniform_prob as f64 * 0.05;
            }
            if c < PROFILE_CLASSES {
                v += cfg.profile_prob as f64 * profile[col * PROFILE_CLASSES + c] as f64;
                if c == true_class as usize {
                    v += cfg.same_prob as f64;
                }
            }
            if c == MASK_TOKEN as usize {
                v += mask_prob;
            }
            *p = v;
        }
        let mut u = rng.uniform() * probs.iter().sum::<f64>();
        *o = MASK_TOKEN;
        for (c, &p) in probs.iter().enumerate() {
            if u < p {
                *o = c as u8;
                break;
            }
            u -= p;
        }
    }
    (out, bert)
}

/// `summarize_clusters` (all masks are 1): per centre and column,
/// `cluster_profile` = (one_hot(centre, 23) + Σ assigned one_hot(extra, 23)) / count and
/// `cluster_deletion_mean` = (centre deletions + Σ assigned deletions) / count, with
/// count = 1e-6 + 1 + #assigned, in f32 as TF computes it.
fn summarize_clusters(
    raw: &RawMsa,
    centres: &[usize],
    msa: &[u8],
    assignment: &[(usize, usize)],
) -> (Vec<f32>, Vec<f32>) {
    let l = raw.width;
    let s = centres.len();
    let mut members = vec![0u32; s];
    let mut msa_sum = vec![0f32; s * l * MSA_CLASSES];
    let mut del_sum = vec![0f32; s * l];
    for &(e, c) in assignment {
        members[c] += 1;
        for (j, (&class, &d)) in raw.row(e).iter().zip(raw.deletion_row(e)).enumerate() {
            msa_sum[(c * l + j) * MSA_CLASSES + class as usize] += 1.0;
            del_sum[c * l + j] += d;
        }
    }
    for (c, &row) in centres.iter().enumerate() {
        for (j, &d) in raw.deletion_row(row).iter().enumerate() {
            msa_sum[(c * l + j) * MSA_CLASSES + msa[c * l + j] as usize] += 1.0;
            del_sum[c * l + j] += d;
        }
    }
    for c in 0..s {
        let count = (1e-6f32 + 1.0) + members[c] as f32;
        for v in &mut msa_sum[c * l * MSA_CLASSES..(c + 1) * l * MSA_CLASSES] {
            *v /= count;
        }
        for v in &mut del_sum[c * l..(c + 1) * l] {
            *v /= count;
        }
    }
    (msa_sum, del_sum)
}
