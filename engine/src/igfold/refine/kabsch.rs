//! IgFold's Kabsch superposition in f64: the 3x3 SVD from a Jacobi eigen-decomposition.

use super::{M3, V3};
use crate::igfold::geometry::{axpy, cross, dot, norm, scale, sub};

/// IgFold's `kabsch(mobile, stationary)` transform applied to `mobile`:
/// `(mobile - mean_m) @ (V W) + mean_s`, with `V S W = svd(mobile_c^T stationary_c)` and the last
/// column of `V` negated when `det(V) det(W) < 0`.
pub(super) fn kabsch_align(mobile: &[V3], stationary: &[V3], out: &mut [V3]) {
    let mm = mean(mobile);
    let ms = mean(stationary);
    let rot = kabsch_rotation(&covariance(mobile, mm, stationary, ms));
    for (p, o) in mobile.iter().zip(out.iter_mut()) {
        let a = sub(*p, mm);
        for c in 0..3 {
            o[c] = a[0] * rot[0][c] + a[1] * rot[1][c] + a[2] * rot[2][c] + ms[c];
        }
    }
}

/// `(mobile - mm)^T (stationary - ms)`.
fn covariance(mobile: &[V3], mm: V3, stationary: &[V3], ms: V3) -> M3 {
    let mut cov = [[0.0f64; 3]; 3];
    for (p, q) in mobile.iter().zip(stationary) {
        let a = sub(*p, mm);
        let b = sub(*q, ms);
        for r in 0..3 {
            for c in 0..3 {
                cov[r][c] += a[r] * b[c];
            }
        }
    }
    cov
}

/// `V W` of the SVD `cov = V S W` (W = V^H in LAPACK terms) with the reflection fix. Built from
/// the eigenvectors `w_k` of `cov^T cov` (Jacobi, f64): `v_k = cov w_k / s_k`, and
/// `v_2 = det(W) v_0 x v_1`, which is the reflection-fixed last column in both cases.
fn kabsch_rotation(cov: &M3) -> M3 {
    let mut ctc = [[0.0f64; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            ctc[r][c] = (0..3).map(|k| cov[k][r] * cov[k][c]).sum();
        }
    }
    let (vals, vecs) = sym_eigen3(ctc);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let w: [V3; 3] = order.map(|k| [vecs[0][k], vecs[1][k], vecs[2][k]]);
    let cw = |k: usize| -> V3 {
        let wk = w[k];
        [dot(cov[0], wk), dot(cov[1], wk), dot(cov[2], wk)]
    };
    let v0 = cw(0);
    let n0 = norm(v0);
    if !n0.is_finite() || n0 <= 0.0 {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let v0 = scale(v0, 1.0 / n0);
    let mut v1 = cw(1);
    v1 = sub(v1, scale(v0, dot(v0, v1)));
    let mut n1 = norm(v1);
    if n1 <= 1e-12 * n0 {
        // Rank-1 covariance: any unit vector orthogonal to v0 (then v1 x ... is arbitrary too).
        let e = if v0[0].abs() < 0.9 {
            [1.0, 0.0, 0.0]
        } else {
            [0.0, 1.0, 0.0]
        };
        v1 = sub(e, scale(v0, dot(v0, e)));
        n1 = norm(v1);
    }
    let v1 = scale(v1, 1.0 / n1);
    let det_w = dot(w[0], cross(w[1], w[2]));
    let v2 = scale(cross(v0, v1), det_w.signum());
    let v = [v0, v1, v2];
    let mut m = [[0.0f64; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            m[r][c] = (0..3).map(|k| v[k][r] * w[k][c]).sum();
        }
    }
    m
}

/// Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations: eigenvalues and
/// eigenvectors as the columns of the returned matrix.
fn sym_eigen3(mut a: M3) -> (V3, M3) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..64 {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        let diag = a[0][0] * a[0][0] + a[1][1] * a[1][1] + a[2][2] * a[2][2];
        if off <= 1e-36 * diag || off == 0.0 {
            break;
        }
        for (p, q) in [(0usize, 1usize), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A <- J^T A J, V <- V J with J = I except J_pp = J_qq = c, J_pq = s, J_qp = -s.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (rp, rq) = (a[p], a[q]);
            for k in 0..3 {
                a[p][k] = c * rp[k] - s * rq[k];
                a[q][k] = s * rp[k] + c * rq[k];
            }
            a[p][q] = 0.0;
            a[q][p] = 0.0;
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

fn mean(p: &[V3]) -> V3 {
    let mut s = [0.0; 3];
    for q in p {
        axpy(&mut s, 1.0, *q);
    }
    scale(s, 1.0 / p.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::super::test_frames::{atoms64, frames64, random_frames};
    use super::*;
    use crate::igfold::geometry::quat_to_rot;

    #[test]
    fn kabsch_recovers_rigid_motion_and_fixes_reflection() {
        let (rot, trans) = frames64(&random_frames(12, 9));
        let x = atoms64(&rot, &trans);
        let r = quat_to_rot([0.2, -0.7, 0.4, 0.5]);
        let moved: Vec<V3> = x
            .iter()
            .map(|p| {
                let mut o = [1.0, 2.0, -3.0];
                for d in 0..3 {
                    o[d] += (0..3).map(|c| p[c] * r[c][d] as f64).sum::<f64>();
                }
                o
            })
            .collect();
        let mut out = vec![[0.0; 3]; x.len()];
        kabsch_align(&moved, &x, &mut out);
        for (a, b) in out.iter().zip(&x) {
            assert!(norm(sub(*a, *b)) < 1e-5);
        }
        // A mirror image cannot be superposed by a proper rotation: the result is a rotation.
        let mirrored: Vec<V3> = x.iter().map(|p| [-p[0], p[1], p[2]]).collect();
        let m = kabsch_rotation(&covariance(&mirrored, mean(&mirrored), &x, mean(&x)));
        let det = dot(m[0], cross(m[1], m[2]));
        assert!((det - 1.0).abs() < 1e-9, "det {det}");
        for i in 0..3 {
            for j in 0..3 {
                let d: f64 = (0..3).map(|k| m[i][k] * m[j][k]).sum();
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
    }

    /// Eigenpairs of a symmetric matrix: `A v = lambda v` for each column, orthonormal columns.
    #[test]
    fn jacobi_eigenpairs() {
        let a = [[4.0, 1.0, -2.0], [1.0, 2.0, 0.5], [-2.0, 0.5, 3.0]];
        let (vals, vecs) = sym_eigen3(a);
        for k in 0..3 {
            let v = [vecs[0][k], vecs[1][k], vecs[2][k]];
            let av = [dot(a[0], v), dot(a[1], v), dot(a[2], v)];
            assert!(norm(sub(av, scale(v, vals[k]))) < 1e-12, "pair {k}");
            assert!((norm(v) - 1.0).abs() < 1e-12);
        }
        let trace: f64 = vals.iter().sum();
        assert!((trace - 9.0).abs() < 1e-12);
    }
}
