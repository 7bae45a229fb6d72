//! Inter-sequence Smith–Waterman score kernel (SWIPE, Rognes 2011) on AVX2: 32 targets at
//! once, one per unsigned byte lane, the query walked position by position for each target
//! column, so lanes never depend on each other and there is no lazy-F loop.
//!
//! - Scores: per query position two 32-byte tables (codes 0–15 and 16–20, biased by `bias`
//!   so they are unsigned, each repeated in both 128-bit halves), looked up per lane by the
//!   lanes' current residues with two `vpshufb` and an `or`.
//! - Arithmetic: unsigned saturating bytes, `H = max((H_diag + (score + bias)) -| bias, E, F)`
//!   where `-|` saturates at 0, so the `max(0, ·)` of local alignment comes free and E and F
//!   (clamped at 0 the same way) are exact wherever they could matter. A lane whose best
//!   cell reaches `255 - bias` may have saturated: the caller rescores that target exactly.
//! - Scheduling: targets are taken longest first; when a lane's target ends, the lane is
//!   refilled with the next one (its H and E masked to 0 for its first column), as SWIPE does,
//!   so lanes are never padded except in the last columns of the batch. Columns are handled
//!   in chunks during which no lane ends, their residues transposed into a buffer first.
//!
//! Memory: two vectors (H and E) per query position, two table vectors per query position.

use std::arch::x86_64::*;

use crate::matrix::{GapCosts, Pssm};

const LANES: usize = 32;

/// Most columns transposed at once (32 bytes each).
const MAX_CHUNK: usize = 256;

/// The query's score tables for the batch kernel.
#[derive(Debug, Clone)]
pub(super) struct Profile {
    /// Per query position: biased scores of codes 0..16 and 16..21 (the rest 0).
    tables: Vec<[__m256i; 2]>,
    bias: u8,
    open_extend: u8,
    extend: u8,
}

/// The kernel's state: H(i, j - 1) and E(i, j) per query position, and the transposed
/// residues of a chunk.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    cells: Vec<[__m256i; 2]>,
    residues: Vec<[u8; LANES]>,
}

/// Where a lane stands: the index of its target, the next position and the target's length.
#[derive(Debug, Clone, Copy)]
struct Lane {
    target: usize,
    position: usize,
    len: usize,
}

impl Profile {
    pub(super) fn new(pssm: &Pssm, gaps: GapCosts) -> Profile {
        let lowest = pssm
            .rows
            .iter()
            .flat_map(|row| row.iter())
            .map(|&s| s as i32)
            .min()
            .unwrap_or(0);
        let bias = (-lowest).max(0);
        let biased = |s: i8| (s as i32 + bias) as u8;
        let tables = pssm
            .rows
            .iter()
            .map(|row| {
                let low: [u8; LANES] = std::array::from_fn(|k| biased(row[k % 16]));
                let high: [u8; LANES] =
                    std::array::from_fn(|k| row.get(16 + k % 16).map_or(0, |&s| biased(s)));
                // SAFETY: both are 32 plain bytes.
                unsafe {
                    [
                        std::mem::transmute::<[u8; LANES], __m256i>(low),
                        std::mem::transmute::<[u8; LANES], __m256i>(high),
                    ]
                }
            })
            .collect();
        let saturate = |cost: i32| cost.min(u8::MAX as i32) as u8;
        Profile {
            tables,
            bias: bias as u8,
            open_extend: saturate(gaps.open + gaps.extend),
            extend: saturate(gaps.extend),
        }
    }

    /// The lowest best score that may have saturated: such targets need rescoring.
    pub(super) fn ceiling(&self) -> i32 {
        u8::MAX as i32 - self.bias as i32
    }

    /// Writes each target's best score (exact when below [`Profile::ceiling`]) into `out`
    /// (`out[k]` for `targets[k]`), returning the indices of those at or above the ceiling.
    /// The query is non-empty; residue codes below `ALPHABET_SIZE` (a larger one gives some
    /// score: the caller checks).
    pub(super) fn score<T: AsRef<[u8]>>(
        &self,
        targets: &[T],
        buffers: &mut Buffers,
        out: &mut [i32],
    ) -> Vec<usize> {
        // SAFETY: this module is compiled only when AVX2 is enabled for the whole build.
        unsafe { self.kernel(targets, buffers, out) }
    }

