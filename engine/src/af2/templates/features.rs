//! Template input features computed inside the model from the template batch: the pair
//! features of one template (supplement 1.7.1, modules.py `SingleTemplateEmbedding`), the
//! pseudo-beta positions (`pseudo_beta_fn`) and the torsion angles of atom37 coordinates
//! (`all_atom.atom37_to_torsion_angles`, the source of the template rows of supplement 1.7.2).
//!
//! The arithmetic follows the official order of operations (sums left to right, `x + (-y)`
//! where the official code negates), so results agree with the JAX code to a few ulp.

use std::ops::Range;

use super::{SingleTemplate, TemplateConfig};
use crate::af2::structure::residue_constants as rc;
use ferrofold_kernels::Tensor;
use rayon::prelude::*;

/// Residue-type classes of the template one-hots: 20 amino acids, UNK (20) and gap (21).
pub const TEMPLATE_AATYPE_CLASSES: usize = 22;

/// Channels of the template pair features: distogram bins (39), pseudo-beta mask, aatype of
/// residue j (22), aatype of residue i (22), unit vector (3), backbone mask.
pub const fn pair_feature_channels(num_bins: usize) -> usize {
    num_bins + 1 + 2 * TEMPLATE_AATYPE_CLASSES + 3 + 1
}

/// Channels of the template torsion features: aatype (22), sin/cos of 7 torsions (14), the
/// same with the pi-periodic chis flipped (14), torsion mask (7).
pub const TORSION_FEATURE_CHANNELS: usize = TEMPLATE_AATYPE_CLASSES + 14 + 14 + 7;

/// Atom37 slots of the backbone atoms.
const N: usize = 0;
const CA: usize = 1;
const C: usize = 2;
const CB: usize = 3;
const O: usize = 4;

/// `restype_order['G']`.
const GLY: usize = 7;

/// The atoms defining each chi angle, per standard restype (`chi_angles_atoms`).
const CHI_ANGLES_ATOMS: [&[[&str; 4]]; 20] = [
    &[], // ALA
    &[
        ["N", "CA", "CB", "CG"],
        ["CA", "CB", "CG", "CD"],
        ["CB", "CG", "CD", "NE"],
        ["CG", "CD", "NE", "CZ"],
    ], // ARG
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "OD1"]], // ASN
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "OD1"]], // ASP
    &[["N", "CA", "CB", "SG"]], // CYS
    &[
        ["N", "CA", "CB", "CG"],
        ["CA", "CB", "CG", "CD"],
        ["CB", "CG", "CD", "OE1"],
    ], // GLN
    &[
        ["N", "CA", "CB", "CG"],
        ["CA", "CB", "CG", "CD"],
        ["CB", "CG", "CD", "OE1"],
    ], // GLU
    &[], // GLY
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "ND1"]], // HIS
    &[["N", "CA", "CB", "CG1"], ["CA", "CB", "CG1", "CD1"]], // ILE
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "CD1"]], // LEU
    &[
        ["N", "CA", "CB", "CG"],
        ["CA", "CB", "CG", "CD"],
        ["CB", "CG", "CD", "CE"],
        ["CG", "CD", "CE", "NZ"],
    ], // LYS
    &[
        ["N", "CA", "CB", "CG"],
        ["CA", "CB", "CG", "SD"],
        ["CB", "CG", "SD", "CE"],
    ], // MET
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "CD1"]], // PHE
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "CD"]], // PRO
    &[["N", "CA", "CB", "OG"]], // SER
    &[["N", "CA", "CB", "OG1"]], // THR
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "CD1"]], // TRP
    &[["N", "CA", "CB", "CG"], ["CA", "CB", "CG", "CD1"]], // TYR
    &[["N", "CA", "CB", "CG1"]], // VAL
];

fn atom_index(name: &str) -> usize {
    rc::ATOM_TYPES
        .iter()
        .position(|a| *a == name)
        .unwrap_or_else(|| panic!("unknown atom {name}"))
}

