//! Antibody input: one FASTA record whose chains are separated by `:` (heavy first, then
//! light, as ColabFold writes complexes); a single chain is a nanobody.

use super::antiberty::{AMINO_ACIDS, MAX_RESIDUES};
use ferrofold_io::fasta::FastaRecord;

/// Chain identifiers in input order.
pub const CHAIN_IDS: [char; 2] = ['H', 'L'];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Antibody {
    pub name: String,
    /// `(chain id, residues)`: H then L.
    pub chains: Vec<(char, String)>,
}

impl Antibody {
    pub fn chain_lens(&self) -> Vec<usize> {
        self.chains.iter().map(|(_, s)| s.len()).collect()
    }

    pub fn len(&self) -> usize {
        self.chains.iter().map(|(_, s)| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Validates a record as IgFold does (upper-cased, 20 amino acids only), plus the limits
/// of the model: one or two chains, none empty, none over AntiBERTy's 510 residues.
pub fn parse_antibody(record: &FastaRecord) -> Result<Antibody, String> {
    let err = |msg: String| format!("record `{}`: {msg}", record.name);
    let parts: Vec<&str> = record.sequence.split(':').collect();
    if parts.len() > CHAIN_IDS.len() {
        return Err(err(format!(
            "{} chains given, IgFold folds one (nanobody) or two (heavy:light)",
            parts.len()
        )));
    }
    let mut chains = Vec::with_capacity(parts.len());
    for (part, id) in parts.iter().zip(CHAIN_IDS) {
        let seq = part.to_ascii_uppercase();
        if seq.is_empty() {
            return Err(err(format!("chain {id} is empty")));
        }
        if let Some((pos, c)) = seq.char_indices().find(|(_, c)| !AMINO_ACIDS.contains(*c)) {
            return Err(err(format!(
                "chain {id} has `{c}` at position {}, only the 20 standard amino acids are accepted",
                pos + 1
            )));
        }
        if seq.len() > MAX_RESIDUES {
            return Err(err(format!(
                "chain {id} has {} residues, AntiBERTy embeds at most {MAX_RESIDUES}",
                seq.len()
            )));
        }
        chains.push((id, seq));
    }
    Ok(Antibody {
        name: record.name.clone(),
        chains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: &str) -> FastaRecord {
        FastaRecord {
            name: "ab1".into(),
            description: "ab1".into(),
            sequence: seq.into(),
        }
    }

    #[test]
    fn paired_and_nanobody() {
        let ab = parse_antibody(&rec("evqlv:diqm")).unwrap();
        assert_eq!(ab.chains, vec![('H', "EVQLV".into()), ('L', "DIQM".into())]);
        assert_eq!(parse_antibody(&rec("QVQL")).unwrap().chain_lens(), vec![4]);
    }

    #[test]
    fn bad_input_names_record_and_problem() {
        let e = parse_antibody(&rec("EVQXL:DIQ")).unwrap_err();
        assert!(e.contains("ab1") && e.contains("`X` at position 4"), "{e}");
        assert!(parse_antibody(&rec("EVQ:"))
            .unwrap_err()
            .contains("chain L is empty"));
        assert!(parse_antibody(&rec("A:B:C"))
            .unwrap_err()
            .contains("3 chains"));
        let long = "A".repeat(511);
        assert!(parse_antibody(&rec(&long))
            .unwrap_err()
            .contains("511 residues"));
    }
}
