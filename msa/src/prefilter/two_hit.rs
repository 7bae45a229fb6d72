//! Two-hit diagonals: one target's seed hits land in a slot per diagonal, a diagonal with two
//! hits that do not overlap is scored ungapped over its whole length, and each query keeps
//! its best diagonal in the target. The scan and the indexed pass feed it the same hits.

use super::diagonal::DiagonalScorer;
use crate::kmer::K;
use crate::matrix::Pssm;

/// A target that passed the prefilter for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub target: u32,
    /// Best ungapped segment score on a diagonal with two seed hits.
    pub ungapped: i32,
}

/// Where the last seed hit on a diagonal of the current target was.
#[derive(Clone, Copy)]
struct DiagonalSlot {
    /// Target index + 1 that wrote the slot (0: never), so slots need no clearing.
    stamp: u32,
    /// Target position of the last hit; `TRIGGERED` once the diagonal was taken.
    last_start: u32,
}

const TRIGGERED: u32 = u32::MAX;

/// Where each query's diagonals live in one flat slot array: query `q`'s diagonal `d`
/// (`target_pos - query_pos + query_len`) is slot `base[q] + d`, so a seed keyed
/// `base[q] + query_len - pos` hits slot `target_start + key`: one add in the hot loop.
/// After the queries' slots come `max_target_len` spare ones for the stand-in key
/// [`SlotLayout::spare_key`].
pub struct SlotLayout {
    base: Vec<u32>,
    /// The queries' slots.
    total: usize,
    max_target_len: usize,
}

impl SlotLayout {
    pub fn new(queries: &[&Pssm], max_target_len: usize) -> SlotLayout {
        let mut base = Vec::with_capacity(queries.len());
        let mut total = 0usize;
        for q in queries {
            base.push(u32::try_from(total).expect("search batches keep slot counts small"));
            total += q.len() + max_target_len + 1;
        }
        SlotLayout {
            base,
            total,
            max_target_len,
        }
    }

    /// A key that no seed has: window `w` maps it to spare slot `w`, a different one for
    /// every window, so it never makes two hits on one diagonal. The scan feeds it for an
    /// entry's unused words instead of branching on them.
    pub(super) fn spare_key(&self) -> u32 {
        u32::try_from(self.total).expect("search batches keep slot counts small")
    }

    /// The key the seed table stores for a seed of query `q` at window `pos`.
    pub fn seed_key(&self, queries: &[&Pssm], q: u32, pos: u32) -> u32 {
        self.base[q as usize] + queries[q as usize].len() as u32 - pos
    }

    /// The query and diagonal of a slot.
    pub(super) fn locate(&self, slot: u32) -> (u32, u32) {
        let q = self.base.partition_point(|&b| b <= slot) - 1;
        (q as u32, slot - self.base[q])
    }
}

/// Per-thread state of the two-hit test, reused across targets.
pub struct TwoHits<'a> {
    scorer: &'a DiagonalScorer<'a>,
    layout: &'a SlotLayout,
    slots: Vec<DiagonalSlot>,
    /// Slots of the diagonals with two hits in the current target: the first
    /// `triggered_len`, the buffer as long as the slot array (each slot triggers once per
    /// target), so that every hit may write one without a branch.
    triggered: Vec<u32>,
    triggered_len: usize,
    /// Best ungapped score per query in the current target, with the stamp that set it.
    best: Vec<(u32, i32)>,
    touched: Vec<u32>,
}

impl<'a> TwoHits<'a> {
    pub fn new(scorer: &'a DiagonalScorer<'a>, layout: &'a SlotLayout) -> Self {
        let empty = DiagonalSlot {
            stamp: 0,
            last_start: 0,
        };
        TwoHits {
            scorer,
            layout,
            slots: vec![empty; layout.total + layout.max_target_len],
            triggered: vec![0; layout.total + layout.max_target_len],
            triggered_len: 0,
            best: vec![(0, 0); layout.base.len()],
            touched: Vec::new(),
        }
    }

    /// Takes target `index`'s seed hits, `(window, key)` in order of the window, and appends
    /// each query whose best two-hit diagonal in it scores at least `min_ungapped`.
    pub fn take_hits(
        &mut self,
        index: u32,
        target: &[u8],
        hits: impl Iterator<Item = (u32, u32)>,
        min_ungapped: i32,
        out: &mut Vec<(u32, Candidate)>,
    ) {
        self.start_target();
        for (here, key) in hits {
            self.hit(index + 1, here, key);
        }
        self.score_diagonals(index, target, min_ungapped, out);
    }

    /// Starts a target's hits.
    pub(super) fn start_target(&mut self) {
        self.triggered_len = 0;
    }

    /// A seed hit at target window `here` of the seed keyed `key`.
    #[inline(always)]
    pub(super) fn hit(&mut self, stamp: u32, here: u32, key: u32) {
        // On one diagonal, target and query positions move together, so the target position
        // of the first hit tells overlap as well as the query's would.
        let index = here + key;
        let slot = &mut self.slots[index as usize];
        let fresh = slot.stamp != stamp;
        let last = slot.last_start;
        // A second hit that does not overlap the first.
        let second = !fresh & (last != TRIGGERED) & (here >= last.wrapping_add(K as u32));
        let next = if second { TRIGGERED } else { last };
        *slot = DiagonalSlot {
            stamp,
            last_start: if fresh { here } else { next },
        };
        self.triggered[self.triggered_len] = index;
        self.triggered_len += second as usize;
    }

    /// Ungapped scores of the triggered diagonals of target `index`; appends the queries
    /// whose best reaches `min_ungapped`.
    pub(super) fn score_diagonals(
        &mut self,
        index: u32,
        target: &[u8],
        min_ungapped: i32,
        out: &mut Vec<(u32, Candidate)>,
    ) {
        let stamp = index + 1;
        for &slot in &self.triggered[..self.triggered_len] {
            let (q, diagonal) = self.layout.locate(slot);
            let score = self.scorer.score(q as usize, target, diagonal as usize);
            let best = &mut self.best[q as usize];
            if best.0 != stamp {
                *best = (stamp, score);
                self.touched.push(q);
            } else if score > best.1 {
                best.1 = score;
            }
        }
        for &q in &self.touched {
            let ungapped = self.best[q as usize].1;
            if ungapped >= min_ungapped {
                out.push((
                    q,
                    Candidate {
                        target: index,
                        ungapped,
                    },
                ));
            }
        }
        self.touched.clear();
    }
}
