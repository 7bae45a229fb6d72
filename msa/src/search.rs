//! The iterative search: prefilter, gapped alignment with E-values, then a profile of the
//! hits for the next iteration (PSI-BLAST / MMseqs2 `--num-iterations`). The prefilter and
//! the last iteration's alignments use the profile before its entropy cap; the alignments
//! whose hits shape the next profile use the capped one. Hits of earlier iterations stay in
//! the result unless a later one reports them again; later iterations do not align the hits
//! already settled (E ≤ 1e-4, `SETTLED_EVALUE`) again. A query whose included hits stop
//! growing (`CONVERGED_FRACTION`) stops before the last iteration: its result is that of its
//! last capped-profile alignments. When profile iterations follow, the first pass seeds at a
//! higher k-mer threshold (`FIRST_PASS_THRESHOLD_RAISE`): it only has to find the close
//! homologs the first profile is built from. A query that pass includes no hit for is
//! searched again with its plain sequence at the full threshold.

use std::collections::HashSet;
use std::time::Instant;

use rayon::prelude::*;

use crate::align::{Alignment, QueryProfile, Scratch};
use crate::db::Database;
use crate::matrix::{GapCosts, Pssm, BLOSUM62_GAPS};
use crate::prefilter::{lowest_threshold_within, prefilter, PrefilterParams, Recycled};
use crate::profile::{build_profiles, sequence_pssm, HitRow, GAP};
use crate::stats::{KarlinAltschul, SearchSpace, BLOSUM62_11_1};

/// Settings of a search (defaults follow ColabFold's MMseqs2 call, but for one iteration more).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Search iterations; each after the first searches with the profile of the last. Four by
    /// default, one more than ColabFold's: with the composition correction our profiles reach
    /// less far per iteration than MMseqs2's (three, even with the profiles' gap discounts,
    /// give seed 8's set 0.951 micro recall against four's 0.985; BENCHMARKS.md); queries that
    /// converge stop earlier ([`CONVERGED_FRACTION`]).
    pub iterations: usize,
    /// Hits with an E-value up to this are reported.
    pub evalue: f64,
    /// Hits with an E-value up to this enter the next iteration's profile (MMseqs2's
    /// `--e-profile`, 0.1 by default in MMseqs2 14-7e284 as Debian ships it; ColabFold's call
    /// keeps the default).
    pub inclusion_evalue: f64,
    /// Most hits reported per query (and targets aligned per query).
    pub max_seqs: usize,
    /// 1 (fast) to 8.5 (sensitive), as MMseqs2's `-s`.
    pub sensitivity: f64,
    pub gaps: GapCosts,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            iterations: 4,
            evalue: 0.1,
            inclusion_evalue: 0.1,
            max_seqs: 10_000,
            sensitivity: 7.5,
            gaps: BLOSUM62_GAPS,
        }
    }
}

impl SearchParams {
    /// Prefilter settings for the sensitivity: each step of `-s` lowers the k-mer score
    /// threshold by one, admitting more similar k-mers. A diagonal needs an ungapped score of
    /// 15 (MMseqs2's default) from `-s 5` up; below, its seeds alone score about that much
    /// (each at least the k-mer threshold), so the bar rises by 25/3 a step, to 40 at `-s 2`:
    /// there, 99 % of the candidates scoring 20-39 were no hit and cost half the alignments'
    /// residues (BENCHMARKS.md).
    pub fn prefilter(&self) -> PrefilterParams {
        let below_five = (5.0 - self.sensitivity).max(0.0);
        PrefilterParams {
            kmer_threshold: (24.5 - self.sensitivity).round() as i32,
            min_ungapped: (15.0 + below_five * 25.0 / 3.0).round() as i32,
            max_candidates: self.max_seqs.max(1),
        }
    }
}

/// One query of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub name: String,
    /// Residue codes.
    pub codes: Vec<u8>,
}

/// One reported hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Index of the target in the database.
    pub target: u32,
    pub evalue: f64,
    pub bits: f64,
    /// Identical residues over the alignment length (columns including gaps).
    pub identity: f64,
    pub alignment: Alignment,
}

