//! IgFold 1.0.1 `gradient_refine`: 80 Adam steps on the raw per-residue frames `(R_i, t_i)`
//! (R an unconstrained 3x3 matrix) minimising
//!
//! ```text
//! loss = kabsch_mse(X, X0) + bond_len + bond_angle + vdw_clash + cis_peptide,  X = ideal @ R + t
//! ```
//!
//! over the N, CA, C, CB atoms. The PyTorch reference gets the gradient from autograd; here each
//! term has a hand-written backward to the atoms, followed by the (linear) chain rule to `R`
//! and `t`. The atoms are built in `f32` as in the reference; losses and gradients are evaluated
//! in `f64` (cheap, and it removes our own rounding noise, which Adam's normalised steps would
//! otherwise amplify), and the Adam update runs in `f32` with `torch.optim.Adam` semantics.
//! The two kinks (the sign of `|d - ref|` for bond lengths, whether a pair clashes) are decided
//! on the float32 distance as the reference computes it.
//!
//! Reference details kept on purpose (`igfold/training/utils.py`, `igfold/utils/geometry.py`):
//! * `kabsch_mse`: the initial coordinates are Kabsch-aligned onto `X.detach()`; the aligned
//!   target is a constant, so `dL/dX = 2 (X - aligned) / (3 * 4L)`.
//! * bond lengths over the flattened N, CA, C chain with `sqrt(|d|^2 + 1e-6)`; the mask zeroes
//!   the C of each chain's last residue, which removes the inter-chain C-N bond and the last
//!   CA-C bond; the denominator is the number of unmasked *atoms*.
//! * bond angles CA-C-N and C-N-CA with `v / sqrt(|v|^2 + 1e-6)` unit vectors; the residue mask
//!   zeroes each chain's last residue and pairs need both residues.
//! * vdW clash over all `(4L)^2` ordered atom pairs, self pairs included (constant, zero
//!   gradient), divided by `(4L)^2 + 1e-6`. The cut-off of the ordered pair `(i, j)` is
//!   `2 r_j - 1.5`, not `r_i + r_j - 1.5`: with batch size 1 IgFold's
//!   `vdw_radii.unsqueeze(-2) + vdw_radii.unsqueeze(-3)` adds two `[1, 1, 4L]` tensors. An N-C
//!   pair therefore clashes below 1.6 Å in one order and below 1.9 Å in the other (the
//!   stretched C-N peptide bond, ~1.6-1.7 Å, sits between the two).
//! * cis peptide `1 - cos(dih - pi)` summed over *all* consecutive residue pairs (the chain
//!   break included), divided by the number of valid pairs; IgFold's dihedral leaves the first
//!   normal un-normalised (`n1 = u(b1) x u(b2)`).

use super::geometry::{backbone_atoms, Frames, Vec3, IDEAL_BACKBONE};

/// Adam steps of `gradient_refine`.
pub const REFINE_STEPS: usize = 80;
/// Adam learning rate of `gradient_refine`.
pub const REFINE_LR: f64 = 0.02;

type V3 = [f64; 3];
type M3 = [[f64; 3]; 3];

/// Scalars as the float32 tensors of the reference hold them.
const fn f32_val(x: f64) -> f64 {
    x as f32 as f64
}
const EPS: f64 = f32_val(1e-6);
const BOND_REF: [f64; 3] = [f32_val(1.459), f32_val(1.525), f32_val(1.336)]; // N-CA, CA-C, C-N
const ANGLE_CA_C_N: f64 = f32_val(117.2 * std::f64::consts::PI / 180.0);
const ANGLE_C_N_CA: f64 = f32_val(121.7 * std::f64::consts::PI / 180.0);
const PI_F32: f64 = f32_val(std::f64::consts::PI);
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

/// Atom slots in the flat `(4L)` atom array.
const N: usize = 0;
const CA: usize = 1;
const C: usize = 2;

/// The five loss terms of one refinement step (values as the reference reports them).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RefineLoss {
    pub rmsd: f64,
    pub bond_len: f64,
    pub bond_angle: f64,
    pub clash: f64,
    pub cis: f64,
}

impl RefineLoss {
    /// `rmsd + violation_loss`, the quantity back-propagated by the reference.
    pub fn total(&self) -> f64 {
        self.rmsd + (((self.bond_len + self.bond_angle) + self.clash) + self.cis)
    }
}

/// Gradient of the refinement loss with respect to the raw frames.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameGrad {
    pub rot: Vec<M3>,
    pub trans: Vec<V3>,
}

/// IgFold's gradient refinement: 80 Adam steps (lr 0.02) on per-residue (R raw 3x3, t).
pub fn gradient_refine(frames: &Frames, chain_lens: &[usize]) -> Frames {
    gradient_refine_steps(frames, chain_lens, REFINE_STEPS)
}

