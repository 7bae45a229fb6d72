//! The SIMD kernel and the traceback against the scalar reference.

use super::*;
use crate::alphabet::{encode, X};
use crate::matrix::{GapDiscount, BLOSUM62_GAPS};

/// SplitMix64: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Residues, about one in 50 an `X`.
    fn sequence(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if self.below(50) == 0 {
                    X
                } else {
                    self.below(20) as u8
                }
            })
            .collect()
    }

    /// A homolog: substitutions, insertions and deletions at `rate` percent each.
    fn mutate(&mut self, seq: &[u8], rate: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for &c in seq {
            match self.below(100) {
                r if r < rate => out.push(self.below(21) as u8),
                r if r < 2 * rate => {
                    out.push(c);
                    let len = 1 + self.below(4);
                    out.extend(self.sequence(len));
                }
                r if r < 3 * rate => {}
                _ => out.push(c),
            }
        }
        out
    }

    /// A query of up to `max_len` residues and its PSSM: BLOSUM62 rows, or in every third
    /// round random ones with gap discounts.
    fn query(&mut self, round: usize, max_len: usize) -> (Vec<u8>, Pssm) {
        let m = 1 + self.below(max_len);
        let query = self.sequence(m);
        let pssm = if round % 3 == 2 {
            self.pssm(m, -8, 6)
        } else {
            Pssm::from_sequence(&query)
        };
        (query, pssm)
    }

    /// A PSSM of random rows in `low..=high`, with gap discounts of up to 12 at about a third
    /// of its positions (each kind separately).
    fn pssm(&mut self, len: usize, low: i32, high: i32) -> Pssm {
        let span = (high - low + 1) as usize;
        let rows = (0..len)
            .map(|_| std::array::from_fn(|_| (low + self.below(span) as i32) as i8))
            .collect();
        let mut discount = || {
            if self.below(3) == 0 {
                self.below(13) as u8
            } else {
                0
            }
        };
        let gap_discounts = (0..len)
            .map(|_| GapDiscount {
                deletion: discount(),
                insertion: discount(),
            })
            .collect();
        Pssm {
            rows,
            gap_discounts,
        }
    }
}

/// The score of `alignment` recomputed from its columns: a deletion's opening charged at its
/// first query position, an insertion's at the query position before it.
fn rescore(alignment: &Alignment, pssm: &Pssm, target: &[u8], gaps: GapCosts) -> i32 {
    let open = |discount: u8| (gaps.open - discount as i32).max(0);
    let (mut i, mut j, mut score) = (alignment.query_start, alignment.target_start, 0);
    let mut previous = AlignOp::Match;
    for &op in &alignment.ops {
        if op != previous {
            score -= match op {
                AlignOp::Match => 0,
                AlignOp::Insertion => open(pssm.gap_discount(i - 1).insertion),
                AlignOp::Deletion => open(pssm.gap_discount(i).deletion),
            };
        }
        match op {
            AlignOp::Match => {
                score += pssm.score(i, target[j]);
                i += 1;
                j += 1;
            }
            AlignOp::Insertion => {
                score -= gaps.extend;
                j += 1;
            }
            AlignOp::Deletion => {
                score -= gaps.extend;
                i += 1;
            }
        }
        previous = op;
    }
    assert_eq!((i, j), (alignment.query_end + 1, alignment.target_end + 1));
    score
}

/// SIMD score == scalar score (and end cell); the alignment rescored == the score.
fn check(pssm: &Pssm, target: &[u8], gaps: GapCosts, scratch: &mut Scratch) -> Option<i32> {
    let reference = scalar_score(pssm, target, gaps);
    let profile = QueryProfile::new(pssm, gaps);
    let fast = profile.score(target, scratch);
    assert_eq!(
        fast,
        reference,
        "m {} n {} {gaps:?}",
        pssm.len(),
        target.len()
    );
    let alignment = profile.align(target, scratch).unwrap();
    assert_eq!(alignment.is_some(), reference.is_some());
    let (Some(reference), Some(alignment)) = (reference, alignment) else {
        return None;
    };
    assert_eq!(alignment.score, reference.score);
    assert_eq!(
        (alignment.query_end, alignment.target_end),
        (reference.query_end, reference.target_end)
    );
    assert_eq!(rescore(&alignment, pssm, target, gaps), reference.score);
    if gaps.open + gaps.extend > 0 {
        assert_eq!(alignment.ops.first(), Some(&AlignOp::Match));
        assert_eq!(alignment.ops.last(), Some(&AlignOp::Match));
    }
    Some(reference.score)
}

const GAP_VARIANTS: [GapCosts; 5] = [
    BLOSUM62_GAPS,
    GapCosts { open: 5, extend: 2 },
    GapCosts { open: 0, extend: 1 },
    GapCosts { open: 3, extend: 0 },
    GapCosts { open: 0, extend: 0 },
];

