//! The database scan: every window of a group of targets looked up in the seed table, and
//! each target's seed hits through the two-hit test.

use super::diagonal::DiagonalScorer;
use super::neighbors::{Entry, SeedTable};
use super::two_hit::{Candidate, SlotLayout, TwoHits};
#[cfg(target_arch = "x86_64")]
use crate::kmer::CODES;
use crate::kmer::{window_codes, NO_CODE};

/// Seeded windows between fetching a window's table entry and reading it, and between
/// fetching its overflow seeds and reading those (counted over a whole group of targets, so
/// short targets are prefetched as well as long ones).
const ENTRIES_AHEAD: usize = 48;
const SEEDS_AHEAD: usize = 16;

/// Per-thread state of the scan, reused across targets.
pub struct ScanState<'a> {
    two_hits: TwoHits<'a>,
    table: &'a SeedTable,
    /// The key no seed has (see [`SlotLayout::spare_key`]).
    spare_key: u32,
    /// k-mer code of each window of the group's targets, one target after the other.
    codes: Vec<u32>,
    /// Each target's end in `codes`.
    ends: Vec<usize>,
    /// The table entries of the windows with seeds, one target after the other, with each
    /// window's position in its target; `seeded_ends` holds each target's end.
    entries: Vec<Entry>,
    positions: Vec<u32>,
    /// The codes of those windows.
    seeded_codes: Vec<u32>,
    seeded_ends: Vec<usize>,
    /// Whether this CPU compacts the seeded windows in AVX-512 lanes.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx512: bool,
}

impl<'a> ScanState<'a> {
    pub fn new(
        scorer: &'a DiagonalScorer<'a>,
        table: &'a SeedTable,
        layout: &'a SlotLayout,
    ) -> Self {
        ScanState {
            two_hits: TwoHits::new(scorer, layout),
            table,
            spare_key: layout.spare_key(),
            codes: Vec::new(),
            ends: Vec::new(),
            entries: Vec::new(),
            positions: Vec::new(),
            seeded_codes: Vec::new(),
            avx512: vector_compaction_available(),
            seeded_ends: Vec::new(),
        }
    }

    /// Scans `targets`, database indices `first..`, and appends (query, candidate) for every
    /// query whose best two-hit diagonal in a target scores at least `min_ungapped`. The
    /// table is read in two passes over the group's windows, entries then overflow seeds, so
    /// neither read waits on the other's miss.
    pub fn scan_targets(
        &mut self,
        first: u32,
        targets: &[&[u8]],
        min_ungapped: i32,
        out: &mut Vec<(u32, Candidate)>,
    ) {
        self.codes.clear();
        self.ends.clear();
        for target in targets {
            window_codes(target, &mut self.codes);
            self.ends.push(self.codes.len());
        }
        self.gather_seeded_entries();
        let mut seeded = 0;
        for (k, target) in targets.iter().enumerate() {
            let index = first + k as u32;
            let end = self.seeded_ends[k];
            self.collect_two_hit_diagonals(index + 1, seeded, end);
            seeded = end;
            self.two_hits
                .score_diagonals(index, target, min_ungapped, out);
        }
    }

    /// The table entries of the group's windows that have seeds, with their positions: the
    /// others cost neither a memory read nor a pass through the diagonal slots. The store
    /// does not branch on whether a window has seeds (hard to predict in a batch whose table
    /// is half full).
    fn gather_seeded_entries(&mut self) {
        // Room for every window; only the first `n` hold this group's.
        let windows = self.codes.len();
        if self.entries.len() < windows {
            self.entries.resize(windows, Entry::EMPTY);
        }
        // 16 more: the vector path stores whole registers (even for a group without windows).
        if self.positions.len() < windows + 16 {
            self.positions.resize(windows + 16, 0);
            self.seeded_codes.resize(windows + 16, 0);
        }
        self.seeded_ends.clear();
        // The seeded windows first, one bitmap read each; then their entries, each asked of
        // the cache well ahead of its read (random reads over megabytes).
        let mut n = 0;
        for (k, &end) in self.ends.iter().enumerate() {
            let start = if k == 0 { 0 } else { self.ends[k - 1] };
            let codes = &self.codes[start..end];
            #[cfg(target_arch = "x86_64")]
            if self.avx512 {
                // SAFETY: the CPU has AVX-512F; the outputs have 16 words of room past the
                // windows.
                n = unsafe {
                    compact_seeded_avx512(
                        self.table.occupancy(),
                        codes,
                        &mut self.seeded_codes,
                        &mut self.positions,
                        n,
                    )
                };
                self.seeded_ends.push(n);
                continue;
            }
            for (w, &code) in codes.iter().enumerate() {
                let seeded = code != NO_CODE && self.table.occupied(code);
                // Written whatever `seeded` says: the next window overwrites an empty one.
                self.seeded_codes[n] = code;
                self.positions[n] = w as u32;
                n += seeded as usize;
            }
            self.seeded_ends.push(n);
        }
        let seeded = &self.seeded_codes[..n];
        for (k, &code) in seeded.iter().enumerate() {
            if let Some(&ahead) = seeded.get(k + ENTRIES_AHEAD) {
                self.table.prefetch(ahead);
            }
            self.entries[k] = self.table.entry(code);
        }
    }

