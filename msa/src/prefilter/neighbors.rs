//! Similar k-mers: every k-mer whose score against a query window reaches a threshold
//! (BLAST's neighbourhood words, MMseqs2's similar k-mers), gathered for a batch of queries
//! so the database is read once per batch: sorted by code for an indexed pass, in one
//! lookup table of every code for the scan.

use rayon::prelude::*;

use super::radix;
use crate::kmer::{prefetch, CODES, K};
use crate::matrix::Pssm;

/// Most k-mers taken for one query window: bounds the table for flat profiles.
const MAX_PER_WINDOW: usize = 4096;
/// Bits of one digit of the sort by code (two passes over 22-bit codes).
const CODE_DIGIT_BITS: u32 = 11;

/// One k-mer code's seeds: up to two inline (unused words [`Entry::UNUSED`]), more as
/// `OVERFLOW | start` and the count of a run in the table's overflow array. Most database
/// windows match at most two seeds, so the scan's one random read per window (8 bytes, one
/// cache line) usually holds all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct Entry([u32; 2]);

impl Entry {
    const UNUSED: u32 = u32::MAX;
    const OVERFLOW: u32 = 1 << 31;
    /// No seeds.
    pub const EMPTY: Entry = Entry([Entry::UNUSED; 2]);

    /// The inline words: keys, or [`Entry::UNUSED`] (above every key) where there are fewer
    /// than two; meaningless for an entry with overflow.
    #[inline]
    pub fn inline_keys(&self) -> [u32; 2] {
        self.0
    }

    /// Start of the entry's run in the overflow array, if it has one.
    #[inline]
    fn overflow_start(&self) -> Option<u32> {
        let first = self.0[0];
        (first != Entry::UNUSED && first & Entry::OVERFLOW != 0).then_some(first & !Entry::OVERFLOW)
    }
}

/// Seeds of all queries of a batch, as `code << 32 | key`, query by query and window by
/// window: a few hundred thousand at low sensitivity, which an indexed pass reads sorted by
/// code, against the 3.2 M codes of the scan's table.
#[derive(Default)]
pub struct Seeds {
    per_query: Vec<Vec<u64>>,
    /// [`Seeds::by_code`]'s buffers.
    sort_buffers: [Vec<u64>; 2],
}

impl Seeds {
    /// Seeds of every k-mer scoring at least the query's threshold against one of its windows;
    /// `key(query, pos)` gives each seed's key (the scan stores its diagonal-slot offset,
    /// which names both the query and the window), below 2^31. In an earlier pass's arrays,
    /// if given.
    pub fn enumerate(
        old: Option<Seeds>,
        queries: &[&Pssm],
        thresholds: &[i32],
        key: impl Fn(u32, u32) -> u32 + Sync,
    ) -> Seeds {
        let mut seeds = old.unwrap_or_default();
        let per_query = &mut seeds.per_query;
        per_query.resize_with(queries.len(), Vec::new);
        // The queries' neighbourhoods enumerated in parallel.
        (per_query, queries, thresholds)
            .into_par_iter()
            .enumerate()
            .for_each(|(q, (pairs, pssm, &threshold))| {
                pairs.clear();
                for pos in 0..pssm.len().saturating_sub(K - 1) {
                    let seed = key(q as u32, pos as u32);
                    assert!(seed < Entry::OVERFLOW, "seed key {seed} beyond 31 bits");
                    for_each_neighbor(pssm, pos, threshold, |code, _| {
                        pairs.push(u64::from(code) << 32 | u64::from(seed))
                    });
                }
            });
        seeds
    }

    /// Every seed as `(code, key)`, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.per_query
            .iter()
            .flatten()
            .map(|&pair| ((pair >> 32) as u32, pair as u32))
    }

    /// Number of seeds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.per_query.iter().map(Vec::len).sum()
    }

    /// The seeds sorted by code, stably (each code's in enumeration order), as
    /// `code << 32 | key`.
    pub fn by_code(&mut self) -> &[u64] {
        let parts: Vec<&[u64]> = self.per_query.iter().map(|p| &p[..]).collect();
        let code_bits = 32 - (CODES as u32 - 1).leading_zeros();
        radix::sort_by_key(
            &parts,
            &mut self.sort_buffers,
            code_bits,
            CODE_DIGIT_BITS,
            |pair| (pair >> 32) as u32,
        )
    }
}

