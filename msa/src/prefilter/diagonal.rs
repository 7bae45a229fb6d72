//! The prefilter's ungapped score of a triggered diagonal: Kadane's maximum subarray along
//! the whole diagonal, scalar and in AVX-512 lanes (the scalar loop took a third of the
//! scan's time, and rewriting its carried chain did not make it faster).

use crate::alphabet::ALPHABET_SIZE;
use crate::matrix::Pssm;

/// Best ungapped segment score along one whole diagonal (Kadane's maximum subarray).
/// `diagonal` is `target_pos - query_pos + query_len`.
fn ungapped_diagonal_score(pssm: &Pssm, target: &[u8], diagonal: usize) -> i32 {
    let (first_query, cells) = diagonal_cells(pssm.len(), target, diagonal);
    let mut best = 0;
    let mut running = 0;
    for (row, &t) in pssm.rows[first_query..].iter().zip(cells) {
        running = (running + i32::from(row[usize::from(t)])).max(0);
        best = best.max(running);
    }
    best
}

/// The first query position on a diagonal and the target residues facing the query there.
fn diagonal_cells(query_len: usize, target: &[u8], diagonal: usize) -> (usize, &[u8]) {
    let first_query = query_len.saturating_sub(diagonal);
    let first_target = diagonal.saturating_sub(query_len).min(target.len());
    let count = (query_len - first_query).min(target.len() - first_target);
    (first_query, &target[first_target..first_target + count])
}

/// A batch's queries laid out for the vector scan: each PSSM transposed (`[21][L]`), so the
/// scores of 64 consecutive cells of a diagonal are 21 masked loads, one per residue.
pub struct DiagonalScorer<'a> {
    queries: &'a [&'a Pssm],
    /// Per query, `[21][L]` (empty where the scalar loop runs).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    columns: Vec<Vec<i8>>,
}