/// Atom37 indices of the chi-angle atoms per restype incl. UNK, 0 (N) for chis a residue
/// lacks (`all_atom.get_chi_atom_indices`) [21, 4, 4].
fn chi_atom_indices() -> [[[usize; 4]; 4]; 21] {
    let mut out = [[[0; 4]; 4]; 21];
    for (restype, chis) in CHI_ANGLES_ATOMS.iter().enumerate() {
        for (chi, atoms) in chis.iter().enumerate() {
            out[restype][chi] = atoms.map(atom_index);
        }
    }
    out
}

type V3 = [f32; 3];

fn v3(p: &[f32]) -> V3 {
    [p[0], p[1], p[2]]
}

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// `r3.vecs_robust_normalize`: `v / sqrt(x^2 + y^2 + z^2 + 1e-8)`.
fn robust_normalize(v: V3) -> V3 {
    let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + 1e-8).sqrt();
    v.map(|x| x / norm)
}

/// Pseudo-beta (`modules.pseudo_beta_fn`): CB, or CA for glycine, and that atom's mask, for
/// `aatype` [N], atom37 `positions` [N, 37, 3] and `masks` [N, 37] → ([N, 3], [N]).
pub fn pseudo_beta(aatype: &[usize], positions: &[f32], masks: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = aatype.len();
    assert_eq!(
        positions.len(),
        n * 37 * 3,
        "pseudo_beta: positions [N, 37, 3]"
    );
    assert_eq!(masks.len(), n * 37, "pseudo_beta: masks [N, 37]");
    let mut pb = Vec::with_capacity(n * 3);
    let mut pb_mask = Vec::with_capacity(n);
    for (r, &aa) in aatype.iter().enumerate() {
        let atom = if aa == GLY { CA } else { CB };
        pb.extend_from_slice(&positions[(r * 37 + atom) * 3..(r * 37 + atom + 1) * 3]);
        pb_mask.push(masks[r * 37 + atom]);
    }
    (pb, pb_mask)
}

/// Squared lower edges of the distogram bins, `jnp.linspace(min_bin, max_bin, num_bins) ** 2`
/// in f32 (jax's `start * (1 - i/div) + stop * (i/div)`, the stop itself last).
pub fn dgram_squared_breaks(num_bins: usize, min_bin: f32, max_bin: f32) -> Vec<f32> {
    assert!(num_bins > 1, "a distogram needs two bins or more");
    let div = (num_bins - 1) as f32;
    (0..num_bins)
        .map(|i| {
            let edge = if i + 1 == num_bins {
                max_bin
            } else {
                let step = i as f32 / div;
                min_bin * (1.0 - step) + max_bin * step
            };
            edge * edge
        })
        .collect()
}

/// The backbone rotation of one residue (`quat_affine.make_canonical_transform`): the
/// rotation that puts C on the +x axis and N in the xy plane (N at +y) once CA is at the
/// origin. Row-major; the template unit vectors are `R (ca_j - ca_i)`.
fn canonical_rotation(n: V3, ca: V3, c: V3) -> [[f32; 3]; 3] {
    let t = ca.map(|x| -x);
    let n = [n[0] + t[0], n[1] + t[1], n[2] + t[2]];
    let [cx, cy, cz] = [c[0] + t[0], c[1] + t[1], c[2] + t[2]];
    // rotate about z by c1 (C into the xz plane), then about y by c2 (C onto the x axis)
    let d1 = (1e-20 + cx * cx + cy * cy).sqrt();
    let (sin1, cos1) = (-cy / d1, cx / d1);
    let d2 = (1e-20 + cx * cx + cy * cy + cz * cz).sqrt();
    let (sin2, cos2) = (cz / d2, (cx * cx + cy * cy).sqrt() / d2);
    let c1 = [[cos1, -sin1, 0.0], [sin1, cos1, 0.0], [0.0, 0.0, 1.0]];
    let c2 = [[cos2, 0.0, sin2], [0.0, 1.0, 0.0], [-sin2, 0.0, cos2]];
    let c_rot = mat_mul(&c2, &c1);
    let n = c_rot.map(|row| dot(row, n));
    // rotate about x (N into the xy plane)
    let d3 = (1e-20 + n[1] * n[1] + n[2] * n[2]).sqrt();
    let (sin_n, cos_n) = (-n[2] / d3, n[1] / d3);
    let n_rot = [[1.0, 0.0, 0.0], [0.0, cos_n, -sin_n], [0.0, sin_n, cos_n]];
    mat_mul(&n_rot, &c_rot)
}