impl Hit {
    /// The target's residues at the query's columns ([`GAP`] where it has none).
    pub fn query_columns(&self, target: &[u8], query_len: usize) -> Vec<u8> {
        let mut row = vec![GAP; query_len];
        for (i, j) in self.alignment.matched_pairs() {
            row[i] = target[j];
        }
        row
    }

    /// The hit as a row of the next profile's MSA.
    pub fn profile_row(&self, target: &[u8], query_len: usize) -> HitRow {
        HitRow {
            columns: self.query_columns(target, query_len),
            inserted_after: self.alignment.inserted_after(),
        }
    }
}

/// The outcome of one query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// Hits in E-value order.
    pub hits: Vec<Hit>,
    /// Iterations run (fewer than asked when the profile converged).
    pub iterations: usize,
    /// Significant targets left out because their alignment is too long to trace back.
    pub untraced: usize,
}

/// Progress of a search, for a progress bar.
pub trait SearchProgress: Sync {
    /// A new database pass starts: `targets` to scan for `queries` queries in `iteration`.
    fn pass(&self, iteration: usize, queries: usize, targets: usize);
    /// `targets` more targets scanned.
    fn scanned(&self, targets: usize);
    /// A pass (prefilter and alignment of one batch) is done.
    fn finished(&self, summary: &PassSummary);
}

/// What one database pass did, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct PassSummary {
    pub iteration: usize,
    pub queries: usize,
    /// Targets the prefilter passed on, all queries together.
    pub candidates: usize,
    /// Hits within the E-value threshold, all queries together.
    pub hits: usize,
    pub prefilter_seconds: f64,
    pub align_seconds: f64,
}

/// Most seeds in one batch's table (8 bytes each while it is built; then at most 4 each
/// beyond its fixed 25.6 MB of entries).
const MAX_BATCH_SEEDS: usize = 48 << 20;
/// Most seeds of one query (8 bytes each while its table is built): a plain query of about
/// 12 000 residues seeds this many at the default sensitivity; longer ones seed at a higher
/// threshold, so memory stays bounded whatever the query's length.
const MAX_QUERY_SEEDS: usize = 8 << 20;
/// Most queries per batch.
const MAX_BATCH_QUERIES: usize = 256;
/// Most diagonal slots per batch (8 bytes each, one array per scanning thread): a query
/// takes its length plus the longest target's.
const MAX_BATCH_SLOTS: usize = 8 << 20;

