//! AlphaFold2 model_1_ptm end to end against the official JAX model run with the same
//! random parameters on the same processed features (tests/data/af2/model_*, made by
//! tools/reference/af2/make_model_golden.py), 4 recycling iterations.
//!
//! The parameters (356 MiB) are not in the repository: tools/test.sh regenerates them
//! with tools/reference/af2/make_params.py and points FERROFOLD_AF2_PARAMS at them.

use ferrofold_engine::af2::config::ModelConfig;
use ferrofold_engine::af2::features::load_processed_features;
use ferrofold_engine::af2::model::AlphaFold;
use ferrofold_io::weights::{load_npz, load_safetensors};
use ferrofold_kernels::{CpuBackend, Tensor};
use std::path::PathBuf;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Max |a - b| of two tensors of the same shape.
fn max_dev(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.max_abs_diff(b)
}

#[test]
#[ignore = "needs the random AF2 parameters: run tools/test.sh (sets FERROFOLD_AF2_PARAMS)"]
fn model_1_ptm_matches_jax() {
    let params = std::env::var("FERROFOLD_AF2_PARAMS")
        .expect("FERROFOLD_AF2_PARAMS: path to params_model_1_ptm.npz from make_params.py");
    let store = load_npz(&params).expect("parameters");
    let model = AlphaFold::load(
        std::sync::Arc::new(store),
        ModelConfig::by_name("model_1_ptm").unwrap(),
    )
    .unwrap();
    let features = load_processed_features(&repo("tests/data/af2/model_features.npz")).unwrap();
    let pred = model.predict(&CpuBackend, &features, 3).unwrap();

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
    let (pae, _, ptm) = pred.aligned_error.as_ref().expect("ptm model");
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

#[test]
#[ignore = "needs the random AF2 parameters: run tools/test.sh (sets FERROFOLD_AF2_PARAMS)"]
fn predict_cli_writes_structure_confidence_and_outputs() {
    let params = std::env::var("FERROFOLD_AF2_PARAMS").expect("FERROFOLD_AF2_PARAMS");
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("helix.npz");
    std::fs::copy(repo("tests/data/af2/model_features.npz"), &features).unwrap();
    let out = dir.path().join("out");
    let run = |model: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferrofold"))
            .args([
                "predict",
                "--model",
                model,
                "--params",
                &params,
                "--save-outputs",
                "--features",
            ])
            .arg(&features)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    // The ptm file has the aligned-error head that model_1 lacks: refused by name.
    let wrong = run("model_1");
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && err.contains("predicted_aligned_error_head"),
        "{err}"
    );
    let o = run("model_1_ptm");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("helix.json")).unwrap()).unwrap();
    let golden = load_safetensors(repo("tests/data/af2/model_1_ptm_outputs.safetensors")).unwrap();
    let ptm = golden.root().get_any("ptm").unwrap().data()[0] as f64;
    assert!((json["ptm"].as_f64().unwrap() - ptm).abs() < 1e-4);
    assert_eq!(json["plddt"].as_array().unwrap().len(), 24);
    let outputs = load_npz(out.join("helix.outputs.npz")).unwrap();
    assert_eq!(
        outputs
            .root()
            .get_any("final_atom_positions")
            .unwrap()
            .shape(),
        [24, 37, 3]
    );
    let cif = std::fs::read_to_string(out.join("helix.cif")).unwrap();
    assert!(cif.contains("_ma_qa_metric_local"));
    let python = std::env::var("FERROFOLD_CHECK_PYTHON").unwrap_or_else(|_| "python3".into());
    let check = std::process::Command::new(python)
        .arg(repo("io/tests/check_structure.py"))
        .arg(out.join("helix.pdb"))
        .arg(out.join("helix.cif"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
