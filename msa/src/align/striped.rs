//! Farrar's striped Smith–Waterman on AVX2 with saturating lanes: query position
//! `s + k * seg_len` in lane `k` of segment `s`, so the inner loop has no dependency between
//! lanes and the vertical gaps are fixed up afterwards by the "lazy F" loop. A first pass in
//! 32 `i8` lanes settles most targets (unrelated ones score below 127); a saturated one is
//! rerun in 16 `i16` lanes.

use std::arch::x86_64::*;
use std::borrow::Cow;

use super::gaps::PositionGaps;
use super::LocalScore;
use crate::alphabet::ALPHABET_SIZE;
use crate::matrix::Pssm;

/// The striped query profile at one lane width: `seg_len` vectors of scores per residue code,
/// and per segment the gap costs of its positions.
#[derive(Debug, Clone)]
struct Striped<T> {
    seg_len: usize,
    scores: Vec<__m256i>,
    gaps: Vec<SegmentGaps>,
    extend: T,
}

/// A segment's gap costs, lane by lane (see [`PositionGaps`]).
#[derive(Debug, Clone, Copy)]
struct SegmentGaps {
    /// Opening and first extension of an insertion after the position.
    insertion: __m256i,
    /// Opening and first extension of a deletion starting at the next position (the next
    /// segment's, or the next lane's first segment's for the last segment).
    next_deletion: __m256i,
    /// Closing a deletion that ends at the position.
    deletion_close: __m256i,
    /// The lazy-F loop goes on while F exceeds H less this: `next_deletion` where a position
    /// follows (F no higher cannot beat the opening there), 0 at the last position (F can
    /// only raise H), and MIN at padding positions (never).
    lazy_bound: __m256i,
}

/// The query profile at both lane widths.
#[derive(Debug, Clone)]
pub(super) struct Profile {
    len: usize,
    narrow: Striped<i8>,
    wide: Striped<i16>,
}

/// Column buffers, resized (never shrunk) to the query in hand.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    h_store: Vec<__m256i>,
    h_load: Vec<__m256i>,
    e: Vec<__m256i>,
    best_column: Vec<__m256i>,
}

