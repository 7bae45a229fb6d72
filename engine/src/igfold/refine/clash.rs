//! The vdW clash term of the refinement loss and its gradient.

use super::V3;
use crate::igfold::geometry::{axpy, ATOM_N};

const VDW_N: f32 = 1.55;
const VDW_C: f32 = 1.7;
const VDW_TOL: f32 = 1.5;
/// Clash cut-off `2 r_j - tol` (float32) of the ordered pair `(i, j)` by the class of atom `j`
/// (N, C). IgFold builds `vdw_radii.unsqueeze(-2) + vdw_radii.unsqueeze(-3)` from a `[b, 4L]`
/// tensor; with batch size 1 both operands are `[1, 1, 4L]`, so the "pair" radius sum is
/// `r_j + r_j`, not `r_i + r_j`: an N-C pair clashes below 1.6 Å in one order and below 1.9 Å in
/// the other.
const CLASH_CUT: [f64; 2] = [
    ((VDW_N + VDW_N) - VDW_TOL) as f64,
    ((VDW_C + VDW_C) - VDW_TOL) as f64,
];

/// Candidate partners `j` are screened in blocks of this many, on squared distances.
const BLOCK: usize = 8;

/// Cut-off class of flat atom `a` (N, CA, C, CB per residue): 0 for N, 1 for the carbons.
#[inline]
fn class(a: usize) -> usize {
    usize::from(a % 4 != ATOM_N)
}

/// `w * sum_{i,j} relu(2 r_j - 1.5 - |x_i - x_j|)` over the ordered pairs of the atoms `x`
/// (flat N, CA, C, CB per residue), self pairs included (see [`CLASH_CUT`]); `w` is
/// `1 / ((4L)^2 + eps)`. Each unordered pair is visited once and both orders are tested. Adds
/// the gradient to `g`.
pub(super) fn clash(x: &[V3], w: f64, g: &mut [V3]) -> f64 {
    let n = x.len();
    let self_sum: f64 = (0..n).map(|a| CLASH_CUT[class(a)]).sum();
    let max_cut2 = CLASH_CUT[1] * CLASH_CUT[1] * (1.0 + 1e-5);
    // Coordinates by axis, padded with a block of infinitely distant atoms so that every block
    // of candidates is full: the screen is one fixed-length, branch-free loop that vectorises.
    let axis = |d: usize| -> Vec<f64> {
        let mut v: Vec<f64> = x.iter().map(|p| p[d]).collect();
        v.resize(n + BLOCK, f64::INFINITY);
        v
    };
    let (xs, ys, zs) = (axis(0), axis(1), axis(2));
    let mut pair_sum = 0.0;
    let mut d2 = [0.0f64; BLOCK];
    for i in 0..n {
        let (xi, yi, zi) = (xs[i], ys[i], zs[i]);
        let ci = class(i);
        for j0 in (i + 1..n).step_by(BLOCK) {
            let (bx, by, bz) = (
                &xs[j0..j0 + BLOCK],
                &ys[j0..j0 + BLOCK],
                &zs[j0..j0 + BLOCK],
            );
            let mut near = false;
            for k in 0..BLOCK {
                let (dx, dy, dz) = (xi - bx[k], yi - by[k], zi - bz[k]);
                d2[k] = dx * dx + dy * dy + dz * dz;
                near |= d2[k] <= max_cut2;
            }
            if !near {
                continue;
            }
            let len = BLOCK.min(n - j0);
            for (k, &dd) in d2[..len].iter().enumerate() {
                if dd > max_cut2 {
                    continue;
                }
                let j = j0 + k;
                // Whether each order clashes (the clamp's kink) is decided in float32 as the
                // reference computes it.
                let d32 = dist_f32(&x[i], &x[j], 0.0);
                let mut times = 0.0;
                for cut in [CLASH_CUT[class(j)], CLASH_CUT[ci]] {
                    if cut as f32 - d32 >= 0.0 {
                        times += 1.0;
                        pair_sum += cut;
                    }
                }
                if times > 0.0 {
                    let d = dd.sqrt();
                    pair_sum -= times * d;
                    if d > 0.0 {
                        // d/dx_i of -(|x_i - x_j|) = -(x_i - x_j)/d, per clashing order.
                        let s = -times * w / d;
                        let diff = [xi - xs[j], yi - ys[j], zi - zs[j]];
                        axpy(&mut g[i], s, diff);
                        axpy(&mut g[j], -s, diff);
                    }
                }
            }
        }
    }
    (self_sum + pair_sum) * w
}

/// `sqrt(|a - b|^2 + eps)` in float32 with the reference's operation order (exact
/// difference, sequential sum of squares).
#[inline]
pub(super) fn dist_f32(a: &V3, b: &V3, eps: f32) -> f32 {
    let d = [
        (a[0] as f32 - b[0] as f32),
        (a[1] as f32 - b[1] as f32),
        (a[2] as f32 - b[2] as f32),
    ];
    (((d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]) + eps).sqrt()
}

