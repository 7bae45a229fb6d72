//! Plain Smith–Waterman–Gotoh in `i32`: the reference of the SIMD kernel and its fallback
//! when `i16` lanes saturate.

use super::gaps::PositionGaps;
use super::LocalScore;
use crate::matrix::{GapCosts, Pssm};

/// Below any reachable score yet safe to subtract a gap cost from.
const NEG: i32 = i32::MIN / 2;

/// Best local score of `pssm` against `target` and its end cell (the first maximal cell in
/// target order, then query order); `None` when no cell scores above 0. Gap costs are `gaps`
/// less the PSSM's discounts.
pub fn scalar_score(pssm: &Pssm, target: &[u8], gaps: GapCosts) -> Option<LocalScore> {
    scalar_score_with(pssm, target, &PositionGaps::new(pssm, gaps))
}

/// [`scalar_score`] with the gap costs of each position given.
pub(super) fn scalar_score_with(
    pssm: &Pssm,
    target: &[u8],
    gaps: &PositionGaps,
) -> Option<LocalScore> {
    let m = pssm.len();
    let extend = gaps.extend;
    // h[i + 1]: H(i, j - 1) before row i of column j is computed, H(i, j) after; h[0] = 0.
    let mut h = vec![0i32; m + 1];
    // e[i]: E(i, j - 1) before, E(i, j) after.
    let mut e = vec![NEG; m];
    let mut best: Option<LocalScore> = None;
    for (j, &code) in target.iter().enumerate() {
        let mut diagonal = 0; // H(i - 1, j - 1)
        let mut f = NEG; // F(i - 1, j)
        for i in 0..m {
            let left = h[i + 1];
            e[i] = (e[i] - extend).max(left - gaps.insertion_open[i] - extend);
            f = (f - extend).max(h[i] - gaps.deletion_open[i] - extend);
            let cell = (diagonal + pssm.score(i, code))
                .max(e[i])
                .max(f - gaps.deletion_close[i])
                .max(0);
            diagonal = left;
            h[i + 1] = cell;
            if cell > best.map_or(0, |b| b.score) {
                best = Some(LocalScore {
                    score: cell,
                    query_end: i,
                    target_end: j,
                });
            }
        }
    }
    best
}