#[test]
fn random_pairs_and_profiles_match_the_scalar_reference() {
    let mut rng = Rng(1);
    let mut scratch = Scratch::new();
    for round in 0..400 {
        let m = 1 + rng.below(if round % 4 == 0 { 40 } else { 600 });
        let n = 1 + rng.below(600);
        let query = rng.sequence(m);
        let pssm = match round % 3 {
            0 => Pssm::from_sequence(&query),
            1 => rng.pssm(m, -8, 6),
            _ => rng.pssm(m, -128, 127),
        };
        let target = rng.sequence(n);
        check(
            &pssm,
            &target,
            GAP_VARIANTS[round % GAP_VARIANTS.len()],
            &mut scratch,
        );
    }
}

#[test]
fn homologs_with_indels_match_the_scalar_reference() {
    let mut rng = Rng(2);
    let mut scratch = Scratch::new();
    for round in 0..150 {
        let m = 1 + rng.below(600);
        let query = rng.sequence(m);
        let (before, after) = (rng.below(50), rng.below(50));
        let target = [
            rng.sequence(before),
            rng.mutate(&query, 2 + round % 15),
            rng.sequence(after),
        ]
        .concat();
        let pssm = Pssm::from_sequence(&query);
        let gaps = GAP_VARIANTS[round % GAP_VARIANTS.len()];
        let score = check(&pssm, &target, gaps, &mut scratch);
        if round % 15 < 5 && m > 50 && gaps == BLOSUM62_GAPS {
            let alignment = align(&pssm, &target, gaps).unwrap().unwrap();
            assert!(score.unwrap() > 0);
            assert!(alignment.identities(&query, &target) * 2 > alignment.aligned_len());
        }
    }
}

#[test]
fn a_real_pair_aligns_with_its_gap() {
    // Ubiquitin against itself with five residues removed from the middle.
    let query =
        encode(b"MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG")
            .unwrap();
    let target = [&query[..30], &query[35..]].concat();
    let pssm = Pssm::from_sequence(&query);
    check(&pssm, &target, BLOSUM62_GAPS, &mut Scratch::new());
    let alignment = align(&pssm, &target, BLOSUM62_GAPS).unwrap().unwrap();
    assert_eq!((alignment.query_start, alignment.query_end), (0, 75));
    assert_eq!((alignment.target_start, alignment.target_end), (0, 70));
    assert_eq!(alignment.identities(&query, &target), 71);
    assert_eq!(alignment.aligned_len(), 76);
    let deletions = alignment
        .ops
        .iter()
        .filter(|&&op| op == AlignOp::Deletion)
        .count();
    assert_eq!(deletions, 5);
}

#[test]
fn all_negative_scores_give_no_alignment() {
    let mut rng = Rng(3);
    let mut scratch = Scratch::new();
    for m in [1, 15, 16, 17, 100] {
        let pssm = rng.pssm(m, -20, -1);
        let target = rng.sequence(200);
        assert_eq!(check(&pssm, &target, BLOSUM62_GAPS, &mut scratch), None);
    }
    // X against X scores -1 in BLOSUM62.
    let xs = vec![X; 50];
    assert_eq!(
        check(&Pssm::from_sequence(&xs), &xs, BLOSUM62_GAPS, &mut scratch),
        None
    );
    let empty = Pssm::new(Vec::new());
    assert_eq!(check(&empty, &xs, BLOSUM62_GAPS, &mut scratch), None);
    assert_eq!(
        check(&Pssm::from_sequence(&xs), &[], BLOSUM62_GAPS, &mut scratch),
        None
    );
}

#[test]
fn lengths_around_the_lane_count_and_scratch_reuse() {
    let mut rng = Rng(4);
    let mut scratch = Scratch::new();
    for m in (1..=70).chain([255, 256, 257, 511, 512, 513]).rev() {
        let query = rng.sequence(m);
        let pssm = Pssm::from_sequence(&query);
        for n in [1, 2, 15, 16, 17, 33, m] {
            check(&pssm, &rng.sequence(n), BLOSUM62_GAPS, &mut scratch);
            check(&pssm, &rng.mutate(&query, 5), BLOSUM62_GAPS, &mut scratch);
        }
    }
}

#[test]
fn saturating_scores_fall_back_to_the_exact_score() {
    // 5000 W against itself: 11 × 5000 = 55 000, beyond i16.
    let w = vec![17u8; 5000];
    let pssm = Pssm::from_sequence(&w);
    let profile = QueryProfile::new(&pssm, BLOSUM62_GAPS);
    let score = profile.score(&w, &mut Scratch::new()).unwrap();
    assert_eq!(
        score,
        LocalScore {
            score: 55_000,
            query_end: 4999,
            target_end: 4999
        }
    );
    assert_eq!(Some(score), scalar_score(&pssm, &w, BLOSUM62_GAPS));
    // A long homolog, scored near and beyond the i16 limit.
    let mut rng = Rng(5);
    let query = rng.sequence(7600);
    let target = rng.mutate(&query, 2);
    let score = check(
        &Pssm::from_sequence(&query),
        &target,
        BLOSUM62_GAPS,
        &mut Scratch::new(),
    );
    assert!(score.unwrap() > i16::MAX as i32, "{score:?}");
}

