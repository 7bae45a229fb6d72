//! Bad input to `ferrofold predict`: a one-line error naming the record and the problem,
//! a non-zero exit, and no file written. None of these need the weights: input is checked
//! before the model is loaded.

use std::path::Path;
use std::process::Command;

fn run(fasta: &str, out: &Path, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.fasta");
    std::fs::write(&input, fasta).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        .args(["predict", "--model", "igfold"])
        .arg(&input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_refused(fasta: &str, needles: &[&str]) {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("results");
    let (ok, err) = run(fasta, &target, &[]);
    assert!(!ok, "accepted bad input {fasta:?}");
    assert_eq!(err.trim().lines().count(), 1, "error is one line: {err}");
    for n in needles {
        assert!(err.contains(n), "error {err:?} lacks {n:?}");
    }
    let written = std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "files were written for bad input");
}

const H: &str = "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKG";

#[test]
fn letters_outside_the_amino_acids() {
    assert_refused(&format!(">good\n{H}\n>ab2\n{H}B\n"), &["ab2", "`B`"]);
}

#[test]
fn empty_chain() {
    assert_refused(&format!(">ab3\n{H}:\n"), &["ab3", "chain L is empty"]);
}

#[test]
fn more_than_two_chains() {
    assert_refused(&format!(">ab4\n{H}:{H}:{H}\n"), &["ab4", "3 chains"]);
}

#[test]
fn chain_over_antiberty_limit() {
    assert_refused(
        &format!(">ab5\n{}\n", "A".repeat(511)),
        &["ab5", "511 residues"],
    );
}

#[test]
fn empty_file() {
    assert_refused("", &["in.fasta"]);
}

#[test]
fn header_escaping_the_output_folder() {
    assert_refused(&format!(">../x\n{H}\n"), &["../x"]);
}

#[test]
fn duplicate_records() {
    assert_refused(
        &format!(">a\n{H}\n>a\n{H}\n"),
        &["\"a\"", "same output files"],
    );
    // Names differing only in case: one file on a case-insensitive file system.
    assert_refused(&format!(">Ab\n{H}\n>aB\n{H}\n"), &["\"Ab\"", "\"aB\""]);
}

#[test]
fn a_directory_in_the_way_of_a_later_record_stops_the_run_before_it_starts() {
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(out.path().join("second.cif")).unwrap();
    let (ok, err) = run(&format!(">first\n{H}\n>second\n{H}\n"), out.path(), &[]);
    assert!(
        !ok && err.contains("second.cif") && err.contains("directory"),
        "{err}"
    );
    let names: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "only the directory: {names:?}");
}

#[test]
fn alphafold_options_with_igfold_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let (ok, err) = run(
        &format!(">a\n{H}\n"),
        out.path(),
        &["--recycles", "5", "--msa", "x.a3m"],
    );
    assert!(
        !ok && err.contains("--msa, --recycles are for AlphaFold2"),
        "{err}"
    );
}

#[test]
fn unwritable_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let (ok, err) = run(&format!(">a\n{H}\n"), &blocker.join("out"), &[]);
    assert!(!ok);
    assert!(err.contains("output folder"), "{err}");
}

