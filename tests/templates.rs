//! Template library and AF2 template features (issue 4, part 1).
//!
//! Goldens: `tools/reference/af2/template_features_ref.py` runs AF2's own
//! `templates._extract_template_features` (+ the pipeline's `fix_templates_aatype` and
//! `pseudo_beta_fn`) on the structures in tests/data/templates/ for made-up hit alignments.

use ferrofold_engine::af2::templates::featurize::{featurize, featurize_hit, template_batch};
use ferrofold_engine::af2::templates::library::{
    build_from_dir, encode, write_library, TemplateLibrary,
};
use ferrofold_io::structure_read::{parse_mmcif, parse_pdb, read_structure};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/templates")
        .join(rel)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn f32s(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("golden {name}"));
    t.data()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i32s(st: &safetensors::SafeTensors, name: &str) -> Vec<usize> {
    let t = st.tensor(name).unwrap();
    t.data()
        .chunks(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as usize)
        .collect()
}

fn library() -> (tempfile::TempDir, TemplateLibrary) {
    let report = build_from_dir(&data("")).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("templates.db");
    write_library(&path, &report.entries).unwrap();
    let lib = TemplateLibrary::open(&path).unwrap();
    assert_eq!(lib.len(), report.entries.len());
    for (i, e) in report.entries.iter().enumerate() {
        let got = lib.get(i).unwrap();
        let same = got.positions == e.positions
            && got.masks == e.masks
            && got.info.sequence == e.info.sequence
            && got.info.id == e.info.id
            && got.info.release_date == e.info.release_date
            && got.info.atoms == e.info.atoms;
        assert!(same, "library round trip of {}", e.info.id);
    }
    (dir, lib)
}

