//! PDB format writer (ATOM, TER and END records in fixed columns).

use crate::structure::{Atom, Chain, Residue, Structure};
use crate::{IoError, Result};

/// Width of every record line.
const LINE_WIDTH: usize = 80;

/// Largest serial number the 5-column serial field holds.
const MAX_SERIAL: u32 = 99_999;

/// Formats `structure` as a PDB file: one ATOM record per atom, a TER record after each
/// chain (TER takes the next serial number, as the format specifies) and END.
///
/// Fails when [`Structure::validate`] fails or a value does not fit its PDB column:
/// chain ids longer than one character, residue names over 3 or atom names over 4
/// characters, residue numbers outside -999..=9999, more than 99999 serial numbers,
/// coordinates outside -999.999..=9999.999 or occupancy/B-factor outside -99.99..=999.99.
/// Use mmCIF for structures that do not fit.
pub fn write_pdb(structure: &Structure) -> Result<String> {
    structure.validate()?;
    let mut out = String::with_capacity((structure.atom_count() + 4) * (LINE_WIDTH + 1));
    let mut serial = 0;
    for chain in &structure.chains {
        let mut last = None;
        for residue in chain.residues.iter().filter(|r| !r.atoms.is_empty()) {
            check_residue_fields(chain, residue)?;
            for atom in &residue.atoms {
                serial = next_serial(serial)?;
                push_line(&mut out, &atom_record(serial, chain, residue, atom)?);
            }
            last = Some(residue);
        }
        // validate() guarantees every chain has an atom.
        if let Some(residue) = last {
            serial = next_serial(serial)?;
            push_line(
                &mut out,
                &format!(
                    "TER   {serial:>5}      {:>3} {}{:>4}",
                    residue.name, chain.id, residue.seq_num
                ),
            );
        }
    }
    push_line(&mut out, "END");
    Ok(out)
}

/// Appends `line` padded with spaces to [`LINE_WIDTH`] and a newline.
fn push_line(out: &mut String, line: &str) {
    out.push_str(&format!("{line:<LINE_WIDTH$}\n"));
}

fn next_serial(serial: u32) -> Result<u32> {
    if serial >= MAX_SERIAL {
        return Err(IoError::Structure(format!(
            "more than {MAX_SERIAL} atoms and TER records do not fit the PDB serial column"
        )));
    }
    Ok(serial + 1)
}

/// Checks the residue-level fields that have PDB width limits.
fn check_residue_fields(chain: &Chain, residue: &Residue) -> Result<()> {
    let problem = if chain.id.len() != 1 {
        "the chain id must be one character"
    } else if residue.name.len() > 3 {
        "the residue name is longer than 3 characters"
    } else if !(-999..=9999).contains(&residue.seq_num) {
        "the residue number is outside -999..=9999"
    } else {
        return Ok(());
    };
    Err(IoError::Structure(format!(
        "chain `{}` residue {} {}: {problem} (PDB column limit)",
        chain.id, residue.seq_num, residue.name
    )))
}

