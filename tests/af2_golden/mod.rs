//! AlphaFold2 model_1_ptm end to end on a backend against the official JAX model run with the
//! same random parameters on the same processed features (tests/data/af2/model_*, made by
//! tools/reference/af2/make_model_golden.py), 4 recycling iterations. Shared by the CPU test
//! (af2_model.rs) and the CUDA backend's (af2_cuda.rs).
//!
//! The parameters (356 MiB) are not in the repository: tools/test.sh regenerates them with
//! tools/reference/af2/make_params.py and points FERROFOLD_AF2_PARAMS at them.

use ferrofold_engine::af2::config::ModelConfig;
use ferrofold_engine::af2::features::load_processed_features;
use ferrofold_engine::af2::model::{AlphaFold, Prediction};
use ferrofold_io::weights::{load_npz, load_safetensors, TensorStore};
use ferrofold_kernels::{Backend, Tensor};
use std::path::PathBuf;

/// `rel` in the repository: cargo's CARGO_MANIFEST_DIR when the test runs, else the one it was
/// built in (a test binary carried to another machine is given the variable there).
pub fn repo(rel: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join(rel)
}

/// Max |a - b| of two tensors of the same shape.
fn max_dev(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.max_abs_diff(b)
}

/// model_1_ptm's prediction on `be` with `recycles` recycling iterations.
pub fn predict(be: &dyn Backend, recycles: usize) -> Prediction {
    predict_with(be, recycles, |store| store)
}

/// The same with parameters changed by `change`.
pub fn predict_with(
    be: &dyn Backend,
    recycles: usize,
    change: impl FnOnce(TensorStore) -> TensorStore,
) -> Prediction {
    let params = std::env::var("FERROFOLD_AF2_PARAMS")
        .expect("FERROFOLD_AF2_PARAMS: path to params_model_1_ptm.npz from make_params.py");
    let store = change(load_npz(&params).expect("parameters"));
    let model = AlphaFold::load(
        std::sync::Arc::new(store),
        ModelConfig::by_name("model_1_ptm").unwrap(),
    )
    .unwrap();
    let features = load_processed_features(&repo("tests/data/af2/model_features.npz")).unwrap();
    model.predict(be, &features, recycles).unwrap()
}

/// Runs the model on `be` and checks every output against the JAX golden.
pub fn model_1_ptm_matches_jax(be: &dyn Backend) {
    let pred = predict(be, 3);
    let golden = load_safetensors(repo("tests/data/af2/model_1_ptm_outputs.safetensors")).unwrap();
    let g = |k: &str| golden.root().get_any(k).unwrap().clone();
    let mask = g("final_atom_mask");
    assert_eq!(pred.final_atom_mask, mask, "atom mask");
    let want = g("final_atom_positions");
    let atom_dev = pred
        .final_atom_positions
        .data()
        .chunks(3)
        .zip(want.data().chunks(3))
        .zip(mask.data())
        .filter(|(_, m)| **m > 0.5)
        .map(|((a, b), _)| {
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
        })
        .fold(0f32, f32::max);
    let plddt = Tensor::new(&[pred.plddt.len()], pred.plddt.clone()).unwrap();
    let ae = pred.aligned_error.as_ref().expect("ptm model");
    let (pae, ptm) = (&ae.predicted_aligned_error, &ae.ptm);
    let checks = [
        (
            "single",
            max_dev(&pred.single, &g("representations/single")),
            1e-3,
        ),
        (
            "pair",
            max_dev(&pred.pair, &g("representations/pair")),
            1e-3,
        ),
        ("plddt", max_dev(&plddt, &g("plddt")), 1e-2),
        (
            "distogram",
            max_dev(&pred.distogram_logits, &g("distogram/logits")),
            1e-3,
        ),
        (
            "masked_msa",
            max_dev(&pred.masked_msa_logits, &g("masked_msa/logits")),
            1e-3,
        ),
        ("pae", max_dev(pae, &g("predicted_aligned_error")), 1e-2),
        ("ptm", (ptm - g("ptm").data()[0]).abs(), 1e-4),
        ("atoms (Å)", atom_dev, 1e-3),
    ];
    for (what, dev, tol) in checks {
        eprintln!("{what}: max deviation {dev:.2e} (tolerance {tol:.0e})");
    }
    for (what, dev, tol) in checks {
        assert!(dev <= tol, "{what}: deviation {dev} over {tol}");
    }
}
