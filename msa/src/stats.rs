//! Karlin–Altschul statistics: bit scores and E-values of gapped local alignment scores,
//! with BLAST's edge-effect correction of the search space.

/// Statistical parameters of a scoring system (gapped, estimated by simulation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KarlinAltschul {
    /// λ in nats per score unit.
    pub lambda: f64,
    pub k: f64,
    /// Slope and intercept of the expected chance-alignment length in `ln(K m n)` (BLAST's
    /// α/λ and β): the edge-effect correction.
    pub alpha: f64,
    pub beta: f64,
}

/// BLOSUM62 with gap costs 11/1 (BLAST's table of gapped parameters).
pub const BLOSUM62_11_1: KarlinAltschul = KarlinAltschul {
    lambda: 0.267,
    k: 0.041,
    alpha: 1.9,
    beta: -30.0,
};

/// The size of a search: one query against a database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSpace {
    /// Query length after the edge-effect correction.
    pub query: f64,
    /// Database residues after the edge-effect correction.
    pub database: f64,
}

impl KarlinAltschul {
    /// The effective search space of a query of `query_len` residues against a database of
    /// `db_residues` residues in `db_sequences` sequences: BLAST's length adjustment `ℓ`
    /// (the expected length of a chance alignment) taken off every sequence.
    pub fn search_space(
        &self,
        query_len: usize,
        db_residues: u64,
        db_sequences: usize,
    ) -> SearchSpace {
        let m = query_len as f64;
        let n = db_residues as f64;
        let count = db_sequences as f64;
        let mut ell = 0.0;
        for _ in 0..20 {
            let m_eff = (m - ell).max(1.0 / self.k);
            let n_eff = (n - count * ell).max(1.0 / self.k);
            let next =
                (self.alpha / self.lambda * (self.k * m_eff * n_eff).ln() + self.beta).max(0.0);
            if (next - ell).abs() < 0.5 {
                ell = next;
                break;
            }
            ell = next;
        }
        // Never shrink a sequence below 1/K residues (BLAST's floor).
        let ell = ell.min(m - 1.0 / self.k).max(0.0);
        SearchSpace {
            query: (m - ell).max(1.0 / self.k),
            database: (n - count * ell).max(1.0 / self.k),
        }
    }

    /// Expected number of chance alignments scoring at least `score` in `space`.
    pub fn evalue(&self, score: i32, space: SearchSpace) -> f64 {
        self.k * space.query * space.database * (-self.lambda * score as f64).exp()
    }

    /// Normalised score in bits.
    pub fn bit_score(&self, score: i32) -> f64 {
        (self.lambda * score as f64 - self.k.ln()) / std::f64::consts::LN_2
    }

    /// The lowest raw score whose E-value is at most `evalue` in `space`.
    pub fn min_score_for(&self, evalue: f64, space: SearchSpace) -> i32 {
        let s = (self.k * space.query * space.database / evalue).ln() / self.lambda;
        s.ceil().max(1.0) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evalue_and_threshold_agree_and_shrink_with_score() {
        let ka = BLOSUM62_11_1;
        let space = ka.search_space(300, 160_000_000, 450_000);
        assert!(space.query < 300.0 && space.query > 100.0, "{space:?}");
        let s = ka.min_score_for(1e-3, space);
        assert!(ka.evalue(s, space) <= 1e-3);
        assert!(ka.evalue(s - 1, space) > 1e-3);
        assert!(ka.evalue(s + 10, space) < ka.evalue(s, space));
        // 50 bits in a 300 x 1.6e8 space is E ≈ 4e-5 (BLAST reports the same order).
        let bits50 = ((50.0 * std::f64::consts::LN_2 + ka.k.ln()) / ka.lambda).round() as i32;
        assert!((ka.bit_score(bits50) - 50.0).abs() < 0.3);
    }

    #[test]
    fn short_sequences_keep_a_positive_space() {
        let space = BLOSUM62_11_1.search_space(5, 30, 3);
        assert!(space.query >= 1.0 / BLOSUM62_11_1.k - 1e-9 && space.database > 0.0);
    }
}