#[test]
fn the_reversed_kernel_finds_the_scalar_start() {
    let mut rng = Rng(8);
    let mut scratch = Scratch::new();
    for round in 0..300 {
        let m = 1 + rng.below(400);
        let query = rng.sequence(m);
        let target = if round % 2 == 0 {
            let before = rng.below(30);
            [rng.sequence(before), rng.mutate(&query, 2 + round % 20)].concat()
        } else {
            let n = 1 + rng.below(400);
            rng.sequence(n)
        };
        let pssm = match round % 3 {
            0 => Pssm::from_sequence(&query),
            1 => rng.pssm(m, -8, 6),
            _ => rng.pssm(m, -128, 127),
        };
        let gaps = GAP_VARIANTS[round % GAP_VARIANTS.len()];
        let profile = QueryProfile::new(&pssm, gaps);
        if let Some(end) = profile.score(&target, &mut scratch) {
            assert_eq!(
                profile.find_start(&target, end, &mut scratch),
                traceback::find_start(&pssm, &target, &PositionGaps::new(&pssm, gaps), end),
                "round {round}"
            );
        }
    }
}

#[test]
fn oversized_tracebacks_are_refused() {
    let w = vec![17u8; 9000];
    let pssm = Pssm::from_sequence(&w);
    let error = align(&pssm, &w, BLOSUM62_GAPS).unwrap_err();
    assert_eq!(
        error,
        TracebackTooLarge {
            query_start: 0,
            query_end: 8999,
            target_start: 0,
            target_end: 8999
        }
    );
}

/// The banded traceback of `profile`'s best local alignment with `target` against the
/// whole-rectangle Gotoh: same score (the local one), the same columns when the whole-rectangle
/// path lies in the first or second band, and `i32` and `i64` arithmetic alike; then
/// [`check`]. Returns how many of the first two bands fell short of the score (2: the corner
/// band doubled).
fn check_bands(pssm: &Pssm, target: &[u8], gaps: GapCosts, scratch: &mut Scratch) -> usize {
    let profile = QueryProfile::new(pssm, gaps);
    let Some(end) = profile.score(target, scratch) else {
        return 0;
    };
    let (query_start, target_start) = profile.find_start(target, end, scratch);
    let rows = end.query_end - query_start + 1;
    let rectangle = &target[target_start..=end.target_end];
    let goal = i64::from(end.score);
    let position_gaps = PositionGaps::new(pssm, gaps);
    let band = |shape, wide| {
        traceback::band_for_tests(
            pssm,
            query_start,
            rows,
            rectangle,
            &position_gaps,
            shape,
            wide,
        )
    };
    let full = band(traceback::Shape::Corners(usize::MAX / 4), true);
    assert_eq!(full.0, goal);
    let banded =
        traceback::banded_traceback(pssm, query_start, rows, rectangle, &position_gaps, goal);
    assert_eq!(banded.0, goal);
    let first_shape = traceback::Shape::Line(traceback::LINE_HALF_WIDTH);
    let first = band(first_shape, false);
    assert_eq!(first, band(first_shape, true));
    assert!(first.0 <= goal);
    let corners = traceback::Shape::Corners(traceback::CORNER_HALF_WIDTH);
    let second = band(corners, false);
    assert_eq!(second, band(corners, true));
    assert!(second.0 <= goal);
    let columns = rectangle.len();
    for (shape, (score, ops)) in [(first_shape, &first), (corners, &second)] {
        if traceback::band_holds(rows, columns, shape, &full.1) {
            assert_eq!((*score, ops), (full.0, &full.1));
        }
    }
    if first.0 == goal {
        assert_eq!(banded, first);
    }
    check(pssm, target, gaps, scratch);
    usize::from(first.0 < goal) + usize::from(second.0 < goal)
}

#[test]
fn bands_double_until_they_reach_the_score() {
    let mut rng = Rng(11);
    let mut scratch = Scratch::new();
    let query = rng.sequence(600);
    let pssm = Pssm::from_sequence(&query);
    let q = |range: std::ops::Range<usize>| query[range].to_vec();
    // An 80-residue insertion, then an 80-residue deletion: the corners share a diagonal, the
    // path strays 80 from it.
    let target = [q(0..100), rng.sequence(80), q(100..200), q(280..400)].concat();
    assert_eq!(check_bands(&pssm, &target, BLOSUM62_GAPS, &mut scratch), 2);
    // The same with the deletion first.
    let target = [q(0..100), q(180..300), rng.sequence(80), q(300..420)].concat();
    assert_eq!(check_bands(&pssm, &target, BLOSUM62_GAPS, &mut scratch), 2);
    // Rows ≫ columns: a 70-residue insertion, then a 350-residue deletion.
    let target = [q(0..80), rng.sequence(70), q(80..150), q(500..600)].concat();
    let gaps = GapCosts { open: 3, extend: 0 };
    assert_eq!(check_bands(&pssm, &target, gaps, &mut scratch), 2);
    // Columns ≫ rows: a 70-residue deletion, then a 350-residue insertion.
    let short = Pssm::from_sequence(&query[..250]);
    let target = [q(0..80), q(150..200), rng.sequence(350), q(200..250)].concat();
    assert_eq!(check_bands(&short, &target, gaps, &mut scratch), 2);
    // Long gaps of 60 to 150 residues at random, every gap variant.
    let mut short = [0; 3];
    for round in 0..120 {
        let m = 200 + rng.below(300);
        let query = rng.sequence(m);
        let mut target = Vec::new();
        let mut at = 0;
        while at < m {
            let piece = (30 + rng.below(120)).min(m - at);
            target.extend(rng.mutate(&query[at..at + piece], round % 8));
            at += piece;
            let gap = 60 + rng.below(91);
            if rng.below(2) == 0 {
                target.extend(rng.sequence(gap));
            } else {
                at += gap;
            }
        }
        let gaps = GAP_VARIANTS[round % GAP_VARIANTS.len()];
        let pssm = match round % 3 {
            2 => rng.pssm(m, -8, 6),
            _ => Pssm::from_sequence(&query),
        };
        short[check_bands(&pssm, &target, gaps, &mut scratch)] += 1;
    }
    assert!(short[1] >= 10 && short[2] >= 10, "{short:?}");
}

