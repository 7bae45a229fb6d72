//! The refinement loss (`igfold/training/utils.py`, `igfold/utils/geometry.py`) and its gradient
//! with respect to the atoms. Reference details kept on purpose:
//! * `kabsch_mse`: the initial coordinates are Kabsch-aligned onto `X.detach()`; the aligned
//!   target is a constant, so `dL/dX = 2 (X - aligned) / (3 * 4L)`.
//! * bond lengths over the flattened N, CA, C chain with `sqrt(|d|^2 + 1e-6)`; the mask zeroes
//!   the C of each chain's last residue, which removes the inter-chain C-N bond and the last
//!   CA-C bond; the denominator is the number of unmasked *atoms*.
//! * bond angles CA-C-N and C-N-CA with `v / sqrt(|v|^2 + 1e-6)` unit vectors; the residue mask
//!   zeroes each chain's last residue and pairs need both residues.
//! * vdW clash over all `(4L)^2` ordered atom pairs ([`super::clash`]).
//! * cis peptide `1 - cos(dih - pi)` summed over *all* consecutive residue pairs (the chain
//!   break included), divided by the number of valid pairs; IgFold's dihedral leaves the first
//!   normal un-normalised (`n1 = u(b1) x u(b2)`).

use super::clash::{clash, dist_f32};
use super::kabsch::kabsch_align;
use super::V3;
use crate::igfold::geometry::{add, axpy, chain_ends, cross, dot, norm, scale, sub};

/// Scalars as the float32 tensors of the reference hold them.
const fn f32_val(x: f64) -> f64 {
    x as f32 as f64
}
pub(super) const EPS: f64 = f32_val(1e-6);
const BOND_REF: [f64; 3] = [f32_val(1.459), f32_val(1.525), f32_val(1.336)]; // N-CA, CA-C, C-N
const ANGLE_CA_C_N: f64 = f32_val(117.2 * std::f64::consts::PI / 180.0);
const ANGLE_C_N_CA: f64 = f32_val(121.7 * std::f64::consts::PI / 180.0);
const PI_F32: f64 = f32_val(std::f64::consts::PI);

/// Atom slots in the flat `(4L)` atom array.
const N: usize = 0;
const CA: usize = 1;
const C: usize = 2;

/// The five loss terms of one refinement step (values as the reference reports them). The
/// refinement itself only follows the gradient; the values are checked by the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct RefineLoss {
    pub(super) rmsd: f64,
    pub(super) bond_len: f64,
    pub(super) bond_angle: f64,
    pub(super) clash: f64,
    pub(super) cis: f64,
}

#[cfg(test)]
impl RefineLoss {
    /// `rmsd + violation_loss`, the quantity back-propagated by the reference.
    pub(super) fn total(&self) -> f64 {
        self.rmsd + (((self.bond_len + self.bond_angle) + self.clash) + self.cis)
    }
}

/// Masks and normalisers of the loss for one chain layout.
pub(super) struct Problem {
    n_res: usize,
    /// Weight of bond `k` (flat N, CA, C index `k` to `k+1`): mask / (unmasked atoms + eps).
    bond_w: Vec<f64>,
    /// Weight of the angles between residues `i` and `i+1`.
    angle_w: Vec<f64>,
    /// `1 / (valid residue pairs + eps)`.
    cis_w: f64,
    /// `1 / ((4L)^2 + eps)`.
    clash_w: f64,
}

