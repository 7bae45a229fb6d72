//! Inter-sequence best cells in 32 unsigned `u16` lanes (SWIPE, as [`super::batch`], on
//! AVX-512BW): for each of many targets the best local score and the first cell that reaches
//! it (in target order, then query order), the cell the striped kernel finds one target at a
//! time. On homologs the striped kernel's lazy-F loop runs long (about 1.6 GCUPS against 5 on
//! unrelated targets); these lanes never wait on each other.
//!
//! The search's hits are traced in groups through it: one run finds their end cells and keeps
//! each cell's traceback flags, and the walk from the end back to a cell where the alignment
//! may start ([`Profile::path`]) is the alignment, so neither a start pass nor a separate
//! traceback runs. The walk knows each cell's value from the end's score and the path's
//! scores, so a start (a match after a cell of 0: a cell whose value is its match score) needs
//! no flag of its own. Among equal-scoring paths the walk starts as soon as it may, takes a gap
//! before a match (an insertion before a deletion) and extends a gap rather than opening one,
//! which places gaps toward the alignment's end; the one-target passes take the start nearest
//! the end, so where ties meet the two may report different alignments of the same score and
//! end.
//!
//! Arithmetic as in [`super::batch`]: `H = max((H_diag + (score + bias)) -| bias, E, F -|
//! close)` with saturating unsigned lanes, so local alignment's `max(0, ·)` comes free; a best
//! cell at [`Profile::ceiling`] may have saturated, and the caller falls back.

use std::arch::x86_64::*;

use super::gaps::PositionGaps;
use super::traceback::{FROM_DIAGONAL, FROM_E, FROM_F};
use super::{AlignOp, LocalScore};
use crate::matrix::Pssm;

/// Lanes: one target each.
pub(super) const LANES: usize = 32;

/// Traceback flags: whether the E of the next column, or the F of the next row, extends a gap
/// rather than opening one.
const NEXT_E_EXTENDS: u8 = 4;
const NEXT_F_EXTENDS: u8 = 8;

/// One vector's lanes, aligned for full-width loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct Words([u16; LANES]);

impl Words {
    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn load(&self) -> __m512i {
        // SAFETY: 64 aligned bytes.
        unsafe { _mm512_load_si512(self.0.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn of(v: __m512i) -> Words {
        let mut w = Words([0; LANES]);
        // SAFETY: 64 aligned bytes.
        unsafe { _mm512_store_si512(w.0.as_mut_ptr().cast(), v) };
        w
    }
}

/// One target's run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Job<'t> {
    /// Residue codes below `ALPHABET_SIZE`, fewer than `u16::MAX`.
    pub target: &'t [u8],
    /// A score known to be the best: the lane stops at the first cell that reaches it.
    pub stop_at: Option<i32>,
}

/// The query in 16-bit lanes: per position its biased scores by residue code (a `vpermw`
/// table) and its gap costs.
#[derive(Debug, Clone)]
pub(super) struct Profile {
    tables: Vec<Words>,
    /// Per position: opening and first extension of an insertion after it, of a deletion
    /// starting at the next position, and closing a deletion that ends at it; in every lane,
    /// as the kernel's broadcasts would cost a shuffle each (the shuffle port is its
    /// bottleneck).
    gaps: Vec<[Words; 3]>,
    bias: u16,
    extend: u16,
}

/// Per-thread cells: H and E of one column, per query position; and the last run's flags.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    cells: Vec<[Words; 2]>,
    flags: FlagSteps,
    /// Per job of a traced run: its lane and the step of its first column.
    traced: Vec<Option<(usize, usize)>>,
}

/// Entries of one block of a run's flags (one entry per query position and column step):
/// 1 MiB, whatever the query's length, so that a block serves every later run of the thread.
const BLOCK_ENTRIES: usize = 1 << 16;

/// A run's flags: per column step, per query position, four lane masks (a bit per lane: H
/// equals E, H equals the closed F, next E extends, next F extends), as the kernel's compares
/// give them. Kept in blocks of [`BLOCK_ENTRIES`] (as many whole steps as fit), so that they
/// grow without copying and are reused from run to run: blocks sized by steps were
/// reallocated, and copied, whenever a longer query came.
#[derive(Debug, Default)]
struct FlagSteps {
    blocks: Vec<Vec<FlagMasks>>,
    steps: usize,
    rows: usize,
    /// Whole steps per block for this run's rows.
    steps_per_block: usize,
}

/// One cell's flags for all lanes (see [`FlagSteps`]).
type FlagMasks = [u32; 4];

impl FlagSteps {
    fn clear(&mut self, rows: usize) {
        (self.steps, self.rows) = (0, rows);
        self.steps_per_block = (BLOCK_ENTRIES / rows.max(1)).max(1);
    }