#[test]
fn bands_agree_with_the_whole_rectangle_on_homologs() {
    let mut rng = Rng(12);
    let mut scratch = Scratch::new();
    for round in 0..200 {
        let m = 1 + rng.below(500);
        let query = rng.sequence(m);
        let target = match round % 4 {
            0 => {
                let n = 1 + rng.below(500);
                rng.sequence(n)
            }
            _ => rng.mutate(&query, 2 + round % 25),
        };
        let pssm = match round % 3 {
            0 => Pssm::from_sequence(&query),
            1 => rng.pssm(m, -8, 6),
            _ => rng.pssm(m, -128, 127),
        };
        check_bands(&pssm, &target, GAP_VARIANTS[round % 5], &mut scratch);
    }
}

#[test]
fn huge_gap_costs_trace_back_in_i64() {
    // 2 400 × 2 400 with gaps of 30 000 + 30 000 per residue: the bound on the rectangle's
    // scores passes i32::MAX / 8, so the traceback runs in i64.
    let mut rng = Rng(13);
    let query = rng.sequence(2400);
    let target: Vec<u8> = query
        .iter()
        .map(|&c| {
            if rng.below(10) == 0 {
                rng.below(20) as u8
            } else {
                c
            }
        })
        .collect();
    let gaps = GapCosts {
        open: 30_000,
        extend: 30_000,
    };
    let pssm = Pssm::from_sequence(&query);
    check_bands(&pssm, &target, gaps, &mut Scratch::new());
    let mut target = target;
    target.insert(1200, 0);
    check_bands(&pssm, &target, gaps, &mut Scratch::new());
}

/// `score_batch` against `scalar_score`, target by target, on the kernel this CPU picks and
/// on the AVX2 one.
fn check_batch(pssm: &Pssm, targets: &[Vec<u8>], gaps: GapCosts, scratch: &mut Scratch) {
    let profile = QueryProfile::new(pssm, gaps);
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    let profiles = [profile.clone(), profile.with_avx2_batch_kernel()];
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    let profiles = [profile];
    for (kernel, profile) in profiles.iter().enumerate() {
        let scores = profile.score_batch(targets, scratch);
        assert_eq!(scores.len(), targets.len());
        for (k, (target, &score)) in targets.iter().zip(&scores).enumerate() {
            let reference = scalar_score(pssm, target, gaps).map_or(0, |s| s.score);
            assert_eq!(
                score,
                reference,
                "kernel {kernel}, target {k} of {}: m {} n {} {gaps:?}",
                targets.len(),
                pssm.len(),
                target.len()
            );
        }
    }
}

#[test]
fn batches_match_the_scalar_reference() {
    let mut rng = Rng(9);
    let mut scratch = Scratch::new();
    for round in 0..60 {
        let m = 1 + rng.below(if round % 4 == 0 { 40 } else { 400 });
        let query = rng.sequence(m);
        let pssm = match round % 3 {
            0 => Pssm::from_sequence(&query),
            1 => rng.pssm(m, -8, 6),
            _ => rng.pssm(m, -128, 127),
        };
        // Around the 32 and 64 lanes of the two kernels.
        let size = [1, 31, 32, 33, 63, 64, 65, 100][round % 8];
        let targets: Vec<Vec<u8>> = (0..size)
            .map(|k| match k % 7 {
                // Homologs (some beyond the byte range), an empty target, random ones.
                0 => rng.mutate(&query, 2 + k % 20),
                3 if round % 2 == 0 => Vec::new(),
                _ => {
                    let n = 1 + rng.below(700);
                    rng.sequence(n)
                }
            })
            .collect();
        let gaps = GAP_VARIANTS[(round / 5) % GAP_VARIANTS.len()];
        check_batch(&pssm, &targets, gaps, &mut scratch);
    }
}