impl Problem {
    /// `chain_lens` must sum to `n_res`.
    pub(super) fn new(n_res: usize, chain_lens: &[usize]) -> Self {
        let last = chain_ends(chain_lens, n_res);
        // Bond lengths: atom mask over the flat N, CA, C chain; the C of a chain's last residue
        // is masked.
        let res_mask: Vec<f64> = last.iter().map(|&e| if e { 0.0 } else { 1.0 }).collect();
        let atom_mask: Vec<f64> = res_mask.iter().flat_map(|&m| [1.0, 1.0, m]).collect();
        let bl_den = atom_mask.iter().sum::<f64>() + EPS;
        let bond_w = atom_mask.windows(2).map(|w| w[0] * w[1] / bl_den).collect();
        let pair_mask: Vec<f64> = res_mask.windows(2).map(|w| w[1] * w[0]).collect();
        let pair_den = pair_mask.iter().sum::<f64>() + EPS;
        let angle_w = pair_mask.iter().map(|m| m / pair_den).collect();
        let n_atoms = (4 * n_res) as f64;
        Problem {
            n_res,
            bond_w,
            angle_w,
            cis_w: 1.0 / pair_den,
            clash_w: 1.0 / (n_atoms * n_atoms + EPS),
        }
    }

    /// All loss terms at atoms `x` (flat `[4L]`) against the starting atoms `target`; writes
    /// `dL/dx` into `g` (`aligned` is scratch for the Kabsch-aligned target).
    pub(super) fn eval(
        &self,
        x: &[V3],
        target: &[V3],
        aligned: &mut [V3],
        g: &mut [V3],
    ) -> RefineLoss {
        debug_assert_eq!(x.len(), 4 * self.n_res);
        g.fill([0.0; 3]);
        RefineLoss {
            rmsd: kabsch_mse(x, target, aligned, g),
            bond_len: self.bond_len(x, g),
            bond_angle: self.bond_angle(x, g),
            clash: clash(x, self.clash_w, g),
            cis: self.cis_peptide(x, g),
        }
    }

    fn bond_len(&self, x: &[V3], g: &mut [V3]) -> f64 {
        let flat = |k: usize| 4 * (k / 3) + k % 3;
        let mut sum = 0.0;
        for (k, &w) in self.bond_w.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let (i, j) = (flat(k), flat(k + 1));
            let d = sub(x[i], x[j]);
            let r = (dot(d, d) + EPS).sqrt();
            let dev = r - BOND_REF[k % 3];
            sum += dev.abs() * w;
            // The kink of |dev| is decided in float32 as the reference computes it.
            let dev32 = dist_f32(&x[i], &x[j], EPS as f32) - BOND_REF[k % 3] as f32;
            let s = if dev32 > 0.0 {
                w / r
            } else if dev32 < 0.0 {
                -w / r
            } else {
                0.0
            };
            axpy(&mut g[i], s, d);
            axpy(&mut g[j], -s, d);
        }
        sum
    }

    fn bond_angle(&self, x: &[V3], g: &mut [V3]) -> f64 {
        let mut sum = 0.0;
        for (i, &w) in self.angle_w.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let (ca0, c0, n1, ca1) = (4 * i + CA, 4 * i + C, 4 * (i + 1) + N, 4 * (i + 1) + CA);
            sum += w * angle_loss([ca0, c0, n1], ANGLE_CA_C_N, w, x, g);
            sum += w * angle_loss([c0, n1, ca1], ANGLE_C_N_CA, w, x, g);
        }
        sum
    }

    fn cis_peptide(&self, x: &[V3], g: &mut [V3]) -> f64 {
        let mut sum = 0.0;
        for i in 0..self.n_res.saturating_sub(1) {
            let idx = [4 * i + CA, 4 * i + C, 4 * (i + 1) + N, 4 * (i + 1) + CA];
            sum += cis_loss(idx, self.cis_w, x, g);
        }
        sum * self.cis_w
    }
}

