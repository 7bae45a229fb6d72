//! The query profile of an iterative search (PSI-BLAST's recipe): position-based sequence
//! weights, BLOSUM62 pseudocounts mixed by the alignment's diversity, log-odds scores with
//! BLOSUM62's λ.

use crate::alphabet::{ALPHABET_SIZE, X};
use crate::matrix::{blosum62_target_frequencies, Pssm, BACKGROUND, BLOSUM62_LAMBDA_UNGAPPED};

/// Marks a query column the row does not cover.
pub const GAP: u8 = 255;

/// Weight of the pseudocounts (PSI-BLAST's β).
const PSEUDOCOUNT_WEIGHT: f64 = 10.0;
/// Scores are ln(odds)/λ with BLOSUM62's ungapped λ, so every column's scores have exactly
/// BLOSUM62's λ (Σ_a p_a e^{λ s} = Σ_a Q_a = 1) and one set of E-value parameters serves
/// both (PSI-BLAST rescales its PSSMs to the same end). Half-bit units would give λ = 0.347
/// and a profile ~9 % weaker than the matrix it starts from.
const SCORE_SCALE: f64 = 1.0 / BLOSUM62_LAMBDA_UNGAPPED;

/// A PSSM for `query` from the rows of an MSA in query coordinates (`rows[k][i]` is the
/// residue aligned to query position `i`, or [`GAP`]). The query itself is the first row;
/// `rows` holds only the other sequences.
pub fn build_pssm(query: &[u8], rows: &[Vec<u8>]) -> Pssm {
    let m = query.len();
    let all: Vec<&[u8]> = std::iter::once(query)
        .chain(rows.iter().map(|r| &r[..]))
        .collect();
    let weights = henikoff_weights(&all, m);
    let target = blosum62_target_frequencies();
    // PSI-BLAST's data weight α = N_c − 1, N_c the mean number of residue types per column:
    // one number for the whole profile, so a family's conserved and variable columns are
    // weighted alike (a per-column α sharpens conserved columns and loses remote members).
    let alpha = (mean_residue_types(&all, m) - 1.0).max(0.0);
    let mut pssm_rows = Vec::with_capacity(m);
    for i in 0..m {
        // Weighted residue frequencies of the column.
        let mut f = [0.0f64; 20];
        for (row, &w) in all.iter().zip(&weights) {
            let c = row[i];
            if c < 20 {
                f[c as usize] += w;
            }
        }
        let total: f64 = f.iter().sum();
        if total > 0.0 {
            f.iter_mut().for_each(|v| *v /= total);
        } else {
            // Only gaps and X: the background.
            f = BACKGROUND;
        }
        let mut row = [0i8; ALPHABET_SIZE];
        for a in 0..20 {
            // Pseudocount: substitutions from the observed residues, q(a|b) = q(a,b)/p_b.
            let g: f64 = (0..20).map(|b| f[b] * target[a][b] / BACKGROUND[b]).sum();
            let q = (alpha * f[a] + PSEUDOCOUNT_WEIGHT * g) / (alpha + PSEUDOCOUNT_WEIGHT);
            let score = (SCORE_SCALE * (q / BACKGROUND[a]).ln()).round();
            row[a] = score.clamp(-127.0, 127.0) as i8;
        }
        row[X as usize] = -1;
        pssm_rows.push(row);
    }
    Pssm { rows: pssm_rows }
}

/// Mean number of distinct residue types over the columns that hold any residue (columns of
/// only gaps or `X` say nothing of the family's diversity).
fn mean_residue_types(rows: &[&[u8]], m: usize) -> f64 {
    let (mut total, mut columns) = (0usize, 0usize);
    for i in 0..m {
        let mut seen = [false; 20];
        for row in rows {
            if row[i] < 20 {
                seen[row[i] as usize] = true;
            }
        }
        let types = seen.iter().filter(|&&s| s).count();
        if types > 0 {
            total += types;
            columns += 1;
        }
    }
    if columns == 0 {
        1.0
    } else {
        total as f64 / columns as f64
    }
}

/// Henikoff position-based weights: each column shares one unit among its residue types,
/// and each type's share among the rows holding it. Rows then count by how unusual they are.
fn henikoff_weights(rows: &[&[u8]], m: usize) -> Vec<f64> {
    let mut weights = vec![0.0; rows.len()];
    for i in 0..m {
        let mut counts = [0u32; 20];
        for row in rows {
            if row[i] < 20 {
                counts[row[i] as usize] += 1;
            }
        }
        let types = counts.iter().filter(|&&c| c > 0).count() as f64;
        if types == 0.0 {
            continue;
        }
        for (row, w) in rows.iter().zip(&mut weights) {
            if row[i] < 20 {
                *w += 1.0 / (types * counts[row[i] as usize] as f64);
            }
        }
    }
    let total: f64 = weights.iter().sum();
    if total > 0.0 {
        weights.iter_mut().for_each(|w| *w /= total);
    } else {
        weights.iter_mut().for_each(|w| *w = 1.0);
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::encode;
    use crate::matrix::BLOSUM62;

    #[test]
    fn a_lone_query_gives_about_blosum62() {
        let query = encode(b"MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQW").unwrap();
        let pssm = build_pssm(&query, &[]);
        for (i, &c) in query.iter().enumerate() {
            for (a, &ours) in pssm.rows[i][..20].iter().enumerate() {
                let ours = ours as i32;
                let blosum = BLOSUM62[c as usize][a] as i32;
                assert!(
                    (ours - blosum).abs() <= 2,
                    "pos {i} {a}: {ours} vs {blosum}"
                );
            }
        }
    }

    #[test]
    fn conserved_columns_score_higher_than_variable_ones() {
        let query = encode(b"WAAAW").unwrap();
        // Column 0 and 4: W everywhere; column 1..3 varied.
        let rows: Vec<Vec<u8>> = ["WLKEW", "WDRGW", "WSTPW", "WNIVW", "WHQYW"]
            .iter()
            .map(|s| encode(s.as_bytes()).unwrap())
            .collect();
        let pssm = build_pssm(&query, &rows);
        let w = crate::alphabet::encode_letter(b'W').unwrap() as usize;
        let a = crate::alphabet::encode_letter(b'A').unwrap() as usize;
        assert!(pssm.rows[0][w] > pssm.rows[1][a], "{:?}", pssm.rows);
        // A gapped row does not count at its gaps.
        let gapped = vec![vec![GAP, GAP, GAP, GAP, w as u8]];
        let with_gaps = build_pssm(&query, &gapped);
        assert_eq!(with_gaps.rows[1], build_pssm(&query, &[]).rows[1]);
    }

    #[test]
    fn weights_favour_the_unusual_row() {
        let a = encode(b"AAAA").unwrap();
        let b = encode(b"WWWW").unwrap();
        let w = henikoff_weights(&[&a, &a, &b], 4);
        assert!((w[2] - 0.5).abs() < 1e-12 && (w[0] - 0.25).abs() < 1e-12);
    }
}
