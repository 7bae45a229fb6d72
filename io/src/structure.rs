//! A minimal atomic structure model for the PDB and mmCIF writers.

use std::collections::HashSet;

use crate::{IoError, Result};

/// The standard amino acids' three- and one-letter codes, and `UNK`/`X`.
pub const AMINO_ACID_CODES: [(&str, char); 21] = [
    ("ALA", 'A'),
    ("ARG", 'R'),
    ("ASN", 'N'),
    ("ASP", 'D'),
    ("CYS", 'C'),
    ("GLN", 'Q'),
    ("GLU", 'E'),
    ("GLY", 'G'),
    ("HIS", 'H'),
    ("ILE", 'I'),
    ("LEU", 'L'),
    ("LYS", 'K'),
    ("MET", 'M'),
    ("PHE", 'F'),
    ("PRO", 'P'),
    ("SER", 'S'),
    ("THR", 'T'),
    ("TRP", 'W'),
    ("TYR", 'Y'),
    ("VAL", 'V'),
    ("UNK", 'X'),
];

/// Three-letter code of a one-letter amino-acid code (`UNK` for anything else).
pub fn three_letter(code: u8) -> &'static str {
    AMINO_ACID_CODES
        .iter()
        .find(|(_, c)| *c as u32 == u32::from(code))
        .map_or("UNK", |(name, _)| name)
}

/// A single model: chains of residues of atoms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Structure {
    pub chains: Vec<Chain>,
}

/// A polymer chain. Written as the PDB chain id and as both the mmCIF auth and label
/// asym id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    pub id: String,
    pub residues: Vec<Residue>,
}

/// A residue; `seq_num` is the author numbering (PDB resSeq, mmCIF auth_seq_id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Residue {
    /// Three-letter component name, e.g. `ALA`.
    pub name: String,
    pub seq_num: i32,
    pub atoms: Vec<Atom>,
}

/// An atom with its coordinates in Ångström.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Atom {
    /// Atom name, e.g. `CA`.
    pub name: String,
    /// Element symbol, e.g. `C`.
    pub element: String,
    pub xyz: [f32; 3],
    pub occupancy: f32,
    /// B-factor column; predictors store per-residue confidence (pLDDT) here.
    pub b_factor: f32,
}

impl Structure {
    /// Number of atoms over all chains.
    pub fn atom_count(&self) -> usize {
        self.chains
            .iter()
            .flat_map(|c| &c.residues)
            .map(|r| r.atoms.len())
            .sum()
    }