/// Builds the striped profile and the kernel for one lane type.
macro_rules! striped {
    ($lane:ty, $build:ident, $kernel:ident, $adds:ident, $subs:ident, $max:ident,
     $cmpgt:ident, $set1:ident) => {
        fn $build(pssm: &Pssm, gaps: &PositionGaps) -> Striped<$lane> {
            const LANES: usize = 32 / size_of::<$lane>();
            let seg_len = pssm.len().div_ceil(LANES);
            // A gap dearer than the lane maximum is as good as impossible for a score below
            // it; padding positions' gaps are impossible.
            let saturate = |cost: i32| cost.min(<$lane>::MAX as i32) as $lane;
            let striped_costs = |segment: usize, cost: &dyn Fn(usize) -> $lane| {
                let lanes: [$lane; LANES] = std::array::from_fn(|k| cost(segment + k * seg_len));
                // SAFETY: both are 32 plain bytes.
                unsafe { std::mem::transmute::<[$lane; LANES], __m256i>(lanes) }
            };
            let m = pssm.len();
            let extend = gaps.extend;
            let next_deletion = |i: usize| {
                gaps.deletion_open
                    .get(i + 1)
                    .map_or(<$lane>::MAX, |&c| saturate(c + extend))
            };
            let segment_gaps = (0..seg_len)
                .map(|segment| SegmentGaps {
                    insertion: striped_costs(segment, &|i| {
                        gaps.insertion_open
                            .get(i)
                            .map_or(<$lane>::MAX, |&c| saturate(c + extend))
                    }),
                    next_deletion: striped_costs(segment, &next_deletion),
                    deletion_close: striped_costs(segment, &|i| {
                        gaps.deletion_close
                            .get(i)
                            .map_or(<$lane>::MAX, |&c| saturate(c))
                    }),
                    lazy_bound: striped_costs(segment, &|i| match i + 1 {
                        next if next < m => next_deletion(i),
                        next if next == m => 0,
                        _ => <$lane>::MIN,
                    }),
                })
                .collect();
            let mut scores = Vec::with_capacity(ALPHABET_SIZE * seg_len);
            for code in 0..ALPHABET_SIZE {
                for segment in 0..seg_len {
                    // Padding positions score MIN: they never reach 0, so never the maximum.
                    let lanes: [$lane; LANES] = std::array::from_fn(|k| {
                        let row = pssm.rows.get(segment + k * seg_len);
                        row.map_or(<$lane>::MIN, |row| row[code] as $lane)
                    });
                    // SAFETY: both are 32 plain bytes.
                    scores.push(unsafe { std::mem::transmute::<[$lane; LANES], __m256i>(lanes) });
                }
            }
            Striped {
                seg_len,
                scores,
                gaps: segment_gaps,
                extend: saturate(gaps.extend),
            }
        }

        /// Best score (saturated at the lane maximum) and its end cell, first in target order
        /// then query order; `len` (the query length) and `target` non-empty. Stops after the
        /// first column whose best reaches `stop_at` (a score known to be the maximum).
        #[target_feature(enable = "avx2")]
        fn $kernel(
            profile: &Striped<$lane>,
            len: usize,
            target: &[u8],
            buffers: &mut Buffers,
            stop_at: $lane,
        ) -> Option<LocalScore> {
            const LANES: usize = 32 / size_of::<$lane>();
            /// Shifts lanes up by one (lane `k` gets lane `k - 1`), lane 0 gets 0.
            #[inline]
            #[target_feature(enable = "avx2")]
            fn shift_up(v: __m256i) -> __m256i {
                let carry = _mm256_permute2x128_si256::<0x08>(v, v);
                _mm256_alignr_epi8::<{ 16 - size_of::<$lane>() as i32 }>(v, carry)
            }
            #[inline]
            #[target_feature(enable = "avx2")]
            fn any_greater(a: __m256i, b: __m256i) -> bool {
                _mm256_movemask_epi8($cmpgt(a, b)) != 0
            }
            fn to_lanes(v: __m256i) -> [$lane; LANES] {
                // SAFETY: both are 32 plain bytes.
                unsafe { std::mem::transmute::<__m256i, [$lane; LANES]>(v) }
            }

            let seg_len = profile.seg_len;
            let zero = _mm256_setzero_si256();
            let min = $set1(<$lane>::MIN);
            let mut lane0 = [0 as $lane; LANES];
            lane0[0] = <$lane>::MIN;
            // SAFETY: both are 32 plain bytes.
            let lane0_min = unsafe { std::mem::transmute::<[$lane; LANES], __m256i>(lane0) };
            let extend = $set1(profile.extend);
            let gaps = &profile.gaps[..seg_len];
            let Buffers {
                h_store,
                h_load,
                e,
                best_column,
            } = buffers;
            for (buffer, fill) in [(&mut *h_store, zero), (&mut *h_load, zero), (&mut *e, min)] {
                buffer.clear();
                buffer.resize(seg_len, fill);
            }
            best_column.resize(seg_len, zero);

            let mut best: $lane = 0;
            let mut best_vector = zero;
            let mut target_end = 0;
            for (j, &code) in target.iter().enumerate() {
                let scores = &profile.scores[code as usize * seg_len..][..seg_len];
                // H(i - 1, j - 1) of the first segment: the last segment of the previous column.
                let mut h = shift_up(h_store[seg_len - 1]);
                std::mem::swap(h_store, h_load);
                let mut f = min;
                let mut column_max = zero;
                let cells = h_store.iter_mut().zip(e.iter_mut()).zip(h_load.iter());
                for ((((h_out, e_cell), h_previous), &score), costs) in cells.zip(scores).zip(gaps)
                {
                    h = $adds(h, score);
                    let e_here = *e_cell;
                    h = $max(h, zero);
                    h = $max(h, e_here);
                    h = $max(h, $subs(f, costs.deletion_close));
                    *h_out = h;
                    column_max = $max(column_max, h);
                    *e_cell = $max($subs(e_here, extend), $subs(h, costs.insertion));
                    f = $max($subs(f, extend), $subs(h, costs.next_deletion));
                    h = *h_previous;
                }
                // Lazy F: carry deletions across lanes until no lane can raise H any more: once
                // F is at most H less the next position's opening, neither this cell nor any
                // later one gains from it. F shifted out of the last lane leaves MIN behind,
                // so this ends within LANES passes.
                f = _mm256_or_si256(shift_up(f), lane0_min);
                let mut s = 0;
                while any_greater(f, $subs(h_store[s], gaps[s].lazy_bound)) {
                    let h = $max(h_store[s], $subs(f, gaps[s].deletion_close));
                    h_store[s] = h;
                    e[s] = $max(e[s], $subs(h, gaps[s].insertion));
                    f = $subs(f, extend);
                    s += 1;
                    if s == seg_len {
                        s = 0;
                        f = _mm256_or_si256(shift_up(f), lane0_min);
                    }
                }
                // Cells raised by F stay below the column's maximum, found in the first pass.
                if any_greater(column_max, best_vector) {
                    // Horizontal maximum: fold the 128-bit halves, then ever shorter shifts.
                    let mut m = $max(
                        column_max,
                        _mm256_permute2x128_si256::<1>(column_max, column_max),
                    );
                    m = $max(m, _mm256_srli_si256::<8>(m));
                    m = $max(m, _mm256_srli_si256::<4>(m));
                    m = $max(m, _mm256_srli_si256::<2>(m));
                    if size_of::<$lane>() == 1 {
                        m = $max(m, _mm256_srli_si256::<1>(m));
                    }
                    best = to_lanes(m)[0];
                    if best == <$lane>::MAX {
                        // Saturated: the caller reruns at a wider type, the end cell is moot.
                        return Some(LocalScore {
                            score: best as i32,
                            query_end: 0,
                            target_end: j,
                        });
                    }
                    best_vector = $set1(best);
                    target_end = j;
                    best_column.copy_from_slice(h_store);
                    if best >= stop_at {
                        break;
                    }
                }
            }
            if best == 0 {
                return None;
            }
            let query_end = (0..len)
                .find(|&i| to_lanes(best_column[i % seg_len])[i / seg_len] == best)
                .expect("the best column holds the best score");
            Some(LocalScore {
                score: best as i32,
                query_end,
                target_end,
            })
        }
    };
}