/// `quat_affine._multiply`: `a b`, each entry summed left to right.
fn mat_mul(a: &[[f32; 3]; 3], b: &[[f32; 3]; 3]) -> [[f32; 3]; 3] {
    std::array::from_fn(|r| {
        std::array::from_fn(|c| a[r][0] * b[0][c] + a[r][1] * b[1][c] + a[r][2] * b[2][c])
    })
}

/// Per-residue inputs of the pair features of one template.
struct PairInputs {
    /// Pseudo-beta mask [L].
    pb_mask: Vec<f32>,
    /// N·CA·C atom mask [L] (whether the backbone frame exists).
    bb_mask: Vec<f32>,
    /// Backbone rotations [L] (only with unit vectors).
    rotations: Vec<[[f32; 3]; 3]>,
    /// Squared lower bin edges, then the last bin's upper edge 1e8.
    breaks: Vec<f32>,
}

impl PairInputs {
    fn new(t: &SingleTemplate<'_>, cfg: &TemplateConfig) -> Self {
        let l = t.num_res();
        let atom = |r: usize, a: usize| v3(&t.positions[(r * 37 + a) * 3..]);
        let m = |r: usize, a: usize| t.masks[r * 37 + a];
        let mut breaks = dgram_squared_breaks(cfg.dgram_bins, cfg.dgram_min_bin, cfg.dgram_max_bin);
        breaks.push(1e8);
        Self {
            pb_mask: t.pseudo_beta_mask.to_vec(),
            bb_mask: (0..l).map(|r| m(r, N) * m(r, CA) * m(r, C)).collect(),
            rotations: if cfg.use_unit_vector {
                (0..l)
                    .map(|r| canonical_rotation(atom(r, N), atom(r, CA), atom(r, C)))
                    .collect()
            } else {
                Vec::new()
            },
            breaks,
        }
    }
}

/// The pair features of one template for query rows `rows` (supplement 1.7.1; modules.py
/// `SingleTemplateEmbedding` up to `embedding2d`) → `[rows, L, pair_feature_channels]`.
///
/// Per pair (i, j), in this channel order: the one-hot distogram of the pseudo-beta distance
/// (`lo_k^2 < d^2 < lo_{k+1}^2`, the last bin open), `pb_mask_i pb_mask_j`, one-hot aatype of
/// j, one-hot aatype of i (22 classes), the unit vector from CA_i to CA_j in residue i's
/// backbone frame (zero unless `cfg.use_unit_vector`; `rsqrt(1e-6 + |v|^2)`-scaled and masked
/// by the backbone mask 2d), the backbone mask 2d `bb_i bb_j` (bb = N·CA·C atom masks). The
/// whole vector is then multiplied by the backbone mask 2d (not the pseudo-beta mask), as the
/// official code does.
pub fn template_pair_features(
    t: &SingleTemplate<'_>,
    cfg: &TemplateConfig,
    rows: Range<usize>,
) -> Tensor {
    let inputs = PairInputs::new(t, cfg);
    pair_features_rows(t, cfg, &inputs, rows)
}

