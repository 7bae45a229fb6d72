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
        let covered: Vec<usize> = (0..rows.len())
            .filter(|&r| {
                let cover = rows[r].iter().filter(|&&c| c != GAP).count() as f64 / m;
                cover >= self.min_coverage
            })
            .collect();
        if covered.len() <= self.min_enable {
            return covered;
        }
        let mut kept: Vec<&[u8]> = vec![query];
        let mut indices = Vec::new();
        for r in covered {
            let row = &rows[r][..];
            if kept.iter().all(|k| identity(k, row) <= self.max_seq_id) {
                kept.push(row);
                indices.push(r);
            }
        }
        indices
    }
}

/// Identical residues over the columns both rows cover; 0 when they share none.
fn identity(a: &[u8], b: &[u8]) -> f64 {
    let (mut same, mut both) = (0u32, 0u32);
    // Byte counters over blocks of at most 255 columns vectorise across whole registers
    // (this comparison is most of the filter's time).
    for (a, b) in a.chunks(255).zip(b.chunks(255)) {
        let (mut block_same, mut block_both) = (0u8, 0u8);
        for (&x, &y) in a.iter().zip(b) {
            let covered = (x != GAP) & (y != GAP);
            block_both += covered as u8;
            block_same += (covered & (x == y)) as u8;
        }
        both += block_both as u32;
        same += block_same as u32;
    }
    if both == 0 {
        0.0
    } else {
        same as f64 / both as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
