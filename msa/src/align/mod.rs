//! Smith–Waterman local alignment (affine gaps) of a query profile against target sequences.
//!
//! Scoring: `H(i, j) = max(0, H(i-1, j-1) + pssm[i][target[j]], E(i, j), F(i, j))`, a gap of
//! `k` residues costing `open + k * extend` (see [`GapCosts`]), its opening less the PSSM's
//! discount where it has one (a deletion's at its first query position, an insertion's at the
//! query position before it; see `gaps.rs`). `E` is an insertion (a target residue against a
//! gap in the query), `F` a deletion (a query residue against a gap in the target).
//!
//! Scores first, alignments for the hits only, as in MMseqs2 and SSW:
//! - [`QueryProfile::score`]: score and end cell only, Farrar's striped algorithm on AVX2 with
//!   saturating lanes (32 `i8` lanes first, 16 `i16` lanes for scores beyond 126), the striped
//!   profiles built once per query and the buffers kept in a per-thread [`Scratch`], so
//!   scanning a target allocates nothing. A score that reaches `i16::MAX` is recomputed by
//!   [`scalar_score`] in `i32`, so the score is always exact. Without AVX2 at compile time the
//!   scalar code is used.
//! - [`QueryProfile::score_batch`]: scores only, many targets at once: an inter-sequence
//!   kernel (SWIPE: 64 targets in the `u8` lanes of AVX-512BW, 32 with AVX2 only, lanes
//!   refilled as their targets end), targets near the byte ceiling rescored as above, so
//!   again exact. On AVX-512, about 8× the striped kernel's cell rate on a 300-residue query
//!   (51 GCUPS per core), 20× on a 60-residue one (35 GCUPS); the AVX2 kernel on the same
//!   CPU gives 27 and 22.
//!   [`QueryProfile::score_batch_capped`] skips that rescoring when only scores below a cap
//!   need to be exact.
//! - [`QueryProfile::align`] / [`align`]: the alignment itself, for the hits only: an anchored
//!   reverse pass from the end cell finds the start (the score kernel on the reversed prefixes
//!   with AVX2, stopped where it reaches the known score), then a traceback inside that
//!   rectangle. [`QueryProfile::align_batch_hit`] also stops the forward pass where it
//!   reaches the exact score the batch kernel gave.
//! - [`QueryProfile::align_batch_hits`]: the search's hits, 32 at a time in the `u16` lanes of
//!   an inter-sequence kernel that keeps its traceback flags (AVX-512BW), one pass per hit.
//!
//! Positions are 0-based and ends are inclusive: `query_end`/`target_end` name the last aligned
//! cell. Ties between equal maximal cells go to the first in target order, then query order.
//! Residue codes must be below [`ALPHABET_SIZE`] (a larger
//! code panics).

#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
mod batch;
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
mod ends;
mod gaps;
mod scalar;
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
mod striped;
mod traceback;

#[cfg(test)]
mod tests;

use crate::alphabet::ALPHABET_SIZE;
use crate::matrix::{GapCosts, Pssm};
use gaps::PositionGaps;
use scalar::scalar_score_with;

pub use scalar::scalar_score;

/// The best local score and the cell where it ends (0-based, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalScore {
    pub score: i32,
    /// Last aligned query position.
    pub query_end: usize,
    /// Last aligned target position.
    pub target_end: usize,
}

/// One alignment column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignOp {
    /// A query residue against a target residue (identical or not).
    Match,
    /// A target residue against a gap in the query.
    Insertion,
    /// A query residue against a gap in the target.
    Deletion,
}

/// A local alignment: its score, aligned ranges (0-based, inclusive) and columns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alignment {
    pub score: i32,
    pub query_start: usize,
    pub query_end: usize,
    pub target_start: usize,
    pub target_end: usize,
    pub ops: Vec<AlignOp>,
}