fn pair_features_rows(
    t: &SingleTemplate<'_>,
    cfg: &TemplateConfig,
    inputs: &PairInputs,
    rows: Range<usize>,
) -> Tensor {
    let l = t.num_res();
    assert!(rows.end <= l, "template_pair_features: rows beyond L");
    let nb = cfg.dgram_bins;
    let ch = pair_feature_channels(nb);
    let (aa_j0, aa_i0, unit0) = (nb + 1, nb + 1 + TEMPLATE_AATYPE_CLASSES, ch - 4);
    let pb = |r: usize| v3(&t.pseudo_beta[r * 3..]);
    let ca = |r: usize| v3(&t.positions[(r * 37 + CA) * 3..]);
    let mut out = Tensor::zeros(&[rows.len(), l, ch]);
    out.data_mut()
        .par_chunks_mut(l * ch)
        .zip(rows)
        .for_each(|(row, i)| {
            for (j, f) in row.chunks_mut(ch).enumerate() {
                let d = sub(pb(i), pb(j));
                let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                for (k, x) in f[..nb].iter_mut().enumerate() {
                    let inside = d2 > inputs.breaks[k] && d2 < inputs.breaks[k + 1];
                    *x = if inside { 1.0 } else { 0.0 };
                }
                f[nb] = inputs.pb_mask[i] * inputs.pb_mask[j];
                if t.aatype[j] < TEMPLATE_AATYPE_CLASSES {
                    f[aa_j0 + t.aatype[j]] = 1.0;
                }
                if t.aatype[i] < TEMPLATE_AATYPE_CLASSES {
                    f[aa_i0 + t.aatype[i]] = 1.0;
                }
                let bb2d = inputs.bb_mask[i] * inputs.bb_mask[j];
                if cfg.use_unit_vector {
                    let r = &inputs.rotations[i];
                    let v = sub(ca(j), ca(i));
                    let v = r.map(|row| row[0] * v[0] + row[1] * v[1] + row[2] * v[2]);
                    let inv =
                        (1.0 / (1e-6 + (v[0] * v[0] + v[1] * v[1] + v[2] * v[2])).sqrt()) * bb2d;
                    for (x, vk) in f[unit0..unit0 + 3].iter_mut().zip(v) {
                        *x = vk * inv;
                    }
                }
                f[ch - 1] = bb2d;
                f.iter_mut().for_each(|x| *x *= bb2d);
            }
        });
    out
}

/// The seven torsion angles of every residue, as `all_atom.atom37_to_torsion_angles` returns
/// them (`placeholder_for_undefined` False, as in every monomer config).
#[derive(Clone, Debug, PartialEq)]
pub struct TorsionAngles {
    /// (sin, cos) of (pre-omega, phi, psi, chi1..4) [N, 7, 2]; psi is taken from O and
    /// mirrored. Undefined angles are whatever the atoms give (zero for absent chis).
    pub sin_cos: Tensor,
    /// The same with the pi-periodic chis flipped (`chi_pi_periodic`) [N, 7, 2].
    pub alt_sin_cos: Tensor,
    /// Whether all four atoms of each angle are present (chis: and the angle exists) [N, 7].
    pub mask: Tensor,
}