/// Targets far longer than the others go apart, to the striped kernel (its cost model), and
/// their scores are the lanes' own: exact, or the byte ceiling where the cap lets it stand.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[test]
fn long_targets_scored_apart_keep_their_scores() {
    let mut rng = Rng(15);
    let mut scratch = Scratch::new();
    let query = rng.sequence(150);
    let pssm = Pssm::from_sequence(&query);
    let profile = QueryProfile::new(&pssm, BLOSUM62_GAPS);
    for batch in [
        profile.batch.clone(),
        profile.clone().with_avx2_batch_kernel().batch,
    ] {
        assert_eq!(batch.lone_targets(&[]), 0);
        // A few targets: all apart. Many alike: none. One long among many: that one.
        assert_eq!(batch.lone_targets(&[300, 300, 300]), 3);
        assert_eq!(batch.lone_targets(&[300; 500]), 0);
        let mut lengths = vec![8000];
        lengths.extend([300; 500]);
        assert_eq!(batch.lone_targets(&lengths), 1);
    }
    // A long homolog (beyond the byte lanes) and a long random target among short ones.
    let mut long_homolog = rng.sequence(2000);
    long_homolog.extend(rng.mutate(&query, 10));
    let mut targets = vec![long_homolog, rng.sequence(3000)];
    targets.extend((0..200).map(|k| {
        if k % 5 == 0 {
            rng.mutate(&query, 30)
        } else {
            let n = 1 + rng.below(300);
            rng.sequence(n)
        }
    }));
    let exact: Vec<i32> = targets
        .iter()
        .map(|t| scalar_score(&pssm, t, BLOSUM62_GAPS).map_or(0, |s| s.score))
        .collect();
    assert!(exact[0] >= profile.batch.ceiling());
    for profile in [profile.clone(), profile.clone().with_avx2_batch_kernel()] {
        assert_eq!(profile.score_batch(&targets, &mut scratch), exact);
        let ceiling = profile.batch.ceiling();
        let capped = profile.score_batch_capped(&targets, &[], &mut scratch, 60);
        let expected: Vec<i32> = exact.iter().map(|&s| s.min(ceiling)).collect();
        assert_eq!(capped, expected);
    }
}

#[test]
fn batches_with_positive_and_all_negative_profiles() {
    let mut rng = Rng(10);
    let mut scratch = Scratch::new();
    for (round, (low, high)) in [(0, 5), (1, 127), (-20, -1), (-128, -128), (127, 127)]
        .into_iter()
        .enumerate()
    {
        let m = 1 + rng.below(100);
        let pssm = rng.pssm(m, low, high);
        let targets: Vec<Vec<u8>> = (0..40)
            .map(|_| {
                let n = 1 + rng.below(300);
                rng.sequence(n)
            })
            .collect();
        check_batch(&pssm, &targets, GAP_VARIANTS[round], &mut scratch);
    }
    let empty = QueryProfile::new(&Pssm::new(Vec::new()), BLOSUM62_GAPS);
    assert_eq!(empty.score_batch(&[vec![1u8; 5]], &mut scratch), vec![0]);
    let none: [&[u8]; 0] = [];
    assert!(empty.score_batch(&none, &mut scratch).is_empty());
}

#[test]
fn saturating_batches_are_rescored_exactly() {
    let mut rng = Rng(11);
    let mut scratch = Scratch::new();
    // Identical long sequences (far beyond the byte range), mixed with random ones; then
    // W against W beyond i16 (11 × 3100 = 34 100).
    let query = rng.sequence(700);
    let pssm = Pssm::from_sequence(&query);
    let targets: Vec<Vec<u8>> = (0..70)
        .map(|k| match k % 3 {
            0 => query.clone(),
            1 => query[k..k + 40].to_vec(),
            _ => {
                let n = 1 + rng.below(700);
                rng.sequence(n)
            }
        })
        .collect();
    for gaps in GAP_VARIANTS {
        check_batch(&pssm, &targets, gaps, &mut scratch);
    }
    let w = vec![17u8; 3100];
    let profile = QueryProfile::new(&Pssm::from_sequence(&w), BLOSUM62_GAPS);
    let targets = [&w[..], &w[..10], &w[..3000], &[0u8; 20][..]];
    assert_eq!(
        profile.score_batch(&targets, &mut scratch),
        vec![34_100, 110, 33_000, 0]
    );
}

/// `found` is `expected` but for the choice between equal-scoring alignments: the same score
/// and end, and a start and columns that rescore to it.
fn assert_same_up_to_ties(
    found: &Result<Option<Alignment>, TracebackTooLarge>,
    expected: &Result<Option<Alignment>, TracebackTooLarge>,
    pssm: &Pssm,
    target: &[u8],
    gaps: GapCosts,
    context: &str,
) {
    let (Ok(Some(found)), Ok(Some(expected))) = (found, expected) else {
        assert_eq!(found, expected, "{context}");
        return;
    };
    let ends = |a: &Alignment| (a.score, a.query_end, a.target_end);
    assert_eq!(ends(found), ends(expected), "{context}");
    assert_eq!(rescore(found, pssm, target, gaps), found.score, "{context}");
}

