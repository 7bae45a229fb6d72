//! The prefilter through the database's k-mer index: the seeds' codes name the windows to
//! look at, so a pass with few seeds reads their postings instead of every window. The seed
//! hits are spread into buckets of whole targets, each bucket sorted by residue offset, and
//! each target's hits then find two-hit diagonals and ungapped scores as the scan's do.

use rayon::prelude::*;

use super::neighbors::Seeds;
use super::radix;
use super::two_hit::{Candidate, SlotLayout, TwoHits};
use super::{per_thread, DiagonalScorer};
use crate::db::{Database, KmerIndex};

/// Residues per bucket: a bucket ends at the first target start this far past its own
/// start. Few buckets (about 630 for 165 M residues) keep the spread's write streams few;
/// a bucket's offsets then span at most 19 bits (the longest target is 100 000 residues):
/// two radix passes.
const BUCKET_RESIDUES: usize = 1 << 18;
/// Residues per block of the offset-to-bucket table (at most one bucket starts in a block).
const BLOCK_SHIFT: u32 = 16;
/// Bits of one radix digit.
const DIGIT_BITS: u32 = 10;

/// Buckets of whole targets, and which bucket each residue offset falls in.
struct Buckets {
    block_shift: u32,
    /// Each bucket's first target, then the number of targets.
    first_target: Vec<u32>,
    /// Each bucket's first residue offset, then the number of residues.
    start: Vec<u32>,
    /// Per block: the bucket of its first residue, and where the next bucket starts when
    /// that is within the block (`u32::MAX` otherwise).
    blocks: Vec<(u32, u32)>,
}

impl Buckets {
    /// Buckets of at least `residues_per_bucket` residues (but the last), looked up by
    /// blocks of `1 << block_shift` residues, no larger than a bucket.
    fn new(db: &Database, residues_per_bucket: usize, block_shift: u32) -> Buckets {
        assert!(
            residues_per_bucket >= 1 << block_shift,
            "one bucket start per block"
        );
        let residues = db.residues().len();
        let mut first_target = vec![0u32];
        let mut start = vec![0u32];
        for t in 1..db.len() {
            let at = db.sequence_start(t);
            if at - start[start.len() - 1] as usize >= residues_per_bucket {
                first_target.push(t as u32);
                start.push(at as u32);
            }
        }
        first_target.push(db.len() as u32);
        start.push(residues as u32);
        let mut blocks = Vec::with_capacity((residues >> block_shift) + 1);
        let mut bucket = 0;
        for block in 0..=(residues >> block_shift) {
            let first = (block << block_shift) as u32;
            while bucket + 2 < start.len() && start[bucket + 1] <= first {
                bucket += 1;
            }
            let next = start[bucket + 1];
            let within = u64::from(next) < u64::from(first) + (1 << block_shift);
            let boundary = if within && bucket + 2 < start.len() {
                next
            } else {
                u32::MAX
            };
            blocks.push((bucket as u32, boundary));
        }
        Buckets {
            block_shift,
            first_target,
            start,
            blocks,
        }
    }

    fn len(&self) -> usize {
        self.first_target.len() - 1
    }

    /// The bucket of residue offset `at`.
    #[inline]
    fn of(&self, at: u32) -> usize {
        let (bucket, boundary) = self.blocks[(at >> self.block_shift) as usize];
        bucket as usize + (at >= boundary) as usize
    }
}

/// One share of the seeded codes' hits, per bucket: `offset << 32 | key`.
pub type Spread = Vec<Vec<u64>>;

/// Seeds ahead whose postings' start is asked of the cache, and seeds ahead whose postings
/// are (their start by then in the cache).
const STARTS_AHEAD: usize = 16;
const POSTINGS_AHEAD: usize = 8;

/// Seed hits `Σ postings(code)` over the seeds, counted until they pass `limit`: the work of
/// an indexed pass, against the scan's one step per database window.
pub fn indexed_hits(seeds: &Seeds, index: &KmerIndex, limit: usize) -> usize {
    let mut hits = 0;
    for (code, _) in seeds.pairs() {
        hits += index.count(code);
        if hits > limit {
            break;
        }
    }
    hits
}

/// An indexed pass: what it reads.
pub struct IndexedPass<'a> {
    pub db: &'a Database,
    pub index: &'a KmerIndex<'a>,
    /// The seeds, `code << 32 | key` sorted by code ([`Seeds::by_code`]).
    pub seeds: &'a [u64],
    pub layout: &'a SlotLayout,
    pub scorer: &'a DiagonalScorer<'a>,
}