/// `1 - cos(angle(p0, p1, p2) - reference)` with IgFold's eps-regularised unit vectors;
/// adds `w * d/dx` to `g`.
fn angle_loss(idx: [usize; 3], reference: f64, w: f64, x: &[V3], g: &mut [V3]) -> f64 {
    let [i0, i1, i2] = idx;
    let u = sub(x[i0], x[i1]);
    let v = sub(x[i2], x[i1]);
    let mu = (dot(u, u) + EPS).sqrt();
    let mv = (dot(v, v) + EPS).sqrt();
    let a = scale(u, 1.0 / mu);
    let b = scale(v, 1.0 / mv);
    let c = dot(a, b);
    let ang = c.acos();
    let value = 1.0 - (ang - reference).cos();
    // d value/d ang = sin(ang - ref); d ang/d c = -1/sqrt(1 - c^2) (torch's acos backward).
    let gc = -w * (ang - reference).sin() / (1.0 - c * c).sqrt();
    let gu = scale(sub(b, scale(a, c)), gc / mu);
    let gv = scale(sub(a, scale(b, c)), gc / mv);
    axpy(&mut g[i0], 1.0, gu);
    axpy(&mut g[i2], 1.0, gv);
    axpy(&mut g[i1], -1.0, add(gu, gv));
    value
}

/// `1 - cos(dihedral(p0, p1, p2, p3) - pi)` with IgFold's dihedral (eps 0):
/// `b_k = u(p_k - p_{k+1})`, `n1 = b1 x b2`, `n2 = b2 x b3` (not normalised),
/// `m1 = u(n1) x b2`, `dih = atan2(m1 . n2, n1 . n2)`. Adds `w * d/dx` to `g`.
fn cis_loss(idx: [usize; 4], w: f64, x: &[V3], g: &mut [V3]) -> f64 {
    let v1 = sub(x[idx[0]], x[idx[1]]);
    let v2 = sub(x[idx[1]], x[idx[2]]);
    let v3 = sub(x[idx[2]], x[idx[3]]);
    let (l1, l2, l3) = (norm(v1), norm(v2), norm(v3));
    let (b1, b2, b3) = (
        scale(v1, 1.0 / l1),
        scale(v2, 1.0 / l2),
        scale(v3, 1.0 / l3),
    );
    let n1 = cross(b1, b2);
    let n2 = cross(b2, b3);
    let ln1 = norm(n1);
    let u1 = scale(n1, 1.0 / ln1);
    let m1 = cross(u1, b2);
    let xx = dot(n1, n2);
    let yy = dot(m1, n2);
    let dih = yy.atan2(xx);
    let value = 1.0 - (dih - PI_F32).cos();
    // Backward.
    let gdih = w * (dih - PI_F32).sin();
    let rho2 = xx * xx + yy * yy;
    let gx = -gdih * yy / rho2;
    let gy = gdih * xx / rho2;
    let mut gn1 = scale(n2, gx);
    let gn2 = add(scale(n1, gx), scale(m1, gy));
    let gm1 = scale(n2, gy);
    // m1 = u1 x b2
    let gu1 = cross(b2, gm1);
    let mut gb2 = cross(gm1, u1);
    // u1 = n1 / |n1|
    gn1 = add(gn1, scale(sub(gu1, scale(u1, dot(u1, gu1))), 1.0 / ln1));
    // n1 = b1 x b2, n2 = b2 x b3
    let gb1 = cross(b2, gn1);
    gb2 = add(gb2, add(cross(gn1, b1), cross(b3, gn2)));
    let gb3 = cross(gn2, b2);
    let unit_back = |gb: V3, b: V3, l: f64| scale(sub(gb, scale(b, dot(b, gb))), 1.0 / l);
    let gv1 = unit_back(gb1, b1, l1);
    let gv2 = unit_back(gb2, b2, l2);
    let gv3 = unit_back(gb3, b3, l3);
    axpy(&mut g[idx[0]], 1.0, gv1);
    axpy(&mut g[idx[1]], 1.0, sub(gv2, gv1));
    axpy(&mut g[idx[2]], 1.0, sub(gv3, gv2));
    axpy(&mut g[idx[3]], -1.0, gv3);
    value
}

