//! Residue alphabets of AF2's input pipeline (`residue_constants`): MSA letters in
//! HHblits order, the conversion to AF order (`correct_msa_restypes`), and the query's
//! residue types.

/// AF order `ARNDCQEGHILKMFPSTWYV`, then X (20) and the gap `-` (21).
pub const AF_RESTYPES_WITH_X_AND_GAP: &[u8; 22] = b"ARNDCQEGHILKMFPSTWYVX-";
/// AF class of unknown residues.
pub const UNKNOWN: u8 = 20;
/// AF class of a gap.
pub const GAP: u8 = 21;
/// The BERT mask token (class 22 of `msa_feat`'s one-hot).
pub const MASK_TOKEN: u8 = 22;
/// Classes of the MSA one-hot in `msa_feat` and `extra_msa`: 20 aa, X, gap, mask.
pub const MSA_CLASSES: usize = 23;

/// `residue_constants.HHBLITS_AA_TO_ID`: an MSA letter to its HHblits id (alphabetical
/// `ACDEFGHIKLMNPQRSTVWY` = 0..19, X = 20, gap = 21; B→D, Z→E, U→C, J/O→X).
pub fn hhblits_id(letter: u8) -> Option<u8> {
    const ORDER: &[u8; 22] = b"ACDEFGHIKLMNPQRSTVWYX-";
    match letter {
        b'B' => Some(2),
        b'Z' => Some(3),
        b'U' => Some(1),
        b'J' | b'O' => Some(20),
        _ => ORDER.iter().position(|&c| c == letter).map(|i| i as u8),
    }
}

/// `residue_constants.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE`.
pub const HHBLITS_TO_AF: [u8; 22] = [
    0, 4, 3, 6, 13, 7, 8, 9, 11, 10, 12, 2, 14, 5, 1, 15, 16, 19, 17, 18, 20, 21,
];

/// An MSA letter to its AF class: `HHBLITS_AA_TO_ID` then `correct_msa_restypes`.
pub fn msa_class(letter: u8) -> Option<u8> {
    hhblits_id(letter).map(|id| HHBLITS_TO_AF[id as usize])
}

/// A query residue (one of the 20 amino acids or X, upper or lower case) to its AF class
/// (`restype_order_with_x`).
pub fn query_class(letter: u8) -> Option<u8> {
    let up = letter.to_ascii_uppercase();
    AF_RESTYPES_WITH_X_AND_GAP[..21]
        .iter()
        .position(|&c| c == up)
        .map(|i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhblits_to_af_is_the_letter_mapping() {
        // The table equals restypes_with_x_and_gap.index(ID_TO_HHBLITS_AA[i]).
        for (id, &letter) in b"ACDEFGHIKLMNPQRSTVWYX-".iter().enumerate() {
            let af = AF_RESTYPES_WITH_X_AND_GAP
                .iter()
                .position(|&c| c == letter)
                .unwrap();
            assert_eq!(HHBLITS_TO_AF[id] as usize, af, "{}", letter as char);
        }
        // residue_constants.HHBLITS_AA_TO_ID, all 27 keys.
        let official = "-21 A0 B2 C1 D2 E3 F4 G5 H6 I7 J20 K8 L9 M10 N11 O20 P12 Q13 R14 S15 T16 \
                        U1 V17 W18 X20 Y19 Z3";
        for kv in official.split_whitespace() {
            let (k, v) = kv.split_at(1);
            assert_eq!(hhblits_id(k.as_bytes()[0]), Some(v.parse().unwrap()), "{k}");
        }
        assert_eq!(hhblits_id(b'a'), None);
        assert_eq!(msa_class(b'B'), Some(3)); // B -> D
        assert_eq!(msa_class(b'-'), Some(GAP));
        assert_eq!(query_class(b'v'), Some(19));
        assert_eq!(query_class(b'B'), None);
    }
}
