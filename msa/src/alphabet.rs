//! The protein alphabet of the search: 20 amino acids in BLOSUM order and `X` for anything
//! ambiguous, one byte per residue.
//!
//! Documented handling of the letters outside the 20: lower case is read as upper case;
//! `B`, `Z`, `J` and `X` become `X` (scored as BLOSUM62's `X`, never part of a seed);
//! selenocysteine `U` is read as `C` and pyrrolysine `O` as `K` (their closest standard
//! residues, as MMseqs2 and HH-suite do); one trailing `*` (a stop codon) is dropped. Any
//! other character (digits, gaps, `*` inside the sequence) is an error.

/// Number of residue codes: 20 amino acids and `X`.
pub const ALPHABET_SIZE: usize = 21;
/// Code of the ambiguous residue `X`.
pub const X: u8 = 20;
/// Residue letters by code, BLOSUM62's order.
pub const LETTERS: &[u8; ALPHABET_SIZE] = b"ARNDCQEGHILKMFPSTWYVX";

/// Code of one letter, or `None` when the letter is not a residue.
pub fn encode_letter(letter: u8) -> Option<u8> {
    let upper = letter.to_ascii_uppercase();
    let code = match upper {
        b'B' | b'Z' | b'J' | b'X' => X,
        b'U' => 4,  // C
        b'O' => 11, // K
        _ => LETTERS[..20].iter().position(|&l| l == upper)? as u8,
    };
    Some(code)
}

/// Why a sequence cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceProblem {
    /// No residue at all (after dropping a trailing stop).
    Empty,
    /// A character that is not a residue letter, with its 1-based position.
    InvalidCharacter { character: char, position: usize },
    /// Only nucleotide letters: a DNA/RNA record in a protein file.
    Nucleotide,
}

impl std::fmt::Display for SequenceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SequenceProblem::Empty => write!(f, "the sequence is empty"),
            SequenceProblem::InvalidCharacter {
                character,
                position,
            } => write!(
                f,
                "character {character:?} at position {position} is not an amino-acid letter"
            ),
            SequenceProblem::Nucleotide => write!(
                f,
                "the sequence holds only nucleotide letters (A, C, G, T/U, N): not a protein"
            ),
        }
    }
}

/// Encodes a protein sequence (see the module documentation for the letters accepted).
///
/// Sequences of at least 20 letters made only of `ACGTUN` are refused as nucleotide.
pub fn encode(sequence: &[u8]) -> Result<Vec<u8>, SequenceProblem> {
    let sequence = sequence.strip_suffix(b"*").unwrap_or(sequence);
    if sequence.is_empty() {
        return Err(SequenceProblem::Empty);
    }
    let codes = sequence
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            encode_letter(c).ok_or_else(|| SequenceProblem::InvalidCharacter {
                // Every letter before it is ASCII, so `i + 1` counts characters too; the
                // character itself may take several UTF-8 bytes.
                character: String::from_utf8_lossy(&sequence[i..sequence.len().min(i + 4)])
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER),
                position: i + 1,
            })
        })
        .collect::<Result<Vec<u8>, _>>()?;
    let nucleotide = sequence.len() >= 20
        && sequence.iter().all(|c| {
            matches!(
                c.to_ascii_uppercase(),
                b'A' | b'C' | b'G' | b'T' | b'U' | b'N'
            )
        });
    if nucleotide {
        return Err(SequenceProblem::Nucleotide);
    }
    Ok(codes)
}

/// A query as it is written back (first A3M row, template search input): upper case, the
/// trailing stop dropped as [`encode`] drops it.
pub fn query_letters(sequence: &str) -> String {
    sequence
        .strip_suffix('*')
        .unwrap_or(sequence)
        .to_ascii_uppercase()
}

/// Letters of encoded residues.
pub fn decode(codes: &[u8]) -> String {
    codes.iter().map(|&c| LETTERS[c as usize] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_documented_letters() {
        let codes = encode(b"ARNDCQEGHILKMFPSTWYV").unwrap();
        assert_eq!(codes, (0..20).collect::<Vec<u8>>());
        assert_eq!(decode(&encode(b"acdbzjxuo*").unwrap()), "ACDXXXXCK");
    }

    #[test]
    fn refuses_non_protein() {
        assert_eq!(encode(b"*"), Err(SequenceProblem::Empty));
        assert_eq!(
            encode(b"AC*DE"),
            Err(SequenceProblem::InvalidCharacter {
                character: '*',
                position: 3
            })
        );
        assert_eq!(
            encode(b"ACGTACGTACGTACGTACGTNNACGT"),
            Err(SequenceProblem::Nucleotide)
        );
        assert!(encode(b"ACGTACG").is_ok());
        assert_eq!(
            encode("MKV\u{e9}LLA".as_bytes()),
            Err(SequenceProblem::InvalidCharacter {
                character: '\u{e9}',
                position: 4
            })
        );
    }
}
