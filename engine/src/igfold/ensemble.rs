//! The IgFold pipeline (`igfold.utils.folding.fold`): embed with AntiBERTy, run every
//! ensemble member, refine each member's frames, rescore, and keep the member with the
//! lowest 90th-percentile predicted error. Members are never averaged.

use super::antiberty::AntiBerty;
use super::antibody::Antibody;
use super::geometry::{backbone_atoms, place_o_atoms, Frames, Vec3};
use super::network::{IgFoldConfig, IgFoldNet};
use super::refine::gradient_refine;
use super::weights::{ANTIBERTY_FILE, MEMBERS};
use ferrofold_io::weights::load_safetensors;
use ferrofold_kernels::{Backend, Tensor};
use std::path::Path;
use std::time::Instant;

/// One member's predictions before and after refinement.
pub struct MemberPrediction {
    pub name: String,
    pub raw_frames: Frames,
    pub raw_prmsd: Tensor, // [L, 4]
    pub frames: Frames,
    pub prmsd: Tensor, // [L, 4]
    /// 90th percentile of the refined `prmsd` (all 4L values); lower is better.
    pub score: f32,
}

/// Wall-clock seconds of each stage.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    pub embed_s: f64,
    pub network_s: f64,
    pub refine_s: f64,
    pub total_s: f64,
}

pub struct Prediction {
    pub members: Vec<MemberPrediction>,
    pub chosen: usize,
    pub timings: Timings,
}

impl Prediction {
    pub fn best(&self) -> &MemberPrediction {
        &self.members[self.chosen]
    }
}

/// N, CA, C, CB, O for every residue of `frames`.
pub fn atoms_with_oxygen(frames: &Frames, chain_lens: &[usize]) -> Vec<[Vec3; 5]> {
    let bb = backbone_atoms(frames);
    let o = place_o_atoms(&bb, chain_lens);
    bb.iter()
        .zip(o)
        .map(|(b, o)| [b[0], b[1], b[2], b[3], o])
        .collect()
}

/// Per-residue error as IgFold writes it to the B-factor column: `sqrt(mean_a prmsd_a^2)`.
pub fn residue_error(prmsd: &Tensor) -> Vec<f32> {
    prmsd
        .data()
        .chunks(4)
        .map(|r| (r.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt())
        .collect()
}

/// `torch.quantile(x, q)` with linear interpolation.
pub fn quantile(values: &[f32], q: f32) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let pos = q * (v.len() - 1) as f32;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (pos - lo as f32) * (v[hi] - v[lo])
}

/// Index of the lowest score; the first one on ties, as `scores.index(min(scores))`.
fn argmin(scores: &[f32]) -> usize {
    scores
        .iter()
        .enumerate()
        .fold(0, |best, (i, s)| if *s < scores[best] { i } else { best })
}

pub struct IgFold {
    pub antiberty: AntiBerty,
    /// `(name, network)` in sorted file order: igfold_1, igfold_2, igfold_3, igfold_5.
    pub members: Vec<(String, IgFoldNet)>,
}

impl IgFold {
    /// Loads AntiBERTy and every ensemble member from a folder written by
    /// [`fetch_igfold`](super::weights::fetch_igfold).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let bert = load_safetensors(dir.join(ANTIBERTY_FILE))?;
        let antiberty = AntiBerty::load(&bert.root())?;
        let members = MEMBERS
            .iter()
            .map(|name| {
                let store = load_safetensors(dir.join(format!("{name}.safetensors")))?;
                let config = store.metadata().get("config").ok_or_else(|| {
                    anyhow::anyhow!("{name}.safetensors has no `config` metadata")
                })?;
                let config: IgFoldConfig = serde_json::from_str(config)
                    .map_err(|e| anyhow::anyhow!("{name}.safetensors: bad config: {e}"))?;
                if config != IgFoldConfig::RELEASED {
                    anyhow::bail!(
                        "{name}.safetensors: config {config:?} is not IgFold 1.0.1's, which is the \
                         only architecture this port implements"
                    );
                }
                let net = IgFoldNet::load(&store.root(), &config)?;
                let unused = store.unused();
                if !unused.is_empty() {
                    anyhow::bail!(
                        "{name}.safetensors: {} tensors the model does not use, e.g. `{}`",
                        unused.len(),
                        unused[0]
                    );
                }
                Ok((name.to_string(), net))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { antiberty, members })
    }

    pub fn fold(&self, be: &dyn Backend, ab: &Antibody) -> Prediction {
        let start = Instant::now();
        let (feats, attn) = self.embed(be, ab);
        let embed_s = start.elapsed().as_secs_f64();
        let chain_lens = ab.chain_lens();
        let (mut network_s, mut refine_s) = (0.0, 0.0);
        let members: Vec<MemberPrediction> = self
            .members
            .iter()
            .map(|(name, net)| {
                let t = Instant::now();
                let raw = net.forward(be, &feats, &attn);
                network_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let frames = gradient_refine(&raw.frames, &chain_lens);
                let prmsd = net.predict_error(be, &raw.dev_inputs, &frames);
                refine_s += t.elapsed().as_secs_f64();
                MemberPrediction {
                    name: name.clone(),
                    score: quantile(prmsd.data(), 0.9),
                    raw_frames: raw.frames,
                    raw_prmsd: raw.prmsd,
                    frames,
                    prmsd,
                }
            })
            .collect();
        let scores: Vec<f32> = members.iter().map(|m| m.score).collect();
        Prediction {
            chosen: argmin(&scores),
            members,
            timings: Timings {
                embed_s,
                network_s,
                refine_s,
                total_s: start.elapsed().as_secs_f64(),
            },
        }
    }

    /// AntiBERTy features `[L, 512]` and the block-diagonal attention edges `[L, L, 64]`
    /// (inter-chain blocks stay zero).
    pub fn embed(&self, be: &dyn Backend, ab: &Antibody) -> (Tensor, Tensor) {
        let l = ab.len();
        let mut feats = Vec::with_capacity(l * 512);
        let mut attn = Tensor::zeros(&[l, l, 64]);
        let mut offset = 0;
        for (_, seq) in &ab.chains {
            let emb = self.antiberty.embed(be, seq);
            feats.extend_from_slice(emb.feats.data());
            let n = seq.len();
            let dst = attn.data_mut();
            for i in 0..n {
                let row = &emb.attn.data()[i * n * 64..(i + 1) * n * 64];
                let at = ((offset + i) * l + offset) * 64;
                dst[at..at + n * 64].copy_from_slice(row);
            }
            offset += n;
        }
        let feats = Tensor::new(&[l, 512], feats).expect("features cover every residue");
        (feats, attn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_torch() {
        // torch.quantile(tensor([1., 2., 3., 4., 10.]), 0.9) == 7.6
        assert!((quantile(&[10.0, 1.0, 3.0, 2.0, 4.0], 0.9) - 7.6).abs() < 1e-6);
        assert_eq!(quantile(&[5.0], 0.9), 5.0);
    }

    #[test]
    fn argmin_takes_first_on_ties() {
        assert_eq!(argmin(&[2.0, 1.0, 1.0, 3.0]), 1);
    }

    #[test]
    fn residue_error_is_rms_over_atoms() {
        let p = Tensor::new(&[1, 4], vec![1.0, 1.0, 1.0, 1.0]).unwrap();
        assert_eq!(residue_error(&p), vec![1.0]);
    }
}
