//! AlphaFold2 model_1_ptm end to end on the CPU backend against the official JAX model
//! (af2_golden), and the CLI on the same features.

mod af2_golden;

use af2_golden::repo;
use ferrofold_io::weights::{load_npz, load_safetensors};
use ferrofold_kernels::CpuBackend;

#[test]
#[ignore = "needs the random AF2 parameters: run tools/test.sh (sets FERROFOLD_AF2_PARAMS)"]
fn model_1_ptm_matches_jax() {
    af2_golden::model_1_ptm_matches_jax(&CpuBackend);
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
                // fp32 wherever `--device auto` runs it (a GPU's default is bf16)
                "--precision",
                "fp32",
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
