//! Synthetic proteins for the search tests (also included by the root crate's
//! `tests/msa_cli.rs`): background residue frequencies, homologs at a chosen identity.

use ferrofold_msa::matrix::BACKGROUND;

/// xorshift64*: reproducible test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn residue(&mut self) -> u8 {
        let mut u = self.uniform();
        for (a, &p) in BACKGROUND.iter().enumerate() {
            if u < p {
                return a as u8;
            }
            u -= p;
        }
        19
    }

    /// A random protein as residue codes.
    pub fn protein(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.residue()).collect()
    }

    /// A homolog of `seq`: each residue kept with probability `identity` (else a random
    /// residue) and an indel every ~`indel_every` residues.
    pub fn mutate(&mut self, seq: &[u8], identity: f64, indel_every: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(seq.len() + 16);
        for &c in seq {
            if self.next().is_multiple_of(indel_every as u64) {
                if self.next().is_multiple_of(2) {
                    continue;
                }
                let extra = 1 + self.next() % 3;
                out.extend((0..extra).map(|_| self.residue()));
            }
            out.push(if self.uniform() < identity {
                c
            } else {
                self.residue()
            });
        }
        out
    }
}
