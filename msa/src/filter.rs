//! Diversity filter of the output MSA (ColabFold's `result2msa --max-seq-id 0.95
//! --filter-min-enable 1000`): rows in E-value order, each kept only if it is at most
//! `max_seq_id` identical to the query and to every row kept before it.

use crate::profile::GAP;

/// Settings of the output filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiversityFilter {
    /// Highest pairwise identity between kept rows (over columns both cover).
    pub max_seq_id: f64,
    /// Lowest fraction of query columns a row must cover.
    pub min_coverage: f64,
    /// Filter only MSAs with more rows than this (ColabFold filters above 1000).
    pub min_enable: usize,
}

impl Default for DiversityFilter {
    fn default() -> Self {
        DiversityFilter {
            max_seq_id: 0.95,
            min_coverage: 0.0,
            min_enable: 1000,
        }
    }
}

impl DiversityFilter {
    /// Indices of the rows kept (in query coordinates, best first), the query excluded.
    pub fn keep(&self, query: &[u8], rows: &[Vec<u8>]) -> Vec<usize> {
        let m = query.len().max(1) as f64;
        let rows: Vec<Row> = rows.iter().map(|r| Row::new(r)).collect();
        let covered: Vec<usize> = (0..rows.len())
            .filter(|&r| rows[r].cover as f64 / m >= self.min_coverage)
            .collect();
        if covered.len() <= self.min_enable {
            return covered;
        }
        let query = Row::new(query);
        let mut kept: Vec<&Row> = vec![&query];
        let mut indices = Vec::new();
        for r in covered {
            let row = &rows[r];
            if kept
                .iter()
                .all(|k| !k.more_identical_than(row, self.max_seq_id))
            {
                kept.push(row);
                indices.push(r);
            }
        }
        indices
    }
}

/// Columns compared per block: byte counters, and a block is the unit of the early exit.
const BLOCK: usize = 64;

/// An MSA row in query coordinates with what the comparison's shortcuts need.
struct Row<'a> {
    codes: &'a [u8],
    /// Columns covered.
    cover: usize,
    /// From the first covered column to past the last (empty when none is).
    span: std::ops::Range<usize>,
}

impl<'a> Row<'a> {
    fn new(codes: &'a [u8]) -> Row<'a> {
        let first = codes.iter().position(|&c| c != GAP);
        let span = match first {
            Some(first) => first..codes.iter().rposition(|&c| c != GAP).map_or(0, |l| l + 1),
            None => 0..0,
        };
        Row {
            codes,
            cover: codes.iter().filter(|&&c| c != GAP).count(),
            span,
        }
    }

    /// Whether the two rows are more than `max_id` identical over the columns both cover
    /// (never when they share none). Exact, but most pairs are decided early: only the
    /// overlap of their spans is read, and once the mismatches seen reach `1 - max_id` of
    /// the most columns the two could share (plus one, against rounding), the identity can
    /// only end below `max_id`.
    fn more_identical_than(&self, other: &Row, max_id: f64) -> bool {
        let start = self.span.start.max(other.span.start);
        let end = self.span.end.min(other.span.end);
        if start >= end {
            return false;
        }
        let decided = (1.0 - max_id) * self.cover.min(other.cover) as f64 + 1.0;
        let (a, b) = (&self.codes[start..end], &other.codes[start..end]);
        let (mut same, mut both) = (0u32, 0u32);
        for (a, b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
            let (mut block_same, mut block_both) = (0u8, 0u8);
            for (&x, &y) in a.iter().zip(b) {
                let covered = (x != GAP) & (y != GAP);
                block_both += covered as u8;
                block_same += (covered & (x == y)) as u8;
            }
            both += block_both as u32;
            same += block_same as u32;
            if (both - same) as f64 >= decided {
                return false;
            }
        }
        both > 0 && same as f64 / both as f64 > max_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    #[test]
    fn drops_near_duplicates_and_short_rows() {
        let query = vec![0u8; 100];
        let mut near = vec![1u8; 100];
        near[0] = 2;
        let distinct = vec![3u8; 100];
        let mut short = vec![GAP; 100];
        short[..10].fill(4);
        let rows = vec![vec![1u8; 100], near, distinct, short];
        let filter = DiversityFilter {
            max_seq_id: 0.95,
            min_coverage: 0.5,
            min_enable: 0,
        };
        assert_eq!(filter.keep(&query, &rows), vec![0, 2]);
        // Below min_enable rows only face the coverage test.
        let lenient = DiversityFilter {
            min_enable: 10,
            ..filter
        };
        assert_eq!(lenient.keep(&query, &rows), vec![0, 1, 2]);
    }

    /// The early exit never changes the answer: random pairs of rows (gaps included, lengths
    /// over several blocks, identities on both sides of the threshold) against the identity
    /// counted in full.
    #[test]
    fn early_exit_matches_full_count() {
        let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
        let mut next = |n: u64| rng.below(n);
        for case in 0..2000 {
            let len = 1 + next(400) as usize;
            // Gapped ends and gaps inside, so spans overlap partly or not at all.
            let (lead, tail) = (next(len as u64) as usize, next(len as u64) as usize);
            let a: Vec<u8> = (0..len)
                .map(|i| {
                    if i < lead / 2 || i >= len - tail / 2 || next(5) == 0 {
                        GAP
                    } else {
                        next(20) as u8
                    }
                })
                .collect();
            // b copies a except at a per-case mutation rate (0 to 15 %) and its own gaps.
            let rate = next(16);
            let b: Vec<u8> = a
                .iter()
                .enumerate()
                .map(|(i, &x)| match next(100) {
                    _ if i < tail / 3 => GAP,
                    r if r < rate => next(20) as u8,
                    r if r < rate + 3 => GAP,
                    _ => x,
                })
                .collect();
            let (mut same, mut both) = (0usize, 0usize);
            for (&x, &y) in a.iter().zip(&b) {
                if x != GAP && y != GAP {
                    both += 1;
                    same += (x == y) as usize;
                }
            }
            for max_id in [0.9, 0.95, 0.99] {
                let full = both > 0 && same as f64 / both as f64 > max_id;
                let fast = Row::new(&a).more_identical_than(&Row::new(&b), max_id);
                assert_eq!(
                    fast, full,
                    "case {case}, identity {same}/{both}, max {max_id}"
                );
            }
        }
    }
}