/// Searches every query against the database.
pub fn search(
    db: &Database,
    queries: &[Query],
    params: &SearchParams,
    progress: &dyn SearchProgress,
) -> Vec<QueryResult> {
    let ka = BLOSUM62_11_1;
    let prefilter_params = params.prefilter();
    let mut profiles: Vec<Pssm> = queries.iter().map(|q| sequence_pssm(&q.codes)).collect();
    let mut results: Vec<QueryResult> = queries
        .iter()
        .map(|_| QueryResult {
            hits: Vec::new(),
            iterations: 0,
            untraced: 0,
        })
        .collect();
    let mut included: Vec<Vec<u32>> = vec![Vec::new(); queries.len()];
    // The same MSAs without the entropy weighting, for the prefilter and the last
    // iteration's alignments (`Profiles::full`); the plain query's at first.
    let mut full = profiles.clone();
    // Per query and iteration: that iteration's aligner and its hits not yet traced.
    let mut pending: Vec<Vec<Pending>> = (0..queries.len()).map(|_| Vec::new()).collect();
    let iterations = params.iterations.max(1);
    let mut active: Vec<usize> = (0..queries.len()).collect();
    let mut recycled = Recycled::default();
    let base = prefilter_params.kmer_threshold;
    // Each query's seed budget: what its plain sequence gives at the base threshold (a
    // higher one for a query long enough to seed past `MAX_QUERY_SEEDS`). Profiles are
    // sharper and would seed far more at that threshold; they get a higher one instead.
    let mut thresholds: Vec<(i32, usize)> = profiles
        .par_iter()
        .map(|p| lowest_threshold_within(p, base, MAX_QUERY_SEEDS))
        .collect();
    let budgets: Vec<usize> = thresholds.iter().map(|&(_, n)| n).collect();
    let slots: Vec<usize> = queries
        .iter()
        .map(|q| q.codes.len() + db.max_length() + 1)
        .collect();
    for iteration in 0..iterations {
        let last = iteration + 1 == iterations;
        let raise = if iteration == 0 && !last {
            FIRST_PASS_THRESHOLD_RAISE
        } else {
            0
        };
        for batch in batches(&active, &thresholds, &slots) {
            let pssms: Vec<&Pssm> = batch.iter().map(|&q| &full[q]).collect();
            let batch_thresholds: Vec<i32> =
                batch.iter().map(|&q| thresholds[q].0 + raise).collect();
            // Hits already far beyond any threshold keep their alignments (a newer profile
            // barely moves them, and they still shape the next one), and their candidate
            // places go to new targets (a large superfamily otherwise fills them with its
            // known members again).
            let skip: Vec<Vec<u32>> = batch.iter().map(|&q| settled(&results[q].hits)).collect();
            progress.pass(iteration + 1, batch.len(), db.len());
            let started = Instant::now();
            let candidates = prefilter(
                db,
                &pssms,
                &batch_thresholds,
                &skip,
                &prefilter_params,
                &|n| progress.scanned(n),
                &mut recycled,
            );
            let prefilter_seconds = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let mut summary = PassSummary {
                iteration: iteration + 1,
                queries: batch.len(),
                candidates: candidates.iter().map(Vec::len).sum(),
                hits: 0,
                prefilter_seconds,
                align_seconds: 0.0,
            };
            // Queries aligned side by side (each also spreads its targets over the threads):
            // one with few targets would leave a thread idle.
            let aligned: Vec<Aligned> = batch
                .par_iter()
                .zip(candidates)
                .map(|(&q, candidates)| {
                    let targets: Vec<u32> = candidates.iter().map(|c| c.target).collect();
                    let space =
                        ka.search_space(queries[q].codes.len(), db.total_residues(), db.len());
                    // The last hits shape no profile after them: scored with all the MSA holds.
                    let pssm = if last { &full[q] } else { &profiles[q] };
                    let aligner = Aligner {
                        db,
                        profile: QueryProfile::new(pssm, params.gaps),
                        query: &queries[q].codes,
                        ka,
                        space,
                    };
                    // Under the prefilter's own profile a candidate's ungapped score bounds its
                    // alignment's from below (the first pass, the last).
                    let floors: Vec<i32> = if *pssm == full[q] {
                        candidates.iter().map(|c| c.ungapped).collect()
                    } else {
                        Vec::new()
                    };
                    let mut scored = aligner.score(&targets, &floors, params);
                    // Before the last iteration only the hits that shape the next profile need
                    // their alignments now; the others wait in case the query converges here.
                    let split = if last {
                        scored.len()
                    } else {
                        let included = ka.min_score_for(params.inclusion_evalue, space);
                        scored.partition_point(|&(_, score)| score >= included)
                    };
                    let rest = scored.split_off(split);
                    let (hits, untraced) = aligner.trace(&scored);
                    Aligned {
                        hits,
                        untraced,
                        aligner,
                        rest,
                    }
                })
                .collect();
            for (&q, aligned) in batch.iter().zip(aligned) {
                let Aligned {
                    mut hits,
                    untraced,
                    aligner,
                    rest,
                } = aligned;
                summary.hits += hits.len() + rest.len();
                // Hits of earlier iterations the new profile missed stay (MMseqs2 merges the
                // iterations' results the same way): a profile can drift off a subfamily.
                let fresh: HashSet<u32> = hits
                    .iter()
                    .map(|h| h.target)
                    .chain(rest.iter().map(|&(t, _)| t))
                    .collect();
                let earlier = std::mem::take(&mut results[q].hits);
                hits.extend(earlier.into_iter().filter(|h| !fresh.contains(&h.target)));
                sort_hits(&mut hits);
                results[q] = QueryResult {
                    hits,
                    iterations: iteration + 1,
                    untraced,
                };
                pending[q].push((aligner, rest));
            }
            summary.align_seconds = started.elapsed().as_secs_f64();
            progress.finished(&summary);
        }
        if iteration + 1 == iterations {
            break;
        }
        // Next profiles, built in parallel; a query whose included hits barely changed has
        // converged.
        let next: Vec<Option<NextProfile>> = active
            .par_iter()
            .map(|&q| {
                let mut now: Vec<u32> = results[q]
                    .hits
                    .iter()
                    .filter(|h| h.evalue <= params.inclusion_evalue)
                    .map(|h| h.target)
                    .collect();
                now.sort_unstable();
                if now.is_empty() && raise > 0 {
                    // The raised first pass found nothing: the plain query again, seeded at
                    // the search's own threshold.
                    return Some(NextProfile {
                        capped: profiles[q].clone(),
                        full: full[q].clone(),
                        threshold: thresholds[q],
                        included: now,
                    });
                }
                let known: HashSet<u32> = included[q].iter().copied().collect();
                let fresh = now.iter().filter(|t| !known.contains(t)).count();
                if now.is_empty() || (fresh as f64) < CONVERGED_FRACTION * known.len() as f64 {
                    return None;
                }
                let m = queries[q].codes.len();
                let rows: Vec<HitRow> = results[q]
                    .hits
                    .iter()
                    .filter(|h| h.evalue <= params.inclusion_evalue)
                    .map(|h| h.profile_row(db.sequence(h.target as usize), m))
                    .collect();
                let built = build_profiles(&queries[q].codes, &rows);
                let threshold = lowest_threshold_within(&built.full, base, budgets[q]);
                Some(NextProfile {
                    capped: built.capped,
                    full: built.full,
                    threshold,
                    included: now,
                })
            })
            .collect();
        active = active
            .into_iter()
            .zip(next)
            .filter_map(|(q, next)| {
                let next = next?;
                (profiles[q], full[q]) = (next.capped, next.full);
                thresholds[q] = next.threshold;
                included[q] = next.included;
                Some(q)
            })
            .collect();
        if active.is_empty() {
            break;
        }
    }
    // The weaker hits set aside before the last iteration, newest iteration first, for the
    // targets no later iteration reported.
    results
        .par_iter_mut()
        .zip(pending)
        .for_each(|(result, pending)| {
            let mut known: HashSet<u32> = result.hits.iter().map(|h| h.target).collect();
            for (aligner, rest) in pending.into_iter().rev() {
                let rest: Vec<(u32, i32)> = rest
                    .into_iter()
                    .filter(|(t, _)| !known.contains(t))
                    .collect();
                if rest.is_empty() {
                    continue;
                }
                let (more, untraced) = aligner.trace(&rest);
                known.extend(more.iter().map(|h| h.target));
                result.hits.extend(more);
                result.untraced += untraced;
            }
            sort_hits(&mut result.hits);
            result.hits.truncate(params.max_seqs);
        });
    results
}