/// [`gradient_refine`] with a chosen number of Adam steps.
pub fn gradient_refine_steps(frames: &Frames, chain_lens: &[usize], steps: usize) -> Frames {
    let n_res = frames.len();
    if n_res == 0 {
        return frames.clone();
    }
    let target = flat_atoms_f64(&backbone_atoms(frames));
    let problem = Problem::new(n_res, chain_lens);
    let mut ws = Workspace::new(n_res);
    let mut params = frames.clone();
    let mut adam = Adam::new(n_res);
    for _ in 0..steps {
        ws.set_atoms(&params);
        problem.eval(&ws.x, &target, &mut ws.aligned, &mut ws.gx);
        atoms_to_frame_grad(&ws.gx, &mut ws.grad);
        adam.step(&mut params, &ws.grad);
    }
    params
}

/// Loss terms and frame gradient of the first refinement step: `target` is the backbone the
/// refinement started from (normally `backbone_atoms(frames)` itself).
pub fn refine_loss(
    frames: &Frames,
    target: &[[Vec3; 4]],
    chain_lens: &[usize],
) -> (RefineLoss, FrameGrad) {
    let n_res = frames.len();
    assert_eq!(target.len(), n_res, "refine_loss: target length");
    let problem = Problem::new(n_res, chain_lens);
    let mut ws = Workspace::new(n_res);
    ws.set_atoms(frames);
    let loss = problem.eval(&ws.x, &flat_atoms_f64(target), &mut ws.aligned, &mut ws.gx);
    atoms_to_frame_grad(&ws.gx, &mut ws.grad);
    (loss, ws.grad)
}

fn flat_atoms_f64(bb: &[[Vec3; 4]]) -> Vec<V3> {
    bb.iter()
        .flat_map(|r| r.iter().map(|p| p.map(f64::from)))
        .collect()
}

/// Reusable per-step buffers.
struct Workspace {
    x: Vec<V3>,
    aligned: Vec<V3>,
    gx: Vec<V3>,
    grad: FrameGrad,
}

impl Workspace {
    fn new(n_res: usize) -> Self {
        Workspace {
            x: vec![[0.0; 3]; 4 * n_res],
            aligned: vec![[0.0; 3]; 4 * n_res],
            gx: vec![[0.0; 3]; 4 * n_res],
            grad: FrameGrad {
                rot: vec![[[0.0; 3]; 3]; n_res],
                trans: vec![[0.0; 3]; n_res],
            },
        }
    }

    /// Atoms `ideal @ R + t`, rounded to f32 as the reference computes them.
    fn set_atoms(&mut self, frames: &Frames) {
        for (i, res) in backbone_atoms(frames).iter().enumerate() {
            for (a, p) in res.iter().enumerate() {
                self.x[4 * i + a] = p.map(f64::from);
            }
        }
    }
}

/// Chain rule through `X_a = ideal_a @ R + t`: `dR[c][d] = sum_a ideal_a[c] gX_a[d]`,
/// `dt = sum_a gX_a`.
fn atoms_to_frame_grad(gx: &[V3], out: &mut FrameGrad) {
    for (i, g) in gx.chunks_exact(4).enumerate() {
        let mut gr = [[0.0f64; 3]; 3];
        let mut gt = [0.0f64; 3];
        for (ideal, ga) in IDEAL_BACKBONE.iter().zip(g) {
            for c in 0..3 {
                let w = ideal[c] as f64;
                if w != 0.0 {
                    for d in 0..3 {
                        gr[c][d] += w * ga[d];
                    }
                }
            }
            for d in 0..3 {
                gt[d] += ga[d];
            }
        }
        out.rot[i] = gr;
        out.trans[i] = gt;
    }
}