impl IndexedPass<'_> {
    /// The scan's (query, candidate) pairs, found through the index; the hits are spread into
    /// `recycled`'s buffers (an earlier pass's), which get this pass's back.
    pub fn candidates(
        &self,
        min_ungapped: i32,
        progress: &(dyn Fn(usize) + Sync),
        recycled: &mut Vec<Spread>,
    ) -> Vec<Vec<(u32, Candidate)>> {
        let buckets = Buckets::new(self.db, BUCKET_RESIDUES, BLOCK_SHIFT);
        self.candidates_in(&buckets, min_ungapped, progress, recycled)
    }

    fn candidates_in(
        &self,
        buckets: &Buckets,
        min_ungapped: i32,
        progress: &(dyn Fn(usize) + Sync),
        recycled: &mut Vec<Spread>,
    ) -> Vec<Vec<(u32, Candidate)>> {
        let IndexedPass {
            db,
            index,
            seeds,
            layout,
            scorer,
        } = *self;
        let shares = rayon::current_num_threads() * 4;
        let shares: Vec<&[u64]> = seeds.chunks(seeds.len().div_ceil(shares).max(1)).collect();
        let buffers: Vec<Spread> = shares
            .iter()
            .map(|_| recycled.pop().unwrap_or_default())
            .collect();
        let spreads: Vec<Spread> = shares
            .into_par_iter()
            .zip(buffers)
            .map(|(share, buffers)| spread(share, index, buckets, buffers))
            .collect();
        let found = per_thread(
            buckets.len(),
            || (TwoHits::new(scorer, layout), [Vec::new(), Vec::new()]),
            |(state, buffers), bucket| {
                let parts: Vec<&[u64]> = spreads.iter().map(|s| &s[bucket][..]).collect();
                let base = buckets.start[bucket];
                let span = buckets.start[bucket + 1] - base;
                let hits = sort_by_offset(&parts, buffers, base, span);
                let mut out = Vec::new();
                let mut target = buckets.first_target[bucket] as usize;
                let mut rest = hits;
                while let Some(&first) = rest.first() {
                    let at = (first >> 32) as usize;
                    while db.sequence_start(target + 1) <= at {
                        target += 1;
                    }
                    let start = db.sequence_start(target);
                    let end = db.sequence_start(target + 1);
                    let n = rest.partition_point(|&h| ((h >> 32) as usize) < end);
                    let seeds = rest[..n]
                        .iter()
                        .map(|&h| ((h >> 32) as u32 - start as u32, h as u32));
                    state.take_hits(
                        target as u32,
                        db.sequence(target),
                        seeds,
                        min_ungapped,
                        &mut out,
                    );
                    rest = &rest[n..];
                }
                let targets = buckets.first_target[bucket + 1] - buckets.first_target[bucket];
                progress(targets as usize);
                out
            },
        );
        recycled.extend(spreads);
        found
    }
}

/// The hits of the postings of `seeds` (`code << 32 | key`, sorted by code), spread into the
/// buckets (each given room for its share of the hits, as if they fell evenly on the
/// residues), in `spread`'s vectors (emptied; an earlier pass's keep their memory). Every
/// code's postings start and postings are a cache miss: they are asked for ahead.
fn spread(seeds: &[u64], index: &KmerIndex, buckets: &Buckets, mut spread: Spread) -> Spread {
    let code = |pair: u64| (pair >> 32) as u32;
    let hits: usize = seeds.iter().map(|&pair| index.count(code(pair))).sum();
    let residues = *buckets.start.last().unwrap_or(&0) as f64;
    spread.resize_with(buckets.len(), Vec::new);
    for (b, bucket) in spread.iter_mut().enumerate() {
        let share = f64::from(buckets.start[b + 1] - buckets.start[b]) / residues.max(1.0);
        bucket.clear();
        bucket.reserve((1.2 * share * hits as f64) as usize + 16);
    }
    let mut k = 0;
    while let Some(&first) = seeds.get(k) {
        if let Some(&ahead) = seeds.get(k + STARTS_AHEAD) {
            index.prefetch_start(code(ahead));
        }
        if let Some(&ahead) = seeds.get(k + POSTINGS_AHEAD) {
            index.prefetch_postings(code(ahead));
        }
        let keys = seeds[k..]
            .iter()
            .take_while(|&&pair| code(pair) == code(first))
            .count();
        let keys = &seeds[k..k + keys];
        for at in index.postings(code(first)) {
            let bucket = &mut spread[buckets.of(at)];
            bucket.extend(
                keys.iter()
                    .map(|&pair| (u64::from(at) << 32) | (pair & u64::from(u32::MAX))),
            );
        }
        k += keys.len();
    }
    spread
}

