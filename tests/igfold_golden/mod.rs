//! IgFold on a backend against the PyTorch reference (goldens from
//! tools/reference/make_goldens.py): raw network output of every member within 1e-3 Å and 1e-3 predicted error; the same
//! member chosen unless the reference's scores tie within 1e-4.
//!
//! After the 80 refinement steps: every atom within 0.055 Å (RMS 0.006 Å) and predicted
//! error within 0.02. Adam's sign-like steps on the L1 bond terms turn rounding into
//! bifurcations: torch itself run in float64 ends up to 0.052 Å from its float32 goldens,
//! and so do we on one member (paired igfold_5), so 0.05 Å is not a reachable bar.
//!
//! Shared by the CPU tests (igfold_goldens.rs) and the CUDA backend's
//! (igfold_cuda_emulated.rs).

use crate::common;
use ferrofold_engine::igfold::antibody::{Antibody, CHAIN_IDS};
use ferrofold_engine::igfold::ensemble::{atoms_with_oxygen, IgFold, Prediction};
use ferrofold_io::weights::{load_safetensors, TensorStore};
use ferrofold_kernels::{Backend, Tensor};
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn model() -> &'static IgFold {
    static MODEL: OnceLock<IgFold> = OnceLock::new();
    MODEL.get_or_init(|| IgFold::load(&common::weights_dir()).expect("loading IgFold"))
}

const RAW_MAX_DEV: f32 = 1e-3;
const RAW_PRMSD_DEV: f32 = 1e-3;
/// The CPU backend's bound on any refined atom.
pub const REFINED_MAX_DEV: f32 = 0.055;
const REFINED_RMS_DEV: f32 = 0.006;
const REFINED_PRMSD_DEV: f32 = 0.02;

/// (max, rms) distance between our atoms and the reference's `[L, 5, 3]`.
fn atom_dev(ours: &[[[f32; 3]; 5]], want: &Tensor) -> (f32, f32) {
    assert_eq!(
        ours.len() * 15,
        want.len(),
        "residue count differs from the golden"
    );
    let d: Vec<f32> = ours
        .iter()
        .flatten()
        .zip(want.data().chunks(3))
        .map(|(a, b)| {
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
        })
        .collect();
    let rms = (d.iter().map(|x| x * x).sum::<f32>() / d.len() as f32).sqrt();
    (d.iter().copied().fold(0.0, f32::max), rms)
}

/// A golden's antibody folded on a backend, with the golden and the chain lengths.
pub struct Folded {
    pub pred: Prediction,
    pub golden: TensorStore,
    pub lens: Vec<usize>,
}

pub fn fold_golden(name: &str, be: &dyn Backend) -> Folded {
    let golden = load_safetensors(common::repo_path(&format!(
        "tests/data/igfold_{name}.safetensors"
    )))
    .expect("golden file");
    let seqs: BTreeMap<String, String> =
        serde_json::from_str(&golden.metadata()["sequences"]).expect("sequences metadata");
    let ab = Antibody {
        name: name.to_string(),
        chains: CHAIN_IDS
            .iter()
            .filter_map(|id| seqs.get(&id.to_string()).map(|s| (*id, s.clone())))
            .collect(),
    };
    let lens = ab.chain_lens();
    let pred = model().fold(be, &ab);
    Folded { pred, golden, lens }
}

/// Folds the golden's antibody on `be` and checks every member against the reference, no
/// refined atom further than `refined_max` Å from it.
pub fn check(name: &str, be: &dyn Backend, refined_max: f32) {
    let Folded { pred, golden, lens } = fold_golden(name, be);
    let root = golden.root();
    let g = |k: &str| root.get_any(k).unwrap_or_else(|e| panic!("{e}"));
    let mut ref_scores = Vec::new();
    for (k, m) in pred.members.iter().enumerate() {
        let (raw_dev, _) = atom_dev(
            &atoms_with_oxygen(&m.raw_frames, &lens),
            g(&format!("m{k}.raw_coords")),
        );
        let raw_err = m.raw_prmsd.max_abs_diff(g(&format!("m{k}.raw_prmsd")));
        let (dev, rms) = atom_dev(
            &atoms_with_oxygen(&m.frames, &lens),
            g(&format!("m{k}.refined_coords")),
        );
        let err = m.prmsd.max_abs_diff(g(&format!("m{k}.refined_prmsd")));
        let ref_score = g(&format!("m{k}.score")).data()[0];
        eprintln!(
            "{name} {}: raw {raw_dev:.1e} Å, prmsd {raw_err:.1e}; refined max {dev:.3} Å rms {rms:.4} Å, prmsd {err:.3}; score {:.5} vs {ref_score:.5}",
            m.name, m.score
        );
        assert!(
            raw_dev <= RAW_MAX_DEV,
            "{name} {}: raw coordinates off by {raw_dev} Å",
            m.name
        );
        assert!(
            raw_err <= RAW_PRMSD_DEV,
            "{name} {}: raw predicted error off by {raw_err}",
            m.name
        );
        assert!(
            dev <= refined_max,
            "{name} {}: refined coordinates off by {dev} Å",
            m.name
        );
        assert!(
            rms <= REFINED_RMS_DEV,
            "{name} {}: refined rms {rms} Å",
            m.name
        );
        assert!(
            err <= REFINED_PRMSD_DEV,
            "{name} {}: refined predicted error off by {err}",
            m.name
        );
        ref_scores.push(ref_score);
    }
    let ref_chosen = g("chosen").data()[0] as usize;
    if pred.chosen != ref_chosen {
        let gap = (ref_scores[pred.chosen] - ref_scores[ref_chosen]).abs();
        assert!(
            gap <= 1e-4,
            "{name}: chose member {} but the reference chose {ref_chosen}",
            pred.chosen
        );
    }
}