/// `torch.optim.Adam(lr=0.02, betas=(0.9, 0.999), eps=1e-8)`, single-tensor CPU path, float32
/// state: `m = lerp(m, g, 1-b1)`, `v = v*b2 + (1-b2) g^2`,
/// `p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)`, bias corrections in double.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: u32,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    fn new(n_res: usize) -> Self {
        Adam {
            m: vec![0.0; 12 * n_res],
            v: vec![0.0; 12 * n_res],
            t: 0,
        }
    }

    fn step(&mut self, params: &mut Frames, grad: &FrameGrad) {
        self.t += 1;
        let step = self.t as f64;
        let bc1 = 1.0 - Self::BETA1.powf(step);
        let bc2 = 1.0 - Self::BETA2.powf(step);
        let step_size = -(REFINE_LR / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let w1 = (1.0 - Self::BETA1) as f32;
        let b2 = Self::BETA2 as f32;
        let w2 = (1.0 - Self::BETA2) as f32;
        let eps = Self::EPS as f32;
        let n_res = params.len();
        let n_rot = 9 * n_res;
        let (m_rot, m_tr) = self.m.split_at_mut(n_rot);
        let (v_rot, v_tr) = self.v.split_at_mut(n_rot);
        let update = |p: &mut f32, g: f64, m: &mut f32, v: &mut f32| {
            let g = g as f32;
            // torch's vectorised lerp with a small weight: fma(w, end - start, start).
            *m = w1.mul_add(g - *m, *m);
            *v = *v * b2 + w2 * g * g;
            let denom = v.sqrt() / bc2_sqrt + eps;
            *p += step_size * *m / denom;
        };
        let p_rot = params.rot.as_flattened_mut().as_flattened_mut();
        let g_rot = grad.rot.as_flattened().as_flattened();
        for k in 0..n_rot {
            update(&mut p_rot[k], g_rot[k], &mut m_rot[k], &mut v_rot[k]);
        }
        let p_tr = params.trans.as_flattened_mut();
        let g_tr = grad.trans.as_flattened();
        for k in 0..3 * n_res {
            update(&mut p_tr[k], g_tr[k], &mut m_tr[k], &mut v_tr[k]);
        }
    }
}