impl Alignment {
    /// The alignment of `ops` from `start` (query, target) to `end`'s cell, of `end`'s score.
    fn between(
        (query_start, target_start): (usize, usize),
        end: LocalScore,
        ops: Vec<AlignOp>,
    ) -> Alignment {
        Alignment {
            score: end.score,
            query_start,
            query_end: end.query_end,
            target_start,
            target_end: end.target_end,
            ops,
        }
    }

    /// Number of columns (matches, insertions and deletions).
    pub fn aligned_len(&self) -> usize {
        self.ops.len()
    }

    /// Number of `Match` columns whose two residues are the same code (`query` is the query's
    /// codes, `target` the whole target both as given to the aligner).
    pub fn identities(&self, query: &[u8], target: &[u8]) -> usize {
        self.matched_pairs()
            .filter(|&(i, j)| query[i] == target[j])
            .count()
    }

    /// Each column's query and target positions: both for a match, the target's alone for
    /// an insertion, the query's alone for a deletion.
    pub fn columns(&self) -> impl Iterator<Item = (Option<usize>, Option<usize>)> + '_ {
        let (mut i, mut j) = (self.query_start, self.target_start);
        self.ops.iter().map(move |op| match op {
            AlignOp::Match => {
                (i, j) = (i + 1, j + 1);
                (Some(i - 1), Some(j - 1))
            }
            AlignOp::Insertion => {
                j += 1;
                (None, Some(j - 1))
            }
            AlignOp::Deletion => {
                i += 1;
                (Some(i - 1), None)
            }
        })
    }

    /// The query positions after which the target has inserted residues, one per insertion.
    pub fn inserted_after(&self) -> Vec<usize> {
        let mut positions = Vec::new();
        let mut i = self.query_start;
        let mut previous = AlignOp::Match;
        for &op in &self.ops {
            match op {
                AlignOp::Insertion if previous != AlignOp::Insertion && i > 0 => {
                    positions.push(i - 1)
                }
                AlignOp::Insertion => {}
                AlignOp::Match | AlignOp::Deletion => i += 1,
            }
            previous = op;
        }
        positions
    }

    /// (query position, target position) of the match columns.
    pub fn matched_pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.columns().filter_map(|column| match column {
            (Some(i), Some(j)) => Some((i, j)),
            _ => None,
        })
    }
}

/// Most traceback cells (one byte each) an alignment may need: 64 Mi, e.g. 8 000 × 8 000.
pub const MAX_TRACEBACK_CELLS: usize = 1 << 26;

/// An alignment whose rectangle is too large to trace back within [`MAX_TRACEBACK_CELLS`];
/// its score and end cell ([`QueryProfile::score`]) remain valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "alignment of query {query_start}..={query_end} with target {target_start}..={target_end} \
     is too long to trace back (more than {MAX_TRACEBACK_CELLS} cells)"
)]
pub struct TracebackTooLarge {
    pub query_start: usize,
    pub query_end: usize,
    pub target_start: usize,
    pub target_end: usize,
}

/// A query prepared for scanning many targets: the PSSM, its gap costs at each position (the
/// search's less the PSSM's discounts) and the striped profile.
#[derive(Debug, Clone)]
pub struct QueryProfile {
    pssm: Pssm,
    gaps: PositionGaps,
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    striped: striped::Profile,
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    batch: batch::Profile,
    /// The query in inter-sequence `u16` lanes, for tracing many hits at once (AVX-512BW and
    /// VL only).
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    ends: Option<ends::Profile>,
}

/// Per-thread buffers of the score kernel, reused across targets and queries.
#[derive(Debug, Default)]
pub struct Scratch {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    buffers: striped::Buffers,
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    batch: batch::Buffers,
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    ends: ends::Buffers,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::default()
    }
}