/// A query's state for its next iteration.
struct NextProfile {
    capped: Pssm,
    full: Pssm,
    /// k-mer threshold and seed count.
    threshold: (i32, usize),
    /// Targets of the hits that built the profile, sorted.
    included: Vec<u32>,
}

/// A query has converged when its included hits grew by less than this fraction in the last
/// iteration (or not at all): another profile would barely move. On the MSA benchmark with
/// four iterations, 0.1 took the second query set from 14.7 to 13.1-13.2 s at micro recall 0.990
/// against 0.991 (BENCHMARKS.md).
const CONVERGED_FRACTION: f64 = 0.1;

/// How much higher than the search's the first pass's k-mer threshold is when profile
/// iterations follow: the close homologs that build the first profile seed well above the
/// threshold, and the profile passes, seeded at the full budget, reach the remote ones (a
/// query that pass includes no hit for is searched again at the full threshold). On the
/// MSA benchmark (seed 6, the same hour) the search took 13.9 → 11.4 s, its first pass's
/// prefilter 3.2 → 1.1 s; micro recall on the query sets of seeds 6 / 7 / 8 went from
/// 0.984 / 0.994 / 0.985 to 0.984 / 0.995 / 0.983, and a raise of 3 took seed 8's to 0.981,
/// below MMseqs2's 0.982 (BENCHMARKS.md).
pub const FIRST_PASS_THRESHOLD_RAISE: i32 = 2;