#[test]
fn features_equal_af2_templates_py() {
    let (_dir, lib) = library();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("golden_cases.json")).unwrap()).unwrap();
    let bytes = gunzip(&data("golden_features.safetensors.gz"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let entry = lib
            .get(
                lib.find(name)
                    .unwrap_or_else(|| panic!("{name} in library")),
            )
            .unwrap();
        assert_eq!(
            entry.info.sequence,
            case["seqres"].as_str().unwrap(),
            "{name} SEQRES"
        );
        assert_eq!(
            entry.info.release_date.as_deref(),
            case["release_date"].as_str(),
            "{name} release date"
        );
        let query = case["query"].as_str().unwrap();
        let hit = case["hit_sequence"].as_str().unwrap();
        let mapping: Vec<(usize, usize)> = case["mapping"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        let f = featurize_hit(&entry, query.len(), hit, &mapping, 1.0).unwrap();
        assert_eq!(
            f.sequence,
            case["template_sequence"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            f.domain_name,
            case["template_domain_name"].as_str().unwrap()
        );
        assert_eq!(
            f.aatype,
            i32s(&st, &format!("{name}/template_aatype")),
            "{name} aatype"
        );
        // Bitwise equality: the same f32 values as Biopython reads them.
        for (field, ours) in [
            ("template_all_atom_positions", &f.all_atom_positions),
            ("template_all_atom_masks", &f.all_atom_masks),
            ("template_pseudo_beta", &f.pseudo_beta),
            ("template_pseudo_beta_mask", &f.pseudo_beta_mask),
        ] {
            let golden = f32s(&st, &format!("{name}/{field}"));
            assert_eq!(ours.len(), golden.len(), "{name} {field} length");
            let bad = ours
                .iter()
                .zip(&golden)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert!(bad.is_none(), "{name} {field} differs at {bad:?}");
        }
        // The same hit expressed against the chain's own sequence (how a search of our own
        // library reports it) gives the same features.
        let offset = entry.info.sequence.find(hit).unwrap();
        let shifted: Vec<_> = mapping.iter().map(|&(q, t)| (q, t + offset)).collect();
        let g = featurize(&entry, query.len(), &shifted, 1.0).unwrap();
        assert_eq!(g.all_atom_positions, f.all_atom_positions);
        assert_eq!(g.aatype, f.aatype);
    }
    // Stack into the model's batch (padded to AF2's 4 slots).
    let e = lib.get(0).unwrap();
    let n = e.len();
    let map: Vec<_> = (0..n).map(|i| (i, i)).collect();
    let f = featurize(&e, n, &map, 1.0).unwrap();
    let batch = template_batch(std::slice::from_ref(&f), n, 4, true);
    assert_eq!(batch.template_mask, vec![1.0, 0.0, 0.0, 0.0]);
    assert_eq!(&batch.pseudo_beta.data()[..n * 3], &f.pseudo_beta[..]);
}

#[test]
fn special_structures_parse_as_af2_does() {
    // 1A8O: selenomethionine (HETATM MSE) → M with SE in the SD slot.
    let s = read_structure(&data("1a8o.cif.gz")).unwrap();
    let c = &s.chains[0];
    let mse = c.residue_names.iter().position(|r| r == "MSE").unwrap();
    assert_eq!(&c.sequence[mse..mse + 1], "M");
    assert_eq!(c.masks[mse * 37 + 18], 1.0, "SE → SD");
    // 4ZHL chain U: insertion codes; 3JQH: most SEQRES residues unmodelled.
    let s = read_structure(&data("3jqh.cif.gz")).unwrap();
    assert!(s.chains[0].modelled_residues() < s.chains[0].len() / 2);

    // Backbone-only template: side-chain masks stay zero and pseudo-beta falls back to none
    // for non-glycines (no CB).
    let mut e = build_from_dir(&data("")).unwrap().entries.remove(0);
    for r in 0..e.len() {
        for a in 3..37 {
            if a != 4 {
                e.masks[r * 37 + a] = 0.0;
                for k in 0..3 {
                    e.positions[(r * 37 + a) * 3 + k] = 0.0;
                }
            }
        }
    }
    let n = e.len();
    let map: Vec<_> = (0..n).map(|i| (i, i)).collect();
    let f = featurize(&e, n, &map, 0.0).unwrap();
    assert!(f
        .all_atom_masks
        .chunks(37)
        .all(|m| m[5..].iter().all(|&x| x == 0.0)));
    for (r, &aa) in f.aatype.iter().enumerate() {
        assert_eq!(
            f.pseudo_beta_mask[r],
            if aa == 7 {
                f.all_atom_masks[r * 37 + 1]
            } else {
                0.0
            }
        );
    }
}

/// The PDB reader agrees with the mmCIF reader on the modelled residues of the same chain.
#[test]
fn pdb_reader_matches_mmcif_on_modelled_residues() {
    let text = String::from_utf8(gunzip(&data("1a7g.cif.gz"))).unwrap();
    let cif = parse_mmcif(&text, "x").unwrap();
    let c = &cif.chains[0];
    let mut lines =
        vec!["HEADER    TEST                                    01-JAN-99   1A7G".to_string()];
    let mut serial = 1;
    let mut modelled = Vec::new();
    for r in 0..c.len() {
        if c.masks[r * 37 + 1] == 0.0 {
            continue;
        }
        modelled.push(r);
        for a in 0..37 {
            if c.masks[r * 37 + a] > 0.0 {
                let p = &c.positions[(r * 37 + a) * 3..(r * 37 + a) * 3 + 3];
                let name = ferrofold_io::structure_read::ATOM37_NAMES[a];
                lines.push(format!(
                    "ATOM  {serial:>5} {:<4} {:>3} {}{:>4}    {:>8.3}{:>8.3}{:>8.3}  1.00  0.00",
                    if name.len() < 4 {
                        format!(" {name}")
                    } else {
                        name.to_string()
                    },
                    c.residue_names[r],
                    c.chain_id,
                    r + 1,
                    p[0],
                    p[1],
                    p[2]
                ));
                serial += 1;
            }
        }
    }
    let pdb = parse_pdb(&lines.join("\n"), "x").unwrap();
    assert_eq!(pdb.id, "1a7g");
    let p = &pdb.chains[0];
    assert_eq!(p.len(), modelled.len());
    for (i, &r) in modelled.iter().enumerate() {
        assert_eq!(p.sequence.as_bytes()[i], c.sequence.as_bytes()[r]);
        assert_eq!(p.masks[i * 37..(i + 1) * 37], c.masks[r * 37..(r + 1) * 37]);
        for k in 0..111 {
            // PDB keeps 3 decimals, as the mmCIF does.
            assert!((p.positions[i * 111 + k] - c.positions[r * 111 + k]).abs() < 1e-3);
        }
    }
}

/// `ferrofold db build-templates INPUT DB`.
fn build_templates(input: &Path, db: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        .args(["db", "build-templates"])
        .arg(input)
        .arg(db)
        .output()
        .unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn build_templates_cli_skips_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let good = gunzip(&data("1a8o.cif.gz"));
    std::fs::copy(data("1a7g.cif.gz"), input.join("1a7g.cif.gz")).unwrap();
    std::fs::write(input.join("1a8o.cif"), &good).unwrap();
    // Truncated mmCIF (mid-row of _atom_site), plain and gzipped.
    std::fs::write(input.join("trunc.cif"), &good[..good.len() * 2 / 3]).unwrap();
    std::fs::write(input.join("trunc2.cif.gz"), &gz(&good)[..5000]).unwrap();
    // Not mmCIF at all; a DNA-only file (no peptide component).
    std::fs::write(input.join("junk.cif"), b"\x00\x01 hello").unwrap();
    let dna = "data_dna\n_entry.id DNA1\nloop_\n_entity_poly_seq.entity_id\n_entity_poly_seq.num\n_entity_poly_seq.mon_id\n1 1 DA\n1 2 DT\nloop_\n_chem_comp.id\n_chem_comp.type\nDA 'DNA linking'\nDT 'DNA linking'\nloop_\n_struct_asym.id\n_struct_asym.entity_id\nA 1\nloop_\n_atom_site.group_PDB\n_atom_site.id\n_atom_site.label_atom_id\n_atom_site.label_comp_id\n_atom_site.label_asym_id\n_atom_site.label_seq_id\n_atom_site.auth_asym_id\n_atom_site.auth_seq_id\n_atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\nATOM 1 P DA A 1 A 1 0.0 0.0 0.0\n";
    std::fs::write(input.join("dna.cif"), dna).unwrap();
    // PDB file: chain A reappears after chain B (duplicate chain id), plus a good chain B.
    let rec = |s: usize, name: &str, res: &str, ch: char, n: i32, x: f32| {
        format!("ATOM  {s:>5}  {name:<3} {res} {ch}{n:>4}    {x:>8.3}   0.000   0.000  1.00  0.00")
    };
    let pdb = [
        rec(1, "N", "ALA", 'A', 1, 0.0),
        rec(2, "CA", "ALA", 'A', 1, 1.4),
        rec(3, "N", "GLY", 'B', 1, 5.0),
        rec(4, "CA", "GLY", 'B', 1, 6.4),
        rec(5, "C", "GLY", 'B', 1, 7.4),
        rec(6, "O", "GLY", 'B', 1, 8.4),
        rec(7, "N", "GLY", 'B', 2, 9.0),
        rec(8, "CA", "GLY", 'B', 2, 10.4),
        rec(9, "CA", "ALA", 'A', 7, 3.8),
    ]
    .join("\n");
    std::fs::write(input.join("dup.pdb"), pdb).unwrap();
    std::fs::write(input.join("notes.txt"), "ignored").unwrap();
    let db = dir.path().join("t.db");
    let o = build_templates(&input, &db);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for needle in [
        "skipped trunc.cif: ",
        "not a multiple",
        "skipped trunc2.cif.gz",
        "skipped junk.cif",
        "skipped dna.cif: no protein chains",
        "skipped dup.pdb:A: duplicate chain id",
        "3 chains",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    let lib = TemplateLibrary::open(&db).unwrap();
    let ids: Vec<_> = lib.entries().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1a7g_E", "1a8o_A", "dup_B"]);
    assert_eq!(lib.entries()[2].sequence, "GG");

    // An empty folder is an error, not an empty library.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = build_templates(&empty, &dir.path().join("e.db"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no protein chain"));
}

#[test]
fn foreign_truncated_and_corrupt_libraries_are_refused() {
    let report = build_from_dir(&data("")).unwrap();
    let bytes = encode(&report.entries[..2]).unwrap();
    assert!(TemplateLibrary::decode(bytes.clone()).is_ok());
    let msg = |b: Vec<u8>| format!("{:#}", TemplateLibrary::decode(b).unwrap_err());
    assert!(msg(b"PK\x03\x04 a zip file".to_vec()).contains("not a ferrofold template library"));
    assert!(msg(Vec::new()).contains("not a ferrofold template library"));
    assert!(msg(bytes[..bytes.len() - 100].to_vec()).contains("truncated"));
    assert!(msg(bytes[..30].to_vec()).contains("truncated"));
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(msg(flipped).contains("corrupt"));
    let mut version = bytes;
    version[8] = 9;
    assert!(msg(version).contains("version 9"));
    let dir = tempfile::tempdir().unwrap();
    let missing = TemplateLibrary::open(&dir.path().join("none.db")).unwrap_err();
    assert!(format!("{missing:#}").contains("none.db"));
}

#[test]
fn seqres_disagreeing_with_atoms_is_read_as_af2_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(data("1a7g.cif.gz"), input.join("1a7g.cif.gz")).unwrap();
    // mmCIF: SEQRES ALA GLY SER, but the atoms at label_seq_id 2 are a TRP, and an atom sits
    // at label_seq_id 5, past SEQRES's 3 residues.
    let mut cif = String::from(
        "data_9MIS\n_entry.id 9MIS\nloop_\n_entity_poly_seq.entity_id\n_entity_poly_seq.num\n\
         _entity_poly_seq.mon_id\n1 1 ALA\n1 2 GLY\n1 3 SER\nloop_\n_chem_comp.id\n\
         _chem_comp.type\nALA 'L-peptide linking'\nGLY 'peptide linking'\n\
         SER 'L-peptide linking'\nTRP 'L-peptide linking'\nloop_\n_struct_asym.id\n\
         _struct_asym.entity_id\nA 1\nloop_\n_atom_site.group_PDB\n_atom_site.id\n\
         _atom_site.label_atom_id\n_atom_site.label_comp_id\n_atom_site.label_asym_id\n\
         _atom_site.label_seq_id\n_atom_site.auth_asym_id\n_atom_site.auth_seq_id\n\
         _atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\n",
    );
    let atoms = [
        ("N", "ALA", 1),
        ("CA", "ALA", 1),
        ("C", "ALA", 1),
        ("N", "TRP", 2),
        ("CA", "TRP", 2),
        ("C", "TRP", 2),
        ("CB", "TRP", 2),
        ("CG", "TRP", 2),
        ("N", "SER", 3),
        ("CA", "SER", 3),
        ("OG", "SER", 3),
        ("CA", "ALA", 5),
    ];
    for (i, (atom, res, num)) in atoms.iter().enumerate() {
        let x = i as f32 * 1.5;
        cif.push_str(&format!(
            "ATOM {} {atom} {res} A {num} A {num} {x} 0.0 0.0\n",
            i + 1
        ));
    }
    std::fs::write(input.join("9mis.cif"), &cif).unwrap();
    // PDB: SEQRES ALA GLY SER, ATOM records ALA TRP SER (chain A: noted); chain B's SEQRES
    // has a residue the atoms lack (missing residue: no disagreement, no note).
    let rec = |s: usize, name: &str, res: &str, ch: char, n: i32, x: f32| {
        format!("ATOM  {s:>5}  {name:<3} {res} {ch}{n:>4}    {x:>8.3}   0.000   0.000  1.00  0.00")
    };
    let pdb = [
        "HEADER    TEST                                    01-JAN-20   9PDB              "
            .to_string(),
        "SEQRES   1 A    3  ALA GLY SER".to_string(),
        "SEQRES   1 B    3  GLY ALA SER".to_string(),
        rec(1, "N", "ALA", 'A', 1, 0.0),
        rec(2, "CA", "ALA", 'A', 1, 1.4),
        rec(3, "CA", "TRP", 'A', 2, 5.0),
        rec(4, "CB", "TRP", 'A', 2, 6.0),
        rec(5, "CA", "SER", 'A', 3, 8.8),
        rec(6, "CA", "GLY", 'B', 1, 20.0),
        rec(7, "CA", "SER", 'B', 3, 23.8),
    ]
    .join("\n");
    std::fs::write(input.join("9pdb.pdb"), pdb).unwrap();
    let db = dir.path().join("t.db");
    let o = build_templates(&input, &db);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for needle in [
        "note 9mis.cif:A: label chain A: SEQRES disagrees with the atoms at 1 of 3 positions \
         (label_seq_id 2: SEQRES GLY, atoms TRP)",
        "atoms at label_seq_id 5 lie outside SEQRES (3 residues) and are ignored",
        "note 9pdb.pdb:A: SEQRES (3 residues) disagrees with the ATOM records (modelled \
         residue TRP 2 is not in it, in order); SEQRES is ignored",
        "4 chains",
        "0 files or chains skipped; 2 chains kept with a note",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(!err.contains("9pdb.pdb:B"), "{err}");
    let lib = TemplateLibrary::open(&db).unwrap();
    let ids: Vec<_> = lib.entries().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1a7g_E", "9mis_A", "9pdb_A", "9pdb_B"]);
    // mmCIF as AF2: SEQRES is the sequence (G), the TRP's atoms fill their slots (CB, CG).
    let mis = lib.get(1).unwrap();
    assert_eq!(mis.info.sequence, "AGS");
    let slots =
        |r: usize| -> Vec<usize> { (0..37).filter(|&a| mis.masks[r * 37 + a] > 0.0).collect() };
    assert_eq!(slots(1), [0, 1, 2, 3, 5]);
    assert_eq!(slots(2), [0, 1, 8]);
    // TRP CB is atom row 7.
    assert_eq!(mis.positions[(37 + 3) * 3], 9.0);
    // PDB: the modelled residues are the sequence.
    assert_eq!(lib.get(2).unwrap().info.sequence, "AWS");
    assert_eq!(lib.get(3).unwrap().info.sequence, "GS");
    // The same notes from the readers directly; the real test structures have none.
    let parsed = parse_mmcif(&cif, "x").unwrap();
    assert_eq!(parsed.notes.len(), 1);
    for f in ["1a7g.cif.gz", "1a8o.cif.gz", "4cup.cif.gz", "4zhl.cif.gz"] {
        let s = read_structure(&data(f)).unwrap();
        assert!(s.notes.is_empty(), "{f}: {:?}", s.notes);
    }
    // 3JQH lists two residues at nums 4 and 18 (microheterogeneity): AF2 reads two positions there, so
    // the atoms after it are one position off; noted.
    let s = read_structure(&data("3jqh.cif.gz")).unwrap();
    assert_eq!(s.notes.len(), 1);
    assert!(
        s.notes[0]
            .1
            .contains("several residues at num 4, 18 (microheterogeneity)")
            && s.notes[0]
                .1
                .contains("label_seq_id 4: SEQRES PRO, atoms SER"),
        "{:?}",
        s.notes
    );
}
