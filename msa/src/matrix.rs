//! Scoring: BLOSUM62, background frequencies, affine gap costs and the position-specific
//! score matrix every search stage reads (a plain query is a PSSM of BLOSUM62 rows).

use crate::alphabet::{ALPHABET_SIZE, X};

/// BLOSUM62 in half-bit units over `ARNDCQEGHILKMFPSTWYVX` (NCBI's matrix; `X` row as NCBI's).
#[rustfmt::skip]
pub const BLOSUM62: [[i8; ALPHABET_SIZE]; ALPHABET_SIZE] = [
    //A   R   N   D   C   Q   E   G   H   I   L   K   M   F   P   S   T   W   Y   V   X
    [ 4, -1, -2, -2,  0, -1, -1,  0, -2, -1, -1, -1, -1, -2, -1,  1,  0, -3, -2,  0,  0], // A
    [-1,  5,  0, -2, -3,  1,  0, -2,  0, -3, -2,  2, -1, -3, -2, -1, -1, -3, -2, -3, -1], // R
    [-2,  0,  6,  1, -3,  0,  0,  0,  1, -3, -3,  0, -2, -3, -2,  1,  0, -4, -2, -3, -1], // N
    [-2, -2,  1,  6, -3,  0,  2, -1, -1, -3, -4, -1, -3, -3, -1,  0, -1, -4, -3, -3, -1], // D
    [ 0, -3, -3, -3,  9, -3, -4, -3, -3, -1, -1, -3, -1, -2, -3, -1, -1, -2, -2, -1, -2], // C
    [-1,  1,  0,  0, -3,  5,  2, -2,  0, -3, -2,  1,  0, -3, -1,  0, -1, -2, -1, -2, -1], // Q
    [-1,  0,  0,  2, -4,  2,  5, -2,  0, -3, -3,  1, -2, -3, -1,  0, -1, -3, -2, -2, -1], // E
    [ 0, -2,  0, -1, -3, -2, -2,  6, -2, -4, -4, -2, -3, -3, -2,  0, -2, -2, -3, -3, -1], // G
    [-2,  0,  1, -1, -3,  0,  0, -2,  8, -3, -3, -1, -2, -1, -2, -1, -2, -2,  2, -3, -1], // H
    [-1, -3, -3, -3, -1, -3, -3, -4, -3,  4,  2, -3,  1,  0, -3, -2, -1, -3, -1,  3, -1], // I
    [-1, -2, -3, -4, -1, -2, -3, -4, -3,  2,  4, -2,  2,  0, -3, -2, -1, -2, -1,  1, -1], // L
    [-1,  2,  0, -1, -3,  1,  1, -2, -1, -3, -2,  5, -1, -3, -1,  0, -1, -3, -2, -2, -1], // K
    [-1, -1, -2, -3, -1,  0, -2, -3, -2,  1,  2, -1,  5,  0, -2, -1, -1, -1, -1,  1, -1], // M
    [-2, -3, -3, -3, -2, -3, -3, -3, -1,  0,  0, -3,  0,  6, -4, -2, -2,  1,  3, -1, -1], // F
    [-1, -2, -2, -1, -3, -1, -1, -2, -2, -3, -3, -1, -2, -4,  7, -1, -1, -4, -3, -2, -2], // P
    [ 1, -1,  1,  0, -1,  0,  0,  0, -1, -2, -2,  0, -1, -2, -1,  4,  1, -3, -2, -2,  0], // S
    [ 0, -1,  0, -1, -1, -1, -1, -2, -2, -1, -1, -1, -1, -2, -1,  1,  5, -2, -2,  0,  0], // T
    [-3, -3, -4, -4, -2, -2, -3, -2, -2, -3, -2, -3, -1,  1, -4, -3, -2, 11,  2, -3, -2], // W
    [-2, -2, -2, -3, -2, -1, -2, -3,  2, -1, -1, -2, -1,  3, -3, -2, -2,  2,  7, -1, -1], // Y
    [ 0, -3, -3, -3, -1, -2, -2, -3, -3,  3,  1, -2,  1, -1, -2, -2,  0, -3, -1,  4, -1], // V
    [ 0, -1, -1, -1, -2, -1, -1, -1, -1, -1, -1, -1, -1, -1, -2,  0,  0, -2, -1, -1, -1], // X
];

/// Amino-acid background frequencies (Robinson & Robinson 1991, as BLAST uses), BLOSUM order.
pub const BACKGROUND: [f64; 20] = [
    0.07805, 0.05129, 0.04487, 0.05364, 0.01925, 0.04264, 0.06295, 0.07377, 0.02199, 0.05142,
    0.09019, 0.05744, 0.02243, 0.03856, 0.05203, 0.07120, 0.05841, 0.01330, 0.03216, 0.06441,
];