/// E-value below which a hit is settled: later iterations do not align it again. From 1e-6
/// to 1e-4, the fast setting took 1.22 → 1.16 s on the MSA benchmark's seed 7 queries (its
/// last pass aligned 4 578 hits instead of 5 647), both settings' hits and recall on the
/// seed 6 and 7 sets stayed the same, and the default's recall on seed 8 rose from 0.981 to
/// 0.984 (BENCHMARKS.md).
const SETTLED_EVALUE: f64 = 1e-4;

/// Targets of the settled hits, sorted.
fn settled(hits: &[Hit]) -> Vec<u32> {
    let mut targets: Vec<u32> = hits
        .iter()
        .filter(|h| h.evalue <= SETTLED_EVALUE)
        .map(|h| h.target)
        .collect();
    targets.sort_unstable();
    targets
}

/// Cuts the active queries into batches whose seed tables and diagonal arrays fit the
/// budgets; `thresholds[q]` holds query `q`'s k-mer threshold and seed count, `slots[q]` its
/// diagonal slots.
fn batches(active: &[usize], thresholds: &[(i32, usize)], slots: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let (mut seeds_in_last, mut slots_in_last) = (0usize, 0usize);
    for &q in active {
        let seeds = thresholds[q].1;
        let start_new = match out.last() {
            None => true,
            Some(last) => {
                last.len() >= MAX_BATCH_QUERIES
                    || seeds_in_last + seeds > MAX_BATCH_SEEDS
                    || slots_in_last + slots[q] > MAX_BATCH_SLOTS
            }
        };
        if start_new {
            out.push(Vec::new());
            seeds_in_last = 0;
            slots_in_last = 0;
        }
        out.last_mut().expect("a batch was just pushed").push(q);
        seeds_in_last += seeds;
        slots_in_last += slots[q];
    }
    out
}

/// Targets scored per batch call: large enough to keep the kernel's 32 or 64 lanes full.
const SCORE_CHUNK: usize = 1024;
/// Hits traced together, at most: the trace kernel takes 32 at a time, refilling lanes as
/// targets end, so a chunk of several keeps them full. A query's hits are cut into chunks of
/// equal size (150 hits: two of 75, not 128 and 22).
const TRACE_CHUNK: usize = 128;
/// Targets scored before checking whether to go on: a chunk for each of two threads.
const SCORE_BLOCK: usize = 2 * SCORE_CHUNK;
/// Candidates in a row below the E-value threshold after which a query's scoring stops. The
/// prefilter's ranking puts the hits first: in seed 6's first pass, 8 382 of the 8 387 hits at
/// E <= 1e-3 lie within 2 000 candidates of the hit before them, and a third of the 283 000
/// candidates the prefilter passed come before that gap (BENCHMARKS.md: the searches 6-10 %
/// faster, micro recall unchanged on the three query sets).
const MISSES_AFTER_LAST_HIT: usize = 2000;

/// One query's alignments in one iteration: its traced hits (E-value order), how many were
/// too long to trace, its aligner and the scored hits left for later.
struct Aligned<'a> {
    hits: Vec<Hit>,
    untraced: usize,
    aligner: Aligner<'a>,
    rest: Vec<(u32, i32)>,
}

/// A query's aligner and its scored hits not traced yet.
type Pending<'a> = (Aligner<'a>, Vec<(u32, i32)>);

/// Gapped alignment of one query's prefilter targets.
struct Aligner<'a> {
    db: &'a Database,
    profile: QueryProfile,
    query: &'a [u8],
    ka: KarlinAltschul,
    space: SearchSpace,
}

