//! Similar k-mers: every k-mer whose score against a query window reaches a threshold
//! (BLAST's neighbourhood words, MMseqs2's similar k-mers), gathered into one lookup table
//! for a batch of queries so the database is read once per batch.

use crate::matrix::Pssm;

/// Seed length. 20^5 codes keep the table's offsets (12.8 MB) near the L3 cache while
/// random seed hits stay below one per database residue for a batch of dozens of queries.
pub const K: usize = 5;
/// Number of distinct k-mer codes over the 20 amino acids.
pub const CODES: usize = 20usize.pow(K as u32);
/// Most k-mers taken for one query window: bounds the table for flat profiles.
const MAX_PER_WINDOW: usize = 4096;

/// Seeds of all queries of a batch, grouped by k-mer code (compressed rows).
pub struct SeedTable {
    offsets: Vec<u32>,
    /// One key per seed (see [`SeedTable::build`]): 4 bytes, as the scan's reads are
    /// random and the table's size sets its cache misses.
    seeds: Vec<u32>,
}

impl SeedTable {
    /// Seeds of every k-mer scoring at least the query's threshold against one of its windows;
    /// `key(query, pos)` gives each seed's key (the scan stores its diagonal-slot offset,
    /// which names both the query and the window).
    pub fn build(
        queries: &[&Pssm],
        thresholds: &[i32],
        key: impl Fn(u32, u32) -> u32,
    ) -> SeedTable {
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for ((q, pssm), &threshold) in queries.iter().enumerate().zip(thresholds) {
            for pos in 0..pssm.len().saturating_sub(K - 1) {
                let seed = key(q as u32, pos as u32);
                for_each_neighbor(pssm, pos, threshold, |code| pairs.push((code, seed)));
            }
        }
        let mut offsets = vec![0u32; CODES + 1];
        for &(code, _) in &pairs {
            offsets[code as usize + 1] += 1;
        }
        for c in 0..CODES {
            offsets[c + 1] += offsets[c];
        }
        let mut fill = offsets.clone();
        let mut seeds = vec![0u32; pairs.len()];
        for (code, seed) in pairs {
            seeds[fill[code as usize] as usize] = seed;
            fill[code as usize] += 1;
        }
        SeedTable { offsets, seeds }
    }

    /// Seeds of one k-mer code.
    #[inline]
    pub fn seeds(&self, code: u32) -> &[u32] {
        let c = code as usize;
        &self.seeds[self.offsets[c] as usize..self.offsets[c + 1] as usize]
    }

    /// Asks the cache for the seeds of `code` ahead of their use: the scan's table reads
    /// are random over megabytes and otherwise wait on memory.
    #[inline]
    pub fn prefetch(&self, code: u32) {
        prefetch(self.offsets.as_ptr().wrapping_add(code as usize));
    }

    /// Asks the cache for the first seeds of `code` (whose offset should be cached by now).
    #[inline]
    pub fn prefetch_seeds(&self, code: u32) {
        let first = self.offsets[code as usize] as usize;
        prefetch(self.seeds.as_ptr().wrapping_add(first));
    }

    /// Number of seeds in the table.
    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    /// Whether no query window produced a seed.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }
}

/// A cache hint; never faults, whatever the address.
#[inline(always)]
fn prefetch<T>(pointer: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never dereferences in a way that can fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(pointer.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pointer;
}

/// Seeds a query window would produce: the table-size estimate batches are cut by.
pub fn count_seeds(pssm: &Pssm, threshold: i32) -> usize {
    let mut n = 0;
    for pos in 0..pssm.len().saturating_sub(K - 1) {
        for_each_neighbor(pssm, pos, threshold, |_| n += 1);
    }
    n
}

/// Calls `emit` with the code of every k-mer (of the 20 amino acids) scoring at least
/// `threshold` against the window at `pos`: depth-first over residues in descending score
/// order, cut as soon as the best possible completion falls short.
fn for_each_neighbor(pssm: &Pssm, pos: usize, threshold: i32, mut emit: impl FnMut(u32)) {
    // Per window column: residues by descending score.
    let mut order = [[(0i32, 0u8); 20]; K];
    for (t, column) in order.iter_mut().enumerate() {
        for (a, entry) in column.iter_mut().enumerate() {
            *entry = (pssm.score(pos + t, a as u8), a as u8);
        }
        column.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
    }
    // best_rest[t]: the highest score columns t.. can add.
    let mut best_rest = [0i32; K + 1];
    for t in (0..K).rev() {
        best_rest[t] = best_rest[t + 1] + order[t][0].0;
    }
    let mut emitted = 0usize;
    let mut choice = [0usize; K];
    let mut partial = [0i32; K + 1];
    let mut code = [0u32; K + 1];
    let mut t = 0usize;
    // Iterative depth-first search: choice[t] is the next residue tried in column t.
    loop {
        if choice[t] < 20 {
            let (score, residue) = order[t][choice[t]];
            choice[t] += 1;
            let total = partial[t] + score;
            if total + best_rest[t + 1] < threshold {
                // Later residues of this column score lower still: column exhausted.
                choice[t] = 20;
                continue;
            }
            partial[t + 1] = total;
            code[t + 1] = code[t] * 20 + residue as u32;
            if t + 1 == K {
                emit(code[K]);
                emitted += 1;
                if emitted == MAX_PER_WINDOW {
                    return;
                }
            } else {
                t += 1;
                choice[t] = 0;
            }
        } else if t == 0 {
            return;
        } else {
            t -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kmer_code(kmer: &[u8]) -> u32 {
        kmer.iter().fold(0u32, |code, &c| code * 20 + c as u32)
    }

    fn brute_force(pssm: &Pssm, pos: usize, threshold: i32) -> Vec<u32> {
        (0..CODES as u32)
            .filter(|&code| {
                let mut rest = code;
                let mut score = 0;
                for t in (0..K).rev() {
                    score += pssm.score(pos + t, (rest % 20) as u8);
                    rest /= 20;
                }
                score >= threshold
            })
            .collect()
    }

    #[test]
    fn neighbours_are_exactly_the_kmers_above_threshold() {
        let query: Vec<u8> = b"MKTAYIAKQRQISFVKSHFSRQ"
            .iter()
            .map(|&c| crate::alphabet::encode_letter(c).unwrap())
            .collect();
        let pssm = Pssm::from_sequence(&query);
        for (pos, threshold) in [(0, 20), (3, 14), (10, 24), (17, 18)] {
            let mut ours = Vec::new();
            for_each_neighbor(&pssm, pos, threshold, |c| ours.push(c));
            ours.sort_unstable();
            assert_eq!(
                ours,
                brute_force(&pssm, pos, threshold),
                "pos {pos} T {threshold}"
            );
        }
        // The query's own k-mer is its best neighbour.
        let table = SeedTable::build(&[&pssm], &[15], |q, pos| 1000 * (q + 7) + pos);
        let own = kmer_code(&query[2..2 + K]);
        assert!(table.seeds(own).contains(&7002));
        assert_eq!(table.len(), count_seeds(&pssm, 15));
    }
}