    #[target_feature(enable = "avx2")]
    fn kernel<T: AsRef<[u8]>>(
        &self,
        targets: &[T],
        buffers: &mut Buffers,
        out: &mut [i32],
    ) -> Vec<usize> {
        let mut saturated = Vec::new();
        let mut order: Vec<usize> = (0..targets.len())
            .filter(|&k| !targets[k].as_ref().is_empty())
            .collect();
        order.sort_unstable_by_key(|&k| std::cmp::Reverse(targets[k].as_ref().len()));
        let mut queue = order.into_iter();

        let zero = _mm256_setzero_si256();
        let Buffers { cells, residues } = buffers;
        cells.clear();
        cells.resize(self.tables.len(), [zero; 2]);
        residues.clear();
        residues.resize(MAX_CHUNK, [0; LANES]);
        let mut lanes: [Option<Lane>; LANES] = [None; LANES];
        let mut best = zero;
        let ceiling = self.ceiling();
        loop {
            // Refill lanes whose target ended; their first column starts from H = E = 0.
            let mut reset = [0u8; LANES];
            let mut any_reset = false;
            for (k, lane) in lanes.iter_mut().enumerate() {
                if lane.is_none() {
                    if let Some(target) = queue.next() {
                        *lane = Some(Lane {
                            target,
                            position: 0,
                            len: targets[target].as_ref().len(),
                        });
                        reset[k] = u8::MAX;
                        any_reset = true;
                    }
                }
            }
            let Some(chunk) = lanes
                .iter()
                .flatten()
                .map(|lane| lane.len - lane.position)
                .min()
            else {
                break;
            };
            let chunk = chunk.min(MAX_CHUNK);
            for (k, lane) in lanes.iter_mut().enumerate() {
                if let Some(lane) = lane {
                    let codes = &targets[lane.target].as_ref()[lane.position..][..chunk];
                    for (column, &code) in residues.iter_mut().zip(codes) {
                        column[k] = code;
                    }
                    lane.position += chunk;
                }
            }
            // SAFETY: both are 32 plain bytes.
            let reset = unsafe { std::mem::transmute::<[u8; LANES], __m256i>(reset) };
            let mut columns = residues[..chunk].iter();
            if any_reset {
                let first = columns.next().expect("chunks are non-empty");
                self.column::<true>(cells, first, reset, &mut best);
            }
            let rest = columns.as_slice();
            let mut pairs = rest.chunks_exact(2);
            for pair in &mut pairs {
                self.column_pair(cells, &pair[0], &pair[1], &mut best);
            }
            for column in pairs.remainder() {
                self.column::<false>(cells, column, reset, &mut best);
            }
            // Lanes whose target ended: read their best, then clear it for the next target.
            // SAFETY: both are 32 plain bytes.
            let mut bests = unsafe { std::mem::transmute::<__m256i, [u8; LANES]>(best) };
            for (k, slot) in lanes.iter_mut().enumerate() {
                if let Some(lane) = *slot {
                    if lane.position == lane.len {
                        let score = bests[k] as i32;
                        out[lane.target] = score;
                        if score >= ceiling {
                            saturated.push(lane.target);
                        }
                        bests[k] = 0;
                        *slot = None;
                    }
                }
            }
            // SAFETY: both are 32 plain bytes.
            best = unsafe { std::mem::transmute::<[u8; LANES], __m256i>(bests) };
        }
        saturated
    }