#[cfg(test)]
mod tests {
    use super::super::test_frames::{atoms64, frames64, random_frames};
    use super::*;
    use crate::igfold::geometry::{add, norm, sub};

    /// `1 / (n^2 + eps)` for `n` atoms, as the loss weights the term.
    fn weight(n: usize) -> f64 {
        1.0 / ((n * n) as f64 + super::super::loss::EPS)
    }

    /// Brute force over all ordered pairs, self pairs included; the cut-off of `(i, j)` is
    /// `2 r_j - tol` (IgFold's batch-1 broadcast, see `CLASH_CUT`).
    fn brute_force(x: &[V3]) -> f64 {
        let radius = |a: usize| match a % 4 {
            0 => VDW_N,
            _ => VDW_C,
        };
        let mut sum = 0.0;
        for i in 0..x.len() {
            for j in 0..x.len() {
                let cut = ((radius(j) + radius(j)) - VDW_TOL) as f64;
                sum += (cut - norm(sub(x[i], x[j]))).max(0.0);
            }
        }
        sum * weight(x.len())
    }

    fn value(x: &[V3]) -> f64 {
        clash(x, weight(x.len()), &mut vec![[0.0; 3]; x.len()])
    }

    /// Some atoms overlapping heavily, including an exactly coincident pair (zero gradient at
    /// zero distance, like torch's norm backward); 24 atoms, so blocks of candidates are both
    /// full and partial.
    #[test]
    fn clash_gradient_with_overlaps() {
        let n_res = 6;
        let (rot, mut trans) = frames64(&random_frames(n_res, 3));
        trans[3] = add(trans[2], [0.7, 0.4, -0.3]);
        trans[5] = add(trans[1], [0.2, -0.5, 0.9]);
        let mut x = atoms64(&rot, &trans);
        x[23] = x[6];
        let mut g = vec![[0.0; 3]; x.len()];
        let v = clash(&x, weight(x.len()), &mut g);
        let h = 1e-6;
        for a in 0..x.len() {
            for d in 0..3 {
                if a == 23 || a == 6 {
                    continue;
                }
                let mut xp = x.clone();
                xp[a][d] += h;
                let mut xm = x.clone();
                xm[a][d] -= h;
                let fd = (value(&xp) - value(&xm)) / (2.0 * h);
                assert!(
                    (fd - g[a][d]).abs() < 1e-7,
                    "atom {a}.{d}: fd {fd} vs {}",
                    g[a][d]
                );
            }
        }
        let want = brute_force(&x);
        assert!((v - want).abs() < 1e-12 * v, "{v} vs {want}");
    }

    /// A clash in every position of a block, against the brute force: atom `j` of a line of far
    /// apart atoms is moved next to atom 1.
    #[test]
    fn clash_blocks_cover_every_partner() {
        let n = 4 * 5 + 3;
        let far: Vec<V3> = (0..n).map(|k| [100.0 * k as f64, 0.0, 0.0]).collect();
        for j in 2..n {
            let mut x = far.clone();
            x[j] = add(x[1], [0.3, 1.0, 0.2]);
            let v = value(&x);
            let want = brute_force(&x);
            assert!((v - want).abs() < 1e-12 * v, "partner {j}: {v} vs {want}");
            let self_only = weight(n) * (0..n).map(|a| CLASH_CUT[class(a)]).sum::<f64>();
            assert!(v > self_only, "partner {j}: clash missed");
        }
    }

    /// IgFold's clash cut-off depends on the second atom only: an N-C pair 1.7 Å apart clashes
    /// as `(N, C)` (cut 1.9 Å) but not as `(C, N)` (cut 1.6 Å), so it contributes once.
    #[test]
    fn clash_cut_off_follows_second_atom() {
        let n_res = 2;
        let far = |k: usize| [100.0 * k as f64, 0.0, 0.0];
        let mut x: Vec<V3> = (0..4 * n_res).map(far).collect();
        // atom 2 = C of residue 0, atom 4 = N of residue 1.
        x[4] = add(x[2], [1.7, 0.0, 0.0]);
        let w = weight(x.len());
        let mut g = vec![[0.0; 3]; x.len()];
        let v = clash(&x, w, &mut g);
        let self_sum: f64 = (0..x.len()).map(|a| CLASH_CUT[class(a)]).sum();
        let one_order = CLASH_CUT[1] - 1.7;
        assert!(((v / w) - (self_sum + one_order)).abs() < 1e-9, "{v}");
        assert!(
            (g[2][0] - w).abs() < 1e-15 && (g[4][0] + w).abs() < 1e-15,
            "{g:?}"
        );
    }
}