/// Torsion angles from atom37 coordinates (`all_atom.atom37_to_torsion_angles`, the inverse
/// of Algorithm 24, frames by Algorithm 21 "rigidFrom3Points"): `aatype` [N] (values above 20
/// count as UNK), `positions` [N, 37, 3], `masks` [N, 37]; residue n-1 precedes residue n
/// (the first residue's predecessor is all zeros).
pub fn atom37_to_torsion_angles(
    aatype: &[usize],
    positions: &[f32],
    masks: &[f32],
) -> TorsionAngles {
    let n = aatype.len();
    assert_eq!(
        positions.len(),
        n * 37 * 3,
        "torsion angles: positions [N, 37, 3]"
    );
    assert_eq!(masks.len(), n * 37, "torsion angles: masks [N, 37]");
    let chi_atoms = chi_atom_indices();
    let pos = |r: usize, a: usize| v3(&positions[(r * 37 + a) * 3..]);
    let prev_pos = |r: usize, a: usize| if r == 0 { [0.0; 3] } else { pos(r - 1, a) };
    let m = |r: usize, a: usize| masks[r * 37 + a];
    let prev_m = |r: usize, a: usize| if r == 0 { 0.0 } else { m(r - 1, a) };

    let mut sin_cos = Tensor::zeros(&[n, 7, 2]);
    let mut alt = Tensor::zeros(&[n, 7, 2]);
    let mut mask = Tensor::zeros(&[n, 7]);
    for (r, &aa) in aatype.iter().enumerate() {
        let aa = aa.min(20);
        let atoms: [[V3; 4]; 7] = std::array::from_fn(|k| match k {
            0 => [prev_pos(r, CA), prev_pos(r, C), pos(r, N), pos(r, CA)],
            1 => [prev_pos(r, C), pos(r, N), pos(r, CA), pos(r, C)],
            2 => [pos(r, N), pos(r, CA), pos(r, C), pos(r, O)],
            _ => chi_atoms[aa][k - 3].map(|a| pos(r, a)),
        });
        let chi_exists = |chi: usize| {
            if aa < 20 {
                rc::CHI_ANGLES_MASK[aa][chi]
            } else {
                0.0
            }
        };
        let chi_atoms_present =
            |chi: usize| chi_atoms[aa][chi].iter().fold(1.0, |p, &a| p * m(r, a));
        let angle_mask: [f32; 7] = std::array::from_fn(|k| match k {
            0 => prev_m(r, CA) * prev_m(r, C) * (m(r, N) * m(r, CA)),
            1 => prev_m(r, C) * (m(r, N) * m(r, CA) * m(r, C)),
            2 => m(r, N) * m(r, CA) * m(r, C) * m(r, O),
            _ => chi_exists(k - 3) * chi_atoms_present(k - 3),
        });
        for k in 0..7 {
            let [sin, cos] = torsion_sin_cos(&atoms[k]);
            let mirror = if k == 2 { -1.0 } else { 1.0 };
            let (s, c) = (sin * mirror, cos * mirror);
            let flip = if k >= 3 {
                1.0 - 2.0 * rc::CHI_PI_PERIODIC[aa][k - 3]
            } else {
                1.0
            };
            let o = (r * 7 + k) * 2;
            sin_cos.data_mut()[o..o + 2].copy_from_slice(&[s, c]);
            alt.data_mut()[o..o + 2].copy_from_slice(&[s * flip, c * flip]);
            mask.data_mut()[r * 7 + k] = angle_mask[k];
        }
    }
    TorsionAngles {
        sin_cos,
        alt_sin_cos: alt,
        mask,
    }
}

/// (sin, cos) of the dihedral of four atoms: the fourth atom in the frame of Algorithm 21
/// (`rigids_from_3_points(point_on_neg_x_axis = a1, origin = a2, point_on_xy_plane = a0)`),
/// `(z, y) / sqrt(z^2 + y^2 + 1e-8)`.
fn torsion_sin_cos(a: &[V3; 4]) -> [f32; 2] {
    let e0 = robust_normalize(sub(a[2], a[1]));
    let e1u = sub(a[0], a[2]);
    let c = dot(e1u, e0);
    let e1 = robust_normalize([e1u[0] - c * e0[0], e1u[1] - c * e0[1], e1u[2] - c * e0[2]]);
    let e2 = [
        e0[1] * e1[2] - e0[2] * e1[1],
        e0[2] * e1[0] - e0[0] * e1[2],
        e0[0] * e1[1] - e0[1] * e1[0],
    ];
    // invert the frame (rotation rows e0, e1, e2; translation -R^T origin) and apply it
    let local = |e: V3| dot(e, a[3]) + -dot(e, a[2]);
    let (y, z) = (local(e1), local(e2));
    let norm = (z * z + y * y + 1e-8).sqrt();
    [z / norm, y / norm]
}