impl<'a> DiagonalScorer<'a> {
    pub fn new(queries: &'a [&'a Pssm]) -> Self {
        let columns = if vector_scan_available() {
            queries
                .iter()
                .map(|pssm| {
                    (0..ALPHABET_SIZE)
                        .flat_map(|a| pssm.rows.iter().map(move |row| row[a]))
                        .collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        DiagonalScorer { queries, columns }
    }

    /// [`ungapped_diagonal_score`] of query `q`.
    #[inline]
    pub fn score(&self, q: usize, target: &[u8], diagonal: usize) -> i32 {
        #[cfg(target_arch = "x86_64")]
        if let Some(columns) = self.columns.get(q) {
            let (first_query, cells) = diagonal_cells(self.queries[q].len(), target, diagonal);
            // SAFETY: columns exist only where the CPU has AVX-512BW; `cells` face query
            // positions `first_query..first_query + cells.len()`, all within the query.
            return unsafe { kadane_avx512(columns, self.queries[q].len(), first_query, cells) };
        }
        ungapped_diagonal_score(self.queries[q], target, diagonal)
    }

    /// The scorer without its vector scan, for tests of both paths.
    #[cfg(test)]
    fn scalar(queries: &'a [&'a Pssm]) -> Self {
        DiagonalScorer {
            queries,
            columns: Vec::new(),
        }
    }
}

fn vector_scan_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Kadane's scan over `cells` (target residues facing query positions `first_query..`), 16
/// cells per step in i32 lanes: Kadane's running score is the prefix sum less the lowest
/// prefix so far (the empty one included), and both are lane-wise prefix scans carried from
/// step to step in broadcast registers, so the best is reduced across lanes once at the end.
/// `columns` is the query's `[21][query_len]` transposed PSSM.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn kadane_avx512(columns: &[i8], query_len: usize, first_query: usize, cells: &[u8]) -> i32 {
    use std::arch::x86_64::*;
    debug_assert!(columns.len() == ALPHABET_SIZE * query_len);
    debug_assert!(first_query + cells.len() <= query_len);
    let zero = _mm512_setzero_si512();
    let last_lane = _mm512_set1_epi32(15);
    // Lane j of `shifted::<k>(v)`: v[j - k], 0 below k.
    macro_rules! shifted {
        ($v:expr, $k:literal) => {
            _mm512_alignr_epi32::<{ 16 - $k }>($v, zero)
        };
    }
    // Every lane holds the prefix sum at the end of the last step, and the lowest prefix so
    // far; `best` the best running score seen per lane.
    let (mut sum, mut lowest, mut best) = (zero, zero, zero);
    for start in (0..cells.len()).step_by(64) {
        let left = cells.len() - start;
        let valid = if left >= 64 {
            u64::MAX
        } else {
            (1u64 << left) - 1
        };
        // SAFETY (all loads): masked-off lanes are not read; the others lie within `cells`
        // and, per residue, within its column of `columns`.
        let residues = _mm512_maskz_loadu_epi8(valid, cells.as_ptr().add(start).cast());
        let mut scores = zero;
        for a in 0..ALPHABET_SIZE {
            let here = _mm512_mask_cmpeq_epi8_mask(valid, residues, _mm512_set1_epi8(a as i8));
            let column = columns.as_ptr().add(a * query_len + first_query + start);
            scores = _mm512_mask_loadu_epi8(scores, here, column);
        }
        let chunks = [
            _mm512_extracti32x4_epi32::<0>(scores),
            _mm512_extracti32x4_epi32::<1>(scores),
            _mm512_extracti32x4_epi32::<2>(scores),
            _mm512_extracti32x4_epi32::<3>(scores),
        ];
        // Lanes past the end score 0: they repeat the last prefix, which changes nothing.
        for &chunk in &chunks[..left.min(64).div_ceil(16)] {
            let mut prefix = _mm512_cvtepi8_epi32(chunk);
            prefix = _mm512_add_epi32(prefix, shifted!(prefix, 1));
            prefix = _mm512_add_epi32(prefix, shifted!(prefix, 2));
            prefix = _mm512_add_epi32(prefix, shifted!(prefix, 4));
            prefix = _mm512_add_epi32(prefix, shifted!(prefix, 8));
            // Lowest prefix within the chunk, 0 (the chunk's start) included.
            let mut low = _mm512_min_epi32(prefix, zero);
            low = _mm512_min_epi32(low, shifted!(low, 1));
            low = _mm512_min_epi32(low, shifted!(low, 2));
            low = _mm512_min_epi32(low, shifted!(low, 4));
            low = _mm512_min_epi32(low, shifted!(low, 8));
            let total = _mm512_add_epi32(prefix, sum);
            let lowest_here = _mm512_min_epi32(lowest, _mm512_add_epi32(low, sum));
            best = _mm512_max_epi32(best, _mm512_sub_epi32(total, lowest_here));
            sum = _mm512_permutexvar_epi32(last_lane, total);
            lowest = _mm512_permutexvar_epi32(last_lane, lowest_here);
        }
    }
    _mm512_reduce_max_epi32(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    /// Kadane's scan over every cell (i, j) with `j - i + query_len == diagonal`.
    fn brute_force(pssm: &Pssm, target: &[u8], diagonal: usize) -> i32 {
        let (mut running, mut best) = (0, 0);
        for i in 0..pssm.len() {
            let Some(j) = (i + diagonal).checked_sub(pssm.len()) else {
                continue;
            };
            if let Some(&t) = target.get(j) {
                running = (running + pssm.score(i, t)).max(0);
                best = best.max(running);
            }
        }
        best
    }

    #[test]
    fn vector_and_scalar_scans_agree() {
        let mut rng = TestRng(11);
        let mut next = |n: u64| rng.below(n);
        // Extreme profile scores, X residues, and lengths around the 16- and 64-cell steps.
        let lengths = [1usize, 15, 16, 17, 63, 64, 65, 130, 700];
        let pssms: Vec<Pssm> = lengths
            .iter()
            .map(|&len| {
                Pssm::new(
                    (0..len)
                        .map(|_| std::array::from_fn(|_| next(256) as u8 as i8))
                        .collect(),
                )
            })
            .collect();
        let pssms: Vec<&Pssm> = pssms.iter().collect();
        let vector = DiagonalScorer::new(&pssms);
        let scalar = DiagonalScorer::scalar(&pssms);
        if !vector_scan_available() {
            eprintln!("no AVX-512BW: only the scalar scan runs");
        }
        let mut compared = 0;
        for &target_len in &lengths {
            let target: Vec<u8> = (0..target_len).map(|_| next(21) as u8).collect();
            for (q, pssm) in pssms.iter().enumerate() {
                for diagonal in 1..pssm.len() + target_len {
                    let expected = brute_force(pssm, &target, diagonal);
                    assert_eq!(scalar.score(q, &target, diagonal), expected);
                    assert_eq!(
                        vector.score(q, &target, diagonal),
                        expected,
                        "query {q} ({} residues), target of {target_len}, diagonal {diagonal}",
                        pssm.len()
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 10_000);
        // 5 000 cells of 127: a sum far beyond 16 bits.
        let target: Vec<u8> = (0..5000).map(|i| (i % 21) as u8).collect();
        let high = Pssm::new(vec![[127i8; 21]; 5000]);
        let high = [&high];
        let scorer = DiagonalScorer::new(&high);
        assert_eq!(scorer.score(0, &target, 5000), 127 * 5000);
    }
}
