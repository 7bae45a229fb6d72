//! The alignment behind a local score: a reverse pass anchored at the end cell finds where the
//! alignment starts, then a global Gotoh with traceback runs inside that rectangle only. The
//! rectangle's best global alignment scores exactly the local score (it holds one alignment of
//! that score and none above the local maximum), so no full-matrix traceback is needed.

use super::{AlignOp, Alignment, LocalScore, TracebackTooLarge, MAX_TRACEBACK_CELLS};
use crate::matrix::{GapCosts, Pssm};

/// Below any reachable score yet safe to subtract gap costs from (`i64`: a global alignment's
/// boundary gaps can exceed `i32` with large gap costs).
const NEG: i64 = i64::MIN / 4;

/// Traceback flags of one cell: where H came from, and whether E / F extend a gap.
const FROM_DIAGONAL: u8 = 0;
const FROM_E: u8 = 1;
const FROM_F: u8 = 2;
const SOURCE: u8 = 3;
const E_EXTENDS: u8 = 4;
const F_EXTENDS: u8 = 8;

/// The alignment of score `end.score` from `start` (query, target; from [`find_start`] or an
/// equivalent) to `end`'s cell, `end` being the best local cell.
pub(super) fn align_between(
    pssm: &Pssm,
    target: &[u8],
    gaps: GapCosts,
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
    let (score, ops) = global_traceback(
        pssm,
        query_start,
        rows,
        &target[target_start..=end.target_end],
        gaps,
    );
    debug_assert_eq!(score, i64::from(end.score));
    Ok(Alignment {
        score: end.score,
        query_start,
        query_end: end.query_end,
        target_start,
        target_end: end.target_end,
        ops,
    })
}

/// Start cell of an alignment scoring `end.score` that ends at `end`: global DP on the reversed
/// prefixes, anchored at the end cell, stopping at the first cell (in reverse target order,
/// then reverse query order: the start nearest the end) that reaches the score. O(query) memory.
pub(super) fn find_start(
    pssm: &Pssm,
    target: &[u8],
    gaps: GapCosts,
    end: LocalScore,
) -> (usize, usize) {
    let (open, extend) = (i64::from(gaps.open), i64::from(gaps.extend));
    let open_extend = open + extend;
    let goal = i64::from(end.score);
    let rows = end.query_end + 1;
    // h[r]: H(r, c - 1) before column c, H(r, c) after, r residues back from the query end.
    let mut h: Vec<i64> = (0..=rows as i64)
        .map(|r| if r == 0 { 0 } else { -(open + r * extend) })
        .collect();
    let mut e = vec![NEG; rows + 1];
    for c in 1..=end.target_end + 1 {
        let code = target[end.target_end + 1 - c];
        let mut diagonal = h[0];
        h[0] = -(open + c as i64 * extend);
        let mut f = NEG;
        for r in 1..=rows {
            let i = end.query_end + 1 - r;
            e[r] = (e[r] - extend).max(h[r] - open_extend);
            f = (f - extend).max(h[r - 1] - open_extend);
            let cell = (diagonal + i64::from(pssm.score(i, code))).max(e[r]).max(f);
            diagonal = h[r];
            h[r] = cell;
            if cell == goal {
                return (i, end.target_end + 1 - c);
            }
        }
    }
    unreachable!("no alignment of score {} ends at {end:?}", end.score)
}

/// Best global alignment of query rows `query_start..query_start + rows` with `target`: its
/// score and columns. Ties prefer a match, then an insertion, then a deletion, and extending
/// a gap over opening one.
fn global_traceback(
    pssm: &Pssm,
    query_start: usize,
    rows: usize,
    target: &[u8],
    gaps: GapCosts,
) -> (i64, Vec<AlignOp>) {
    let (open, extend) = (i64::from(gaps.open), i64::from(gaps.extend));
    let open_extend = open + extend;
    let columns = target.len();
    let width = columns + 1;
    let mut flags = vec![0u8; (rows + 1) * width];
    // h[j]: H(i - 1, j) before row i, H(i, j) after; f[j] likewise for F.
    let mut h: Vec<i64> = (0..=columns as i64)
        .map(|j| if j == 0 { 0 } else { -(open + j * extend) })
        .collect();
    let mut f = vec![NEG; width];
    for (j, flag) in flags[..width].iter_mut().enumerate().skip(1) {
        *flag = FROM_E | if j > 1 { E_EXTENDS } else { 0 };
    }
    for i in 1..=rows {
        let row = &mut flags[i * width..][..width];
        row[0] = FROM_F | if i > 1 { F_EXTENDS } else { 0 };
        let mut diagonal = h[0];
        h[0] = -(open + i as i64 * extend);
        let mut e = NEG;
        for j in 1..=columns {
            let mut flag = 0;
            let (e_extend, e_open) = (e - extend, h[j - 1] - open_extend);
            if e_extend >= e_open {
                flag |= E_EXTENDS;
            }
            e = e_extend.max(e_open);
            let (f_extend, f_open) = (f[j] - extend, h[j] - open_extend);
            if f_extend >= f_open {
                flag |= F_EXTENDS;
            }
            f[j] = f_extend.max(f_open);
            let mut cell = diagonal + i64::from(pssm.score(query_start + i - 1, target[j - 1]));
            if e > cell {
                cell = e;
                flag = (flag & !SOURCE) | FROM_E;
            }
            if f[j] > cell {
                cell = f[j];
                flag = (flag & !SOURCE) | FROM_F;
            }
            diagonal = h[j];
            h[j] = cell;
            row[j] = flag;
        }
    }

    let mut ops = Vec::with_capacity(rows + columns);
    let (mut i, mut j) = (rows, columns);
    // Which matrix the path is in: H (FROM_DIAGONAL), E or F.
    let mut state = FROM_DIAGONAL;
    while i > 0 || j > 0 {
        let flag = flags[i * width + j];
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
    (h[columns], ops)
}