/// The scan's lookup table of a batch's seeds, by k-mer code.
pub struct SeedTable {
    seeds: Seeds,
    entries: Vec<Entry>,
    /// One bit per code: whether it has any seed. 400 kB, so it stays in the L2 cache where
    /// the entries (25.6 MB) do not: the scan skips the entry reads of windows without seeds
    /// (most windows for a few queries, a quarter for dozens; cheaper than the entry reads
    /// even then).
    occupied: Vec<u64>,
    /// The seeds of codes with more than two, code by code: 4-byte keys (see
    /// [`Seeds::enumerate`]), as the scan's reads are random and the table's size sets its
    /// cache misses.
    overflow: Vec<u32>,
}

/// A table's arrays, kept for the next table: new ones (38 MB) cost a page fault per 4 kB
/// page, refilling old ones a pass over memory.
pub type TableArrays = (Vec<Entry>, Vec<u64>, Vec<u32>);

impl SeedTable {
    /// [`Seeds::enumerate`]'s seeds in a new table.
    #[cfg(test)]
    pub fn build(
        queries: &[&Pssm],
        thresholds: &[i32],
        key: impl Fn(u32, u32) -> u32 + Sync,
    ) -> SeedTable {
        SeedTable::new(Seeds::enumerate(None, queries, thresholds, key), None)
    }

