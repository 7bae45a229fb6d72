//! Residue frames and backbone geometry of IgFold 1.0.1 (`utils/coordinates.py`,
//! `utils/transforms.py`).
//!
//! IgFold applies rotations to row vectors: `global = local @ R + t`. All arithmetic here is
//! `f32`, in the same operation order as the PyTorch reference where that is cheap to keep.

use std::ops::{Add, AddAssign, Div, Mul, Sub};

/// A point or vector in Å.
pub type Vec3 = [f32; 3];
/// Row-major 3x3, row-vector convention as IgFold: `global = local @ R + t`.
pub type Mat3 = [[f32; 3]; 3];

/// Per-residue frames. `rot[i]` need not be orthonormal (gradient refinement optimises it as
/// a raw 3x3 matrix).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frames {
    pub rot: Vec<Mat3>,
    pub trans: Vec<Vec3>,
}

impl Frames {
    /// `n` identity frames at the origin.
    pub fn identity(n: usize) -> Self {
        Frames {
            rot: vec![IDENTITY; n],
            trans: vec![[0.0; 3]; n],
        }
    }

    /// Number of residues.
    pub fn len(&self) -> usize {
        debug_assert_eq!(self.rot.len(), self.trans.len());
        self.rot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Atom order of [`IDEAL_BACKBONE`] and of [`backbone_atoms`] rows.
pub const ATOM_N: usize = 0;
pub const ATOM_CA: usize = 1;
pub const ATOM_C: usize = 2;
pub const ATOM_CB: usize = 3;

/// The ideal residue N, CA, C, CB of `get_ideal_coords()` (computed in float64 with float32
/// length/angle scalars, then cast to float32). C = place_fourth_atom(CB, CA, N, 2.460, 0.615,
/// -2.143); the test `ideal_backbone_matches_construction` recomputes it.
pub const IDEAL_BACKBONE: [Vec3; 4] = [
    [0.0, 0.0, -1.458],
    [0.0, 0.0, 0.0],
    [-1.193_234_7, -0.768_540_74, 0.551_262_56],
    [0.0, 1.426, 0.531],
];

/// `p @ R + t` for a row vector `p`.
#[inline]
pub fn apply_frame(p: &Vec3, r: &Mat3, t: &Vec3) -> Vec3 {
    let mut o = [0.0f32; 3];
    for d in 0..3 {
        o[d] = (p[0] * r[0][d] + p[1] * r[1][d] + p[2] * r[2][d]) + t[d];
    }
    o
}

/// N, CA, C, CB of every residue: `IDEAL_BACKBONE @ R_i + t_i`.
pub fn backbone_atoms(frames: &Frames) -> Vec<[Vec3; 4]> {
    assert_eq!(
        frames.rot.len(),
        frames.trans.len(),
        "frames: rot/trans length mismatch"
    );
    frames
        .rot
        .iter()
        .zip(&frames.trans)
        .map(|(r, t)| IDEAL_BACKBONE.map(|p| apply_frame(&p, r, t)))
        .collect()
}

/// `f32` or `f64`: the scalar of the vector helpers below (IgFold's geometry runs in `f32`, the
/// refinement's losses and gradients in `f64`). Every helper is written out component by
/// component, left to right, so both precisions round exactly as the expressions read.
pub(crate) trait Real:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + AddAssign
{
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    #[inline]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Real for f64 {
    #[inline]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

#[inline]
pub(crate) fn sub<T: Real>(a: [T; 3], b: [T; 3]) -> [T; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
pub(crate) fn add<T: Real>(a: [T; 3], b: [T; 3]) -> [T; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

#[inline]
pub(crate) fn scale<T: Real>(a: [T; 3], s: T) -> [T; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

#[inline]
pub(crate) fn dot<T: Real>(a: [T; 3], b: [T; 3]) -> T {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline]
pub(crate) fn norm<T: Real>(a: [T; 3]) -> T {
    dot(a, a).sqrt()
}

/// `v / |v|` (a division per component, as torch's `v / v.norm()`; no epsilon).
#[inline]
pub(crate) fn unit<T: Real>(v: [T; 3]) -> [T; 3] {
    let n = norm(v);
    [v[0] / n, v[1] / n, v[2] / n]
}

#[inline]
pub(crate) fn cross<T: Real>(a: [T; 3], b: [T; 3]) -> [T; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// `y += s * x`.
#[inline]
pub(crate) fn axpy<T: Real>(y: &mut [T; 3], s: T, x: [T; 3]) {
    y[0] += s * x[0];
    y[1] += s * x[1];
    y[2] += s * x[2];
}

/// IgFold's `place_fourth_atom`: the atom `d` with |cd| = `length`, angle(b, c, d) = `planar`
/// and dihedral(a, b, c, d) = `dihedral` (radians). Plain `v/|v|`, no epsilon.
pub fn place_fourth_atom(
    a: &Vec3,
    b: &Vec3,
    c: &Vec3,
    length: f32,
    planar: f32,
    dihedral: f32,
) -> Vec3 {
    let bc = unit(sub(*b, *c));
    let n = unit(cross(sub(*b, *a), bc));
    let m = cross(n, bc);
    let d0 = length * planar.cos();
    let d1 = length * planar.sin() * dihedral.cos();
    let d2 = -length * planar.sin() * dihedral.sin();
    let mut o = [0.0f32; 3];
    for k in 0..3 {
        o[k] = c[k] + ((bc[k] * d0 + m[k] * d1) + n[k] * d2);
    }
    o
}

/// C=O bond length, CA-C-O angle, interior N(i+1)-CA-C-O dihedral and the terminal
/// N-CA-C-O dihedral (`TERMINAL_O_DIHEDRAL`, beta-strand psi + 180°) of `place_o_coords`.
const O_BOND: f32 = 1.231;
const O_ANGLE: f32 = 2.108;
#[allow(clippy::approx_constant)] // IgFold's literal, not pi
const O_DIHEDRAL: f32 = -3.142;
const TERMINAL_O_DIHEDRAL: f32 = -0.873;

/// Whether each of the `n` residues is the last of its chain. `chain_lens` (chains in order)
/// must sum to `n`.
pub(crate) fn chain_ends(chain_lens: &[usize], n: usize) -> Vec<bool> {
    assert_eq!(
        chain_lens.iter().sum::<usize>(),
        n,
        "chain lengths {chain_lens:?} do not sum to {n} residues"
    );
    let mut last = vec![false; n];
    let mut end = 0;
    for &l in chain_lens {
        end += l;
        if end > 0 {
            last[end - 1] = true;
        }
    }
    last
}

/// Backbone O of every residue (IgFold 1.0.1 `place_o_coords`, chain-aware): interior
/// residues are placed trans to the next residue's N; the last residue of each chain uses its
/// own N with a beta-strand psi. `chain_lens` must sum to `bb.len()`.
pub fn place_o_atoms(bb: &[[Vec3; 4]], chain_lens: &[usize]) -> Vec<Vec3> {
    let terminal = chain_ends(chain_lens, bb.len());
    (0..bb.len())
        .map(|i| {
            let [nn, ca, c, _] = &bb[i];
            if terminal[i] {
                place_fourth_atom(nn, ca, c, O_BOND, O_ANGLE, TERMINAL_O_DIHEDRAL)
            } else {
                place_fourth_atom(&bb[i + 1][ATOM_N], ca, c, O_BOND, O_ANGLE, O_DIHEDRAL)
            }
        })
        .collect()
}

/// Quaternion (real part first) to rotation matrix with the pytorch3d formula IgFold uses,
/// `two_s = 2/|q|^2`, so unnormalised quaternions are allowed. The matrix is returned exactly as
/// IgFold stores it and uses it (`local @ R`).
pub fn quat_to_rot(q: [f32; 4]) -> Mat3 {
    let [r, i, j, k] = q;
    let two_s = 2.0 / (((r * r + i * i) + j * j) + k * k);
    [
        [
            1.0 - two_s * (j * j + k * k),
            two_s * (i * j - k * r),
            two_s * (i * k + j * r),
        ],
        [
            two_s * (i * j + k * r),
            1.0 - two_s * (i * i + k * k),
            two_s * (j * k - i * r),
        ],
        [
            two_s * (i * k - j * r),
            two_s * (j * k + i * r),
            1.0 - two_s * (i * i + j * j),
        ],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `get_ideal_coords`: float64 atoms, float32 scalar tensors for length/planar/dihedral
    /// (`torch.tensor(2.460)` is float32), result cast to float32.
    #[test]
    fn ideal_backbone_matches_construction() {
        let n: [f64; 3] = [0.0, 0.0, -1.458];
        let ca: [f64; 3] = [0.0, 0.0, 0.0];
        let cb: [f64; 3] = [0.0, 1.426, 0.531];
        let (len, planar, dih) = (2.460f32, 0.615f32, -2.143f32);
        let bc = unit(sub(ca, n));
        let nv = unit(cross(sub(ca, cb), bc));
        let m = cross(nv, bc);
        let d = [
            (len * planar.cos()) as f64,
            (len * planar.sin() * dih.cos()) as f64,
            (-len * planar.sin() * dih.sin()) as f64,
        ];
        let c: Vec<f32> = (0..3)
            .map(|k| (n[k] + (bc[k] * d[0] + m[k] * d[1] + nv[k] * d[2])) as f32)
            .collect();
        for k in 0..3 {
            assert_eq!(c[k], IDEAL_BACKBONE[ATOM_C][k], "C = {c:?}");
        }
        // Literature geometry of the ideal residue.
        let ca_c = norm(sub(IDEAL_BACKBONE[ATOM_CA], IDEAL_BACKBONE[ATOM_C]));
        assert!((ca_c - 1.525).abs() < 5e-3);
    }

    #[test]
    fn quat_identity_and_unnormalised() {
        assert_eq!(quat_to_rot([1.0, 0.0, 0.0, 0.0]), IDENTITY);
        let r1 = quat_to_rot([0.3, -0.2, 0.5, 0.4]);
        let r2 = quat_to_rot([0.6, -0.4, 1.0, 0.8]);
        for a in 0..3 {
            for b in 0..3 {
                assert!((r1[a][b] - r2[a][b]).abs() < 1e-6);
            }
            // orthonormal rows
            for b in 0..3 {
                let dot: f32 = (0..3).map(|k| r1[a][k] * r1[b][k]).sum();
                assert!((dot - if a == b { 1.0 } else { 0.0 }).abs() < 1e-6);
            }
        }
        // 90° about z (pytorch3d column convention): R @ x = y, so x @ R = -y for row vectors.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let rz = quat_to_rot([h, 0.0, 0.0, h]);
        let p = apply_frame(&[1.0, 0.0, 0.0], &rz, &[0.0; 3]);
        assert!((p[0]).abs() < 1e-6 && (p[1] + 1.0).abs() < 1e-6 && p[2].abs() < 1e-6);
    }

    #[test]
    fn o_atoms_geometry() {
        let frames = Frames {
            rot: vec![
                IDENTITY,
                quat_to_rot([0.9, 0.1, 0.3, -0.2]),
                quat_to_rot([0.5, 0.5, -0.5, 0.1]),
            ],
            trans: vec![[0.0; 3], [3.8, 0.0, 0.0], [7.0, 2.0, 0.5]],
        };
        let bb = backbone_atoms(&frames);
        for lens in [&[3usize][..], &[2, 1]] {
            let o = place_o_atoms(&bb, lens);
            for (i, oi) in o.iter().enumerate() {
                assert!((norm(sub(*oi, bb[i][ATOM_C])) - O_BOND).abs() < 1e-5);
            }
        }
        let one = place_o_atoms(&bb, &[3]);
        let two = place_o_atoms(&bb, &[2, 1]);
        assert_eq!(one[0], two[0]);
        assert_ne!(one[1], two[1]);
        assert_eq!(one[2], two[2]);
    }

    #[test]
    fn chain_ends_are_cumulative() {
        assert_eq!(chain_ends(&[3], 3), [false, false, true]);
        assert_eq!(chain_ends(&[2, 3], 5), [false, true, false, false, true]);
        assert_eq!(chain_ends(&[1, 1], 2), [true, true]);
        assert_eq!(chain_ends(&[], 0), [false; 0]);
    }

    #[test]
    #[should_panic(expected = "chain lengths [2, 2] do not sum to 5 residues")]
    fn chain_ends_reject_wrong_total() {
        chain_ends(&[2, 2], 5);
    }

    #[test]
    #[should_panic(expected = "chain lengths [] do not sum to 3 residues")]
    fn o_atoms_need_chain_lengths() {
        let bb = backbone_atoms(&Frames::identity(3));
        place_o_atoms(&bb, &[]);
    }
}