    /// Checks what every output format needs: non-empty unique chain ids, every chain
    /// with at least one atom, unique residue numbers per chain, unique atom names per
    /// residue, names without whitespace or control characters, 1–2 letter elements and
    /// finite numbers.
    pub fn validate(&self) -> Result<()> {
        let mut chain_ids = HashSet::new();
        for chain in &self.chains {
            check_token("chain id", &chain.id, "in the structure")?;
            let where_chain = format!("in chain `{}`", chain.id);
            if !chain_ids.insert(chain.id.as_str()) {
                return Err(IoError::Structure(format!(
                    "chain id `{}` is used twice",
                    chain.id
                )));
            }
            if chain.residues.iter().all(|r| r.atoms.is_empty()) {
                return Err(IoError::Structure(format!(
                    "chain `{}` has no atoms",
                    chain.id
                )));
            }
            let mut seq_nums = HashSet::new();
            for residue in &chain.residues {
                check_token("residue name", &residue.name, &where_chain)?;
                let where_res = format!(
                    "in chain `{}` residue {} {}",
                    chain.id, residue.seq_num, residue.name
                );
                if !seq_nums.insert(residue.seq_num) {
                    return Err(IoError::Structure(format!(
                        "residue number {} is used twice {where_chain}",
                        residue.seq_num
                    )));
                }
                let mut atom_names = HashSet::new();
                for atom in &residue.atoms {
                    check_token("atom name", &atom.name, &where_res)?;
                    let where_atom = format!("{where_res} atom `{}`", atom.name);
                    if !atom_names.insert(atom.name.as_str()) {
                        return Err(IoError::Structure(format!(
                            "atom name `{}` is used twice {where_res}",
                            atom.name
                        )));
                    }
                    let element_ok = (1..=2).contains(&atom.element.len())
                        && atom.element.bytes().all(|b| b.is_ascii_alphabetic());
                    if !element_ok {
                        return Err(IoError::Structure(format!(
                            "element `{}` {where_atom} is not a 1-2 letter symbol",
                            atom.element
                        )));
                    }
                    let numbers = atom.xyz.iter().chain([&atom.occupancy, &atom.b_factor]);
                    if numbers.into_iter().any(|v| !v.is_finite()) {
                        return Err(IoError::Structure(format!(
                            "non-finite coordinate, occupancy or B-factor {where_atom}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Requires a non-empty name of printable ASCII without spaces.
fn check_token(what: &str, value: &str, context: &str) -> Result<()> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IoError::Structure(format!(
            "{what} `{}` {context} must be non-empty printable ASCII without spaces",
            value.escape_debug()
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn atom(name: &str, element: &str, xyz: [f32; 3], b: f32) -> Atom {
        Atom {
            name: name.into(),
            element: element.into(),
            xyz,
            occupancy: 1.0,
            b_factor: b,
        }
    }

    /// Two chains (a dipeptide and a glycine), used by the writer tests.
    pub(crate) fn sample() -> Structure {
        let ala = Residue {
            name: "ALA".into(),
            seq_num: 1,
            atoms: vec![
                atom("N", "N", [-1.204, 0.654, 0.0], 85.5),
                atom("CA", "C", [0.0, 0.0, 0.0], 85.5),
                atom("C", "C", [1.2, 0.9, -0.1], 85.5),
                atom("O", "O", [1.1, 2.1, 0.12], 85.5),
                atom("CB", "C", [0.1, -1.0, 1.2], 85.5),
            ],
        };
        let ser = Residue {
            name: "SER".into(),
            seq_num: 2,
            atoms: vec![
                atom("N", "N", [2.4, 0.3, -0.2], 90.25),
                atom("CA", "C", [3.6, 1.1, -0.3], 90.25),
                atom("C", "C", [4.8, 0.2, -0.4], 90.25),
                atom("O", "O", [4.7, -1.0, -0.5], 90.25),
                atom("CB", "C", [3.7, 2.0, 0.9], 90.25),
                atom("OG", "O", [3.8, 1.3, 2.1], 90.25),
            ],
        };
        let gly = Residue {
            name: "GLY".into(),
            seq_num: 10,
            atoms: vec![
                atom("N", "N", [10.0, -20.5, 30.25], 50.0),
                atom("CA", "C", [11.0, -21.5, 31.25], 50.0),
                atom("C", "C", [12.0, -20.5, 32.25], 50.0),
                atom("O", "O", [12.5, -19.5, 32.0], 50.0),
            ],
        };
        Structure {
            chains: vec![
                Chain {
                    id: "H".into(),
                    residues: vec![ala, ser],
                },
                Chain {
                    id: "L".into(),
                    residues: vec![gly],
                },
            ],
        }
    }

    fn validate_err(edit: impl FnOnce(&mut Structure)) -> String {
        let mut s = sample();
        edit(&mut s);
        s.validate().unwrap_err().to_string()
    }

    #[test]
    fn sample_is_valid() {
        sample().validate().unwrap();
        assert_eq!(sample().atom_count(), 15);
    }

    #[test]
    fn rejects_bad_structures_naming_the_place() {
        let msg = validate_err(|s| s.chains[0].residues[1].atoms[2].xyz[1] = f32::NAN);
        assert!(msg.contains("chain `H` residue 2 SER atom `C`"), "{msg}");
        let msg = validate_err(|s| s.chains[1].id = "H".into());
        assert!(msg.contains("chain id `H` is used twice"), "{msg}");
        let msg = validate_err(|s| s.chains[1].id = String::new());
        assert!(msg.contains("chain id ``"), "{msg}");
        let msg = validate_err(|s| s.chains[0].residues[1].seq_num = 1);
        assert!(
            msg.contains("residue number 1 is used twice in chain `H`"),
            "{msg}"
        );
        let msg = validate_err(|s| s.chains[0].residues[0].atoms[1].name = "N".into());
        assert!(msg.contains("atom name `N` is used twice"), "{msg}");
        let msg = validate_err(|s| s.chains[0].residues[0].atoms[1].name = "C A".into());
        assert!(msg.contains("atom name `C A`"), "{msg}");
        let msg = validate_err(|s| s.chains[0].residues[0].atoms[1].element = "C1".into());
        assert!(msg.contains("element `C1`"), "{msg}");
        let msg = validate_err(|s| s.chains[1].residues[0].atoms.clear());
        assert!(msg.contains("chain `L` has no atoms"), "{msg}");
        let msg = validate_err(|s| s.chains[1].residues[0].name = "G\nY".into());
        assert!(msg.contains("residue name `G\\nY`"), "{msg}");
    }
}
