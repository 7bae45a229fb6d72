//! Checks written PDB and mmCIF files with Biopython and gemmi (io/tests/check_structure.py).
//!
//! Needs a Python with `gemmi` and `biopython`, so it is ignored by default; tools/test.sh
//! runs it. By hand:
//! `FERROFOLD_CHECK_PYTHON=/path/to/python cargo test -p ferrofold-io -- --ignored`
//! (default interpreter: `python3`).

use std::path::Path;
use std::process::Command;

use ferrofold_io::mmcif::write_mmcif;
use ferrofold_io::pdb::write_pdb;
use ferrofold_io::structure::{Atom, Chain, Residue, Structure};

/// Chains H and L (L twice, as chains L and M, to exercise shared entities), with
/// backbone atoms, CB, a terminal OXT and a four-character hydrogen name.
fn structure() -> Structure {
    let chain = |id: &str, seq: &[&str], first: i32, shift: f32| Chain {
        id: id.into(),
        residues: seq
            .iter()
            .enumerate()
            .map(|(i, &name)| {
                let x = i as f32 * 3.8 - 20.0 + shift;
                let mut atoms = vec![("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O")];
                if name != "GLY" {
                    atoms.push(("CB", "C"));
                }
                if name == "LEU" {
                    atoms.push(("HD11", "H"));
                }
                if i + 1 == seq.len() {
                    atoms.push(("OXT", "O"));
                }
                Residue {
                    name: name.into(),
                    seq_num: first + i as i32,
                    atoms: atoms
                        .iter()
                        .enumerate()
                        .map(|(k, &(atom, element))| Atom {
                            name: atom.into(),
                            element: element.into(),
                            xyz: [x + k as f32 * 0.5, -1.25 * k as f32, 0.375 * i as f32],
                            occupancy: 1.0,
                            b_factor: 50.0 + i as f32 * 1.5,
                        })
                        .collect(),
                }
            })
            .collect(),
    };
    Structure {
        chains: vec![
            chain("H", &["GLU", "VAL", "GLN", "LEU", "GLY"], -1, 0.0),
            chain("L", &["ASP", "ILE", "UNK"], 1, 10.0),
            chain("M", &["ASP", "ILE", "UNK"], 1, 30.0),
        ],
    }
}

#[test]
#[ignore = "needs python3 with gemmi and biopython (set FERROFOLD_CHECK_PYTHON)"]
fn biopython_and_gemmi_read_written_files_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let s = structure();
    let pdb = dir.path().join("model.pdb");
    let cif = dir.path().join("model.cif");
    std::fs::write(&pdb, write_pdb(&s).unwrap()).unwrap();
    std::fs::write(&cif, write_mmcif(&s, "model").unwrap()).unwrap();

    let python = std::env::var("FERROFOLD_CHECK_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_structure.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&pdb)
        .arg(&cif)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_structure.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = format!("chains=3 residues=11 atoms={}", s.atom_count());
    assert_eq!(stdout.matches(&summary).count(), 2, "{stdout}");
}