#[test]
fn missing_and_corrupt_weights() {
    let out = tempfile::tempdir().unwrap();
    let weights = tempfile::tempdir().unwrap();
    let (ok, err) = run(
        &format!(">a\n{H}\n"),
        out.path(),
        &["--weights", weights.path().to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("antiberty.safetensors"), "{err}");
    std::fs::write(
        weights.path().join("antiberty.safetensors"),
        b"\x10\x00\x00\x00garbage",
    )
    .unwrap();
    let (ok, err) = run(
        &format!(">a\n{H}\n"),
        out.path(),
        &["--weights", weights.path().to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("antiberty.safetensors"), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn tampered_wheel_is_refused_and_nothing_is_installed() {
    let home = tempfile::tempdir().unwrap();
    let wheels = tempfile::tempdir().unwrap();
    for f in [
        "igfold-1.0.1-py3-none-any.whl",
        "antiberty-0.1.3-py3-none-any.whl",
    ] {
        std::fs::write(wheels.path().join(f), b"PK not the release").unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        .args(["weights", "fetch", "igfold", "--wheel-dir"])
        .arg(wheels.path())
        .env("FERROFOLD_HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("sha256") && err.contains("igfold-1.0.1"),
        "{err}"
    );
    assert!(
        !home.path().join("igfold-1.0.1").exists(),
        "no weights folder after a refusal"
    );
}

fn af2(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        .arg("predict")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn alphafold_bad_invocations() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("res");
    let o = o.to_str().unwrap();
    let features = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/af2/model_features.npz"
    );
    let (ok, err) = af2(&["--model", "model_9", "--out", o]);
    assert!(!ok && err.contains("unknown model `model_9`"), "{err}");
    let (ok, err) = af2(&["--model", "model_1", "--features", features, "--out", o]);
    assert!(!ok && err.contains("--params"), "{err}");
    let (ok, err) = af2(&[
        "--model",
        "model_1",
        "--params",
        "/nonexistent.npz",
        "--out",
        o,
    ]);
    assert!(!ok && err.contains("--features"), "{err}");
    // A features file that is not one names itself; the parameters are never read.
    let bad = out.path().join("bad.npz");
    std::fs::write(&bad, b"PK\x03\x04 truncated").unwrap();
    let (ok, err) = af2(&[
        "--model",
        "model_1",
        "--params",
        "/nonexistent.npz",
        "--features",
        bad.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(!ok && err.contains("bad.npz"), "{err}");
    let (ok, err) = af2(&[
        "--model",
        "model_1",
        "--params",
        "/nonexistent.npz",
        "--features",
        features,
        "--out",
        o,
    ]);
    assert!(!ok && err.contains("/nonexistent.npz"), "{err}");
    assert!(
        !std::path::Path::new(o).exists(),
        "no output folder for a failed run"
    );
}

#[test]
fn alphafold_fasta_input_errors_name_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("res");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let base = [
        "--model",
        "model_3",
        "--params",
        "/nonexistent.npz",
        "--out",
        o.to_str().unwrap(),
    ];
    let two = write("two.fasta", ">a\nMKV\n>b\nMKV\n");
    let (ok, err) = af2(&[&base[..], &[two.as_str()]].concat());
    assert!(!ok && err.contains("2 records"), "{err}");
    let bad = write("bad.fasta", ">prot1\nMKJV\n");
    let (ok, err) = af2(&[&base[..], &[bad.as_str()]].concat());
    assert!(!ok && err.contains("prot1"), "{err}");
    let good = write("good.fasta", ">prot2\nMKVL\n");
    let msa = write("m.a3m", ">prot2\nMKVL\n>hom\nMKV\n");
    let (ok, err) = af2(&[&base[..], &[good.as_str(), "--msa", msa.as_str()]].concat());
    assert!(!ok && err.contains("hom"), "{err}");
    assert!(!o.exists(), "no output folder for a failed run");
}

#[test]
fn alphafold_refuses_a_malicious_features_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("res");
    let evil = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/io/tests/data/evil_os_system.pkl"
    );
    let (ok, err) = af2(&[
        "--model",
        "model_1",
        "--params",
        "/nonexistent.npz",
        "--features-pkl",
        evil,
        "--out",
        o.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("system") && err.contains("not allowed"),
        "{err}"
    );
    assert!(!o.exists());
}

#[test]
fn alphafold_refuses_inputs_larger_than_memory_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("res");
    let fasta = dir.path().join("q.fasta");
    std::fs::write(&fasta, format!(">long\n{}\n", "MKVL".repeat(250))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        .args([
            "predict",
            "--model",
            "model_3",
            "--params",
            "/nonexistent.npz",
            "--out",
        ])
        .arg(&o)
        .arg(&fasta)
        .env("FERROFOLD_MEMORY_LIMIT", "1000000000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("long: 1000 residues") && err.contains("GiB"),
        "{err}"
    );
    assert!(!o.exists());
}

#[test]
fn alphafold_features_with_a_missing_array_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("res");
    // An npz holding only `aatype` ([1, 3]): the first array the model needs after it is named.
    let npz = dir.path().join("f.npz");
    std::fs::write(&npz, zip_with_aatype()).unwrap();
    let (ok, err) = af2(&[
        "--model",
        "model_3",
        "--params",
        "/nonexistent.npz",
        "--features",
        npz.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("f.npz") && err.contains("is missing"),
        "{err}"
    );
}

fn zip_with_aatype() -> Vec<u8> {
    let t = ferrofold_kernels::Tensor::new(&[1, 3], vec![0.0, 1.0, 2.0]).unwrap();
    ferrofold_io::weights::npz_bytes(&[("aatype", &t)]).unwrap()
}

#[test]
fn unusable_device_is_one_clear_error() {
    // Without the `cuda` feature: built without CUDA support; with it on a machine without a
    // GPU: the probe's reason. Either way one line naming the device, and no file.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("results");
    let missing = out.path().join("no-weights");
    let args = ["--device", "cuda:0", "--weights", missing.to_str().unwrap()];
    let (ok, err) = run(&format!(">ab\n{H}\n"), &target, &args);
    assert!(!ok, "folded without weights");
    assert_eq!(
        std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0),
        0
    );
    if err.contains("--device cuda:0") {
        assert_eq!(err.trim().lines().count(), 1, "error is one line: {err}");
    } else {
        eprintln!("a usable GPU: stopped by the missing weights instead ({err})");
    }
    let (ok, err) = run(&format!(">ab\n{H}\n"), &target, &["--device", "tpu"]);
    assert!(!ok && err.contains("`tpu` is not a device"), "{err}");
    // A GPU precision on the CPU, or one that does not exist: refused before any work.
    let args = ["--device", "cpu", "--precision", "bf16"];
    let (ok, err) = run(&format!(">ab\n{H}\n"), &target, &args);
    assert!(
        !ok && err.contains("--precision bf16 is for --device cuda"),
        "{err}"
    );
    let (ok, err) = run(&format!(">ab\n{H}\n"), &target, &["--precision", "fp8"]);
    assert!(!ok && err.contains("`fp8` is not a precision"), "{err}");
    assert_eq!(
        std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0),
        0
    );
}