/// One ATOM record. Columns (1-based): serial 7-11, name 13-16, resName 18-20,
/// chainID 22, resSeq 23-26, x/y/z 31-54, occupancy 55-60, tempFactor 61-66,
/// element 77-78.
fn atom_record(serial: u32, chain: &Chain, residue: &Residue, atom: &Atom) -> Result<String> {
    let error = |problem: String| {
        IoError::Structure(format!(
            "chain `{}` residue {} {} atom `{}`: {problem} (PDB column limit)",
            chain.id, residue.seq_num, residue.name, atom.name
        ))
    };
    let field = |value: f32, width: usize, precision: usize| {
        let text = format!("{value:>width$.precision$}");
        if text.len() == width {
            Ok(text)
        } else {
            Err(error(format!("value {value} does not fit {width} columns")))
        }
    };
    if atom.name.len() > 4 {
        return Err(error("the atom name is longer than 4 characters".into()));
    }
    // Four-character names and two-letter elements start in column 13, others in 14.
    let name = if atom.name.len() == 4 || atom.element.len() == 2 {
        format!("{:<4}", atom.name)
    } else {
        format!(" {:<3}", atom.name)
    };
    Ok(format!(
        "ATOM  {serial:>5} {name} {:>3} {}{:>4}    {}{}{}{}{}          {:>2}",
        residue.name,
        chain.id,
        residue.seq_num,
        field(atom.xyz[0], 8, 3)?,
        field(atom.xyz[1], 8, 3)?,
        field(atom.xyz[2], 8, 3)?,
        field(atom.occupancy, 6, 2)?,
        field(atom.b_factor, 6, 2)?,
        atom.element.to_ascii_uppercase(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::tests::sample;

    /// 1-based inclusive column range of a line.
    fn cols(line: &str, from: usize, to: usize) -> &str {
        &line[from - 1..to]
    }

    #[test]
    fn atom_records_use_fixed_columns() {
        let pdb = write_pdb(&sample()).unwrap();
        let lines: Vec<&str> = pdb.lines().collect();
        assert!(lines.iter().all(|l| l.len() == LINE_WIDTH), "{pdb}");
        let n = lines[0];
        assert_eq!(cols(n, 1, 6), "ATOM  ");
        assert_eq!(cols(n, 7, 11), "    1");
        assert_eq!(cols(n, 13, 16), " N  ");
        assert_eq!(cols(n, 18, 20), "ALA");
        assert_eq!(cols(n, 22, 22), "H");
        assert_eq!(cols(n, 23, 26), "   1");
        assert_eq!(cols(n, 31, 38), "  -1.204");
        assert_eq!(cols(n, 39, 46), "   0.654");
        assert_eq!(cols(n, 47, 54), "   0.000");
        assert_eq!(cols(n, 55, 60), "  1.00");
        assert_eq!(cols(n, 61, 66), " 85.50");
        assert_eq!(cols(n, 77, 78), " N");
        assert_eq!(
            lines[1].trim_end(),
            "ATOM      2  CA  ALA H   1       0.000   0.000   0.000  1.00 85.50           C"
        );
    }

    #[test]
    fn atom_name_alignment_follows_pdb_convention() {
        let mut s = sample();
        let atoms = &mut s.chains[0].residues[0].atoms;
        atoms[2].name = "HD11".into();
        atoms[2].element = "H".into();
        atoms[3].name = "FE".into();
        atoms[3].element = "Fe".into();
        let pdb = write_pdb(&s).unwrap();
        let lines: Vec<&str> = pdb.lines().collect();
        assert_eq!(cols(lines[1], 13, 16), " CA ");
        assert_eq!(cols(lines[2], 13, 16), "HD11");
        assert_eq!(cols(lines[3], 13, 16), "FE  ");
        assert_eq!(cols(lines[3], 77, 78), "FE");
    }

    #[test]
    fn ter_records_follow_each_chain_and_take_a_serial() {
        let pdb = write_pdb(&sample()).unwrap();
        let lines: Vec<&str> = pdb.lines().map(str::trim_end).collect();
        assert_eq!(lines.len(), 15 + 2 + 1);
        assert_eq!(lines[11], "TER      12      SER H   2");
        assert!(lines[12].starts_with("ATOM     13  N   GLY L  10"));
        assert_eq!(lines[16], "TER      17      GLY L  10");
        assert_eq!(lines[17], "END");
    }

    #[test]
    fn residues_without_atoms_are_skipped() {
        let mut s = sample();
        s.chains[0].residues[1].atoms.clear();
        let pdb = write_pdb(&s).unwrap();
        assert!(pdb.contains("TER       6      ALA H   1"), "{pdb}");
    }

    #[test]
    fn rejects_values_that_do_not_fit_columns() {
        type Edit = fn(&mut Structure);
        let cases: [(Edit, &str); 6] = [
            (
                |s| s.chains[0].id = "AB".into(),
                "chain id must be one character",
            ),
            (
                |s| s.chains[0].residues[0].name = "ABCD".into(),
                "residue name",
            ),
            (
                |s| s.chains[0].residues[0].seq_num = 10_000,
                "residue number",
            ),
            (
                |s| s.chains[0].residues[0].atoms[0].name = "ABCDE".into(),
                "atom name",
            ),
            (
                |s| s.chains[1].residues[0].atoms[1].xyz[0] = -1000.0,
                "value -1000",
            ),
            (
                |s| s.chains[1].residues[0].atoms[1].b_factor = 1000.0,
                "value 1000",
            ),
        ];
        for (edit, expected) in cases {
            let mut s = sample();
            edit(&mut s);
            let msg = write_pdb(&s).unwrap_err().to_string();
            assert!(msg.contains(expected), "{msg}");
        }
        let mut s = sample();
        s.chains[1].residues[0].atoms[1].xyz = [-999.999, 9999.999, 0.0];
        assert!(write_pdb(&s).is_ok());
    }

    #[test]
    fn rejects_too_many_serials() {
        let atom = sample().chains[1].residues[0].atoms[0].clone();
        let residues = (0..9999)
            .map(|i| crate::structure::Residue {
                name: "GLY".into(),
                seq_num: i - 999,
                atoms: (0..10)
                    .map(|k| Atom {
                        name: format!("X{k}"),
                        ..atom.clone()
                    })
                    .collect(),
            })
            .collect();
        let mut s = Structure {
            chains: vec![Chain {
                id: "A".into(),
                residues,
            }],
        };
        // 99990 atoms; 8 more plus TER use serial 99999 exactly, a 9th does not fit.
        let add = |s: &mut Structure, k: usize| {
            s.chains[0].residues[0].atoms.push(Atom {
                name: format!("Y{k}"),
                ..atom.clone()
            })
        };
        (0..8).for_each(|k| add(&mut s, k));
        assert!(write_pdb(&s).is_ok());
        add(&mut s, 8);
        let msg = write_pdb(&s).unwrap_err().to_string();
        assert!(msg.contains("99999"), "{msg}");
    }
}