/// The hits of `parts` (offsets `base..base + span`) sorted by offset, stably, in one of
/// `buffers`.
fn sort_by_offset<'b>(
    parts: &[&[u64]],
    buffers: &'b mut [Vec<u64>; 2],
    base: u32,
    span: u32,
) -> &'b [u64] {
    let bits = 32 - span.saturating_sub(1).leading_zeros();
    radix::sort_by_key(parts, buffers, bits, DIGIT_BITS, |h| {
        (h >> 32) as u32 - base
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::neighbors::SeedTable;
    use super::*;
    use crate::alphabet::{decode, X};
    use crate::db::build_database;
    use crate::matrix::Pssm;
    use crate::test_rng::TestRng;

    /// A database of random targets of many lengths, some holding stretches of `queries`
    /// (with an `X` inside), others ending in an `X`.
    fn database(dir: &std::path::Path, queries: &[Vec<u8>]) -> Database {
        let mut rng = TestRng(11);
        let mut fasta = String::new();
        for t in 0..120 {
            let mut target: Vec<u8> = (0..(3 + t * 5 % 170))
                .map(|_| rng.below(20) as u8)
                .collect();
            if t % 4 == 0 {
                let q = &queries[t % queries.len()];
                let from = t % 30;
                target.extend_from_slice(&q[from..from + 40]);
                target.push(X);
                target.extend_from_slice(&q[from + 41..from + 60]);
            } else if t % 7 == 0 {
                target.push(X);
            }
            fasta.push_str(&format!(">t{t}\n{}\n", decode(&target)));
        }
        let input = dir.join("in.fa");
        std::fs::write(&input, fasta).unwrap();
        let path = dir.join("db.ffdb");
        build_database(&input, &path, &mut |_| {}).unwrap();
        Database::open(&path).unwrap()
    }

    fn sorted(found: Vec<Vec<(u32, Candidate)>>) -> Vec<(u32, Candidate)> {
        let mut found: Vec<_> = found.into_iter().flatten().collect();
        found.sort_by_key(|&(q, c)| (c.target, q));
        found
    }

    #[test]
    fn indexed_passes_find_the_scans_candidates() {
        let mut rng = TestRng(5);
        let queries: Vec<Vec<u8>> = (0..3)
            .map(|q| (0..100 + 20 * q).map(|_| rng.below(20) as u8).collect())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), &queries);
        let index = db.kmer_index().expect("a small database has an index");
        let pssms: Vec<Pssm> = queries.iter().map(|q| Pssm::from_sequence(q)).collect();
        let pssms: Vec<&Pssm> = pssms.iter().collect();
        let layout = SlotLayout::new(&pssms, db.max_length());
        let table = SeedTable::build(&pssms, &[11, 12, 13], |q, pos| {
            layout.seed_key(&pssms, q, pos)
        });
        let scorer = DiagonalScorer::new(&pssms);
        let scanned = sorted(super::super::scan(
            &db,
            &table,
            &layout,
            &scorer,
            15,
            &|_| {},
        ));
        // Random targets pass too (a low threshold), and every planted stretch is found.
        assert!(scanned.len() > 40, "{}", scanned.len());
        for t in (0..120).step_by(4) {
            assert!(scanned.iter().any(|(_, c)| c.target == t), "target {t}");
        }
        let (mut seeds, _) = table.into_parts();
        let pass = IndexedPass {
            db: &db,
            index: &index,
            seeds: seeds.by_code(),
            layout: &layout,
            scorer: &scorer,
        };
        // The search's buckets (one here), and small ones that split the targets' residues
        // into many buckets and blocks; each pass in the spread buffers the last one left.
        let mut recycled = Vec::new();
        for (residues, shift) in [(BUCKET_RESIDUES, BLOCK_SHIFT), (64, 6), (50, 3), (1, 0)] {
            let buckets = Buckets::new(&db, residues, shift);
            let reported = AtomicUsize::new(0);
            let progress = |n| {
                reported.fetch_add(n, Ordering::Relaxed);
            };
            let found = sorted(pass.candidates_in(&buckets, 15, &progress, &mut recycled));
            assert_eq!(found, scanned, "buckets of {residues}");
            assert_eq!(reported.into_inner(), db.len());
        }
    }

    #[test]
    fn every_offset_falls_in_the_bucket_that_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let queries = vec![(0..100).map(|i| (i % 20) as u8).collect::<Vec<u8>>()];
        let db = database(dir.path(), &queries);
        for (residues, shift) in [(64, 6), (50, 3), (200, 7), (1, 0)] {
            let buckets = Buckets::new(&db, residues, shift);
            assert!(buckets.len() > 1);
            for at in 0..db.residues().len() as u32 {
                let b = buckets.of(at);
                assert!(
                    buckets.start[b] <= at && at < buckets.start[b + 1],
                    "{at} in {b}"
                );
                let first = buckets.first_target[b] as usize;
                assert_eq!(db.sequence_start(first), buckets.start[b] as usize);
            }
        }
    }
}