/// `mean_atoms mean_xyz (x - aligned)^2` where `aligned` is `target` Kabsch-aligned onto `x`
/// (held constant). Adds the gradient to `g`.
fn kabsch_mse(x: &[V3], target: &[V3], aligned: &mut [V3], g: &mut [V3]) -> f64 {
    kabsch_align(target, x, aligned);
    let n = x.len() as f64;
    let gs = 2.0 / (3.0 * n);
    let mut sum = 0.0;
    for ((p, a), gi) in x.iter().zip(aligned.iter()).zip(g.iter_mut()) {
        let d = sub(*p, *a);
        sum += dot(d, d);
        axpy(gi, gs, d);
    }
    sum / (3.0 * n)
}

#[cfg(test)]
mod tests {
    use super::super::test_frames::{atoms64, frames64, noisy_target, random_frames};
    use super::*;

    const TERMS: [&str; 5] = ["rmsd", "bond_len", "bond_angle", "clash", "cis"];

    /// One loss term (by name) and its gradient at atoms `x`.
    fn term(p: &Problem, name: &str, x: &[V3], target: &[V3]) -> (f64, Vec<V3>) {
        let mut g = vec![[0.0; 3]; x.len()];
        let v = match name {
            "rmsd" => kabsch_mse(x, target, &mut vec![[0.0; 3]; x.len()], &mut g),
            "bond_len" => p.bond_len(x, &mut g),
            "bond_angle" => p.bond_angle(x, &mut g),
            "clash" => clash(x, p.clash_w, &mut g),
            "cis" => p.cis_peptide(x, &mut g),
            _ => unreachable!(),
        };
        (v, g)
    }

    /// Analytic atom gradients of every term against central differences in f64. For the Kabsch
    /// term the finite difference re-aligns at every evaluation; at the optimal alignment that has
    /// the same derivative as holding the aligned target constant (envelope theorem).
    #[test]
    fn atom_gradients_match_finite_differences() {
        let chain_lens = [5usize, 4];
        let n_res = 9;
        let (rot, trans) = frames64(&random_frames(n_res, 7));
        let x = atoms64(&rot, &trans);
        let target = noisy_target(&x, 11);
        let p = Problem::new(n_res, &chain_lens);
        let h = 1e-6;
        for name in TERMS {
            let (v0, g) = term(&p, name, &x, &target);
            assert!(v0.is_finite() && v0 > 0.0, "{name}: value {v0}");
            let gmax = g.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(gmax > 0.0, "{name}: zero gradient");
            let mut worst = 0.0f64;
            for a in 0..x.len() {
                for d in 0..3 {
                    let mut xp = x.clone();
                    xp[a][d] += h;
                    let mut xm = x.clone();
                    xm[a][d] -= h;
                    let fd = (term(&p, name, &xp, &target).0 - term(&p, name, &xm, &target).0)
                        / (2.0 * h);
                    worst = worst.max((fd - g[a][d]).abs());
                }
            }
            assert!(
                worst <= 1e-6 * gmax.max(1e-3),
                "{name}: max |analytic - fd| = {worst:e}, max |g| = {gmax:e}"
            );
        }
    }

    /// Masks and normalisers as `training/utils.py` builds them from cumulative chain ends.
    #[test]
    fn masks_follow_cumulative_chain_ends() {
        let p = Problem::new(5, &[3, 2]);
        // Flat N,CA,C atoms 0..15; atoms 8 (C of res 2) and 14 (C of res 4) masked.
        let den = 13.0 + EPS;
        let masked: Vec<usize> = p
            .bond_w
            .iter()
            .enumerate()
            .filter(|(_, &w)| w == 0.0)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(masked, vec![7, 8, 13]);
        assert!((p.bond_w[0] - 1.0 / den).abs() < 1e-15);
        // Residue mask [1,1,0,1,0] -> pair mask [1,0,0,0].
        assert_eq!(p.angle_w.iter().filter(|&&w| w > 0.0).count(), 1);
        assert!((p.cis_w - 1.0 / (1.0 + EPS)).abs() < 1e-15);
        assert!((p.clash_w - 1.0 / (400.0 + EPS)).abs() < 1e-18);
    }
}