    /// One target column for all lanes: `cells` goes from column `j - 1` to `j`, `best`
    /// takes the column's cells. With `RESET`, lanes set in `reset` start a new target.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn column<const RESET: bool>(
        &self,
        cells: &mut [[__m256i; 2]],
        residues: &[u8; LANES],
        reset: __m256i,
        best: &mut __m256i,
    ) {
        // SAFETY: both are 32 plain bytes.
        let residues = unsafe { std::mem::transmute::<[u8; LANES], __m256i>(*residues) };
        // Codes 0–15 index the first table (bit 7 clear), 16–20 the second; a set bit 7
        // makes `vpshufb` give 0, so the two lookups can be or-ed.
        let index_low = _mm256_adds_epu8(residues, _mm256_set1_epi8(0x70));
        let index_high = _mm256_sub_epi8(residues, _mm256_set1_epi8(16));
        let bias = _mm256_set1_epi8(self.bias as i8);
        let open_extend = _mm256_set1_epi8(self.open_extend as i8);
        let extend = _mm256_set1_epi8(self.extend as i8);
        let zero = _mm256_setzero_si256();
        let mut diagonal = zero; // H(i - 1, j - 1)
        let mut f = zero; // F(i, j)
        let mut column_best = *best;
        for (cell, table) in cells.iter_mut().zip(&self.tables) {
            let [mut left, mut e] = *cell;
            if RESET {
                left = _mm256_andnot_si256(reset, left);
                e = _mm256_andnot_si256(reset, e);
            }
            let score = _mm256_or_si256(
                _mm256_shuffle_epi8(table[0], index_low),
                _mm256_shuffle_epi8(table[1], index_high),
            );
            let mut h = _mm256_subs_epu8(_mm256_adds_epu8(diagonal, score), bias);
            h = _mm256_max_epu8(h, e);
            h = _mm256_max_epu8(h, f);
            column_best = _mm256_max_epu8(column_best, h);
            let gap = _mm256_subs_epu8(h, open_extend);
            *cell = [h, _mm256_max_epu8(_mm256_subs_epu8(e, extend), gap)];
            f = _mm256_max_epu8(_mm256_subs_epu8(f, extend), gap);
            diagonal = left;
        }
        *best = column_best;
    }

    /// Two target columns at once (no lane starting a target): H and E go through memory
    /// once per two columns.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn column_pair(
        &self,
        cells: &mut [[__m256i; 2]],
        first: &[u8; LANES],
        second: &[u8; LANES],
        best: &mut __m256i,
    ) {
        // SAFETY: both are 32 plain bytes.
        let (first, second) = unsafe {
            (
                std::mem::transmute::<[u8; LANES], __m256i>(*first),
                std::mem::transmute::<[u8; LANES], __m256i>(*second),
            )
        };
        let sixteen = _mm256_set1_epi8(16);
        let seventy = _mm256_set1_epi8(0x70);
        let (low0, high0) = (
            _mm256_adds_epu8(first, seventy),
            _mm256_sub_epi8(first, sixteen),
        );
        let (low1, high1) = (
            _mm256_adds_epu8(second, seventy),
            _mm256_sub_epi8(second, sixteen),
        );
        let bias = _mm256_set1_epi8(self.bias as i8);
        let open_extend = _mm256_set1_epi8(self.open_extend as i8);
        let extend = _mm256_set1_epi8(self.extend as i8);
        let zero = _mm256_setzero_si256();
        let (mut diagonal0, mut diagonal1) = (zero, zero);
        let (mut f0, mut f1) = (zero, zero);
        let mut column_best = *best;
        for (cell, table) in cells.iter_mut().zip(&self.tables) {
            let [left, e0] = *cell;
            let score0 = _mm256_or_si256(
                _mm256_shuffle_epi8(table[0], low0),
                _mm256_shuffle_epi8(table[1], high0),
            );
            let score1 = _mm256_or_si256(
                _mm256_shuffle_epi8(table[0], low1),
                _mm256_shuffle_epi8(table[1], high1),
            );
            let mut h0 = _mm256_subs_epu8(_mm256_adds_epu8(diagonal0, score0), bias);
            h0 = _mm256_max_epu8(h0, e0);
            h0 = _mm256_max_epu8(h0, f0);
            let gap0 = _mm256_subs_epu8(h0, open_extend);
            let e1 = _mm256_max_epu8(_mm256_subs_epu8(e0, extend), gap0);
            f0 = _mm256_max_epu8(_mm256_subs_epu8(f0, extend), gap0);
            diagonal0 = left;

            let mut h1 = _mm256_subs_epu8(_mm256_adds_epu8(diagonal1, score1), bias);
            h1 = _mm256_max_epu8(h1, e1);
            h1 = _mm256_max_epu8(h1, f1);
            column_best = _mm256_max_epu8(column_best, _mm256_max_epu8(h0, h1));
            let gap1 = _mm256_subs_epu8(h1, open_extend);
            *cell = [h1, _mm256_max_epu8(_mm256_subs_epu8(e1, extend), gap1)];
            f1 = _mm256_max_epu8(_mm256_subs_epu8(f1, extend), gap1);
            diagonal1 = h0;
        }
        *best = column_best;
    }
}
