//! Inter-sequence Smith–Waterman score kernel (SWIPE, Rognes 2011): 64 targets at once on
//! AVX-512BW CPUs, 32 on AVX2 ones, one per unsigned byte lane, the query walked position by
//! position for each target column, so lanes never depend on each other and there is no
//! lazy-F loop. One generic kernel over [`ByteLanes`]; the instruction set is picked at run
//! time.
//!
//! - Scores: per query position two tables (codes 0–15 and 16–20, biased by `bias` so they
//!   are unsigned, each repeated in every 128-bit part), looked up per lane by the lanes'
//!   current residues with two `vpshufb` and an `or`.
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

use super::gaps::PositionGaps;
use crate::matrix::Pssm;

/// Most lanes (AVX-512: 64 bytes).
const MAX_LANES: usize = 64;

/// What one residue of a target scored alone in the striped kernel costs, in columns of the
/// lanes (each column one residue of every lane's target).
const STRIPED_COLUMN_COST: f64 = 0.125;

/// Most columns transposed at once.
const MAX_CHUNK: usize = 256;

/// One vector's bytes, aligned for full-width loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct Block([u8; MAX_LANES]);

impl Default for Block {
    fn default() -> Block {
        Block([0; MAX_LANES])
    }
}

/// A vector of unsigned byte lanes: what the kernel needs of AVX2 and AVX-512BW. Every
/// method is an intrinsic of its instruction set, so callers are `unsafe` and run only
/// inside a function compiled with that set (the kernels' entry points below).
trait ByteLanes: Copy {
    const LANES: usize;
    /// The first `LANES` bytes of `b`.
    unsafe fn load(b: &Block) -> Self;
    unsafe fn store(self, b: &mut Block);
    unsafe fn splat(x: u8) -> Self;
    /// Saturating add and subtract, wrapping subtract.
    unsafe fn adds(self, o: Self) -> Self;
    unsafe fn subs(self, o: Self) -> Self;
    unsafe fn wrapping_sub(self, o: Self) -> Self;
    unsafe fn max(self, o: Self) -> Self;
    unsafe fn or(self, o: Self) -> Self;
    /// `!self & o`.
    unsafe fn and_not(self, o: Self) -> Self;
    /// `vpshufb`: per 128-bit part, `self[idx & 15]`, or 0 where `idx` has bit 7 set.
    unsafe fn lookup(self, idx: Self) -> Self;
}

#[derive(Clone, Copy)]
struct Avx2(__m256i);

