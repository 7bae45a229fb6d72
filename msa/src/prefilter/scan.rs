//! The database scan: seed hits on diagonals, two hits on one diagonal open an ungapped
//! alignment of the whole diagonal, and each target keeps its best diagonal score.

use super::neighbors::{SeedTable, CODES, K};
use crate::alphabet::X;
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
pub struct SlotLayout {
    base: Vec<u32>,
    total: usize,
}

impl SlotLayout {
    pub fn new(queries: &[&Pssm], max_target_len: usize) -> SlotLayout {
        let mut base = Vec::with_capacity(queries.len());
        let mut total = 0usize;
        for q in queries {
            base.push(u32::try_from(total).expect("search batches keep slot counts small"));
            total += q.len() + max_target_len + 1;
        }
        SlotLayout { base, total }
    }

    /// The key the seed table stores for a seed of query `q` at window `pos`.
    pub fn seed_key(&self, queries: &[&Pssm], q: u32, pos: u32) -> u32 {
        self.base[q as usize] + queries[q as usize].len() as u32 - pos
    }

    /// The query and diagonal of a slot.
    fn locate(&self, slot: u32) -> (u32, u32) {
        let q = self.base.partition_point(|&b| b <= slot) - 1;
        (q as u32, slot - self.base[q])
    }
}

/// Seeds looked up this many windows ahead (offsets), and half as far (the seeds).
const PREFETCH_DISTANCE: usize = 32;
/// Marks a window that holds an `X`.
const NO_CODE: u32 = u32::MAX;

/// Per-thread state of the scan, reused across targets.
pub struct ScanState<'a> {
    queries: &'a [&'a Pssm],
    table: &'a SeedTable,
    layout: &'a SlotLayout,
    slots: Vec<DiagonalSlot>,
    /// k-mer code of each window of the current target.
    codes: Vec<u32>,
    /// Slots of the diagonals with two hits in the current target.
    triggered: Vec<u32>,
    /// Best ungapped score per query in the current target, with the stamp that set it.
    best: Vec<(u32, i32)>,
    touched: Vec<u32>,
}

impl<'a> ScanState<'a> {
    pub fn new(queries: &'a [&'a Pssm], table: &'a SeedTable, layout: &'a SlotLayout) -> Self {
        let empty = DiagonalSlot {
            stamp: 0,
            last_start: 0,
        };
        ScanState {
            queries,
            table,
            layout,
            slots: vec![empty; layout.total],
            codes: Vec::new(),
            triggered: Vec::new(),
            best: vec![(0, 0); queries.len()],
            touched: Vec::new(),
        }
    }

    /// Scans target `index` and appends (query, candidate) for every query whose best
    /// two-hit diagonal scores at least `min_ungapped`.
    pub fn scan_target(
        &mut self,
        index: u32,
        target: &[u8],
        min_ungapped: i32,
        out: &mut Vec<(u32, Candidate)>,
    ) {
        let stamp = index + 1;
        self.collect_two_hit_diagonals(stamp, target);
        for &slot in &self.triggered {
            let (q, diagonal) = self.layout.locate(slot);
            let pssm = self.queries[q as usize];
            let score = ungapped_diagonal_score(pssm, target, diagonal as usize);
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

    /// The k-mer code of every window of `target` ([`NO_CODE`] where it holds an `X`).
    fn window_codes(&mut self, target: &[u8]) {
        self.codes.clear();
        let modulus = CODES as u32;
        let mut code = 0u32;
        // Residues since the last X: a k-mer needs K of them.
        let mut run = 0usize;
        for (j, &c) in target.iter().enumerate() {
            if c == X {
                run = 0;
            } else {
                code = (code * 20 + c as u32) % modulus;
                run += 1;
            }
            // The window ending at residue j starts at j + 1 - K.
            if j + 1 >= K {
                self.codes.push(if run >= K { code } else { NO_CODE });
            }
        }
    }

    fn collect_two_hit_diagonals(&mut self, stamp: u32, target: &[u8]) {
        self.triggered.clear();
        self.window_codes(target);
        let codes = &self.codes;
        for (start, &code) in codes.iter().enumerate() {
            if let Some(&ahead) = codes.get(start + PREFETCH_DISTANCE) {
                if ahead != NO_CODE {
                    self.table.prefetch(ahead);
                }
            }
            if let Some(&ahead) = codes.get(start + PREFETCH_DISTANCE / 2) {
                if ahead != NO_CODE {
                    self.table.prefetch_seeds(ahead);
                }
            }
            if code == NO_CODE {
                continue;
            }
            // On one diagonal, target and query positions move together, so the target
            // position of the last hit tells overlap as well as the query's would.
            let here = start as u32;
            for &key in self.table.seeds(code) {
                let index = here + key;
                let slot = &mut self.slots[index as usize];
                if slot.stamp != stamp {
                    *slot = DiagonalSlot {
                        stamp,
                        last_start: here,
                    };
                } else if slot.last_start != TRIGGERED && here >= slot.last_start + K as u32 {
                    // A second hit that does not overlap the first.
                    slot.last_start = TRIGGERED;
                    self.triggered.push(index);
                }
            }
        }
    }
}

/// Best ungapped segment score along one whole diagonal (Kadane's maximum subarray).
/// `diagonal` is `target_pos - query_pos + query_len`.
pub fn ungapped_diagonal_score(pssm: &Pssm, target: &[u8], diagonal: usize) -> i32 {
    let query_len = pssm.len();
    let first_query = query_len.saturating_sub(diagonal);
    let offset = diagonal as isize - query_len as isize;
    let last_query = query_len.min((target.len() as isize - offset).max(0) as usize);
    let mut best = 0;
    let mut running = 0;
    for i in first_query..last_query {
        let t = target[(i as isize + offset) as usize];
        running = (running + pssm.score(i, t)).max(0);
        best = best.max(running);
    }
    best
}
