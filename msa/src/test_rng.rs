//! A seeded number generator for the unit tests (the integration tests have their own in
//! `tests/synthetic`, out of reach of these).

/// A 64-bit linear congruential generator (Knuth's MMIX constants); numbers come from its
/// top bits.
pub(crate) struct TestRng(pub u64);

impl TestRng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    /// `len` residue codes of the 20 amino acids.
    pub fn residues(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.below(20) as u8).collect()
    }
}