striped!(
    i8,
    build_narrow,
    kernel_narrow,
    _mm256_adds_epi8,
    _mm256_subs_epi8,
    _mm256_max_epi8,
    _mm256_cmpgt_epi8,
    _mm256_set1_epi8
);
striped!(
    i16,
    build_wide,
    kernel_wide,
    _mm256_adds_epi16,
    _mm256_subs_epi16,
    _mm256_max_epi16,
    _mm256_cmpgt_epi16,
    _mm256_set1_epi16
);

impl Profile {
    pub(super) fn new(pssm: &Pssm, gaps: &PositionGaps) -> Profile {
        Profile {
            len: pssm.len(),
            narrow: build_narrow(pssm, gaps),
            wide: build_wide(pssm, gaps),
        }
    }

    /// Best score (saturated at `i16::MAX`) and its end cell; `pssm` and `target` non-empty.
    pub(super) fn score(&self, target: &[u8], buffers: &mut Buffers) -> Option<LocalScore> {
        self.score_up_to(target, buffers, i16::MAX)
    }

    /// [`Profile::score`] up to `stop` (in `1..=i16::MAX`): a best score that reaches it ends
    /// the scan, and the cell where it did comes back with a score of at least `stop`.
    pub(super) fn score_up_to(
        &self,
        target: &[u8],
        buffers: &mut Buffers,
        stop: i16,
    ) -> Option<LocalScore> {
        // SAFETY: this module is compiled only when AVX2 is enabled for the whole build.
        unsafe {
            let narrow = kernel_narrow(&self.narrow, self.len, target, buffers, i8::MAX);
            if narrow.is_none_or(|s| s.score < i8::MAX as i32) {
                return narrow;
            }
            kernel_wide(&self.wide, self.len, target, buffers, stop)
        }
    }

    /// [`Profile::score`] in `i16` lanes only, for targets known to saturate `i8`.
    pub(super) fn score_wide(&self, target: &[u8], buffers: &mut Buffers) -> Option<LocalScore> {
        // SAFETY: this module is compiled only when AVX2 is enabled for the whole build.
        unsafe { kernel_wide(&self.wide, self.len, target, buffers, i16::MAX) }
    }

    /// The end cell of the best local alignment with `target` when its score is known to be
    /// `score` (in `1..i16::MAX`): the scan stops at the first column that reaches it.
    pub(super) fn end_of(
        &self,
        target: &[u8],
        buffers: &mut Buffers,
        score: i32,
    ) -> Option<LocalScore> {
        end_at_score(
            || Cow::Borrowed(&self.narrow),
            || Cow::Borrowed(&self.wide),
            self.len,
            target,
            buffers,
            score,
        )
    }
}

/// [`Profile::end_of`] for a one-off query (e.g. a reversed prefix): only the lane width that
/// holds `score` is built.
pub(super) fn end_of_known_score(
    pssm: &Pssm,
    gaps: &PositionGaps,
    target: &[u8],
    buffers: &mut Buffers,
    score: i32,
) -> Option<LocalScore> {
    end_at_score(
        || Cow::Owned(build_narrow(pssm, gaps)),
        || Cow::Owned(build_wide(pssm, gaps)),
        pssm.len(),
        target,
        buffers,
        score,
    )
}

/// The kernel of the lane width that holds `score` (in `1..i16::MAX`), stopped where the
/// score is reached; the profile of that width comes from `narrow` or `wide`.
fn end_at_score<'p>(
    narrow: impl FnOnce() -> Cow<'p, Striped<i8>>,
    wide: impl FnOnce() -> Cow<'p, Striped<i16>>,
    len: usize,
    target: &[u8],
    buffers: &mut Buffers,
    score: i32,
) -> Option<LocalScore> {
    debug_assert!((1..i16::MAX as i32).contains(&score));
    // SAFETY: this module is compiled only when AVX2 is enabled for the whole build.
    unsafe {
        if score < i8::MAX as i32 {
            kernel_narrow(&narrow(), len, target, buffers, score as i8)
        } else {
            kernel_wide(&wide(), len, target, buffers, score as i16)
        }
    }
}