#[test]
fn batch_hits_align_as_the_full_passes_do() {
    // Exact batch scores stop the forward and reverse passes early; capped ones are lower
    // bounds: either way the alignment is `align`'s (one at a time), or one of the same
    // score and end (many at once).
    let mut rng = Rng(12);
    let mut scratch = Scratch::new();
    for round in 0..40 {
        let (query, pssm) = rng.query(round, 500);
        let targets: Vec<Vec<u8>> = (0..50)
            .map(|k| {
                if k % 2 == 0 {
                    // Homologs inside random flanks: the end is far from the target's end.
                    let flank = rng.below(300);
                    let mut target = rng.sequence(flank);
                    target.extend(rng.mutate(&query, 2 + k % 25));
                    let flank = rng.below(300);
                    target.extend(rng.sequence(flank));
                    target
                } else {
                    let n = 1 + rng.below(600);
                    rng.sequence(n)
                }
            })
            .collect();
        let gaps = GAP_VARIANTS[round % GAP_VARIANTS.len()];
        let profile = QueryProfile::new(&pssm, gaps);
        let slices: Vec<&[u8]> = targets.iter().map(Vec::as_slice).collect();
        let exact: Vec<i32> = targets
            .iter()
            .map(|t| profile.score(t, &mut scratch).map_or(0, |s| s.score))
            .collect();
        for cap in [1, 60, 200, i32::MAX] {
            let scores = profile.score_batch_capped(&targets, &[], &mut scratch, cap);
            // Floors at the true scores skip the byte lanes for those that would saturate:
            // the same scores come back.
            let floored = profile.score_batch_capped(&targets, &exact, &mut scratch, cap);
            assert_eq!(floored, scores, "round {round}, cap {cap}");
            let mut expected = Vec::new();
            for (target, &score) in targets.iter().zip(&scores) {
                expected.push(profile.align(target, &mut scratch));
                let found = profile.align_batch_hit(target, &mut scratch, score);
                assert_eq!(
                    found,
                    expected[expected.len() - 1],
                    "round {round}, cap {cap}"
                );
            }
            let together = profile.align_batch_hits(&slices, &scores, &mut scratch);
            for ((found, expected), target) in together.iter().zip(&expected).zip(&targets) {
                let context = format!("round {round}, cap {cap}");
                assert_same_up_to_ties(found, expected, &pssm, target, gaps, &context);
            }
        }
    }
}

/// The inter-sequence `u16` kernel alone: end cells as the scalar pass finds them (with and
/// without the known score), whose flags lead back to a start along columns of the score, the
/// start [`traceback::find_start`] finds unless another alignment of that score ties with it.
/// (No AVX-512BW: nothing to check.)
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[test]
fn inter_sequence_ends_match_the_scalar_pass_and_trace_back() {
    let mut rng = Rng(13);
    let mut buffers = ends::Buffers::default();
    let (mut hits, mut other_starts) = (0, 0);
    for round in 0..30 {
        let (query, pssm) = rng.query(round, 400);
        let costs = GAP_VARIANTS[round % GAP_VARIANTS.len()];
        let gaps = PositionGaps::new(&pssm, costs);
        let Some(profile) = ends::Profile::new(&pssm, &gaps) else {
            return;
        };
        let targets: Vec<Vec<u8>> = (0..70)
            .map(|k| match k % 7 {
                0 => Vec::new(),
                1 | 3 | 5 => {
                    let flank = rng.below(200);
                    let mut target = rng.sequence(flank);
                    target.extend(rng.mutate(&query, 2 + k % 20));
                    target
                }
                _ => {
                    let n = 1 + rng.below(500);
                    rng.sequence(n)
                }
            })
            .collect();
        let expected: Vec<Option<LocalScore>> = targets
            .iter()
            .map(|t| scalar_score_with(&pssm, t, &gaps))
            .collect();
        let free: Vec<ends::Job> = targets
            .iter()
            .map(|target| ends::Job {
                target,
                stop_at: None,
            })
            .collect();
        assert_eq!(
            profile.traced_cells(&free, &mut buffers),
            expected,
            "round {round}"
        );
        let known: Vec<ends::Job> = targets
            .iter()
            .zip(&expected)
            .map(|(target, e)| ends::Job {
                target,
                stop_at: e.map(|e| e.score),
            })
            .collect();
        assert_eq!(
            profile.traced_cells(&known, &mut buffers),
            expected,
            "round {round}"
        );
        for (k, end) in expected.iter().enumerate() {
            let Some(end) = *end else { continue };
            let (first, ops) = profile.path(&buffers, &targets[k], k, end).unwrap();
            let alignment = Alignment::between(first, end, ops);
            let context = format!("round {round}, target {k}");
            assert_eq!(
                rescore(&alignment, &pssm, &targets[k], costs),
                end.score,
                "{context}"
            );
            if costs.extend > 0 && costs.open > 0 {
                hits += 1;
                other_starts +=
                    (first != traceback::find_start(&pssm, &targets[k], &gaps, end)) as usize;
            }
        }
    }
    // Where gaps cost something, ties between starts are rare: the walk's start is almost
    // always the nearest one (22 of 722 differ; free gaps tie far more often).
    assert!(
        other_starts * 20 <= hits,
        "{other_starts} of {hits} starts differ"
    );
}