    /// The table of `seeds`, in an earlier table's arrays if given.
    pub fn new(seeds: Seeds, old: Option<TableArrays>) -> SeedTable {
        let pairs = || seeds.pairs();
        // The table in shares of the codes, one per thread: each reads every pair and writes
        // its own codes only, so its random writes stay within its share of the table (and
        // its pages are first touched by its own thread).
        let span = CODES.div_ceil(64 * rayon::current_num_threads()) * 64;
        let shares: Vec<std::ops::Range<usize>> = (0..CODES)
            .step_by(span)
            .map(|lo| lo..(lo + span).min(CODES))
            .collect();
        let counts: Vec<Vec<u32>> = shares
            .par_iter()
            .map(|share| {
                let mut counts = vec![0u32; share.len()];
                for (code, _) in pairs() {
                    if share.contains(&(code as usize)) {
                        counts[code as usize - share.start] += 1;
                    }
                }
                counts
            })
            .collect();
        // Runs in the overflow array for the codes with more than two seeds: each share's
        // runs start where the previous share's end.
        let mut overflow_len = 0usize;
        let starts: Vec<usize> = counts
            .iter()
            .map(|counts| {
                let start = overflow_len;
                overflow_len += counts
                    .iter()
                    .filter(|&&c| c > 2)
                    .map(|&c| c as usize)
                    .sum::<usize>();
                start
            })
            .collect();
        assert!(
            overflow_len < Entry::OVERFLOW as usize,
            "seed table beyond 2^31 seeds"
        );
        let (mut entries, mut occupied, mut overflow) = old.unwrap_or_default();
        overflow.clear();
        overflow.resize(overflow_len, 0);
        let mut overflow_shares = Vec::with_capacity(shares.len());
        let mut rest = &mut overflow[..];
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(overflow_len);
            let (share, after) = rest.split_at_mut(end - start);
            overflow_shares.push(share);
            rest = after;
        }
        // Filled by the shares' threads (an old table's too).
        entries.clear();
        entries.par_extend((0..CODES).into_par_iter().map(|_| Entry::EMPTY));
        occupied.clear();
        occupied.resize(CODES.div_ceil(64), 0);
        entries
            .par_chunks_mut(span)
            .zip(occupied.par_chunks_mut(span / 64))
            .zip(&shares)
            .zip(&counts)
            .zip(&starts)
            .zip(overflow_shares)
            .for_each(
                |(((((entries, occupied), share), counts), &start), overflow)| {
                    let mut run = start as u32;
                    for (k, (entry, &count)) in entries.iter_mut().zip(counts).enumerate() {
                        if count > 0 {
                            occupied[k / 64] |= 1 << (k % 64);
                        }
                        if count > 2 {
                            *entry = Entry([Entry::OVERFLOW | run, 0]);
                            run += count;
                        }
                    }
                    for (code, seed) in pairs() {
                        if !share.contains(&(code as usize)) {
                            continue;
                        }
                        let entry = &mut entries[code as usize - share.start];
                        match entry.overflow_start() {
                            Some(at) => {
                                overflow[at as usize - start + entry.0[1] as usize] = seed;
                                entry.0[1] += 1;
                            }
                            None if entry.0[0] == Entry::UNUSED => entry.0[0] = seed,
                            None => entry.0[1] = seed,
                        }
                    }
                },
            );
        SeedTable {
            seeds,
            entries,
            occupied,
            overflow,
        }
    }

    /// The seeds, and the arrays for the next table.
    pub fn into_parts(self) -> (Seeds, TableArrays) {
        (self.seeds, (self.entries, self.occupied, self.overflow))
    }

    /// The entry of one k-mer code.
    #[inline]
    pub fn entry(&self, code: u32) -> Entry {
        self.entries[code as usize]
    }

    /// The seeds of an entry with more than two, `None` for an inline one.
    #[inline]
    pub fn overflow_of(&self, entry: &Entry) -> Option<&[u32]> {
        let start = entry.overflow_start()?;
        Some(&self.overflow[start as usize..(start + entry.0[1]) as usize])
    }

    /// Seeds of one k-mer code.
    #[cfg(test)]
    pub fn seeds(&self, code: u32) -> &[u32] {
        let entry = &self.entries[code as usize];
        match self.overflow_of(entry) {
            Some(seeds) => seeds,
            None => {
                let used = entry.0.iter().filter(|&&w| w != Entry::UNUSED).count();
                &entry.0[..used]
            }
        }
    }

    /// The codes with seeds, in increasing order.
    #[cfg(test)]
    pub fn seeded_codes(&self) -> impl Iterator<Item = u32> + '_ {
        self.occupied.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let code = w as u32 * 64 + bits.trailing_zeros();
                    bits &= bits - 1;
                    code
                })
            })
        })
    }

    /// The occupancy bitmap: bit `code % 64` of word `code / 64` says whether `code` has
    /// seeds.
    pub fn occupancy(&self) -> &[u64] {
        &self.occupied
    }

    /// Whether `code` has any seed (from the L2-sized bitmap, not the entries).
    #[inline]
    pub fn occupied(&self, code: u32) -> bool {
        let code = code as usize;
        (self.occupied[code / 64] >> (code % 64)) & 1 != 0
    }

    /// Asks the cache for the entry of `code` ahead of its use: the scan's table reads are
    /// random over megabytes and otherwise wait on memory.
    #[inline]
    pub fn prefetch(&self, code: u32) {
        prefetch(self.entries.as_ptr().wrapping_add(code as usize));
    }

    /// Asks the cache for the overflow seeds of an entry, if it has any (without a branch:
    /// an inline entry asks for the array's start).
    #[inline]
    pub fn prefetch_seeds(&self, entry: &Entry) {
        let start = entry.overflow_start().unwrap_or(0);
        prefetch(self.overflow.as_ptr().wrapping_add(start as usize));
    }
}

/// Seeds of all the query's windows at `threshold` (what [`lowest_threshold_within`] counts).
#[cfg(test)]
pub fn count_seeds(pssm: &Pssm, threshold: i32) -> usize {
    (0..pssm.len().saturating_sub(K - 1))
        .map(|pos| window_seeds(pssm, pos, threshold))
        .sum()
}

/// Seeds of the window at `pos`.
fn window_seeds(pssm: &Pssm, pos: usize, threshold: i32) -> usize {
    let mut n = 0;
    for_each_neighbor(pssm, pos, threshold, |_, _| n += 1);
    n
}

