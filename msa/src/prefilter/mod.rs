//! The prefilter: finds, for each query of a batch, the database targets worth a gapped
//! alignment, reading the database once per batch: every window of it (the scan), or, when
//! the batch's seeds are few, the windows its k-mer index lists for them (the same
//! candidates).

mod diagonal;
mod indexed;
mod neighbors;
mod radix;
mod scan;
mod two_hit;

pub use crate::kmer::K;
#[cfg(test)]
pub(crate) use neighbors::count_seeds;
pub use neighbors::lowest_threshold_within;
pub use two_hit::Candidate;

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::db::Database;
use crate::matrix::{Pssm, BLOSUM62_LAMBDA_UNGAPPED};
use diagonal::DiagonalScorer;
use indexed::{indexed_hits, IndexedPass};
use neighbors::{SeedTable, Seeds, TableArrays};
use scan::ScanState;
use two_hit::SlotLayout;

/// Prefilter settings (derived from the search's sensitivity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefilterParams {
    /// Score a k-mer needs against a window of a plain query to seed (lower: more
    /// sensitive): the base `search` derives each query's threshold from; [`prefilter`]
    /// itself takes the thresholds per query.
    pub kmer_threshold: i32,
    /// Ungapped diagonal score a target needs to pass.
    pub min_ungapped: i32,
    /// Most targets passed on per query, the most significant first (ungapped score
    /// corrected for the target's length).
    pub max_candidates: usize,
}

/// Targets per parallel task: large enough to amortise the per-thread slot arrays.
const TARGETS_PER_TASK: usize = 4096;
/// Targets whose windows are looked up together (a few thousand windows, so the lookups run
/// ahead across the targets' ends and the group's buffers stay in the L2 cache).
const TARGETS_PER_GROUP: usize = 16;

/// The indexed pass is taken when its seed hits are at most this share of the database's
/// windows (each hit costs it several memory passes; the scan's step per window is light).
const INDEXED_HITS_PER_WINDOW: f64 = 0.1;
/// Most seed hits of an indexed pass (8 bytes each, held at once).
const MAX_INDEXED_HITS: usize = 32 << 20;

/// A pass's large buffers, kept for the next pass: the seeds, the scan's table (26 MB) and
/// the indexed pass's spread hits (8 bytes a hit). New ones cost a page fault per 4 kB page.
#[derive(Default)]
pub struct Recycled {
    seeds: Option<Seeds>,
    table: Option<TableArrays>,
    spreads: Vec<indexed::Spread>,
}

/// Candidates per query of the batch, the most significant first (ungapped score corrected
/// for the target's length); `thresholds[q]` is query `q`'s k-mer score threshold, and the
/// targets in `skip[q]` (sorted) are left out before the cap, so they take no candidate's
/// place. `progress` receives the number of targets scanned as tasks finish; `recycled`
/// lends an earlier pass's buffers and keeps this one's.
pub fn prefilter(
    db: &Database,
    queries: &[&Pssm],
    thresholds: &[i32],
    skip: &[Vec<u32>],
    params: &PrefilterParams,
    progress: &(dyn Fn(usize) + Sync),
    recycled: &mut Recycled,
) -> Vec<Vec<Candidate>> {
    assert!(
        thresholds.len() == queries.len() && skip.len() == queries.len(),
        "one k-mer threshold and one skip list per query"
    );
    let layout = SlotLayout::new(queries, db.max_length());
    let seeds = Seeds::enumerate(recycled.seeds.take(), queries, thresholds, |q, pos| {
        layout.seed_key(queries, q, pos)
    });
    let scorer = DiagonalScorer::new(queries);
    let indexed = db.kmer_index().filter(|index| {
        let limit =
            MAX_INDEXED_HITS.min((INDEXED_HITS_PER_WINDOW * db.total_residues() as f64) as usize);
        indexed_hits(&seeds, index, limit) <= limit
    });
    let found = match indexed {
        Some(index) => {
            let mut seeds = seeds;
            let found = IndexedPass {
                db,
                index: &index,
                seeds: seeds.by_code(),
                layout: &layout,
                scorer: &scorer,
            }
            .candidates(params.min_ungapped, progress, &mut recycled.spreads);
            recycled.seeds = Some(seeds);
            found
        }
        None => {
            let table = SeedTable::new(seeds, recycled.table.take());
            let found = scan(db, &table, &layout, &scorer, params.min_ungapped, progress);
            let (seeds, arrays) = table.into_parts();
            (recycled.seeds, recycled.table) = (Some(seeds), Some(arrays));
            found
        }
    };
    let mut per_query: Vec<Vec<Candidate>> = vec![Vec::new(); queries.len()];
    for (q, candidate) in found.into_iter().flatten() {
        per_query[q as usize].push(candidate);
    }
    // Rank by significance rather than raw score: a long target collects high chance scores
    // (its ungapped E-value grows with its length), and would crowd out short homologs.
    let significance = |c: &Candidate| {
        let len = db.sequence(c.target as usize).len() as f64;
        BLOSUM62_LAMBDA_UNGAPPED * c.ungapped as f64 - len.ln()
    };
    per_query
        .par_iter_mut()
        .zip(skip)
        .for_each(|(candidates, skip)| {
            // Keys computed once: a logarithm per comparison showed in profiles.
            let mut keyed: Vec<(f64, Candidate)> = candidates
                .iter()
                .filter(|c| skip.binary_search(&c.target).is_err())
                .map(|c| (significance(c), *c))
                .collect();
            keyed.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.target.cmp(&b.1.target)));
            *candidates = keyed
                .into_iter()
                .take(params.max_candidates)
                .map(|(_, c)| c)
                .collect();
        });
    per_query
}

/// The scan's (query, candidate) pairs: every window of the database looked up in the table.
fn scan(
    db: &Database,
    table: &SeedTable,
    layout: &SlotLayout,
    scorer: &DiagonalScorer,
    min_ungapped: i32,
    progress: &(dyn Fn(usize) + Sync),
) -> Vec<Vec<(u32, Candidate)>> {
    let tasks = db.len().div_ceil(TARGETS_PER_TASK);
    per_thread(
        tasks,
        || ScanState::new(scorer, table, layout),
        |state, task| {
            let start = task * TARGETS_PER_TASK;
            let end = (start + TARGETS_PER_TASK).min(db.len());
            let mut out = Vec::new();
            let mut targets: Vec<&[u8]> = Vec::with_capacity(TARGETS_PER_GROUP);
            for group in (start..end).step_by(TARGETS_PER_GROUP) {
                let last = (group + TARGETS_PER_GROUP).min(end);
                targets.clear();
                targets.extend((group..last).map(|t| db.sequence(t)));
                state.scan_targets(group as u32, &targets, min_ungapped, &mut out);
            }
            progress(end - start);
            out
        },
    )
}

/// `work(state, item)` for items `0..items`, in item order, spread over the threads as they
/// free up, each thread with one state from `init`: a scan state's diagonal arrays are tens
/// of MB, and rayon's `map_init` makes one per split of the work (a memset and page faults
/// each time).
fn per_thread<S, T: Send>(
    items: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let threads = rayon::current_num_threads().min(items);
    let mut done: Vec<(usize, T)> = (0..threads)
        .into_par_iter()
        .flat_map_iter(|_| {
            let mut state = init();
            let mut out = Vec::new();
            loop {
                let item = next.fetch_add(1, Ordering::Relaxed);
                if item >= items {
                    break out;
                }
                out.push((item, work(&mut state, item)));
            }
        })
        .collect();
    done.sort_unstable_by_key(|&(item, _)| item);
    done.into_iter().map(|(_, t)| t).collect()
}