impl Aligner<'_> {
    /// SIMD scores of the targets within the E-value threshold, best first. Scores at or
    /// above both thresholds are lower bounds of the true ones, so strong hits come in no
    /// particular order until their tracebacks.
    /// `floors[k]`, where given, is a lower bound of `targets[k]`'s score.
    fn score(&self, targets: &[u32], floors: &[i32], params: &SearchParams) -> Vec<(u32, i32)> {
        let min_score = self.ka.min_score_for(params.evalue, self.space);
        let included = self.ka.min_score_for(params.inclusion_evalue, self.space);
        // The prefilter passes at most `max_seqs` targets, so all that score enough are kept,
        // and scores above both thresholds need not be exact: the traceback gives them.
        debug_assert!(targets.len() <= params.max_seqs.max(1));
        self.score_with_cap(targets, floors, min_score, min_score.max(included))
    }

    /// Targets scoring at least `min_score`, best first; a score at or above `cap` is a lower
    /// bound (itself `>= cap`) of the true one. The targets come in the prefilter's order, most
    /// significant first, and are scored in blocks; scoring stops once
    /// [`MISSES_AFTER_LAST_HIT`] in a row have scored below `min_score`.
    fn score_with_cap(
        &self,
        targets: &[u32],
        floors: &[i32],
        min_score: i32,
        cap: i32,
    ) -> Vec<(u32, i32)> {
        let mut scored: Vec<(u32, i32)> = Vec::new();
        let mut misses = 0;
        for (b, block) in targets.chunks(SCORE_BLOCK).enumerate() {
            // Inter-sequence SIMD scores 32 or 64 targets at a time; chunks spread them over
            // the threads.
            let scores: Vec<i32> = block
                .par_chunks(SCORE_CHUNK)
                .enumerate()
                .map(|(c, chunk)| {
                    let sequences: Vec<&[u8]> = chunk
                        .iter()
                        .map(|&t| self.db.sequence(t as usize))
                        .collect();
                    let first = b * SCORE_BLOCK + c * SCORE_CHUNK;
                    let floors = floors.get(first..).unwrap_or_default();
                    let floors = &floors[..floors.len().min(chunk.len())];
                    with_scratch(|scratch| {
                        self.profile
                            .score_batch_capped(&sequences, floors, scratch, cap)
                    })
                })
                .flatten()
                .collect();
            for (&t, score) in block.iter().zip(scores) {
                if score >= min_score {
                    scored.push((t, score));
                    misses = 0;
                } else {
                    misses += 1;
                }
            }
            if misses >= MISSES_AFTER_LAST_HIT {
                break;
            }
        }
        scored.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }

    /// Alignments of scored targets, in E-value order; also how many were too long to
    /// trace back.
    fn trace(&self, scored: &[(u32, i32)]) -> (Vec<Hit>, usize) {
        let chunk = scored
            .len()
            .div_ceil(scored.len().div_ceil(TRACE_CHUNK).max(1));
        let traced: Vec<Option<Hit>> = scored
            .par_chunks(chunk.max(1))
            .map(|chunk| {
                let targets: Vec<&[u8]> = chunk
                    .iter()
                    .map(|&(t, _)| self.db.sequence(t as usize))
                    .collect();
                let scores: Vec<i32> = chunk.iter().map(|&(_, score)| score).collect();
                let alignments = with_scratch(|scratch| {
                    self.profile.align_batch_hits(&targets, &scores, scratch)
                });
                let hits = chunk.iter().zip(targets).zip(alignments);
                hits.map(|((&(t, _), target), alignment)| {
                    let alignment = alignment.ok().flatten()?;
                    let identity = alignment.identities(self.query, target) as f64
                        / alignment.aligned_len().max(1) as f64;
                    Some(Hit {
                        target: t,
                        evalue: self.ka.evalue(alignment.score, self.space),
                        bits: self.ka.bit_score(alignment.score),
                        identity,
                        alignment,
                    })
                })
                .collect::<Vec<_>>()
            })
            .flatten()
            .collect();
        let untraced = traced.iter().filter(|h| h.is_none()).count();
        let mut hits: Vec<Hit> = traced.into_iter().flatten().collect();
        sort_hits(&mut hits);
        (hits, untraced)
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::new());
}