#[test]
fn saturated_batch_hits_take_the_one_target_path() {
    // Scores beyond the `u16` lanes (700 × 100 = 70 000), among ordinary ones.
    let mut rng = Rng(14);
    let mut scratch = Scratch::new();
    let mut rows: Vec<[i8; ALPHABET_SIZE]> = vec![[100; ALPHABET_SIZE]; 700];
    rows[3] = [-100; ALPHABET_SIZE];
    let profile = QueryProfile::new(&Pssm::new(rows), BLOSUM62_GAPS);
    let targets: Vec<Vec<u8>> = (0..40)
        .map(|k| {
            let n = if k % 4 == 0 { 700 } else { 1 + rng.below(60) };
            rng.sequence(n)
        })
        .collect();
    let slices: Vec<&[u8]> = targets.iter().map(Vec::as_slice).collect();
    let scores = profile.score_batch(&targets, &mut scratch);
    let expected: Vec<_> = targets
        .iter()
        .map(|t| profile.align(t, &mut scratch))
        .collect();
    assert!(expected[0].as_ref().unwrap().as_ref().unwrap().score > u16::MAX as i32);
    let together = profile.align_batch_hits(&slices, &scores, &mut scratch);
    for ((found, expected), target) in together.iter().zip(&expected).zip(&targets) {
        assert_same_up_to_ties(found, expected, &profile.pssm, target, BLOSUM62_GAPS, "");
    }
    let empty = QueryProfile::new(&Pssm::new(Vec::new()), BLOSUM62_GAPS);
    assert_eq!(
        empty.align_batch_hits(&slices[..2], &[0, 0], &mut scratch),
        vec![Ok(None), Ok(None)]
    );
}

#[test]
#[should_panic(expected = "outside the alphabet")]
fn batch_residue_codes_are_checked() {
    let profile = QueryProfile::new(&Pssm::from_sequence(&[1, 2, 3]), BLOSUM62_GAPS);
    profile.score_batch(&[vec![1u8, 21]], &mut Scratch::new());
}

/// Speed of the batch kernel against the striped one: a 300- and a 60-residue query against
/// 20 M residues of random targets of 100–600 residues.
/// `cargo test --release -p ferrofold-msa -- --ignored --nocapture batch_gcups`
#[test]
#[ignore]
fn batch_gcups() {
    let mut rng = Rng(12);
    let mut targets: Vec<Vec<u8>> = Vec::new();
    let mut residues = 0;
    while residues < 20_000_000 {
        let len = 100 + rng.below(501);
        residues += len;
        targets.push(rng.sequence(len));
    }
    let mut scratch = Scratch::new();
    for m in [300, 60] {
        let query = rng.sequence(m);
        let profile = QueryProfile::new(&Pssm::from_sequence(&query), BLOSUM62_GAPS);
        let cells = (m * residues) as f64;
        let start = std::time::Instant::now();
        let striped: Vec<i32> = targets
            .iter()
            .map(|t| profile.score(t, &mut scratch).map_or(0, |s| s.score))
            .collect();
        let striped_seconds = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        // In batches of 10 000, as the search scores its candidates.
        let batched: Vec<i32> = targets
            .chunks(10_000)
            .flat_map(|chunk| profile.score_batch(chunk, &mut scratch))
            .collect();
        let batch_seconds = start.elapsed().as_secs_f64();
        assert_eq!(striped, batched);
        println!(
            "query {m}: striped {:.2} GCUPS, batch {:.2} GCUPS ({:.2}x)",
            cells / striped_seconds / 1e9,
            cells / batch_seconds / 1e9,
            striped_seconds / batch_seconds
        );
    }
}

/// Speed of the score kernel: a 300-residue query against 20 M random residues, then against
/// 2 M residues of its homologs (scores above the `i8` range: both passes run).
/// `cargo test --release -p ferrofold-msa -- --ignored --nocapture gcups`
#[test]
#[ignore]
fn gcups() {
    let mut rng = Rng(6);
    let query = rng.sequence(300);
    let pssm = Pssm::from_sequence(&query);
    let profile = QueryProfile::new(&pssm, BLOSUM62_GAPS);
    let mut scratch = Scratch::new();
    let random: Vec<Vec<u8>> = (0..60_000)
        .map(|_| {
            let len = 100 + rng.below(467);
            rng.sequence(len)
        })
        .collect();
    let homologs: Vec<Vec<u8>> = (0..6_000).map(|_| rng.mutate(&query, 10)).collect();
    let start = std::time::Instant::now();
    let residues: usize = random[..6_000].iter().map(Vec::len).sum();
    for target in &random[..6_000] {
        scalar_score(&pssm, target, BLOSUM62_GAPS);
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "scalar: {:.2} GCUPS",
        300.0 * residues as f64 / seconds / 1e9
    );
    for (name, targets) in [("random", random), ("homologs", homologs)] {
        let residues: usize = targets.iter().map(Vec::len).sum();
        let start = std::time::Instant::now();
        let total: i64 = targets
            .iter()
            .map(|t| profile.score(t, &mut scratch).map_or(0, |s| s.score as i64))
            .sum();
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{name}: {residues} residues in {seconds:.3} s: {:.2} GCUPS (mean score {})",
            300.0 * residues as f64 / seconds / 1e9,
            total / targets.len() as i64
        );
    }
}