/// The lowest k-mer threshold from `base` up at which `pssm` seeds at most `budget` times (at
/// least once), with that count: the size of its seed table, which batches are cut by. One
/// enumeration at `base` gives every
/// higher threshold's count, from the k-mers' scores; only a window cut at
/// [`MAX_PER_WINDOW`] there is enumerated again at each threshold.
pub fn lowest_threshold_within(pssm: &Pssm, base: i32, budget: usize) -> (i32, usize) {
    // Per score from `base` up: k-mers of the windows that were not cut.
    let mut by_score: Vec<usize> = Vec::new();
    let mut cut = Vec::new();
    let mut scores = Vec::with_capacity(MAX_PER_WINDOW);
    for pos in 0..pssm.len().saturating_sub(K - 1) {
        scores.clear();
        for_each_neighbor(pssm, pos, base, |_, score| scores.push(score - base));
        if scores.len() == MAX_PER_WINDOW {
            cut.push(pos);
            continue;
        }
        for &above in &scores {
            let above = above as usize;
            if above >= by_score.len() {
                by_score.resize(above + 1, 0);
            }
            by_score[above] += 1;
        }
    }
    let mut threshold = base;
    // Seeds of the windows that were not cut, at `threshold`.
    let mut whole: usize = by_score.iter().sum();
    loop {
        let seeds = whole
            + cut
                .iter()
                .map(|&pos| window_seeds(pssm, pos, threshold))
                .sum::<usize>();
        if seeds <= budget.max(1) {
            return (threshold, seeds);
        }
        whole -= by_score
            .get((threshold - base) as usize)
            .copied()
            .unwrap_or(0);
        threshold += 1;
    }
}

