//! Gap costs by query position, as every kernel charges them.
//!
//! A deletion of query positions `a..=b` (`a` first in the scan's order) costs
//! `deletion_open[a] + deletion_close[b] + (b − a + 1) · extend`; `k` target residues inserted
//! after query position `i` cost `insertion_open[i] + k · extend`. A forward scan charges a
//! deletion where it starts (`deletion_close` is 0); the same model on the reversed query
//! ([`PositionGaps::reversed_prefix`]) charges it where the reversed scan ends it, so both
//! directions score every alignment alike.

use crate::matrix::{GapCosts, Pssm};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PositionGaps {
    pub deletion_open: Vec<i32>,
    pub deletion_close: Vec<i32>,
    pub insertion_open: Vec<i32>,
    pub extend: i32,
}

impl PositionGaps {
    /// `gaps` less the PSSM's discounts at each position.
    pub fn new(pssm: &Pssm, gaps: GapCosts) -> PositionGaps {
        let m = pssm.len();
        let open = |discount: u8| (gaps.open - i32::from(discount)).max(0);
        PositionGaps {
            deletion_open: (0..m)
                .map(|i| open(pssm.gap_discount(i).deletion))
                .collect(),
            deletion_close: vec![0; m],
            insertion_open: (0..m)
                .map(|i| open(pssm.gap_discount(i).insertion))
                .collect(),
            extend: gaps.extend,
        }
    }

    /// The costs of query positions `0..len` in reverse order: reversed position `r` is
    /// position `len − 1 − r`. A deletion's two charges swap ends, and the residues inserted
    /// after reversed position `r` are those inserted before `len − 1 − r`.
    pub fn reversed_prefix(&self, len: usize) -> PositionGaps {
        let forward = |r: usize| len - 1 - r;
        PositionGaps {
            deletion_open: (0..len).map(|r| self.deletion_close[forward(r)]).collect(),
            deletion_close: (0..len).map(|r| self.deletion_open[forward(r)]).collect(),
            // After the last reversed position nothing can follow in a local alignment; it
            // keeps the first position's cost.
            insertion_open: (0..len)
                .map(|r| self.insertion_open[forward(r).saturating_sub(1)])
                .collect(),
            extend: self.extend,
        }
    }
}