/// Speed of [`QueryProfile::align`] (score, start and traceback): 2 000 homolog pairs of
/// 300–500 residues at about 30–60 % identity.
/// `cargo test --release -p ferrofold-msa -- --ignored --nocapture align_speed`
#[test]
#[ignore]
fn align_speed() {
    let mut rng = Rng(7);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..2_000)
        .map(|round| {
            let len = 300 + rng.below(201);
            let query = rng.sequence(len);
            let target = rng.mutate(&query, 8 + round % 17);
            (query, target)
        })
        .collect();
    let profiles: Vec<QueryProfile> = pairs
        .iter()
        .map(|(query, _)| QueryProfile::new(&Pssm::from_sequence(query), BLOSUM62_GAPS))
        .collect();
    let mut scratch = Scratch::new();
    let start = std::time::Instant::now();
    let scored: i64 = profiles
        .iter()
        .zip(&pairs)
        .map(|(profile, (_, target))| {
            profile
                .score(target, &mut scratch)
                .map_or(0, |s| s.score as i64)
        })
        .sum();
    let score_seconds = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let (mut aligned, mut identities, mut columns) = (0i64, 0usize, 0usize);
    for (profile, (query, target)) in profiles.iter().zip(&pairs) {
        let alignment = profile.align(target, &mut scratch).unwrap().unwrap();
        aligned += alignment.score as i64;
        identities += alignment.identities(query, target);
        columns += alignment.aligned_len();
    }
    let align_seconds = start.elapsed().as_secs_f64();
    assert_eq!(scored, aligned);
    println!(
        "score only: {:.1} µs/pair; align: {:.1} µs/pair (identity ~{:.0} %, mean score {})",
        score_seconds / pairs.len() as f64 * 1e6,
        align_seconds / pairs.len() as f64 * 1e6,
        100.0 * identities as f64 / columns as f64,
        aligned / pairs.len() as i64
    );
}

/// Speed of the traceback alone on [`align_speed`]'s pairs: the banded traceback against the
/// whole-rectangle Gotoh in `i64` (the traceback before bands), and how often the band doubled.
/// `cargo test --release -p ferrofold-msa -- --ignored --nocapture traceback_speed`
#[test]
#[ignore]
fn traceback_speed() {
    let mut rng = Rng(7);
    let mut scratch = Scratch::new();
    let rectangles: Vec<(Pssm, usize, usize, Vec<u8>, i64)> = (0..2_000)
        .map(|round| {
            let len = 300 + rng.below(201);
            let query = rng.sequence(len);
            let target = rng.mutate(&query, 8 + round % 17);
            let pssm = Pssm::from_sequence(&query);
            let profile = QueryProfile::new(&pssm, BLOSUM62_GAPS);
            let end = profile.score(&target, &mut scratch).unwrap();
            let (query_start, target_start) = profile.find_start(&target, end, &mut scratch);
            let rows = end.query_end - query_start + 1;
            let rectangle = target[target_start..=end.target_end].to_vec();
            (pssm, query_start, rows, rectangle, i64::from(end.score))
        })
        .collect();
    let cells: usize = rectangles.iter().map(|r| r.2 * r.3.len()).sum();
    let gaps = |pssm: &Pssm| PositionGaps::new(pssm, BLOSUM62_GAPS);
    let start = std::time::Instant::now();
    let mut total = 0;
    for (pssm, query_start, rows, rectangle, _) in &rectangles {
        let (score, _) = traceback::band_for_tests(
            pssm,
            *query_start,
            *rows,
            rectangle,
            &gaps(pssm),
            traceback::Shape::Corners(usize::MAX / 4),
            true,
        );
        total += score;
    }
    let full_seconds = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let mut banded_total = 0;
    for (pssm, query_start, rows, rectangle, goal) in &rectangles {
        let (score, _) =
            traceback::banded_traceback(pssm, *query_start, *rows, rectangle, &gaps(pssm), *goal);
        banded_total += score;
    }
    let banded_seconds = start.elapsed().as_secs_f64();
    assert_eq!(total, banded_total);
    let doubled = rectangles
        .iter()
        .filter(|(pssm, query_start, rows, rectangle, goal)| {
            traceback::band_for_tests(
                pssm,
                *query_start,
                *rows,
                rectangle,
                &gaps(pssm),
                traceback::Shape::Line(traceback::LINE_HALF_WIDTH),
                false,
            )
            .0 < *goal
        })
        .count();
    println!(
        "traceback: whole rectangle (i64) {:.1} µs/pair, banded {:.1} µs/pair; {} pairs, mean \
         rectangle {} cells, first band short {doubled} times",
        full_seconds / rectangles.len() as f64 * 1e6,
        banded_seconds / rectangles.len() as f64 * 1e6,
        rectangles.len(),
        cells / rectangles.len()
    );
}