/// Ungapped λ of BLOSUM62 with these background frequencies (nats per score unit).
pub const BLOSUM62_LAMBDA_UNGAPPED: f64 = 0.3176;

/// Affine gap cost: a gap of `k` residues costs `open + k * extend` (BLAST's convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapCosts {
    pub open: i32,
    pub extend: i32,
}

/// BLOSUM62's usual gap costs (BLAST, MMseqs2 and ColabFold's default: 11 and 1).
pub const BLOSUM62_GAPS: GapCosts = GapCosts {
    open: 11,
    extend: 1,
};

/// How much cheaper than the search's gap opening cost a gap is at one query position (a
/// profile's, where its MSA has gaps; HMMER's and MMseqs2's profiles have such costs too).
/// Costs never go below 0: `open.saturating_sub(discount)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GapDiscount {
    /// For a deletion whose first query residue is this position.
    pub deletion: u8,
    /// For target residues inserted after this position.
    pub insertion: u8,
}

/// Position-specific score matrix: one row of scores per query position, one column per
/// residue code. Scores are in BLOSUM62's half-bit scale so one set of Karlin–Altschul
/// parameters serves both sequence and profile searches.
#[derive(Debug, Clone, PartialEq)]
pub struct Pssm {
    /// `[L][21]` scores.
    pub rows: Vec<[i8; ALPHABET_SIZE]>,
    /// `[L]` gap discounts, or empty: the search's gap costs everywhere.
    pub gap_discounts: Vec<GapDiscount>,
}

impl Pssm {
    /// A PSSM of `rows` with the search's gap costs everywhere.
    pub fn new(rows: Vec<[i8; ALPHABET_SIZE]>) -> Pssm {
        Pssm {
            rows,
            gap_discounts: Vec::new(),
        }
    }

    /// The PSSM of a plain sequence: its BLOSUM62 rows.
    pub fn from_sequence(codes: &[u8]) -> Pssm {
        Pssm::new(codes.iter().map(|&c| BLOSUM62[c as usize]).collect())
    }

    /// The discount at position `i` (none when the PSSM has no discounts).
    #[inline]
    pub fn gap_discount(&self, i: usize) -> GapDiscount {
        self.gap_discounts.get(i).copied().unwrap_or_default()
    }

    /// Query length.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the profile has no position.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The least offset that makes every score non-negative: the bias of unsigned SIMD lanes.
    pub fn score_bias(&self) -> i32 {
        let lowest = self.rows.iter().flatten().map(|&s| s as i32).min();
        (-lowest.unwrap_or(0)).max(0)
    }

    /// Score of residue `code` at query position `i`.
    #[inline]
    pub fn score(&self, i: usize, code: u8) -> i32 {
        self.rows[i][code as usize] as i32
    }
}

/// BLOSUM62's implied target frequencies `q(a, b) = p_a p_b exp(λ s(a, b))`, normalised;
/// the substitution probabilities PSI-BLAST's pseudocounts are drawn from.
pub fn blosum62_target_frequencies() -> [[f64; 20]; 20] {
    let mut q = [[0.0; 20]; 20];
    let mut total = 0.0;
    for a in 0..20 {
        for b in 0..20 {
            q[a][b] = BACKGROUND[a]
                * BACKGROUND[b]
                * (BLOSUM62_LAMBDA_UNGAPPED * BLOSUM62[a][b] as f64).exp();
            total += q[a][b];
        }
    }
    q.iter_mut().flatten().for_each(|v| *v /= total);
    q
}

/// `X` never seeds: the code used to skip it in k-mer scans.
pub const fn is_seedable(code: u8) -> bool {
    code != X
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blosum62_is_symmetric_and_background_sums_to_one() {
        for (a, row) in BLOSUM62.iter().enumerate() {
            for (b, &score) in row.iter().enumerate() {
                assert_eq!(score, BLOSUM62[b][a], "{a} {b}");
            }
        }
        assert!((BACKGROUND.iter().sum::<f64>() - 1.0).abs() < 1e-3);
    }

    #[test]
    fn blosum62_lambda_solves_the_karlin_altschul_equation() {
        // sum p_a p_b exp(λ s) = 1 at the ungapped λ.
        let sum: f64 = (0..20)
            .flat_map(|a| (0..20).map(move |b| (a, b)))
            .map(|(a, b)| {
                BACKGROUND[a]
                    * BACKGROUND[b]
                    * (BLOSUM62_LAMBDA_UNGAPPED * BLOSUM62[a][b] as f64).exp()
            })
            .sum();
        assert!((sum - 1.0).abs() < 0.01, "{sum}");
    }
}
