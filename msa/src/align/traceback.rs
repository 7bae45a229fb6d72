//! The alignment behind a local score: a reverse pass anchored at the end cell finds where the
//! alignment starts, then a global Gotoh with traceback runs inside that rectangle only. The
//! rectangle's best global alignment scores exactly the local score (it holds one alignment of
//! that score and none above the local maximum), so no full-matrix traceback is needed.
//!
//! Since that score is known in advance, the Gotoh runs in a band first (along the line from
//! corner to corner, then between the corners' diagonals, see [`banded_traceback`]): every
//! path in a band is a path of the rectangle, so a banded optimum equal to the local score is
//! an optimal alignment (exact). Otherwise a wider band, up to the whole rectangle. Flags are stored for band
//! cells only, and scores are `i32` whenever the rectangle's scores cannot approach its range.

use std::ops::{Add, Sub};

use super::gaps::PositionGaps;
use super::{AlignOp, Alignment, LocalScore, TracebackTooLarge, MAX_TRACEBACK_CELLS};
use crate::matrix::Pssm;

/// Below any reachable score yet safe to subtract gap costs from (`i64`: a global alignment's
/// boundary gaps can exceed `i32` with large gap costs).
const NEG: i64 = i64::MIN / 4;

/// Traceback flags of one cell: where H came from, and whether E / F extend a gap.
pub(super) const FROM_DIAGONAL: u8 = 0;
pub(super) const FROM_E: u8 = 1;
pub(super) const FROM_F: u8 = 2;
pub(super) const SOURCE: u8 = 3;
const E_EXTENDS: u8 = 4;
const F_EXTENDS: u8 = 8;

/// The alignment of score `end.score` from `start` (query, target; from [`find_start`] or an
/// equivalent) to `end`'s cell, `end` being the best local cell.
pub(super) fn align_between(
    pssm: &Pssm,
    target: &[u8],
    gaps: &PositionGaps,
    (query_start, target_start): (usize, usize),
    end: LocalScore,
) -> Result<Alignment, TracebackTooLarge> {
    let rows = end.query_end - query_start + 1;
    let columns = end.target_end - target_start + 1;
    let too_large = TracebackTooLarge {
        query_start,
        query_end: end.query_end,
        target_start,
        target_end: end.target_end,
    };
    let cells = (rows + 1).checked_mul(columns + 1).ok_or(too_large)?;
    if cells > MAX_TRACEBACK_CELLS {
        return Err(too_large);
    }
    let (score, ops) = banded_traceback(
        pssm,
        query_start,
        rows,
        &target[target_start..=end.target_end],
        gaps,
        i64::from(end.score),
    );
    debug_assert_eq!(score, i64::from(end.score));
    Ok(Alignment::between((query_start, target_start), end, ops))
}

/// Start cell of an alignment scoring `end.score` that ends at `end`: global DP on the reversed
/// prefixes, anchored at the end cell, stopping at the first cell (in reverse target order,
/// then reverse query order: the start nearest the end) that reaches the score. O(query) memory.
pub(super) fn find_start(
    pssm: &Pssm,
    target: &[u8],
    gaps: &PositionGaps,
    end: LocalScore,
) -> (usize, usize) {
    let rows = end.query_end + 1;
    // Reversed position r - 1 is query position rows - r.
    let reversed = gaps.reversed_prefix(rows);
    let extend = i64::from(gaps.extend);
    let goal = i64::from(end.score);
    // h[r]: H(r, c - 1) before column c, H(r, c) after, r residues back from the query end.
    // Column 0: the first r reversed positions deleted.
    let mut h: Vec<i64> = (0..=rows)
        .map(|r| match r {
            0 => 0,
            r => {
                -i64::from(reversed.deletion_open[0] + reversed.deletion_close[r - 1])
                    - r as i64 * extend
            }
        })
        .collect();
    let insertion_at_end = i64::from(gaps.insertion_open[end.query_end]);
    let mut e = vec![NEG; rows + 1];
    for c in 1..=end.target_end + 1 {
        let code = target[end.target_end + 1 - c];
        let mut diagonal = h[0];
        h[0] = -(insertion_at_end + c as i64 * extend);
        let mut f = NEG;
        for r in 1..=rows {
            let i = end.query_end + 1 - r;
            let open = |costs: &[i32]| i64::from(costs[r - 1]) + extend;
            e[r] = (e[r] - extend).max(h[r] - open(&reversed.insertion_open));
            f = (f - extend).max(h[r - 1] - open(&reversed.deletion_open));
            let cell = (diagonal + i64::from(pssm.score(i, code)))
                .max(e[r])
                .max(f - i64::from(reversed.deletion_close[r - 1]));
            diagonal = h[r];
            h[r] = cell;
            if cell == goal {
                return (i, end.target_end + 1 - c);
            }
        }
    }
    unreachable!("no alignment of score {} ends at {end:?}", end.score)
}