    /// The next step's flags, one entry per query position (each written by the kernel).
    fn push(&mut self) -> &mut [FlagMasks] {
        let (block, at) = (
            self.steps / self.steps_per_block,
            self.steps % self.steps_per_block,
        );
        if block == self.blocks.len() {
            self.blocks
                .push(Vec::with_capacity(BLOCK_ENTRIES.max(self.rows)));
        }
        let block = &mut self.blocks[block];
        let used = self.steps_per_block * self.rows;
        if block.len() < used {
            block.resize(used, [0; 4]);
        }
        self.steps += 1;
        &mut block[at * self.rows..][..self.rows]
    }

    /// One lane's flags of a cell, as a byte of [`FROM_E`] and [`FROM_F`] (both when H equals
    /// both), [`NEXT_E_EXTENDS`] and [`NEXT_F_EXTENDS`].
    fn get(&self, step: usize, row: usize, lane: usize) -> u8 {
        let block = &self.blocks[step / self.steps_per_block];
        let masks = block[(step % self.steps_per_block) * self.rows + row];
        let bit = |k: usize, flag: u8| ((masks[k] >> lane) & 1) as u8 * flag;
        bit(0, FROM_E) | bit(1, FROM_F) | bit(2, NEXT_E_EXTENDS) | bit(3, NEXT_F_EXTENDS)
    }
}

/// Where a lane stands.
#[derive(Debug, Clone, Copy)]
struct Lane {
    job: usize,
    position: usize,
}

impl Profile {
    /// The profile, or `None` without AVX-512BW and AVX-512VL or for a query that is empty or
    /// whose positions do not fit the lanes.
    pub(super) fn new(pssm: &Pssm, gaps: &PositionGaps) -> Option<Profile> {
        let fits = (1..u16::MAX as usize).contains(&pssm.len());
        if !fits || !is_x86_feature_detected!("avx512bw") || !is_x86_feature_detected!("avx512vl") {
            return None;
        }
        let bias = pssm.score_bias();
        let tables = pssm
            .rows
            .iter()
            .map(|row| {
                Words(std::array::from_fn(|c| {
                    row.get(c).map_or(0, |&s| (s as i32 + bias) as u16)
                }))
            })
            .collect();
        let saturate = |cost: i32| cost.min(u16::MAX as i32) as u16;
        let extend = gaps.extend;
        let gaps = (0..pssm.len())
            .map(|i| {
                [
                    saturate(gaps.insertion_open[i] + extend),
                    gaps.deletion_open
                        .get(i + 1)
                        .map_or(u16::MAX, |&c| saturate(c + extend)),
                    saturate(gaps.deletion_close[i]),
                ]
                .map(|cost| Words([cost; LANES]))
            })
            .collect();
        Some(Profile {
            tables,
            gaps,
            bias: bias as u16,
            extend: saturate(extend),
        })
    }

    /// The lowest best score that may have saturated.
    pub(super) fn ceiling(&self) -> i32 {
        u16::MAX as i32 - self.bias as i32
    }

    /// Each job's best score and its first cell (`None`: no cell above 0), keeping every
    /// cell's traceback flags in `buffers` for [`Buffers::path`] (four bits per cell and lane:
    /// keep the jobs' cells within bounds). A score at or above [`Profile::ceiling`] may be a
    /// saturated lower bound.
    pub(super) fn traced_cells(
        &self,
        jobs: &[Job],
        buffers: &mut Buffers,
    ) -> Vec<Option<LocalScore>> {
        debug_assert!(jobs.iter().all(|j| j.target.len() < u16::MAX as usize));
        let mut out = vec![None; jobs.len()];
        buffers.flags.clear(self.tables.len());
        buffers.traced.clear();
        buffers.traced.resize(jobs.len(), None);
        // SAFETY: the CPU has AVX-512BW and AVX-512VL, checked when the profile was made.
        unsafe { self.kernel(jobs, buffers, &mut out) };
        out
    }

