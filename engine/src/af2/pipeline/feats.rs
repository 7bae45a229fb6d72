//! `make_msa_feat` and the per-residue features: the model's [`Features`] of one
//! recycling iteration from the query and an MSA [`Sample`].

use ferrofold_kernels::Tensor;

use super::alphabet::MSA_CLASSES;
use super::msa::RawMsa;
use super::sample::Sample;
use crate::af2::features::Features;

/// Channels of `msa_feat`: one_hot(23), has_deletion, deletion_value, cluster_profile(23),
/// deletion_mean_value.
pub const MSA_FEAT_CHANNELS: usize = 2 * MSA_CLASSES + 3;

/// `atan(x / 3) · 2/π`, in f32 as TF and numpy compute it.
pub fn deletion_value(x: f32) -> f32 {
    (x / 3.0).atan() * std::f32::consts::FRAC_2_PI
}

/// `target_feat` `[L, 22]`: `[between_segment_residues (0), one_hot(aatype, 21)]`.
pub fn target_feat(aatype: &[u8]) -> Tensor {
    let mut t = Tensor::zeros(&[aatype.len(), 22]);
    for (l, &a) in aatype.iter().enumerate() {
        t.data_mut()[l * 22 + 1 + a as usize] = 1.0;
    }
    t
}

/// The features of one iteration (no templates; no fixed-size padding, except that an
/// MSA without extra rows gets one all-zero extra row with mask 0, the row AF2's padding
/// would give: the official model needs at least one).
pub fn assemble(aatype: &[u8], raw: &RawMsa, s: &Sample) -> Features {
    let l = raw.width;
    let n = s.num_centres();
    let mut msa_feat = vec![0f32; n * l * MSA_FEAT_CHANNELS];
    for (c, &row) in s.centres.iter().enumerate() {
        for (j, &d) in raw.deletion_row(row).iter().enumerate() {
            let at = c * l + j;
            let f = &mut msa_feat[at * MSA_FEAT_CHANNELS..(at + 1) * MSA_FEAT_CHANNELS];
            f[s.msa[at] as usize] = 1.0;
            f[MSA_CLASSES] = d.clamp(0.0, 1.0);
            f[MSA_CLASSES + 1] = deletion_value(d);
            f[MSA_CLASSES + 2..2 * MSA_CLASSES + 2]
                .copy_from_slice(&s.cluster_profile[at * MSA_CLASSES..(at + 1) * MSA_CLASSES]);
            f[2 * MSA_CLASSES + 2] = deletion_value(s.cluster_deletion_mean[at]);
        }
    }

    let x = s.extra.len();
    let (extra_msa, has_del, del_val, extra_mask) = if x == 0 {
        let z = || Tensor::zeros(&[1, l]);
        (z(), z(), z(), z())
    } else {
        let mut ids = Vec::with_capacity(x * l);
        let mut has = Vec::with_capacity(x * l);
        let mut val = Vec::with_capacity(x * l);
        for &e in &s.extra {
            ids.extend(raw.row(e).iter().map(|&c| c as f32));
            has.extend(raw.deletion_row(e).iter().map(|d| d.clamp(0.0, 1.0)));
            val.extend(raw.deletion_row(e).iter().map(|&d| deletion_value(d)));
        }
        let t = |v| Tensor::new(&[x, l], v).expect("extra-MSA shape");
        (t(ids), t(has), t(val), Tensor::full(&[x, l], 1.0))
    };

    Features {
        aatype: aatype.iter().map(|&a| a as usize).collect(),
        residue_index: (0..l as i64).collect(),
        seq_mask: Tensor::full(&[l], 1.0),
        target_feat: target_feat(aatype),
        msa_feat: Tensor::new(&[n, l, MSA_FEAT_CHANNELS], msa_feat).expect("msa_feat shape"),
        msa_mask: Tensor::full(&[n, l], 1.0),
        extra_msa,
        extra_has_deletion: has_del,
        extra_deletion_value: del_val,
        extra_msa_mask: extra_mask,
        templates: None,
    }
}