impl QueryProfile {
    /// Prepares `pssm` for scanning. Panics if a gap cost is negative or above `i16::MAX`.
    pub fn new(pssm: &Pssm, gaps: GapCosts) -> QueryProfile {
        let range = 0..=i16::MAX as i32;
        assert!(
            range.contains(&gaps.open) && range.contains(&gaps.extend),
            "gap costs {gaps:?} outside 0..=32767"
        );
        let gaps = PositionGaps::new(pssm, gaps);
        QueryProfile {
            pssm: pssm.clone(),
            #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
            striped: striped::Profile::new(pssm, &gaps),
            #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
            batch: batch::Profile::new(pssm, &gaps),
            #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
            ends: ends::Profile::new(pssm, &gaps),
            gaps,
        }
    }

    /// The same profile on the AVX2 batch kernel, whatever the CPU (tests cover both).
    #[cfg(all(test, target_arch = "x86_64", target_feature = "avx2"))]
    fn with_avx2_batch_kernel(mut self) -> QueryProfile {
        self.batch.use_avx2();
        self
    }

    /// Best local score against `target` and its end cell; `None` when no cell scores above 0.
    pub fn score(&self, target: &[u8], scratch: &mut Scratch) -> Option<LocalScore> {
        if self.pssm.is_empty() || target.is_empty() {
            return None;
        }
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        {
            let found = self.striped.score(target, &mut scratch.buffers);
            if found.is_none_or(|s| s.score < i16::MAX as i32) {
                return found;
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
        let _ = scratch;
        scalar_score_with(&self.pssm, target, &self.gaps)
    }

    /// [`QueryProfile::score`] without the byte-lane pass, for targets known to exceed it.
    fn score_wide(&self, target: &[u8], scratch: &mut Scratch) -> Option<LocalScore> {
        if self.pssm.is_empty() || target.is_empty() {
            return None;
        }
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        {
            let found = self.striped.score_wide(target, &mut scratch.buffers);
            if found.is_none_or(|s| s.score < i16::MAX as i32) {
                return found;
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
        let _ = scratch;
        scalar_score_with(&self.pssm, target, &self.gaps)
    }

    /// Best local score of each target (0 when no cell scores above 0), in input order: the
    /// scores [`QueryProfile::score`] gives, for many targets at once. With AVX2, an
    /// inter-sequence kernel (32 or, on AVX-512BW, 64 targets in the byte lanes, SWIPE); a
    /// target scoring near the byte ceiling (`255 - bias`, the bias being the PSSM's most
    /// negative entry) is rescored in `i16` lanes, then in `i32` beyond those, so scores are
    /// exact. Targets far longer than the others' share of the lanes are scored one at a time
    /// in the striped kernel instead (the lanes would run on for them alone). Without AVX2, a
    /// loop over [`QueryProfile::score`]. Panics on a residue code outside the alphabet.
    pub fn score_batch<T: AsRef<[u8]>>(&self, targets: &[T], scratch: &mut Scratch) -> Vec<i32> {
        self.batch_scores(targets, &[], scratch, i32::MAX)
    }

    /// [`QueryProfile::score_batch`] when only scores below `cap` need to be exact: a score
    /// at or above `cap` may come back as a lower bound of the true score (itself `>= cap`),
    /// which spares rescoring the strong hits (they saturate the byte lanes) when their
    /// tracebacks give the exact scores anyway. `floors[k]`, where given, is a lower bound of
    /// `targets[k]`'s score (an ungapped segment's under this profile): a target whose floor
    /// reaches the byte lanes' ceiling would saturate them, and takes the ceiling without a
    /// run when the cap lets saturated scores stand.
    pub fn score_batch_capped<T: AsRef<[u8]>>(
        &self,
        targets: &[T],
        floors: &[i32],
        scratch: &mut Scratch,
        cap: i32,
    ) -> Vec<i32> {
        self.batch_scores(targets, floors, scratch, cap)
    }

    fn batch_scores<T: AsRef<[u8]>>(
        &self,
        targets: &[T],
        floors: &[i32],
        scratch: &mut Scratch,
        cap: i32,
    ) -> Vec<i32> {
        for target in targets {
            // The highest code, not `all`: a maximum runs in vector lanes, where the early exit
            // made a byte loop (1.5 % of a search).
            let highest = target.as_ref().iter().fold(0, |high, &c| high.max(c));
            assert!(
                (highest as usize) < ALPHABET_SIZE,
                "residue code outside the alphabet"
            );
        }
        let mut out = vec![0; targets.len()];
        if self.pssm.is_empty() {
            return out;
        }
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        {
            let ceiling = self.batch.ceiling();
            // Whether a score at the byte lanes' ceiling may stand for any above it.
            let ceiling_stands = ceiling >= cap;
            let saturates = |k: usize| floors.get(k).is_some_and(|&f| f >= ceiling);
            // Empty targets score 0; those sure to saturate take the ceiling without a run.
            let mut run: Vec<usize> = Vec::with_capacity(targets.len());
            for k in (0..targets.len()).filter(|&k| !targets[k].as_ref().is_empty()) {
                if ceiling_stands && saturates(k) {
                    out[k] = ceiling;
                } else {
                    run.push(k);
                }
            }
            // Longest first: the few far longer than the rest take the striped kernel one at a
            // time rather than run on alone in the lanes.
            run.sort_by_key(|&k| std::cmp::Reverse(targets[k].as_ref().len()));
            let lengths: Vec<usize> = run.iter().map(|&k| targets[k].as_ref().len()).collect();
            let alone: Vec<usize> = run.drain(..self.batch.lone_targets(&lengths)).collect();
            let sequences: Vec<&[u8]> = run.iter().map(|&k| targets[k].as_ref()).collect();
            let mut scores = vec![0; run.len()];
            let saturated = self
                .batch
                .score(&sequences, &mut scratch.batch, &mut scores);
            for (&k, score) in run.iter().zip(scores) {
                out[k] = score;
            }
            let stop = if ceiling_stands {
                ceiling
            } else {
                i16::MAX as i32
            };
            let mut wide: Vec<(usize, Option<LocalScore>)> = Vec::new();
            for k in alone {
                let target = targets[k].as_ref();
                let found = self
                    .striped
                    .score_up_to(target, &mut scratch.buffers, stop as i16);
                wide.push((
                    k,
                    found.map(|s| LocalScore {
                        score: s.score.min(stop),
                        ..s
                    }),
                ));
            }
            if !ceiling_stands {
                for k in saturated.into_iter().map(|i| run[i]) {
                    let target = targets[k].as_ref();
                    wide.push((k, self.striped.score_wide(target, &mut scratch.buffers)));
                }
            }
            for (k, found) in wide {
                out[k] = match found {
                    Some(s) if s.score >= i16::MAX as i32 => {
                        let target = targets[k].as_ref();
                        scalar_score_with(&self.pssm, target, &self.gaps).map_or(0, |s| s.score)
                    }
                    found => found.map_or(0, |s| s.score),
                };
            }
        }
        // Without AVX2 every score is exact, so the cap changes nothing.
        #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
        {
            let _ = (cap, floors);
            for (score, target) in out.iter_mut().zip(targets) {
                *score = self.score(target.as_ref(), scratch).map_or(0, |s| s.score);
            }
        }
        out
    }

    /// The best local alignment against `target`: `Ok(None)` when no cell scores above 0.
    pub fn align(
        &self,
        target: &[u8],
        scratch: &mut Scratch,
    ) -> Result<Option<Alignment>, TracebackTooLarge> {
        let end = self.score(target, scratch);
        self.align_ending_at(target, scratch, end)
    }

    /// [`QueryProfile::align`] for a target whose [`QueryProfile::score_batch_capped`] score
    /// is `batch_score`: an exact one (below the batch kernel's byte ceiling) ends the scan
    /// for the end cell where the score is reached, and a lower bound past the `i8` lanes
    /// skips the byte-lane pass it would saturate.
    pub fn align_batch_hit(
        &self,
        target: &[u8],
        scratch: &mut Scratch,
        batch_score: i32,
    ) -> Result<Option<Alignment>, TracebackTooLarge> {
        let end = if let Some(score) = self.exact_batch_score(batch_score) {
            self.end_of(target, scratch, score)
        } else if batch_score >= i8::MAX as i32 {
            self.score_wide(target, scratch)
        } else {
            self.score(target, scratch)
        };
        self.align_ending_at(target, scratch, end)
    }

    /// [`QueryProfile::align_batch_hit`] for many targets (`batch_scores[k]` for
    /// `targets[k]`): the same scores and ends. With AVX-512BW and VL the end cells and each
    /// cell's traceback flags come from the inter-sequence kernel, 32 targets at a time, and
    /// the alignment is the walk back from the end; between equal-scoring alignments its start
    /// and columns may differ from the one-target passes'. A target the `u16` lanes cannot
    /// hold, or too large for the flags, takes the one-target path.
    pub fn align_batch_hits(
        &self,
        targets: &[&[u8]],
        batch_scores: &[i32],
        scratch: &mut Scratch,
    ) -> Vec<Result<Option<Alignment>, TracebackTooLarge>> {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        if let Some(ends) = &self.ends {
            let m = self.pssm.len();
            // Flags take half a byte per cell and lane: a target over TRACED_JOB_CELLS (or too
            // long for the lanes) takes the one-target path.
            let traced = |t: &[u8]| t.len() < u16::MAX as usize && t.len() * m <= TRACED_JOB_CELLS;
            let jobs: Vec<ends::Job> = targets
                .iter()
                .zip(batch_scores)
                .map(|(&target, &score)| ends::Job {
                    target: if traced(target) { target } else { &[] },
                    stop_at: self.exact_batch_score(score),
                })
                .collect();
            let mut out = Vec::with_capacity(jobs.len());
            let mut from = 0;
            while from < jobs.len() {
                // Runs of jobs within TRACED_RUN_CELLS.
                let mut to = from;
                let mut cells = 0;
                while to < jobs.len() && cells <= TRACED_RUN_CELLS {
                    cells += jobs[to].target.len() * m;
                    to += 1;
                }
                let found = ends.traced_cells(&jobs[from..to], &mut scratch.ends);
                for (k, end) in (from..to).zip(found) {
                    // An end below the ceiling is exact, and its flags lead to its start.
                    let path = end.filter(|e| e.score < ends.ceiling()).and_then(|end| {
                        let path = ends.path(&scratch.ends, jobs[k].target, k - from, end)?;
                        Some((end, path))
                    });
                    out.push(match (path, end) {
                        (Some((end, (first, ops))), _) => {
                            Ok(Some(Alignment::between(first, end, ops)))
                        }
                        (None, None) if traced(targets[k]) => Ok(None),
                        // Saturated, or not traced here.
                        _ => self.align_batch_hit(targets[k], scratch, batch_scores[k]),
                    });
                }
                from = to;
            }
            return out;
        }
        targets
            .iter()
            .zip(batch_scores)
            .map(|(target, &score)| self.align_batch_hit(target, scratch, score))
            .collect()
    }

    /// The alignment ending at `end`, the best local cell (`None`: no alignment).
    fn align_ending_at(
        &self,
        target: &[u8],
        scratch: &mut Scratch,
        end: Option<LocalScore>,
    ) -> Result<Option<Alignment>, TracebackTooLarge> {
        match end {
            Some(end) => {
                let start = self.find_start(target, end, scratch);
                traceback::align_between(&self.pssm, target, &self.gaps, start, end).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A [`QueryProfile::score_batch_capped`] score known to be exact: positive and below the
    /// byte lanes' ceiling.
    fn exact_batch_score(&self, batch_score: i32) -> Option<i32> {
        (batch_score > 0 && batch_score < self.exact_batch_scores_below()).then_some(batch_score)
    }

    /// Scores of [`QueryProfile::score_batch_capped`] below this are exact whatever the cap.
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    fn exact_batch_scores_below(&self) -> i32 {
        self.batch.ceiling()
    }

    /// Without AVX2 every batch score is exact.
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    fn exact_batch_scores_below(&self) -> i32 {
        i32::MAX
    }

    /// The end cell of the best local alignment with `target`, known to score `score` (> 0).
    fn end_of(&self, target: &[u8], scratch: &mut Scratch, score: i32) -> Option<LocalScore> {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        if score < i16::MAX as i32 {
            return self.striped.end_of(target, &mut scratch.buffers, score);
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
        let _ = (scratch, score);
        scalar_score_with(&self.pssm, target, &self.gaps)
    }
}

impl QueryProfile {
    /// Start cell (query, target) of an alignment of score `end.score` ending at `end`, the
    /// start nearest the end (in reverse target order, then reverse query order). With AVX2:
    /// the score kernel on the reversed prefixes (the reversed query's striped profile costs
    /// O(query × alphabet), far less than the rectangle), whose best cell is that start, the
    /// scan stopping at the first column that reaches the score; the scalar anchored pass
    /// otherwise, or when the reversed score is not exact.
    fn find_start(&self, target: &[u8], end: LocalScore, scratch: &mut Scratch) -> (usize, usize) {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        if end.score < i16::MAX as i32 {
            // Every alignment of score `end.score` inside the prefix rectangle ends at `end`
            // (the end cell is the first best cell in target, then query order), so the first
            // best cell of the reversed run is the start the scalar pass would find.
            let reversed = reversed_prefix(&self.pssm, end.query_end + 1);
            let reversed_target: Vec<u8> =
                target[..=end.target_end].iter().rev().copied().collect();
            let found = striped::end_of_known_score(
                &reversed,
                &self.gaps.reversed_prefix(end.query_end + 1),
                &reversed_target,
                &mut scratch.buffers,
                end.score,
            );
            if let Some(found) = found {
                if found.score == end.score {
                    return (
                        end.query_end - found.query_end,
                        end.target_end - found.target_end,
                    );
                }
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
        let _ = scratch;
        traceback::find_start(&self.pssm, target, &self.gaps, end)
    }
}

/// Most cells (target × query) of one hit traced from the inter-sequence kernel's flags, half
/// a byte per cell and lane: the flags of a run, whose lanes idle while its longest job ends,
/// take at most about `(TRACED_RUN_CELLS + 32 × TRACED_JOB_CELLS) / 2` bytes (32 MiB per
/// thread).
const TRACED_JOB_CELLS: usize = 1 << 20;
/// Cells of the jobs of one traced run (past the job that crosses it). Each run ends with its
/// lanes running out one by one: at 2^23 cells, runs of 16-80 hits left 46 % of the fast
/// setting's lane cells idle on the MSA benchmark; 2^25 leaves 21 % (alignment 0.56 → 0.43 s).
const TRACED_RUN_CELLS: usize = 1 << 25;

/// The rows of `pssm`'s positions `0..len` in reverse order.
fn reversed_prefix(pssm: &Pssm, len: usize) -> Pssm {
    Pssm::new(pssm.rows[..len].iter().rev().copied().collect())
}

/// The best local alignment of `pssm` against `target` (one-off; prepare a [`QueryProfile`]
/// to align one query against many targets).
pub fn align(
    pssm: &Pssm,
    target: &[u8],
    gaps: GapCosts,
) -> Result<Option<Alignment>, TracebackTooLarge> {
    QueryProfile::new(pssm, gaps).align(target, &mut Scratch::new())
}
