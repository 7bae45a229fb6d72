//! `ferrofold predict` end to end with the real weights: a paired Fv and a nanobody in one
//! file, folded with the model loaded once; the PDB and mmCIF files are read back by gemmi
//! and Biopython without warnings, and the JSON names the best-scoring member.

mod common;

use std::process::Command;

#[test]
fn predict_writes_readable_structures_and_json() {
    let weights = common::weights_dir();
    let out = tempfile::tempdir().unwrap();
    let input = out.path().join("in.fasta");
    let fasta = std::fs::read_to_string(common::repo_path("tests/data/antibodies.fasta")).unwrap();
    // The first (paired) and last (nanobody) records.
    let records: Vec<&str> = fasta.split('>').filter(|r| !r.is_empty()).collect();
    std::fs::write(
        &input,
        format!(">{}>{}", records[0], records[records.len() - 1]),
    )
    .unwrap();
    let res = out.path().join("res");
    let o = Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        // fp32 wherever `--device auto` runs it (a GPU's default is bf16)
        .args(["predict", "--model", "igfold", "--precision", "fp32"])
        .arg(&input)
        .arg("--out")
        .arg(&res)
        .arg("--weights")
        .arg(&weights)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("folded 2 antibodies"), "{stderr}");

    for (name, chosen, len) in [("paired", "igfold_2", 234), ("nanobody", "igfold_1", 125)] {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(res.join(format!("{name}.json"))).unwrap())
                .unwrap();
        assert_eq!(json["chosen_member"], chosen, "{name}");
        assert_eq!(json["atom_error"].as_array().unwrap().len(), len);
        assert_eq!(json["members"].as_array().unwrap().len(), 4);
        let pdb = std::fs::read_to_string(res.join(format!("{name}.pdb"))).unwrap();
        let ca = pdb
            .lines()
            .filter(|l| l.starts_with("ATOM") && &l[12..16] == " CA ")
            .count();
        assert_eq!(ca, len, "{name}: one CA per residue");
    }
    let python = std::env::var("FERROFOLD_CHECK_PYTHON").unwrap_or_else(|_| "python3".into());
    let files: Vec<_> = ["paired.pdb", "paired.cif", "nanobody.pdb", "nanobody.cif"]
        .iter()
        .map(|f| res.join(f))
        .collect();
    for pair in files.chunks(2) {
        let check = Command::new(&python)
            .arg(common::repo_path("io/tests/check_structure.py"))
            .args(pair)
            .output()
            .unwrap_or_else(|e| panic!("running {python} (see tools/test.sh): {e}"));
        assert!(
            check.status.success(),
            "gemmi/Biopython rejected our files (FERROFOLD_CHECK_PYTHON needs gemmi and biopython; tools/test.sh sets it up): {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}