impl ByteLanes for Avx2 {
    const LANES: usize = 32;
    #[inline(always)]
    unsafe fn load(b: &Block) -> Self {
        Avx2(_mm256_load_si256(b.0.as_ptr().cast()))
    }
    #[inline(always)]
    unsafe fn store(self, b: &mut Block) {
        _mm256_store_si256(b.0.as_mut_ptr().cast(), self.0)
    }
    #[inline(always)]
    unsafe fn splat(x: u8) -> Self {
        Avx2(_mm256_set1_epi8(x as i8))
    }
    #[inline(always)]
    unsafe fn adds(self, o: Self) -> Self {
        Avx2(_mm256_adds_epu8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn subs(self, o: Self) -> Self {
        Avx2(_mm256_subs_epu8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn wrapping_sub(self, o: Self) -> Self {
        Avx2(_mm256_sub_epi8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        Avx2(_mm256_max_epu8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn or(self, o: Self) -> Self {
        Avx2(_mm256_or_si256(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn and_not(self, o: Self) -> Self {
        Avx2(_mm256_andnot_si256(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn lookup(self, idx: Self) -> Self {
        Avx2(_mm256_shuffle_epi8(self.0, idx.0))
    }
}

#[derive(Clone, Copy)]
struct Avx512(__m512i);

impl ByteLanes for Avx512 {
    const LANES: usize = 64;
    #[inline(always)]
    unsafe fn load(b: &Block) -> Self {
        Avx512(_mm512_load_si512(b.0.as_ptr().cast()))
    }
    #[inline(always)]
    unsafe fn store(self, b: &mut Block) {
        _mm512_store_si512(b.0.as_mut_ptr().cast(), self.0)
    }
    #[inline(always)]
    unsafe fn splat(x: u8) -> Self {
        Avx512(_mm512_set1_epi8(x as i8))
    }
    #[inline(always)]
    unsafe fn adds(self, o: Self) -> Self {
        Avx512(_mm512_adds_epu8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn subs(self, o: Self) -> Self {
        Avx512(_mm512_subs_epu8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn wrapping_sub(self, o: Self) -> Self {
        Avx512(_mm512_sub_epi8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        Avx512(_mm512_max_epu8(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn or(self, o: Self) -> Self {
        Avx512(_mm512_or_si512(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn and_not(self, o: Self) -> Self {
        Avx512(_mm512_andnot_si512(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn lookup(self, idx: Self) -> Self {
        Avx512(_mm512_shuffle_epi8(self.0, idx.0))
    }
}

/// The query's score tables for the batch kernel.
#[derive(Debug, Clone)]
pub(super) struct Profile {
    /// Per query position: biased scores of codes 0..16 and 16..21 (the rest 0), each
    /// repeated in every 16 bytes.
    tables: Vec<[Block; 2]>,
    /// Per query position: the opening and first extension of an insertion after it and of a
    /// deletion starting at the next position (a forward scan's, which closes deletions at no
    /// cost).
    gaps: Vec<[u8; 2]>,
    /// Those costs when every position has the same (the last position's deletion aside,
    /// whose F no row reads): a plain query's, kept in registers.
    uniform: Option<[u8; 2]>,
    bias: u8,
    extend: u8,
    /// Whether this CPU runs the 64-lane kernel.
    avx512: bool,
}

/// The kernel's state: H(i, j - 1) and E(i, j) per query position, and the transposed
/// residues of a chunk.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    cells: Vec<[Block; 2]>,
    residues: Vec<Block>,
}

/// Where a lane stands: the index of its target, the next position and the target's length.
#[derive(Debug, Clone, Copy)]
struct Lane {
    target: usize,
    position: usize,
    len: usize,
}

impl Profile {
    pub(super) fn new(pssm: &Pssm, gaps: &PositionGaps) -> Profile {
        let bias = pssm.score_bias();
        let biased = |s: i8| (s as i32 + bias) as u8;
        let tables = pssm
            .rows
            .iter()
            .map(|row| {
                let low = Block(std::array::from_fn(|k| biased(row[k % 16])));
                let high = Block(std::array::from_fn(|k| {
                    row.get(16 + k % 16).map_or(0, |&s| biased(s))
                }));
                [low, high]
            })
            .collect();
        assert!(
            gaps.deletion_close.iter().all(|&c| c == 0),
            "the batch kernel scans forward only"
        );
        let saturate = |cost: i32| cost.min(u8::MAX as i32) as u8;
        let extend = gaps.extend;
        let position_gaps: Vec<[u8; 2]> = (0..pssm.len())
            .map(|i| {
                [
                    saturate(gaps.insertion_open[i] + extend),
                    gaps.deletion_open
                        .get(i + 1)
                        .map_or(u8::MAX, |&c| saturate(c + extend)),
                ]
            })
            .collect();
        let uniform = match position_gaps.split_last() {
            Some((last, [first, rest @ ..])) if rest.iter().all(|g| g == first) => {
                (last[0] == first[0]).then_some(*first)
            }
            Some((&last, [])) => Some(last),
            _ => None,
        };
        Profile {
            tables,
            gaps: position_gaps,
            uniform,
            bias: bias as u8,
            extend: saturate(extend),
            avx512: is_x86_feature_detected!("avx512bw"),
        }
    }

    /// Runs the 32-lane AVX2 kernel even on an AVX-512 CPU (tests cover both).
    #[cfg(test)]
    pub(super) fn use_avx2(&mut self) {
        self.avx512 = false;
    }

    /// The lowest best score that may have saturated: such targets need rescoring.
    pub(super) fn ceiling(&self) -> i32 {
        u8::MAX as i32 - self.bias as i32
    }

    /// How many of the longest targets (`lengths` in decreasing order) to score apart, one at a
    /// time in the striped kernel: the lanes run as long as their longest target, so a target
    /// far longer than the others' share of the lanes would keep the lanes going for it alone.
    /// The count that minimises the lanes' columns plus the striped kernel's cost of those
    /// apart, [`STRIPED_COLUMN_COST`] lane columns per residue.
    pub(super) fn lone_targets(&self, lengths: &[usize]) -> usize {
        let lanes = if self.avx512 {
            Avx512::LANES
        } else {
            Avx2::LANES
        };
        let mut rest: usize = lengths.iter().sum();
        let (mut apart, mut best, mut best_cost) = (0.0, 0, f64::INFINITY);
        for (k, &len) in lengths.iter().enumerate() {
            let cost = len.max(rest.div_ceil(lanes)) as f64 + apart * STRIPED_COLUMN_COST;
            if cost < best_cost {
                (best, best_cost) = (k, cost);
            }
            rest -= len;
            apart += len as f64;
        }
        if apart * STRIPED_COLUMN_COST < best_cost {
            best = lengths.len();
        }
        best
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
        if self.avx512 {
            // SAFETY: the CPU has AVX-512BW, checked when the profile was made.
            unsafe { self.kernel_avx512(targets, buffers, out) }
        } else {
            // SAFETY: this module is compiled only when AVX2 is enabled for the whole build.
            unsafe { self.kernel_avx2(targets, buffers, out) }
        }
    }

    #[target_feature(enable = "avx2")]
    fn kernel_avx2<T: AsRef<[u8]>>(
        &self,
        targets: &[T],
        buffers: &mut Buffers,
        out: &mut [i32],
    ) -> Vec<usize> {
        // SAFETY: AVX2 is enabled in this function.
        unsafe { self.kernel::<Avx2, T>(targets, buffers, out) }
    }

    #[target_feature(enable = "avx512bw")]
    fn kernel_avx512<T: AsRef<[u8]>>(
        &self,
        targets: &[T],
        buffers: &mut Buffers,
        out: &mut [i32],
    ) -> Vec<usize> {
        // SAFETY: AVX-512BW is enabled in this function.
        unsafe { self.kernel::<Avx512, T>(targets, buffers, out) }
    }

    /// The kernel on `V`'s lanes; inlined into an entry point that enables `V`'s set.
    #[inline(always)]
    unsafe fn kernel<V: ByteLanes, T: AsRef<[u8]>>(
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

        let Buffers { cells, residues } = buffers;
        cells.clear();
        cells.resize(self.tables.len(), [Block::default(); 2]);
        residues.clear();
        residues.resize(MAX_CHUNK, Block::default());
        let mut lanes: [Option<Lane>; MAX_LANES] = [None; MAX_LANES];
        let lanes = &mut lanes[..V::LANES];
        let mut best = Block::default();
        let ceiling = self.ceiling();
        loop {
            // Refill lanes whose target ended; their first column starts from H = E = 0.
            let mut reset = Block::default();
            let mut any_reset = false;
            for (k, lane) in lanes.iter_mut().enumerate() {
                if lane.is_none() {
                    if let Some(target) = queue.next() {
                        *lane = Some(Lane {
                            target,
                            position: 0,
                            len: targets[target].as_ref().len(),
                        });
                        reset.0[k] = u8::MAX;
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
                        column.0[k] = code;
                    }
                    lane.position += chunk;
                }
            }
            let mut running = V::load(&best);
            let columns = &residues[..chunk];
            let reset = any_reset.then(|| V::load(&reset));
            match self.uniform {
                Some(costs) => self.columns::<V, true>(cells, columns, reset, &mut running, costs),
                None => self.columns::<V, false>(cells, columns, reset, &mut running, [0; 2]),
            }
            // Lanes whose target ended: read their best, then clear it for the next target.
            running.store(&mut best);
            for (k, slot) in lanes.iter_mut().enumerate() {
                if let Some(lane) = *slot {
                    if lane.position == lane.len {
                        let score = best.0[k] as i32;
                        out[lane.target] = score;
                        if score >= ceiling {
                            saturated.push(lane.target);
                        }
                        best.0[k] = 0;
                        *slot = None;
                    }
                }
            }
        }
        saturated
    }

    /// A chunk of target columns for all lanes (`reset`: lanes starting a new target in the
    /// first column). `UNIFORM`: every position's gap costs are `uniform`.
    #[inline(always)]
    unsafe fn columns<V: ByteLanes, const UNIFORM: bool>(
        &self,
        cells: &mut [[Block; 2]],
        columns: &[Block],
        reset: Option<V>,
        best: &mut V,
        uniform: [u8; 2],
    ) {
        let mut columns = columns.iter();
        if let Some(reset) = reset {
            let first = columns.next().expect("chunks are non-empty");
            self.column::<V, true, UNIFORM>(cells, first, reset, best, uniform);
        }
        let mut pairs = columns.as_slice().chunks_exact(2);
        for pair in &mut pairs {
            self.column_pair::<V, UNIFORM>(cells, &pair[0], &pair[1], best, uniform);
        }
        for column in pairs.remainder() {
            self.column::<V, false, UNIFORM>(cells, column, V::splat(0), best, uniform);
        }
    }

    /// One target column for all lanes: `cells` goes from column `j - 1` to `j`, `best`
    /// takes the column's cells. With `RESET`, lanes set in `reset` start a new target.
    #[inline(always)]
    unsafe fn column<V: ByteLanes, const RESET: bool, const UNIFORM: bool>(
        &self,
        cells: &mut [[Block; 2]],
        residues: &Block,
        reset: V,
        best: &mut V,
        uniform: [u8; 2],
    ) {
        let residues = V::load(residues);
        // Codes 0–15 index the first table (bit 7 clear), 16–20 the second; a set bit 7
        // makes `vpshufb` give 0, so the two lookups can be or-ed.
        let index_low = residues.adds(V::splat(0x70));
        let index_high = residues.wrapping_sub(V::splat(16));
        let bias = V::splat(self.bias);
        let extend = V::splat(self.extend);
        let uniform = uniform.map(|c| V::splat(c));
        let mut diagonal = V::splat(0); // H(i - 1, j - 1)
        let mut f = V::splat(0); // F(i, j)
        let mut column_best = *best;
        for ((cell, table), costs) in cells.iter_mut().zip(&self.tables).zip(&self.gaps) {
            let [insertion, next_deletion] = if UNIFORM {
                uniform
            } else {
                costs.map(|c| V::splat(c))
            };
            let (mut left, mut e) = (V::load(&cell[0]), V::load(&cell[1]));
            if RESET {
                left = reset.and_not(left);
                e = reset.and_not(e);
            }
            let score = V::load(&table[0])
                .lookup(index_low)
                .or(V::load(&table[1]).lookup(index_high));
            let h = diagonal.adds(score).subs(bias).max(e).max(f);
            column_best = column_best.max(h);
            h.store(&mut cell[0]);
            e.subs(extend).max(h.subs(insertion)).store(&mut cell[1]);
            f = f.subs(extend).max(h.subs(next_deletion));
            diagonal = left;
        }
        *best = column_best;
    }

    /// Two target columns at once (no lane starting a target): H and E go through memory
    /// once per two columns.
    #[inline(always)]
    unsafe fn column_pair<V: ByteLanes, const UNIFORM: bool>(
        &self,
        cells: &mut [[Block; 2]],
        first: &Block,
        second: &Block,
        best: &mut V,
        uniform: [u8; 2],
    ) {
        let (first, second) = (V::load(first), V::load(second));
        let (sixteen, seventy) = (V::splat(16), V::splat(0x70));
        let (low0, high0) = (first.adds(seventy), first.wrapping_sub(sixteen));
        let (low1, high1) = (second.adds(seventy), second.wrapping_sub(sixteen));
        let bias = V::splat(self.bias);
        let extend = V::splat(self.extend);
        let uniform = uniform.map(|c| V::splat(c));
        let (mut diagonal0, mut diagonal1) = (V::splat(0), V::splat(0));
        let (mut f0, mut f1) = (V::splat(0), V::splat(0));
        let mut column_best = *best;
        for ((cell, table), costs) in cells.iter_mut().zip(&self.tables).zip(&self.gaps) {
            let [insertion, next_deletion] = if UNIFORM {
                uniform
            } else {
                costs.map(|c| V::splat(c))
            };
            let (left, e0) = (V::load(&cell[0]), V::load(&cell[1]));
            let (t0, t1) = (V::load(&table[0]), V::load(&table[1]));
            let score0 = t0.lookup(low0).or(t1.lookup(high0));
            let score1 = t0.lookup(low1).or(t1.lookup(high1));
            let h0 = diagonal0.adds(score0).subs(bias).max(e0).max(f0);
            let e1 = e0.subs(extend).max(h0.subs(insertion));
            f0 = f0.subs(extend).max(h0.subs(next_deletion));
            diagonal0 = left;

            let h1 = diagonal1.adds(score1).subs(bias).max(e1).max(f1);
            column_best = column_best.max(h0.max(h1));
            h1.store(&mut cell[0]);
            e1.subs(extend).max(h1.subs(insertion)).store(&mut cell[1]);
            f1 = f1.subs(extend).max(h1.subs(next_deletion));
            diagonal1 = h0;
        }
        *best = column_best;
    }
}