/// Calls `emit` with the code and score of every k-mer (of the 20 amino acids) scoring at
/// least `threshold` against the window at `pos`, at most [`MAX_PER_WINDOW`] of them:
/// depth-first over residues in descending score order, cut as soon as the best possible
/// completion falls short.
fn for_each_neighbor(pssm: &Pssm, pos: usize, threshold: i32, mut emit: impl FnMut(u32, i32)) {
    // Per window column: residues by descending score.
    let mut order = [[(0i32, 0u8); 20]; K];
    for (t, column) in order.iter_mut().enumerate() {
        for (a, entry) in column.iter_mut().enumerate() {
            *entry = (pssm.score(pos + t, a as u8), a as u8);
        }
        column.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
    }
    // best_rest[t]: the highest score columns t.. can add.
    let mut best_rest = [0i32; K + 1];
    for t in (0..K).rev() {
        best_rest[t] = best_rest[t + 1] + order[t][0].0;
    }
    let mut emitted = 0usize;
    let mut choice = [0usize; K];
    let mut partial = [0i32; K + 1];
    let mut code = [0u32; K + 1];
    let mut t = 0usize;
    // Iterative depth-first search: choice[t] is the next residue tried in column t.
    loop {
        if choice[t] < 20 {
            let (score, residue) = order[t][choice[t]];
            choice[t] += 1;
            let total = partial[t] + score;
            if total + best_rest[t + 1] < threshold {
                // Later residues of this column score lower still: column exhausted.
                choice[t] = 20;
                continue;
            }
            partial[t + 1] = total;
            code[t + 1] = code[t] * 20 + residue as u32;
            if t + 1 == K {
                emit(code[K], total);
                emitted += 1;
                if emitted == MAX_PER_WINDOW {
                    return;
                }
            } else {
                t += 1;
                choice[t] = 0;
            }
        } else if t == 0 {
            return;
        } else {
            t -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kmer_code(kmer: &[u8]) -> u32 {
        kmer.iter().fold(0u32, |code, &c| code * 20 + c as u32)
    }

    fn brute_force(pssm: &Pssm, pos: usize, threshold: i32) -> Vec<u32> {
        (0..CODES as u32)
            .filter(|&code| {
                let mut rest = code;
                let mut score = 0;
                for t in (0..K).rev() {
                    score += pssm.score(pos + t, (rest % 20) as u8);
                    rest /= 20;
                }
                score >= threshold
            })
            .collect()
    }

    #[test]
    fn neighbours_are_exactly_the_kmers_above_threshold() {
        let query: Vec<u8> = b"MKTAYIAKQRQISFVKSHFSRQ"
            .iter()
            .map(|&c| crate::alphabet::encode_letter(c).unwrap())
            .collect();
        let pssm = Pssm::from_sequence(&query);
        for (pos, threshold) in [(0, 20), (3, 14), (10, 24), (17, 18)] {
            let mut ours = Vec::new();
            for_each_neighbor(&pssm, pos, threshold, |c, _| ours.push(c));
            ours.sort_unstable();
            assert_eq!(
                ours,
                brute_force(&pssm, pos, threshold),
                "pos {pos} T {threshold}"
            );
        }
        // Each neighbour comes with its score.
        for_each_neighbor(&pssm, 5, 12, |code, score| {
            let residues = (0..K)
                .rev()
                .map(|t| (code / 20u32.pow(t as u32) % 20) as u8);
            let expected: i32 = residues
                .enumerate()
                .map(|(t, a)| pssm.score(5 + t, a))
                .sum();
            assert_eq!(score, expected, "code {code}");
        });
        // The query's own k-mer is its best neighbour.
        let seeds = Seeds::enumerate(None, &[&pssm], &[15], |q, pos| 1000 * (q + 7) + pos);
        assert_eq!(seeds.len(), count_seeds(&pssm, 15));
        let table = SeedTable::new(seeds, None);
        let own = kmer_code(&query[2..2 + K]);
        assert!(table.seeds(own).contains(&7002));
    }

    /// Built in shares of the codes, one per thread, the table holds every seed of every
    /// code in enumeration order (query, then window), whatever the thread count, in new
    /// arrays or an earlier table's.
    #[test]
    fn the_table_holds_each_codes_seeds_in_order() {
        let mut rng = crate::test_rng::TestRng(4);
        let queries: Vec<Pssm> = [40, 7, 120]
            .iter()
            .map(|&n| Pssm::from_sequence(&rng.residues(n)))
            .collect();
        let refs: Vec<&Pssm> = queries.iter().collect();
        let key = |q: u32, pos: u32| 1000 * q + pos;
        let mut expected: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        for (q, pssm) in queries.iter().enumerate() {
            for pos in 0..pssm.len().saturating_sub(K - 1) {
                for_each_neighbor(pssm, pos, 12, |code, _| {
                    expected
                        .entry(code)
                        .or_default()
                        .push(key(q as u32, pos as u32))
                });
            }
        }
        let mut recycled = None;
        for threads in [1, 3, 7] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (old_seeds, old_arrays) = recycled.take().unzip();
            let seeds = Seeds::enumerate(old_seeds, &refs, &[12, 12, 12], key);
            let table = pool.install(|| SeedTable::new(seeds, old_arrays));
            let seeded: Vec<u32> = table.seeded_codes().collect();
            assert!(seeded.iter().eq(expected.keys()), "{threads} threads");
            for (&code, seeds) in &expected {
                assert_eq!(
                    table.seeds(code),
                    &seeds[..],
                    "{threads} threads, code {code}"
                );
                assert!(table.occupied(code));
            }
            let (mut seeds, arrays) = table.into_parts();
            assert_eq!(seeds.len(), expected.values().map(Vec::len).sum::<usize>());
            // By code, each code's seeds in enumeration order.
            let by_code: Vec<(u32, u32)> = expected
                .iter()
                .flat_map(|(&code, keys)| keys.iter().map(move |&key| (code, key)))
                .collect();
            let sorted: Vec<(u32, u32)> = seeds
                .by_code()
                .iter()
                .map(|&pair| ((pair >> 32) as u32, pair as u32))
                .collect();
            assert_eq!(sorted, by_code);
            recycled = Some((seeds, arrays));
        }
    }

    /// The threshold search gives what counting at each threshold in turn gives, with windows
    /// cut at [`MAX_PER_WINDOW`] (flat stretches, where every k-mer scores alike) and not.
    #[test]
    fn the_lowest_threshold_within_a_budget_is_the_counted_one() {
        let query = crate::test_rng::TestRng(3).residues(300);
        let mut pssm = Pssm::from_sequence(&query);
        for row in &mut pssm.rows[100..110] {
            row[..20].fill(3);
        }
        let linear = |base: i32, budget: usize| {
            let mut threshold = base;
            while count_seeds(&pssm, threshold) > budget.max(1) {
                threshold += 1;
            }
            (threshold, count_seeds(&pssm, threshold))
        };
        let at_base = count_seeds(&pssm, 11);
        for budget in [0, 1, 50, 1000, 20_000, at_base / 2, at_base, at_base + 1] {
            assert_eq!(
                lowest_threshold_within(&pssm, 11, budget),
                linear(11, budget),
                "budget {budget}"
            );
        }
    }
}