    #[target_feature(enable = "avx512bw,avx512vl")]
    fn kernel(&self, jobs: &[Job], buffers: &mut Buffers, out: &mut [Option<LocalScore>]) {
        let zero = _mm512_setzero_si512();
        let bias = _mm512_set1_epi16(self.bias as i16);
        let extend = _mm512_set1_epi16(self.extend as i16);
        let one = _mm512_set1_epi16(1);
        let m = self.tables.len();
        let Buffers {
            cells,
            flags,
            traced,
        } = buffers;
        cells.clear();
        cells.resize(m, [Words([0; LANES]); 2]);

        // Longest first, as in the batch kernel: the last lanes to run alone are short ones.
        let mut order: Vec<usize> = (0..jobs.len())
            .filter(|&k| !jobs[k].target.is_empty())
            .collect();
        order.sort_unstable_by_key(|&k| std::cmp::Reverse(jobs[k].target.len()));
        let mut queue = order.into_iter();
        let mut lanes: [Option<Lane>; LANES] = [None; LANES];
        // Per lane: best score, its row, its column, the current column and the stopping
        // score (u16::MAX: none; a saturated lane stops there too).
        let (mut best, mut best_row, mut best_column, mut column) = (zero, zero, zero, zero);
        let mut stops = Words([u16::MAX; LANES]);
        let mut residues = Words([0; LANES]);
        loop {
            let mut reset: __mmask32 = 0;
            for (k, lane) in lanes.iter_mut().enumerate() {
                if lane.is_none() {
                    if let Some(job) = queue.next() {
                        *lane = Some(Lane { job, position: 0 });
                        traced[job] = Some((k, flags.steps));
                        stops.0[k] = jobs[job]
                            .stop_at
                            .map_or(u16::MAX, |s| s.clamp(1, u16::MAX as i32) as u16);
                        reset |= 1 << k;
                    }
                }
            }
            let active = lanes
                .iter()
                .enumerate()
                .fold(0, |mask: __mmask32, (k, lane)| {
                    mask | (lane.is_some() as u32) << k
                });
            if active == 0 {
                break;
            }
            // Lanes starting a target, and idle ones (never stopping), from 0.
            let keep = active & !reset;
            best = _mm512_maskz_mov_epi16(keep, best);
            best_row = _mm512_maskz_mov_epi16(keep, best_row);
            best_column = _mm512_maskz_mov_epi16(keep, best_column);
            column = _mm512_maskz_mov_epi16(keep, column);
            let stop = stops.load();
            // Columns until a lane's target ends or a lane reaches its stopping score.
            let chunk = lanes
                .iter()
                .flatten()
                .map(|lane| jobs[lane.job].target.len() - lane.position)
                .min()
                .expect("a lane is running");
            let mut done_at_stop: __mmask32 = 0;
            let mut ran = 0;
            while ran < chunk {
                for (k, lane) in lanes.iter().enumerate() {
                    if let Some(lane) = lane {
                        residues.0[k] = jobs[lane.job].target[lane.position + ran] as u16;
                    }
                }
                let codes = residues.load();
                let reset_now = if ran == 0 { reset } else { 0 };
                let improved = self.column(
                    cells,
                    flags.push(),
                    codes,
                    reset_now,
                    [bias, extend],
                    &mut best,
                    &mut best_row,
                );
                best_column = _mm512_mask_mov_epi16(best_column, improved, column);
                column = _mm512_add_epi16(column, one);
                ran += 1;
                done_at_stop = _mm512_cmpge_epu16_mask(best, stop);
                if done_at_stop != 0 {
                    break;
                }
            }
            let (scores, rows, columns) =
                (Words::of(best), Words::of(best_row), Words::of(best_column));
            for (k, slot) in lanes.iter_mut().enumerate() {
                let Some(lane) = slot.as_mut() else { continue };
                lane.position += ran;
                let stopped = done_at_stop & (1 << k) != 0;
                if stopped || lane.position == jobs[lane.job].target.len() {
                    out[lane.job] = (scores.0[k] > 0).then(|| LocalScore {
                        score: scores.0[k] as i32,
                        query_end: rows.0[k] as usize,
                        target_end: columns.0[k] as usize,
                    });
                    *slot = None;
                    stops.0[k] = u16::MAX;
                }
            }
        }
    }