/// Masks and normalisers of the loss for one chain layout.
struct Problem {
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
    fn new(n_res: usize, chain_lens: &[usize]) -> Self {
        let ends: Vec<usize> = if chain_lens.is_empty() {
            vec![n_res]
        } else {
            assert_eq!(
                chain_lens.iter().sum::<usize>(),
                n_res,
                "gradient_refine: chain lengths {chain_lens:?} do not sum to {n_res} residues"
            );
            chain_lens
                .iter()
                .scan(0, |s, &l| {
                    *s += l;
                    Some(*s)
                })
                .collect()
        };
        // Bond lengths: atom mask over the flat N, CA, C chain.
        let mut atom_mask = vec![1.0f64; 3 * n_res];
        let mut res_mask = vec![1.0f64; n_res];
        for &e in &ends {
            if e > 0 {
                atom_mask[3 * e - 1] = 0.0;
                res_mask[e - 1] = 0.0;
            }
        }
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

    /// All loss terms at atoms `x` (flat `[4L]`); writes `dL/dx` into `g`.
    fn eval(&self, x: &[V3], target: &[V3], aligned: &mut [V3], g: &mut [V3]) -> RefineLoss {
        debug_assert_eq!(x.len(), 4 * self.n_res);
        g.fill([0.0; 3]);
        RefineLoss {
            rmsd: kabsch_mse(x, target, aligned, g),
            bond_len: self.bond_len(x, g),
            bond_angle: self.bond_angle(x, g),
            clash: self.clash(x, g),
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

    /// `sum_{i,j} relu(2 r_j - 1.5 - |x_i - x_j|) / ((4L)^2 + eps)` over ordered pairs (see
    /// [`CLASH_CUT`]); each unordered pair is visited once and both orders are tested.
    fn clash(&self, x: &[V3], g: &mut [V3]) -> f64 {
        let n = x.len();
        let is_c = |a: usize| usize::from(a % 4 != N);
        let self_sum: f64 = (0..n).map(|a| CLASH_CUT[is_c(a)]).sum();
        let max_cut2 = CLASH_CUT[1] * CLASH_CUT[1] * (1.0 + 1e-5);
        let xs: Vec<f64> = x.iter().map(|p| p[0]).collect();
        let ys: Vec<f64> = x.iter().map(|p| p[1]).collect();
        let zs: Vec<f64> = x.iter().map(|p| p[2]).collect();
        let gw = self.clash_w;
        let mut pair_sum = 0.0;
        const B: usize = 8;
        let mut d2 = [0.0f64; B];
        for i in 0..n {
            let (xi, yi, zi) = (xs[i], ys[i], zs[i]);
            let ci = is_c(i);
            let mut j0 = i + 1;
            while j0 < n {
                let len = B.min(n - j0);
                let mut any = false;
                if len == B {
                    let (bx, by, bz) = (&xs[j0..j0 + B], &ys[j0..j0 + B], &zs[j0..j0 + B]);
                    let mut lo = f64::INFINITY;
                    for k in 0..B {
                        let (dx, dy, dz) = (xi - bx[k], yi - by[k], zi - bz[k]);
                        d2[k] = dx * dx + dy * dy + dz * dz;
                        lo = lo.min(d2[k]);
                    }
                    any = lo <= max_cut2;
                } else {
                    for k in 0..len {
                        let (dx, dy, dz) = (xi - xs[j0 + k], yi - ys[j0 + k], zi - zs[j0 + k]);
                        d2[k] = dx * dx + dy * dy + dz * dz;
                        any |= d2[k] <= max_cut2;
                    }
                }
                if any {
                    for (k, &dd) in d2[..len].iter().enumerate() {
                        if dd > max_cut2 {
                            continue;
                        }
                        let j = j0 + k;
                        // Whether each order clashes (the clamp's kink) is decided in float32
                        // as the reference computes it.
                        let d32 = dist_f32(&x[i], &x[j], 0.0);
                        let mut times = 0.0;
                        for cut in [CLASH_CUT[is_c(j)], CLASH_CUT[ci]] {
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
                                let s = -times * gw / d;
                                let diff = [xi - xs[j], yi - ys[j], zi - zs[j]];
                                axpy(&mut g[i], s, diff);
                                axpy(&mut g[j], -s, diff);
                            }
                        }
                    }
                }
                j0 += len;
            }
        }
        (self_sum + pair_sum) * self.clash_w
    }
}

/// `sqrt(|a - b|^2 + eps)` in float32 with the reference's operation order (exact
/// difference, sequential sum of squares).
#[inline]
fn dist_f32(a: &V3, b: &V3, eps: f32) -> f32 {
    let d = [
        (a[0] as f32 - b[0] as f32),
        (a[1] as f32 - b[1] as f32),
        (a[2] as f32 - b[2] as f32),
    ];
    (((d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]) + eps).sqrt()
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

/// IgFold's `kabsch(mobile, stationary)` transform applied to `mobile`:
/// `(mobile - mean_m) @ (V W) + mean_s`, with `V S W = svd(mobile_c^T stationary_c)` and the last
/// column of `V` negated when `det(V) det(W) < 0`.
fn kabsch_align(mobile: &[V3], stationary: &[V3], out: &mut [V3]) {
    let mm = mean(mobile);
    let ms = mean(stationary);
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
    let rot = kabsch_rotation(&cov);
    for (p, o) in mobile.iter().zip(out.iter_mut()) {
        let a = sub(*p, mm);
        for c in 0..3 {
            o[c] = a[0] * rot[0][c] + a[1] * rot[1][c] + a[2] * rot[2][c] + ms[c];
        }
    }
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

#[inline]
fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
#[inline]
fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
#[inline]
fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
#[inline]
fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
#[inline]
fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}
#[inline]
fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
#[inline]
fn axpy(y: &mut V3, s: f64, x: V3) {
    y[0] += s * x[0];
    y[1] += s * x[1];
    y[2] += s * x[2];
}
#[inline]
fn mean(p: &[V3]) -> V3 {
    let mut s = [0.0; 3];
    for q in p {
        axpy(&mut s, 1.0, *q);
    }
    scale(s, 1.0 / p.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::super::geometry::{quat_to_rot, Mat3};
    use super::*;

    /// Small deterministic generator (SplitMix64) for test data.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
        fn sym(&mut self) -> f64 {
            2.0 * self.next() - 1.0
        }
    }

    /// A crumpled backbone: random rotations, CA roughly 3.8 Å apart along a wobbly path,
    /// plus a mildly non-orthogonal perturbation of R (as after some refinement steps).
    fn random_frames(n: usize, seed: u64) -> Frames {
        let mut rng = Rng(seed);
        let mut rot = Vec::with_capacity(n);
        let mut trans = Vec::with_capacity(n);
        let mut pos = [0.0f64; 3];
        for _ in 0..n {
            let q = [rng.sym(), rng.sym(), rng.sym(), rng.sym()].map(|v| v as f32);
            let mut r: Mat3 = quat_to_rot(q);
            for row in r.iter_mut() {
                for v in row.iter_mut() {
                    *v += 0.05 * rng.sym() as f32;
                }
            }
            rot.push(r);
            trans.push(pos.map(|v| v as f32));
            let dir = [1.0 + 0.6 * rng.sym(), 0.8 * rng.sym(), 0.8 * rng.sym()];
            pos = add(pos, scale(dir, 3.8 / norm(dir)));
        }
        Frames { rot, trans }
    }

    fn atoms64(rot: &[M3], trans: &[V3]) -> Vec<V3> {
        let mut x = Vec::with_capacity(4 * rot.len());
        for (r, t) in rot.iter().zip(trans) {
            for p in IDEAL_BACKBONE {
                let mut o = *t;
                for d in 0..3 {
                    o[d] += (0..3).map(|c| p[c] as f64 * r[c][d]).sum::<f64>();
                }
                x.push(o);
            }
        }
        x
    }

    fn frames64(f: &Frames) -> (Vec<M3>, Vec<V3>) {
        (
            f.rot
                .iter()
                .map(|r| r.map(|row| row.map(f64::from)))
                .collect(),
            f.trans.iter().map(|t| t.map(f64::from)).collect(),
        )
    }

    /// A target: the same atoms rotated, shifted and noised, so the Kabsch term is non-trivial.
    fn noisy_target(x: &[V3], seed: u64) -> Vec<V3> {
        let mut rng = Rng(seed);
        let r = quat_to_rot([0.8, 0.3, -0.4, 0.2]);
        x.iter()
            .map(|p| {
                let mut o = [5.0, -3.0, 2.0];
                for d in 0..3 {
                    o[d] += (0..3).map(|c| p[c] * r[c][d] as f64).sum::<f64>() + 0.4 * rng.sym();
                }
                o
            })
            .collect()
    }

    const TERMS: [&str; 5] = ["rmsd", "bond_len", "bond_angle", "clash", "cis"];

    /// One loss term (by name) and its gradient at atoms `x`.
    fn term(p: &Problem, name: &str, x: &[V3], target: &[V3]) -> (f64, Vec<V3>) {
        let mut g = vec![[0.0; 3]; x.len()];
        let v = match name {
            "rmsd" => kabsch_mse(x, target, &mut vec![[0.0; 3]; x.len()], &mut g),
            "bond_len" => p.bond_len(x, &mut g),
            "bond_angle" => p.bond_angle(x, &mut g),
            "clash" => p.clash(x, &mut g),
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

    /// The clash term with some atoms overlapping heavily, including an exactly coincident pair
    /// (zero gradient at zero distance, like torch's norm backward).
    #[test]
    fn clash_gradient_with_overlaps() {
        let n_res = 6;
        let (rot, mut trans) = frames64(&random_frames(n_res, 3));
        trans[3] = add(trans[2], [0.7, 0.4, -0.3]);
        trans[5] = add(trans[1], [0.2, -0.5, 0.9]);
        let mut x = atoms64(&rot, &trans);
        x[23] = x[6];
        let p = Problem::new(n_res, &[n_res]);
        let (v, g) = term(&p, "clash", &x, &x);
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
                let fd = (term(&p, "clash", &xp, &x).0 - term(&p, "clash", &xm, &x).0) / (2.0 * h);
                assert!(
                    (fd - g[a][d]).abs() < 1e-7,
                    "atom {a}.{d}: fd {fd} vs {}",
                    g[a][d]
                );
            }
        }
        // Brute-force value over all ordered pairs, self pairs included; the cut-off of `(i, j)`
        // is `2 r_j - tol` (IgFold's batch-1 broadcast, see `CLASH_CUT`).
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
        let n = x.len() as f64;
        assert!((v - sum / (n * n + EPS)).abs() < 1e-12 * v);
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
        let p = Problem::new(n_res, &[n_res]);
        let (v, g) = term(&p, "clash", &x, &x);
        let n = x.len() as f64;
        let self_sum: f64 = (0..x.len())
            .map(|a| CLASH_CUT[usize::from(a % 4 != N)])
            .sum();
        let one_order = CLASH_CUT[1] - 1.7;
        assert!(
            ((v * (n * n + EPS)) - (self_sum + one_order)).abs() < 1e-9,
            "{v}"
        );
        let w = 1.0 / (n * n + EPS);
        assert!(
            (g[2][0] - w).abs() < 1e-15 && (g[4][0] + w).abs() < 1e-15,
            "{g:?}"
        );
    }

    /// The chain rule to (R, t) against central differences of the total loss in f64.
    #[test]
    fn frame_gradients_match_finite_differences() {
        let chain_lens = [4usize, 3];
        let n_res = 7;
        let (rot, trans) = frames64(&random_frames(n_res, 5));
        let x = atoms64(&rot, &trans);
        let target = noisy_target(&x, 13);
        let p = Problem::new(n_res, &chain_lens);
        let total = |rot: &[M3], trans: &[V3]| {
            let x = atoms64(rot, trans);
            let mut g = vec![[0.0; 3]; x.len()];
            p.eval(&x, &target, &mut vec![[0.0; 3]; x.len()], &mut g)
                .total()
        };
        let mut gx = vec![[0.0; 3]; x.len()];
        p.eval(&x, &target, &mut vec![[0.0; 3]; x.len()], &mut gx);
        let mut grad = FrameGrad {
            rot: vec![[[0.0; 3]; 3]; n_res],
            trans: vec![[0.0; 3]; n_res],
        };
        atoms_to_frame_grad(&gx, &mut grad);
        let h = 1e-6;
        let gmax = grad
            .rot
            .iter()
            .flatten()
            .flatten()
            .chain(grad.trans.iter().flatten())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..n_res {
            for c in 0..3 {
                for d in 0..3 {
                    let (mut rp, mut rm) = (rot.clone(), rot.clone());
                    rp[i][c][d] += h;
                    rm[i][c][d] -= h;
                    let fd = (total(&rp, &trans) - total(&rm, &trans)) / (2.0 * h);
                    assert!(
                        (fd - grad.rot[i][c][d]).abs() <= 1e-6 * gmax,
                        "dR[{i}][{c}][{d}]: {fd} vs {}",
                        grad.rot[i][c][d]
                    );
                }
                let (mut tp, mut tm) = (trans.clone(), trans.clone());
                tp[i][c] += h;
                tm[i][c] -= h;
                let fd = (total(&rot, &tp) - total(&rot, &tm)) / (2.0 * h);
                assert!(
                    (fd - grad.trans[i][c]).abs() <= 1e-6 * gmax,
                    "dt[{i}][{c}]: {fd} vs {}",
                    grad.trans[i][c]
                );
            }
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
        let mm = mean(&mirrored);
        let mut cov = [[0.0; 3]; 3];
        let mx = mean(&x);
        for (p, q) in mirrored.iter().zip(&x) {
            let (a, b) = (sub(*p, mm), sub(*q, mx));
            for i in 0..3 {
                for j in 0..3 {
                    cov[i][j] += a[i] * b[j];
                }
            }
        }
        let m = kabsch_rotation(&cov);
        let det = dot(m[0], cross(m[1], m[2]));
        assert!((det - 1.0).abs() < 1e-9, "det {det}");
        for i in 0..3 {
            for j in 0..3 {
                let d: f64 = (0..3).map(|k| m[i][k] * m[j][k]).sum();
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
    }

    /// First Adam step moves every parameter by lr against the sign of its gradient.
    #[test]
    fn first_adam_step_is_signed_lr() {
        let frames = random_frames(4, 1);
        let mut params = frames.clone();
        let mut grad = FrameGrad {
            rot: vec![[[0.0; 3]; 3]; 4],
            trans: vec![[0.0; 3]; 4],
        };
        let mut rng = Rng(2);
        for v in grad
            .rot
            .iter_mut()
            .flatten()
            .flatten()
            .chain(grad.trans.iter_mut().flatten())
        {
            *v = rng.sym() * 1e-3;
        }
        let mut adam = Adam::new(4);
        adam.step(&mut params, &grad);
        for i in 0..4 {
            for d in 0..3 {
                let step = params.trans[i][d] - frames.trans[i][d];
                let g = grad.trans[i][d];
                let want = (-0.02 * g / (g.abs() + 1e-8)) as f32;
                assert!((step - want).abs() < 2e-7, "{step} vs {want}");
            }
        }
    }

    #[test]
    fn refinement_reduces_loss_and_is_fast() {
        let n_res = 230;
        let chain_lens = [120usize, 110];
        let frames = random_frames(n_res, 21);
        let x0 = backbone_atoms(&frames);
        let (l0, _) = refine_loss(&frames, &x0, &chain_lens);
        let start = std::time::Instant::now();
        let refined = gradient_refine(&frames, &chain_lens);
        let secs = start.elapsed().as_secs_f64();
        let (l1, _) = refine_loss(&refined, &x0, &chain_lens);
        eprintln!(
            "gradient_refine L={n_res}: {secs:.3} s; loss {:.4} -> {:.4}",
            l0.total(),
            l1.total()
        );
        assert!(l1.total() < l0.total());
        assert!(refined
            .rot
            .iter()
            .flatten()
            .flatten()
            .all(|v| v.is_finite()));
    }
}

/// Acceptance against PyTorch IgFold 1.0.1. `tests/data/igfold_<name>.safetensors` (committed)
/// holds per member `m{k}.raw_{rot,trans,coords}` and `m{k}.refined_coords`; the optional debug
/// dumps `igfold_debug_<name>.safetensors` (directory `$FERROFOLD_IGFOLD_DEBUG_DIR`, default
/// `/tmp`) add the step-0 loss terms and gradients of member `igfold_1`. Tests skip with a note
/// when a file is absent.
#[cfg(test)]
mod golden {
    use super::super::geometry::{place_o_atoms, quat_to_rot, Mat3};
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    struct Golden {
        tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
        meta: HashMap<String, String>,
    }

    impl Golden {
        fn load(path: PathBuf) -> Option<Golden> {
            let Ok(bytes) = std::fs::read(&path) else {
                eprintln!("note: {} absent, golden test skipped", path.display());
                return None;
            };
            let (_, header) =
                safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
            let meta = header.metadata().clone().unwrap_or_default();
            let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
            let tensors = st
                .iter()
                .filter(|(_, v)| v.dtype() == safetensors::Dtype::F32)
                .map(|(k, v)| {
                    let data = v
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    (k.to_string(), (v.shape().to_vec(), data))
                })
                .collect();
            Some(Golden { tensors, meta })
        }

        fn get(&self, name: &str) -> &[f32] {
            &self
                .tensors
                .get(name)
                .unwrap_or_else(|| panic!("missing tensor {name}"))
                .1
        }

        fn has(&self, name: &str) -> bool {
            self.tensors.contains_key(name)
        }

        fn scalar(&self, name: &str) -> f64 {
            self.get(name)[0] as f64
        }

        /// Chain lengths from the `sequences` metadata (`{"H": ..., "L": ...}`; chains in key
        /// order, which is H before L).
        fn chain_lens(&self) -> Vec<usize> {
            let seqs: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(self.meta.get("sequences").expect("sequences metadata"))
                    .unwrap();
            seqs.values().map(|s| s.as_str().unwrap().len()).collect()
        }

        fn frames(&self, prefix: &str) -> Frames {
            let rot = self.get(&format!("{prefix}raw_rot"));
            let trans = self.get(&format!("{prefix}raw_trans"));
            Frames {
                rot: rot
                    .chunks_exact(9)
                    .map(|m| [[m[0], m[1], m[2]], [m[3], m[4], m[5]], [m[6], m[7], m[8]]])
                    .collect(),
                trans: trans.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect(),
            }
        }
    }

    fn data_file(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data")
            .join(format!("igfold_{name}.safetensors"))
    }

    fn debug_file(name: &str) -> PathBuf {
        let dir = std::env::var("FERROFOLD_IGFOLD_DEBUG_DIR").unwrap_or_else(|_| "/tmp".into());
        PathBuf::from(dir).join(format!("igfold_debug_{name}.safetensors"))
    }

    /// N, CA, C, CB, O of every residue, flattened `[L*5*3]`.
    fn full_atoms(frames: &Frames, chain_lens: &[usize]) -> Vec<f32> {
        let bb = backbone_atoms(frames);
        let o = place_o_atoms(&bb, chain_lens);
        bb.iter()
            .zip(&o)
            .flat_map(|(r, o)| {
                r.iter()
                    .chain(std::iter::once(o))
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Largest per-atom distance between two flat `[n*3]` coordinate arrays.
    fn max_atom_dev(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.chunks_exact(3)
            .zip(b.chunks_exact(3))
            .map(|(p, q)| {
                (0..3)
                    .map(|k| (p[k] as f64 - q[k] as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0.0, f64::max)
    }

    fn members(g: &Golden) -> Vec<String> {
        (0..)
            .map(|k| format!("m{k}."))
            .take_while(|p| g.has(&format!("{p}raw_rot")))
            .collect()
    }

    const NAMES: [&str; 3] = ["paired", "nanobody", "trastuzumab"];

    #[test]
    fn golden_raw_frames_give_raw_coords() {
        for name in NAMES {
            let Some(g) = Golden::load(data_file(name)) else {
                continue;
            };
            let lens = g.chain_lens();
            for m in members(&g) {
                let dev = max_atom_dev(
                    &full_atoms(&g.frames(&m), &lens),
                    g.get(&format!("{m}raw_coords")),
                );
                eprintln!("{name} {m}raw_coords: max atom deviation {dev:.2e} Å");
                assert!(dev <= 1e-4, "{name} {m}: raw coords deviate {dev} Å");
            }
        }
    }

    /// Tolerances of the refined coordinates. The refinement is not smooth: Adam drives bond
    /// lengths onto the kink of `|d - ref|` and each crossing flips a full-size step, so float32
    /// rounding noise (a few ulps in the parameters, ~1e-5 Å in the atoms) decides some flips
    /// and the trajectory lands on one of a few nearby outcomes. Evidence: the reference run in
    /// float64 (same code, `torch.set_default_dtype(float64)`) ends exactly where the float32
    /// goldens are on 5 of the 12 members and 0.018-0.052 Å away (N/CA/C/CB/O max; rms <= 0.005)
    /// on the other 7; paired m3 is 0.0519 Å. We track the float64 reference to ~1e-5 Å per step
    /// until such a flip and end on the float64 outcome on 10 of 12 members (paired m1 and
    /// nanobody m2 flip the other way: 0.036 / 0.000 Å vs float64's 0.000 / 0.018 Å). Matching
    /// the float32 flips would need bitwise float32 replication (torch's CPU `sqrt` is not even
    /// correctly rounded, the Kabsch SVD is LAPACK `sgesdd`). Measured: max 0.0519 Å (paired m3),
    /// backbone N/CA/C/CB max 0.0415 Å, rms max 0.0050 Å.
    const REFINED_MAX_DEV: f64 = 0.055;
    const REFINED_BB_MAX_DEV: f64 = 0.045;
    const REFINED_RMS_DEV: f64 = 0.006;

    #[test]
    fn golden_refined_coords() {
        let mut worst = Vec::new();
        for name in NAMES {
            let Some(g) = Golden::load(data_file(name)) else {
                continue;
            };
            let lens = g.chain_lens();
            for m in members(&g) {
                let start = std::time::Instant::now();
                let refined = gradient_refine(&g.frames(&m), &lens);
                let secs = start.elapsed().as_secs_f64();
                let got = full_atoms(&refined, &lens);
                let want = g.get(&format!("{m}refined_coords"));
                let dev = max_atom_dev(&got, want);
                let n = want.len() / 3;
                let rms = (got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
                    / n as f64)
                    .sqrt();
                let bb_dev = max_atom_dev(
                    &got.chunks_exact(15)
                        .flat_map(|r| r[..12].to_vec())
                        .collect::<Vec<_>>(),
                    &want
                        .chunks_exact(15)
                        .flat_map(|r| r[..12].to_vec())
                        .collect::<Vec<_>>(),
                );
                eprintln!("{name} {m}refined_coords: max atom deviation {dev:.4} Å (N/CA/C/CB {bb_dev:.4}), rms {rms:.4} Å ({secs:.3} s)");
                worst.push((dev, bb_dev, rms, format!("{name} {m}")));
            }
        }
        for (dev, bb_dev, rms, what) in &worst {
            assert!(
                *dev <= REFINED_MAX_DEV,
                "{what}: refined coords deviate up to {dev} Å"
            );
            assert!(
                *bb_dev <= REFINED_BB_MAX_DEV,
                "{what}: refined N/CA/C/CB deviate up to {bb_dev} Å"
            );
            assert!(
                *rms <= REFINED_RMS_DEV,
                "{what}: refined coords deviate by {rms} Å rms"
            );
        }
    }

    /// Step-0 loss terms and gradients, the first Adam step, and the quaternion conversion against
    /// the debug dumps of member igfold_1.
    #[test]
    fn golden_debug_step0() {
        for name in ["paired", "nano"] {
            let Some(g) = Golden::load(debug_file(name)) else {
                continue;
            };
            let lens = g.chain_lens();
            let frames = g.frames("");
            let n_res = frames.len();
            if g.has("str.2.quat") {
                let q = g.get("str.2.quat");
                let mut worst = 0.0f32;
                for (i, r) in frames.rot.iter().enumerate() {
                    let mine: Mat3 =
                        quat_to_rot([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
                    for (a, b) in mine.iter().flatten().zip(r.iter().flatten()) {
                        worst = worst.max((a - b).abs());
                    }
                }
                eprintln!("{name}: quat_to_rot max deviation {worst:.2e}");
                assert!(worst <= 1e-6);
            }
            let x0 = backbone_atoms(&frames);
            let (loss, grad) = refine_loss(&frames, &x0, &lens);
            let terms = [
                ("bond_len0", loss.bond_len),
                ("bond_angle0", loss.bond_angle),
                ("clash0", loss.clash),
                ("cis0", loss.cis),
                ("loss0", loss.total()),
            ];
            for (key, mine) in terms {
                let want = g.scalar(&format!("refine.{key}"));
                let rel = (mine - want).abs() / want.abs();
                eprintln!("{name}: {key} {mine:.8e} vs {want:.8e} (rel {rel:.1e})");
                assert!(rel <= 1e-5, "{name} {key}: {mine} vs {want}");
            }
            let rmsd0 = g.scalar("refine.rmsd0");
            eprintln!("{name}: rmsd0 {:.3e} vs {rmsd0:.3e}", loss.rmsd);
            assert!(loss.rmsd.abs() < 1e-9 && rmsd0.abs() < 1e-6);
            let cmp = |key: &str, mine: Vec<f64>| {
                let want = g.get(key);
                assert_eq!(want.len(), mine.len());
                let scale = want.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs()));
                let worst = mine
                    .iter()
                    .zip(want)
                    .fold(0.0f64, |m, (a, b)| m.max((a - *b as f64).abs()));
                eprintln!(
                    "{name}: {key} max |diff| / max |ref| = {:.2e}",
                    worst / scale
                );
                assert!(
                    worst <= 1e-4 * scale,
                    "{name} {key}: {worst} vs scale {scale}"
                );
            };
            cmp(
                "refine.grad_t0",
                grad.trans.iter().flatten().copied().collect(),
            );
            cmp(
                "refine.grad_R0",
                grad.rot.iter().flatten().flatten().copied().collect(),
            );
            // After one Adam step.
            if g.has("refine.rot1") {
                let one = gradient_refine_steps(&frames, &lens, 1);
                let rot1 = g.get("refine.rot1");
                let trans1 = g.get("refine.trans1");
                let mut worst = 0.0f32;
                for i in 0..n_res {
                    for k in 0..9 {
                        worst = worst.max((one.rot[i][k / 3][k % 3] - rot1[9 * i + k]).abs());
                    }
                    for d in 0..3 {
                        worst = worst.max((one.trans[i][d] - trans1[3 * i + d]).abs());
                    }
                }
                eprintln!("{name}: after step 1, max parameter deviation {worst:.2e}");
                assert!(worst <= 1e-5, "{name}: step-1 parameters deviate {worst}");
            }
        }
    }
}