/// `f` with this thread's alignment buffers, kept from call to call: fresh ones (tens of MB
/// of traceback flags) cost a page fault per page. `f` must not wait on rayon work: a task
/// stolen meanwhile would find the buffers borrowed.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with_borrow_mut(f)
}

/// E-value order, ties by target index.
fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(|a, b| a.evalue.total_cmp(&b.evalue).then(a.target.cmp(&b.target)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::decode;
    use crate::db::build_database;
    use crate::prefilter::count_seeds;
    use crate::test_rng::TestRng;

    /// A query long enough to seed past [`MAX_QUERY_SEEDS`] at the base threshold seeds at
    /// a higher one, within the limit.
    #[test]
    fn a_long_query_seeds_within_the_limit() {
        let query = TestRng(5).residues(20_000);
        let pssm = sequence_pssm(&query);
        let base = SearchParams::default().prefilter().kmer_threshold;
        assert!(count_seeds(&pssm, base) > MAX_QUERY_SEEDS);
        let (threshold, seeds) = lowest_threshold_within(&pssm, base, MAX_QUERY_SEEDS);
        assert!(
            threshold > base && seeds <= MAX_QUERY_SEEDS,
            "{threshold} {seeds}"
        );
    }

    /// Scoring stops after [`MISSES_AFTER_LAST_HIT`] candidates in a row score below the
    /// threshold: a homolog ranked past such a run is not scored, while hits spaced closer
    /// keep a query's scoring going across blocks.
    #[test]
    fn scoring_stops_after_a_run_of_misses() {
        let mut rng = TestRng(11);
        let mut protein = |len: usize| rng.residues(len);
        let query = protein(120);
        let randoms = 2 * MISSES_AFTER_LAST_HIT + 500;
        let mut seqs = vec![query.clone()];
        seqs.extend((0..randoms).map(|_| protein(120)));
        seqs.extend([query.clone(), query.clone()]);
        let dir = tempfile::tempdir().unwrap();
        let fasta: String = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| format!(">s{i}\n{}\n", decode(s)))
            .collect();
        std::fs::write(dir.path().join("db.fasta"), fasta).unwrap();
        let db_path = dir.path().join("db.ffdb");
        build_database(&dir.path().join("db.fasta"), &db_path, &mut |_| {}).unwrap();
        let db = Database::open(&db_path).unwrap();
        // Only the query's copies score this (chance hits would reset the run of misses).
        let params = SearchParams {
            evalue: 1e-20,
            inclusion_evalue: 1e-20,
            ..SearchParams::default()
        };
        let ka = BLOSUM62_11_1;
        let aligner = Aligner {
            db: &db,
            profile: QueryProfile::new(&sequence_pssm(&query), params.gaps),
            query: &query,
            ka,
            space: ka.search_space(query.len(), db.total_residues(), db.len()),
        };
        let (first, second) = (randoms as u32 + 1, randoms as u32 + 2);
        let found = |order: Vec<u32>| {
            let mut t: Vec<u32> = aligner
                .score(&order, &[], &params)
                .iter()
                .map(|h| h.0)
                .collect();
            t.sort_unstable();
            t
        };
        // Hits 1 990 and 1 910 candidates apart, across the first block's end: all found.
        let gap = MISSES_AFTER_LAST_HIT as u32 - 10;
        let close: Vec<u32> = std::iter::once(0)
            .chain(1..gap)
            .chain([first])
            .chain(gap..2 * gap - 80)
            .chain([second])
            .collect();
        assert_eq!(found(close), vec![0, first, second]);
        // A homolog after more misses in a row than the limit: not scored.
        let far: Vec<u32> = std::iter::once(0)
            .chain(1..=MISSES_AFTER_LAST_HIT as u32 + 100)
            .chain([first])
            .collect();
        assert_eq!(found(far), vec![0]);
    }
}