    /// One target column for all lanes (`reset`: lanes whose target starts here, H and E
    /// from 0); raises `best` and its row, returning the lanes whose best rose. Each cell's
    /// flags go to `flags` (whether H equals E and the closed F; whether the next E and F
    /// extend: on ties they do).
    #[inline]
    #[target_feature(enable = "avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    fn column(
        &self,
        cells: &mut [[Words; 2]],
        flags: &mut [FlagMasks],
        codes: __m512i,
        reset: __mmask32,
        [bias, extend]: [__m512i; 2],
        best: &mut __m512i,
        best_row: &mut __m512i,
    ) -> __mmask32 {
        let keep = !reset;
        let mut diagonal = _mm512_setzero_si512(); // H(i - 1, j - 1)
        let mut f = _mm512_setzero_si512(); // F(i, j)
        let (mut running, mut running_row) = (*best, *best_row);
        let (mut row, one) = (_mm512_setzero_si512(), _mm512_set1_epi16(1));
        for (((cell, table), costs), flags) in cells
            .iter_mut()
            .zip(&self.tables)
            .zip(&self.gaps)
            .zip(flags)
        {
            // SAFETY: `Words` is 64-byte aligned.
            let (left, e, scores) = unsafe {
                (
                    _mm512_maskz_loadu_epi16(keep, cell[0].0.as_ptr().cast()),
                    _mm512_maskz_loadu_epi16(keep, cell[1].0.as_ptr().cast()),
                    _mm512_load_si512(table.0.as_ptr().cast()),
                )
            };
            let score = _mm512_permutexvar_epi16(codes, scores);
            let [insertion, next_deletion, close] = costs.map(|c| c.load());
            let matched = _mm512_subs_epu16(_mm512_adds_epu16(diagonal, score), bias);
            let closed = _mm512_subs_epu16(f, close);
            let gapped = _mm512_max_epu16(e, closed);
            let h = _mm512_max_epu16(matched, gapped);
            let higher = _mm512_cmpgt_epu16_mask(h, running);
            running = _mm512_max_epu16(running, h);
            running_row = _mm512_mask_mov_epi16(running_row, higher, row);
            row = _mm512_add_epi16(row, one);
            let (e_extend, e_open) = (
                _mm512_subs_epu16(e, extend),
                _mm512_subs_epu16(h, insertion),
            );
            let (f_extend, f_open) = (
                _mm512_subs_epu16(f, extend),
                _mm512_subs_epu16(h, next_deletion),
            );
            // SAFETY: as above.
            unsafe {
                _mm512_store_si512(cell[0].0.as_mut_ptr().cast(), h);
                _mm512_store_si512(
                    cell[1].0.as_mut_ptr().cast(),
                    _mm512_max_epu16(e_extend, e_open),
                );
            }
            *flags = [
                _mm512_cmpeq_epu16_mask(h, e),
                _mm512_cmpeq_epu16_mask(h, closed),
                _mm512_cmpge_epu16_mask(e_extend, e_open),
                _mm512_cmpge_epu16_mask(f_extend, f_open),
            ];
            f = _mm512_max_epu16(f_extend, f_open);
            diagonal = left;
        }
        let improved = _mm512_cmpgt_epu16_mask(running, *best);
        *best = running;
        *best_row = running_row;
        improved
    }

    /// Query position `r`'s score against residue `code` (unbiased).
    fn score(&self, r: usize, code: u8) -> i32 {
        i32::from(self.tables[r].0[code as usize]) - i32::from(self.bias)
    }

    /// The alignment of `buffers`' last run's job `job` (target `target`) ending at its best
    /// cell `end`: its first (query, target) cell and its columns, walked back from the end
    /// along the flags to the nearest start, with each cell's value (the kernel's arithmetic
    /// backwards from the end's score). On ties: a start, then an insertion, then a deletion,
    /// then a match; a gap extends rather than opens. `None` if the walk leaves the job's
    /// target (it cannot when `end` is the job's best below [`Profile::ceiling`]).
    pub(super) fn path(
        &self,
        buffers: &Buffers,
        target: &[u8],
        job: usize,
        end: LocalScore,
    ) -> Option<((usize, usize), Vec<AlignOp>)> {
        let (lane, first_step) = buffers.traced[job]?;
        let flag = |r: usize, c: usize| buffers.flags.get(first_step + c, r, lane);
        let cost = |r: usize, k: usize| i32::from(self.gaps[r][k].0[0]);
        let extend = i32::from(self.extend);
        let (mut r, mut c) = (end.query_end, end.target_end);
        let mut ops = Vec::with_capacity(r + c + 2);
        // Which matrix the walk is in (H: FROM_DIAGONAL, E or F), and the cell's value there.
        let (mut state, mut value) = (FROM_DIAGONAL, end.score);
        loop {
            match state {
                FROM_E => {
                    ops.push(AlignOp::Insertion);
                    c = c.checked_sub(1)?;
                    if flag(r, c) & NEXT_E_EXTENDS != 0 {
                        value += extend;
                    } else {
                        (state, value) = (FROM_DIAGONAL, value + cost(r, 0));
                    }
                }
                FROM_F => {
                    ops.push(AlignOp::Deletion);
                    r = r.checked_sub(1)?;
                    if flag(r, c) & NEXT_F_EXTENDS != 0 {
                        value += extend;
                    } else {
                        (state, value) = (FROM_DIAGONAL, value + cost(r, 1));
                    }
                }
                _ => {
                    let score = self.score(r, *target.get(c)?);
                    let flags = flag(r, c);
                    if value == score {
                        ops.push(AlignOp::Match);
                        ops.reverse();
                        return Some(((r, c), ops));
                    } else if flags & FROM_E != 0 {
                        state = FROM_E;
                    } else if flags & FROM_F != 0 {
                        (state, value) = (FROM_F, value + cost(r, 2));
                    } else {
                        ops.push(AlignOp::Match);
                        value -= score;
                        r = r.checked_sub(1)?;
                        c = c.checked_sub(1)?;
                    }
                }
            }
        }
    }
}