/// The torsion features of one template (supplement 1.7.2; modules.py
/// `EmbeddingsAndEvoformer`, `embed_torsion_angles`) → (`[L, 57]`: one-hot aatype (22),
/// sin/cos (14), alternative sin/cos (14), torsion mask (7); the psi mask `[L]`, which
/// masks the template's MSA row).
pub fn template_torsion_features(t: &SingleTemplate<'_>) -> (Tensor, Vec<f32>) {
    let l = t.num_res();
    let angles = atom37_to_torsion_angles(t.aatype, t.positions, t.masks);
    let mut feats = Tensor::zeros(&[l, TORSION_FEATURE_CHANNELS]);
    for (r, f) in feats
        .data_mut()
        .chunks_mut(TORSION_FEATURE_CHANNELS)
        .enumerate()
    {
        if t.aatype[r] < TEMPLATE_AATYPE_CLASSES {
            f[t.aatype[r]] = 1.0;
        }
        let c = TEMPLATE_AATYPE_CLASSES;
        f[c..c + 14].copy_from_slice(&angles.sin_cos.data()[r * 14..(r + 1) * 14]);
        f[c + 14..c + 28].copy_from_slice(&angles.alt_sin_cos.data()[r * 14..(r + 1) * 14]);
        f[c + 28..].copy_from_slice(&angles.mask.data()[r * 7..(r + 1) * 7]);
    }
    let psi_mask = (0..l).map(|r| angles.mask.data()[r * 7 + 2]).collect();
    (feats, psi_mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_atom_table_matches_chi_angles_mask() {
        for (restype, chis) in CHI_ANGLES_ATOMS.iter().enumerate() {
            let count = rc::CHI_ANGLES_MASK[restype]
                .iter()
                .filter(|&&m| m == 1.0)
                .count();
            assert_eq!(chis.len(), count, "{}", rc::RESNAMES[restype]);
            // the chi atoms all exist in the residue
            for atoms in chis.iter() {
                for a in atoms {
                    assert_eq!(rc::RESTYPE_ATOM37_MASK[restype][atom_index(a)], 1.0, "{a}");
                }
            }
        }
    }

    /// The canonical rotation maps C onto +x and N into the xy plane at +y.
    #[test]
    fn canonical_rotation_puts_c_on_x_and_n_in_xy() {
        let (n, ca, c) = ([1.0, 2.5, -0.3], [2.0, 1.0, 0.5], [3.2, 1.4, 1.1]);
        let r = canonical_rotation(n, ca, c);
        let apply = |p: V3| r.map(|row| dot(row, sub(p, ca)));
        let (cl, nl) = (apply(c), apply(n));
        assert!(
            cl[0] > 0.0 && cl[1].abs() < 1e-6 && cl[2].abs() < 1e-6,
            "{cl:?}"
        );
        assert!(nl[1] > 0.0 && nl[2].abs() < 1e-6, "{nl:?}");
        let rrt = mat_mul(
            &r,
            &std::array::from_fn(|i| std::array::from_fn(|j| r[j][i])),
        );
        for (i, row) in rrt.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                assert!((x - if i == j { 1.0 } else { 0.0 }).abs() < 1e-6);
            }
        }
    }

    /// In the frame of a2 (origin), a1 (on -x) and a0 (xy plane, +y), here global x -> -x,
    /// y -> y, z -> -z, a fourth atom at local (1, cos t, sin t) gives (sin t, cos t).
    #[test]
    fn torsion_of_known_dihedral() {
        let t = 60f32.to_radians();
        let a = [
            [1.0, 1.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [-1.0, t.cos(), -t.sin()],
        ];
        let [s, c] = torsion_sin_cos(&a);
        assert!(
            (s - t.sin()).abs() < 1e-6 && (c - t.cos()).abs() < 1e-6,
            "{s} {c}"
        );
    }

    #[test]
    fn breaks_are_jax_linspace_squared() {
        let b = dgram_squared_breaks(39, 3.25, 50.75);
        assert_eq!(b.len(), 39);
        assert_eq!(b[0], 3.25 * 3.25);
        assert_eq!(b[38], 50.75 * 50.75);
        assert_eq!(b[1], 4.5 * 4.5);
    }
}