/// Half-width (in rows, and at least as many columns) of the first band, around the straight
/// line between the rectangle's corners.
pub(super) const LINE_HALF_WIDTH: usize = 32;

/// Half-width of the second band, beyond the diagonals of the corners; it doubles from there.
pub(super) const CORNER_HALF_WIDTH: usize = 32;

/// Best global alignment of query rows `query_start..query_start + rows` with `target`, whose
/// optimum is known to be `goal`: its score and columns. Bands in turn until one reaches
/// `goal` or covers the rectangle (then its optimum is returned whatever it is): first along
/// the straight line between the corners (indels spread along the alignment), then between
/// the corners' diagonals (a few long indels) of doubling half-width. Within a band, ties
/// prefer a match, then an insertion, then a deletion, and extending a gap over opening one;
/// when the whole-rectangle traceback lies in the band, the band gives the same alignment.
pub(super) fn banded_traceback(
    pssm: &Pssm,
    query_start: usize,
    rows: usize,
    target: &[u8],
    gaps: &PositionGaps,
    goal: i64,
) -> (i64, Vec<AlignOp>) {
    let columns = target.len();
    // No cell of the rectangle (a path of at most rows + columns steps, each within 127 of a
    // substitution or a gap cost) nor the −∞ stand-in minus a gap comes near i32's range.
    let steps = (rows + columns) as i64;
    let dearest: i64 = [
        &gaps.deletion_open,
        &gaps.deletion_close,
        &gaps.insertion_open,
    ]
    .into_iter()
    .map(|costs| costs.iter().copied().max().map_or(0, i64::from))
    .sum();
    let bound = (steps + 1) * (128 + dearest + i64::from(gaps.extend));
    let narrow = bound < i64::from(i32::MAX / 8);
    let mut shape = Shape::Line(LINE_HALF_WIDTH);
    loop {
        let band = Band::new(rows, columns, shape);
        let (score, ops) = if narrow {
            band_gotoh::<i32>(pssm, query_start, target, gaps, &band)
        } else {
            band_gotoh::<i64>(pssm, query_start, target, gaps, &band)
        };
        if score == goal || band.covers_all() {
            return (score, ops);
        }
        shape = match shape {
            Shape::Line(_) => Shape::Corners(CORNER_HALF_WIDTH),
            Shape::Corners(half_width) => Shape::Corners(2 * half_width),
        };
    }
}

/// A band of the rectangle, by half-width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// Cells with `|j·rows/columns − i| ≤ w` or `|j − i·columns/rows| ≤ w`: along the line
    /// from corner to corner.
    Line(usize),
    /// Diagonals `j − i` from `min(0, columns − rows) − w` to `max(0, columns − rows) + w`.
    Corners(usize),
}

/// Cells of the `(rows + 1) × (columns + 1)` Gotoh matrix: a span of columns per row, both
/// ends nondecreasing from row to row, each span reaching at most one column past the
/// previous one's end (so every band cell is reached from (0, 0) within the band).
#[derive(Debug, Clone)]
struct Band {
    rows: usize,
    columns: usize,
    /// First and last band columns of each row.
    spans: Vec<(usize, usize)>,
    /// Index of each row's first cell in a flag array of the band cells, row by row; then the
    /// number of cells.
    offsets: Vec<usize>,
}