    /// Diagonals with two non-overlapping seed hits among the seeded windows `first..end`
    /// (one target's, stamped `stamp`), into `triggered`. Whether a slot is new to the
    /// target is as good as random, so it is selected without a branch; so are an entry's
    /// inline words.
    fn collect_two_hit_diagonals(&mut self, stamp: u32, first: usize, end: usize) {
        self.two_hits.start_target();
        let spare = self.spare_key;
        let group = *self.seeded_ends.last().unwrap_or(&0);
        for i in first..end {
            if let Some(ahead) = self.entries[..group].get(i + SEEDS_AHEAD) {
                self.table.prefetch_seeds(ahead);
            }
            let here = self.positions[i];
            let entry = self.entries[i];
            match self.table.overflow_of(&entry) {
                Some(keys) => {
                    for &key in keys {
                        self.two_hits.hit(stamp, here, key);
                    }
                }
                None => {
                    for key in entry.inline_keys() {
                        self.two_hits.hit(stamp, here, key.min(spare));
                    }
                }
            }
        }
    }
}

fn vector_compaction_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Writes the windows of `codes` that have seeds (`bitmap`, one bit per code) from
/// `seeded[n]` and `positions[n]` on, 16 windows per step: the bitmap words gathered, the
/// seeded lanes' codes and positions compressed together. Returns the new `n`. Each output
/// needs 16 words of room past the last window it may hold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn compact_seeded_avx512(
    bitmap: &[u64],
    codes: &[u32],
    seeded: &mut [u32],
    positions: &mut [u32],
    mut n: usize,
) -> usize {
    use std::arch::x86_64::*;
    assert!(seeded.len() >= n + codes.len() + 16 && positions.len() >= n + codes.len() + 16);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let codes_end = _mm512_set1_epi32(CODES as i32);
    for start in (0..codes.len()).step_by(16) {
        let left = codes.len() - start;
        let lanes: u16 = if left >= 16 {
            u16::MAX
        } else {
            (1 << left) - 1
        };
        // SAFETY (loads and stores): masked-off lanes are not read; the stores fit (assert).
        let code = _mm512_maskz_loadu_epi32(lanes, codes.as_ptr().add(start).cast());
        // Codes below CODES (not NO_CODE): their 32-bit bitmap words lie within `bitmap`.
        let valid = _mm512_mask_cmplt_epu32_mask(lanes, code, codes_end);
        let words = _mm512_mask_i32gather_epi32::<4>(
            _mm512_setzero_si512(),
            valid,
            _mm512_srli_epi32::<5>(code),
            bitmap.as_ptr().cast(),
        );
        let bits = _mm512_srlv_epi32(words, _mm512_and_si512(code, _mm512_set1_epi32(31)));
        let hit = _mm512_mask_test_epi32_mask(valid, bits, _mm512_set1_epi32(1));
        let position = _mm512_add_epi32(iota, _mm512_set1_epi32(start as i32));
        let out = seeded.as_mut_ptr().add(n).cast();
        _mm512_storeu_si512(out, _mm512_maskz_compress_epi32(hit, code));
        let out = positions.as_mut_ptr().add(n).cast();
        _mm512_storeu_si512(out, _mm512_maskz_compress_epi32(hit, position));
        n += hit.count_ones() as usize;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::X;
    use crate::kmer::K;
    use crate::matrix::Pssm;
    use crate::test_rng::TestRng;

    /// The scan's result by its definition: per target and query, the best whole-diagonal
    /// Kadane score among the diagonals holding two seed hits K or more positions apart.
    fn two_hit_reference(
        pssms: &[&Pssm],
        table: &SeedTable,
        layout: &SlotLayout,
        targets: &[Vec<u8>],
        min_ungapped: i32,
    ) -> Vec<(u32, Candidate)> {
        let mut out = Vec::new();
        for (t, target) in targets.iter().enumerate() {
            // Per slot (query and diagonal): the first and last hit's target position.
            let mut spans = std::collections::BTreeMap::<u32, (u32, u32)>::new();
            let mut codes = Vec::new();
            window_codes(target, &mut codes);
            for (here, &code) in codes.iter().enumerate().filter(|(_, &c)| c != NO_CODE) {
                for &key in table.seeds(code) {
                    let here = here as u32;
                    let span = spans.entry(here + key).or_insert((here, here));
                    span.1 = here;
                }
            }
            let mut best = vec![None; pssms.len()];
            for (&slot, &(first, last)) in &spans {
                if last >= first + K as u32 {
                    let (q, diagonal) = layout.locate(slot);
                    let kadane =
                        DiagonalScorer::new(pssms).score(q as usize, target, diagonal as usize);
                    let best = &mut best[q as usize];
                    *best = Some(best.unwrap_or(0).max(kadane));
                }
            }
            for (q, best) in best.into_iter().enumerate() {
                if let Some(ungapped) = best.filter(|&b| b >= min_ungapped) {
                    let target = t as u32;
                    out.push((q as u32, Candidate { target, ungapped }));
                }
            }
        }
        out.sort_by_key(|&(q, c)| (c.target, q));
        out
    }

    #[test]
    fn scan_finds_the_two_hit_diagonals() {
        // Two queries, targets holding stretches of them among random residues and X.
        let mut rng = TestRng(7);
        let mut residue = || rng.below(20) as u8;
        let queries: Vec<Vec<u8>> = (0..2)
            .map(|_| (0..120).map(|_| residue()).collect())
            .collect();
        let mut targets: Vec<Vec<u8>> = Vec::new();
        for t in 0..40 {
            let mut target: Vec<u8> = (0..(60 + t * 7)).map(|_| residue()).collect();
            if t % 3 == 0 {
                let q = &queries[t % 2];
                target.extend_from_slice(&q[t..t + 50]);
                target.push(X);
                target.extend((0..20).map(|_| residue()));
            }
            targets.push(target);
        }
        let pssms: Vec<Pssm> = queries.iter().map(|q| Pssm::from_sequence(q)).collect();
        let pssms: Vec<&Pssm> = pssms.iter().collect();
        let max_len = targets.iter().map(Vec::len).max().unwrap();
        let layout = SlotLayout::new(&pssms, max_len);
        let table = SeedTable::build(&pssms, &[11, 11], |q, pos| layout.seed_key(&pssms, q, pos));
        let scorer = DiagonalScorer::new(&pssms);
        let scan = |vector: bool| {
            let mut state = ScanState::new(&scorer, &table, &layout);
            state.avx512 &= vector;
            let mut found = Vec::new();
            for (group, chunk) in targets.chunks(16).enumerate() {
                let chunk: Vec<&[u8]> = chunk.iter().map(|t| &t[..]).collect();
                state.scan_targets(group as u32 * 16, &chunk, 15, &mut found);
            }
            found.sort_by_key(|&(q, c)| (c.target, q));
            found
        };
        let found = scan(true);
        assert_eq!(
            found,
            two_hit_reference(&pssms, &table, &layout, &targets, 15)
        );
        assert_eq!(scan(false), found);
        // Random targets trigger too (a low threshold), and every planted stretch is found.
        assert!(found.len() > 20, "{found:?}");
        for t in (0..40).step_by(3) {
            assert!(
                found.iter().any(|(_, c)| c.target == t),
                "target {t}: {found:?}"
            );
        }
    }

    #[test]
    fn a_fresh_scan_takes_a_group_without_windows() {
        let pssm = Pssm::from_sequence(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let pssms = [&pssm];
        let layout = SlotLayout::new(&pssms, 4);
        let table = SeedTable::build(&pssms, &[0], |q, pos| layout.seed_key(&pssms, q, pos));
        let scorer = DiagonalScorer::new(&pssms);
        for vector in [true, false] {
            let mut state = ScanState::new(&scorer, &table, &layout);
            state.avx512 &= vector;
            let mut found = Vec::new();
            let short: [&[u8]; 3] = [&[1, 2, 3, 4], &[5], &[]];
            state.scan_targets(0, &short, 15, &mut found);
            assert!(found.is_empty());
        }
    }
}