impl Band {
    fn new(rows: usize, columns: usize, shape: Shape) -> Band {
        let (r, c) = (rows as i64, columns as i64);
        let spans: Vec<(usize, usize)> = (0..=r)
            .map(|i| {
                let (first, last) = match shape {
                    Shape::Line(w) => {
                        let w = w as i64;
                        (
                            ((i - w) * c).div_euclid(r).min((i * c).div_euclid(r) - w),
                            (-((-(i + w) * c).div_euclid(r))).max(-((-i * c).div_euclid(r)) + w),
                        )
                    }
                    Shape::Corners(w) => {
                        let w = w as i64;
                        (i + (c - r).min(0) - w, i + (c - r).max(0) + w)
                    }
                };
                (first.clamp(0, c) as usize, last.clamp(0, c) as usize)
            })
            .collect();
        let mut offsets = Vec::with_capacity(spans.len() + 1);
        let mut total = 0;
        for &(first, last) in &spans {
            offsets.push(total);
            total += last - first + 1;
        }
        offsets.push(total);
        Band {
            rows,
            columns,
            spans,
            offsets,
        }
    }

    fn covers_all(&self) -> bool {
        self.spans[self.rows].0 == 0 && self.spans[0].1 == self.columns
    }

    /// Index of cell `(i, j)` (in the band) in the flag array.
    fn index(&self, i: usize, j: usize) -> usize {
        self.offsets[i] + (j - self.spans[i].0)
    }
}

/// Score arithmetic of the Gotoh: `i32` when the scores allow, `i64` otherwise.
trait Score: Copy + Ord + Add<Output = Self> + Sub<Output = Self> + From<i8> + Into<i64> {
    /// Below any reachable score yet safe to subtract gap costs from.
    const NEG: Self;
    fn from_i64(value: i64) -> Self;
}

impl Score for i32 {
    const NEG: i32 = i32::MIN / 4;
    fn from_i64(value: i64) -> i32 {
        i32::try_from(value).expect("score within i32")
    }
}

impl Score for i64 {
    const NEG: i64 = NEG;
    fn from_i64(value: i64) -> i64 {
        value
    }
}

/// Best global alignment of query rows `query_start..query_start + band.rows` with `target`
/// among the paths in `band` (cells outside it at −∞): its score and columns.
fn band_gotoh<T: Score>(
    pssm: &Pssm,
    query_start: usize,
    target: &[u8],
    gaps: &PositionGaps,
    band: &Band,
) -> (i64, Vec<AlignOp>) {
    let (rows, columns) = (band.rows, band.columns);
    let cost = |c: i32| T::from_i64(i64::from(c));
    let extend = cost(gaps.extend);
    let k_extends = |k: usize| T::from_i64(k as i64 * i64::from(gaps.extend));
    // Leading gaps: `k` target residues before the first row, or the first `k` rows deleted.
    let leading_insertion = |k: usize| {
        T::from(0) - cost(gaps.insertion_open[query_start.saturating_sub(1)]) - k_extends(k)
    };
    let leading_deletion = |k: usize| {
        T::from(0)
            - cost(gaps.deletion_open[query_start] + gaps.deletion_close[query_start + k - 1])
            - k_extends(k)
    };
    let mut flags = vec![0u8; band.offsets[rows + 1]];
    // h[j]: H(i - 1, j) before row i, H(i, j) after; f[j] likewise for F. Columns right of the
    // band hold −∞ until the band reaches them; those left of it are never read again.
    let last = band.spans[0].1;
    let mut h: Vec<T> = (0..=columns)
        .map(|j| match j {
            0 => T::from(0),
            j if j <= last => leading_insertion(j),
            _ => T::NEG,
        })
        .collect();
    let mut f = vec![T::NEG; columns + 1];
    for (j, flag) in flags[band.index(0, 1)..=band.index(0, last)]
        .iter_mut()
        .enumerate()
    {
        *flag = FROM_E | if j > 0 { E_EXTENDS } else { 0 };
    }
    for i in 1..=rows {
        let (first, last) = band.spans[i];
        let row_flags = &mut flags[band.offsets[i]..band.offsets[i + 1]];
        // H(i - 1, j - 1) and H(i, j - 1) for the first computed cell j.
        let (mut diagonal, mut left, row_flags, first) = if first == 0 {
            row_flags[0] = FROM_F | if i > 1 { F_EXTENDS } else { 0 };
            let diagonal = h[0];
            h[0] = leading_deletion(i);
            (diagonal, h[0], &mut row_flags[1..], 1)
        } else {
            // (i - 1, first - 1) is in the band unless the band's start stayed put.
            let diagonal = if first > band.spans[i - 1].0 {
                h[first - 1]
            } else {
                T::NEG
            };
            (diagonal, T::NEG, row_flags, first)
        };
        let position = query_start + i - 1;
        let scores = &pssm.rows[position];
        let insertion_open = cost(gaps.insertion_open[position]) + extend;
        let deletion_open = cost(gaps.deletion_open[position]) + extend;
        let deletion_close = cost(gaps.deletion_close[position]);
        let mut e = T::NEG;
        let cells = h[first..=last]
            .iter_mut()
            .zip(&mut f[first..=last])
            .zip(&target[first - 1..last])
            .zip(row_flags);
        for (((h, f), &code), flag_out) in cells {
            let mut flag = 0;
            let (e_extend, e_open) = (e - extend, left - insertion_open);
            if e_extend >= e_open {
                flag |= E_EXTENDS;
            }
            e = e_extend.max(e_open);
            let (f_extend, f_open) = (*f - extend, *h - deletion_open);
            if f_extend >= f_open {
                flag |= F_EXTENDS;
            }
            *f = f_extend.max(f_open);
            let mut cell = diagonal + T::from(scores[code as usize]);
            if e > cell {
                cell = e;
                flag |= FROM_E;
            }
            if *f - deletion_close > cell {
                cell = *f - deletion_close;
                flag = (flag & !SOURCE) | FROM_F;
            }
            diagonal = *h;
            *h = cell;
            left = cell;
            *flag_out = flag;
        }
    }

    let mut ops = Vec::with_capacity(rows + columns);
    let (mut i, mut j) = (rows, columns);
    // Which matrix the path is in: H (FROM_DIAGONAL), E or F.
    let mut state = FROM_DIAGONAL;
    while i > 0 || j > 0 {
        let flag = flags[band.index(i, j)];
        match state {
            FROM_E => {
                ops.push(AlignOp::Insertion);
                state = if flag & E_EXTENDS != 0 {
                    FROM_E
                } else {
                    FROM_DIAGONAL
                };
                j -= 1;
            }
            FROM_F => {
                ops.push(AlignOp::Deletion);
                state = if flag & F_EXTENDS != 0 {
                    FROM_F
                } else {
                    FROM_DIAGONAL
                };
                i -= 1;
            }
            _ => match flag & SOURCE {
                FROM_DIAGONAL => {
                    ops.push(AlignOp::Match);
                    i -= 1;
                    j -= 1;
                }
                source => state = source,
            },
        }
    }
    ops.reverse();
    (h[columns].into(), ops)
}

/// One band's Gotoh (`wide`: `i64` arithmetic even where `i32` would do), for tests and
/// benchmarks; `Shape::Corners(usize::MAX / 4)` is the whole rectangle.
#[cfg(test)]
pub(super) fn band_for_tests(
    pssm: &Pssm,
    query_start: usize,
    rows: usize,
    target: &[u8],
    gaps: &PositionGaps,
    shape: Shape,
    wide: bool,
) -> (i64, Vec<AlignOp>) {
    let band = Band::new(rows, target.len(), shape);
    if wide {
        band_gotoh::<i64>(pssm, query_start, target, gaps, &band)
    } else {
        band_gotoh::<i32>(pssm, query_start, target, gaps, &band)
    }
}

/// Whether the path of `ops` through the rectangle stays in the band of `shape`.
#[cfg(test)]
pub(super) fn band_holds(rows: usize, columns: usize, shape: Shape, ops: &[AlignOp]) -> bool {
    let band = Band::new(rows, columns, shape);
    let (mut i, mut j) = (0, 0);
    let inside = |i: usize, j: usize| (band.spans[i].0..=band.spans[i].1).contains(&j);
    ops.iter().all(|op| {
        match op {
            AlignOp::Match => (i, j) = (i + 1, j + 1),
            AlignOp::Insertion => j += 1,
            AlignOp::Deletion => i += 1,
        }
        inside(i, j)
    })
}
