//! All-atom construction from backbone frames and torsion angles (`model/all_atom.py`).

use super::residue_constants as rc;
use super::rigid::{Rigid, Vec3};
use ferrofold_kernels::Tensor;

/// Alg 24 lines 2-10 + Alg 25 "makeRotX" (`all_atom.torsion_angles_to_frames`):
/// `aatype` [N], backbone frames [N], `sin_cos` [N, 7, 2] as (sin, cos) of (omega, phi, psi,
/// chi1..4) → the 8 rigid-group frames per residue in the global frame, [N][8].
pub fn torsion_angles_to_frames(
    aatype: &[usize],
    backb_to_global: &[Rigid],
    sin_cos: &[f32],
) -> Vec<[Rigid; 8]> {
    let n = aatype.len();
    assert_eq!(backb_to_global.len(), n, "frames per residue");
    assert_eq!(sin_cos.len(), n * 14, "sin_cos is [N, 7, 2]");
    aatype
        .iter()
        .zip(backb_to_global)
        .zip(sin_cos.chunks(14))
        .map(|((&aa, backb), sc)| {
            let defaults = &rc::RESTYPE_RIGID_GROUP_DEFAULT_FRAME[aa];
            // group 0 (backbone) rotates by the zero angle: sin 0, cos 1
            let all: [Rigid; 8] = std::array::from_fn(|g| {
                let (s, c) = if g == 0 {
                    (0.0, 1.0)
                } else {
                    (sc[2 * (g - 1)], sc[2 * (g - 1) + 1])
                };
                let rot_x = [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]];
                Rigid::from_tensor4x4(&defaults[g]).mul_rot(&rot_x)
            });
            // chi2..4 frames hang off the previous chi frame
            let chi2 = all[4].mul_rigid(&all[5]);
            let chi3 = chi2.mul_rigid(&all[6]);
            let chi4 = chi3.mul_rigid(&all[7]);
            let to_backb = [all[0], all[1], all[2], all[3], all[4], chi2, chi3, chi4];
            to_backb.map(|f| backb.mul_rigid(&f))
        })
        .collect()
}

/// Alg 24 line 11 (`all_atom.frames_and_literature_positions_to_atom14_pos`): each atom14
/// slot's literature position placed by its rigid group's frame, zero where the residue has no
/// such atom → [N][14] positions (the frames' unit, Å in the model).
pub fn frames_and_literature_positions_to_atom14_pos(
    aatype: &[usize],
    frames: &[[Rigid; 8]],
) -> Vec<[Vec3; 14]> {
    aatype
        .iter()
        .zip(frames)
        .map(|(&aa, f)| {
            std::array::from_fn(|a| {
                let group = rc::RESTYPE_ATOM14_TO_RIGID_GROUP[aa][a];
                let lit = rc::RESTYPE_ATOM14_RIGID_GROUP_POSITIONS[aa][a];
                let mask = rc::RESTYPE_ATOM14_MASK[aa][a];
                f[group].mul_vec(&lit).map(|x| x * mask)
            })
        })
        .collect()
}

/// Panics unless every residue type is a restype index (0..=20, 20 = UNK).
fn check_aatype(aatype: &[usize]) {
    if let Some(bad) = aatype.iter().find(|&&a| a > rc::RESTYPE_NUM) {
        panic!("aatype {bad} out of range (0..={})", rc::RESTYPE_NUM);
    }
}

/// `atom14_atom_exists` of `data_transforms.make_atom14_masks`: [N, 14], 1 where the residue
/// type has the atom14 slot (UNK has none).
pub fn atom14_mask(aatype: &[usize]) -> Tensor {
    check_aatype(aatype);
    let data = aatype
        .iter()
        .flat_map(|&aa| rc::RESTYPE_ATOM14_MASK[aa])
        .collect();
    Tensor::new(&[aatype.len(), 14], data).expect("sizes")
}

/// `atom37_atom_exists` of `data_transforms.make_atom14_masks`: [N, 37], 1 where the residue
/// type has the atom (UNK has none).
pub fn atom37_mask(aatype: &[usize]) -> Tensor {
    check_aatype(aatype);
    let data = aatype
        .iter()
        .flat_map(|&aa| rc::RESTYPE_ATOM37_MASK[aa])
        .collect();
    Tensor::new(&[aatype.len(), 37], data).expect("sizes")
}

/// `all_atom.atom14_to_atom37` with the batch features `make_atom14_masks` derives from
/// `aatype` (`residx_atom37_to_atom14`, `atom37_atom_exists`): `atom14` [N, 14] or
/// [N, 14, C] → [N, 37] or [N, 37, C]. Each atom37 slot takes the value of its atom14 slot,
/// times the atom37 mask (zero where the residue type has no such atom).
pub fn atom14_to_atom37(aatype: &[usize], atom14: &Tensor) -> Tensor {
    check_aatype(aatype);
    let (n, shape) = (aatype.len(), atom14.shape());
    assert!(
        (shape.len() == 2 || shape.len() == 3) && shape[0] == n && shape[1] == 14,
        "atom14 data is [N, 14] or [N, 14, C], N = {n}; got {shape:?}"
    );
    let c = shape.get(2).copied().unwrap_or(1);
    let src = atom14.data();
    let mut out = Vec::with_capacity(n * 37 * c);
    for (r, &aa) in aatype.iter().enumerate() {
        let (idx, mask) = (
            &rc::RESTYPE_ATOM37_TO_ATOM14[aa],
            &rc::RESTYPE_ATOM37_MASK[aa],
        );
        for (&a14, &m) in idx.iter().zip(mask) {
            out.extend(src[(r * 14 + a14) * c..][..c].iter().map(|x| x * m));
        }
    }
    let mut out_shape = shape.to_vec();
    out_shape[1] = 37;
    Tensor::new(&out_shape, out).expect("sizes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With identity backbone frames and the angles that put every chi frame at its default,
    /// the atom14 positions are the literature positions of the backbone/CB group atoms.
    #[test]
    fn identity_frames_give_literature_backbone() {
        let aatype = [0usize, 7, 17]; // ALA, GLY, TRP
        let backb = [Rigid::IDENTITY; 3];
        let sin_cos: Vec<f32> = (0..3 * 7).flat_map(|_| [0.0, 1.0]).collect();
        let frames = torsion_angles_to_frames(&aatype, &backb, &sin_cos);
        let pos = frames_and_literature_positions_to_atom14_pos(&aatype, &frames);
        for (r, &aa) in aatype.iter().enumerate() {
            for (a, got) in pos[r].iter().enumerate() {
                if rc::RESTYPE_ATOM14_TO_RIGID_GROUP[aa][a] == 0 {
                    let want = rc::RESTYPE_ATOM14_RIGID_GROUP_POSITIONS[aa][a];
                    let m = rc::RESTYPE_ATOM14_MASK[aa][a];
                    assert_eq!(*got, want.map(|x| x * m), "res {r} atom {a}");
                }
            }
        }
        // GLY has no side chain atoms
        assert!(pos[1][4..].iter().all(|p| *p == [0.0; 3]));
    }

    /// atom14 → atom37 moves each atom to its atom37 slot by name and zeroes the rest.
    #[test]
    fn atom14_to_atom37_by_name() {
        let aatype = [17usize, 7, 20]; // TRP, GLY, UNK
        let atom14 = Tensor::from_fn(&[3, 14, 2], |i| 1.0 + i as f32);
        let atom37 = atom14_to_atom37(&aatype, &atom14);
        assert_eq!(atom37.shape(), &[3, 37, 2]);
        let mask = atom37_mask(&aatype);
        for (r, &aa) in aatype.iter().enumerate() {
            let names14 = rc::RESTYPE_NAME_TO_ATOM14_NAMES[aa];
            for (k, name) in rc::ATOM_TYPES.iter().enumerate() {
                let got = &atom37.data()[(r * 37 + k) * 2..][..2];
                match names14.iter().position(|n| n == name) {
                    Some(a) => {
                        assert_eq!(mask.data()[r * 37 + k], 1.0, "{aa} {name}");
                        assert_eq!(got, &atom14.data()[(r * 14 + a) * 2..][..2], "{aa} {name}");
                    }
                    None => {
                        assert_eq!(mask.data()[r * 37 + k], 0.0, "{aa} {name}");
                        assert_eq!(got, &[0.0, 0.0], "{aa} {name}");
                    }
                }
            }
        }
        // the masks count the atoms: TRP 14, GLY 4, UNK none
        let count = |t: &Tensor, r: usize, w: usize| t.data()[r * w..][..w].iter().sum::<f32>();
        let m14 = atom14_mask(&aatype);
        for (r, want) in [14.0, 4.0, 0.0].into_iter().enumerate() {
            assert_eq!((count(&m14, r, 14), count(&mask, r, 37)), (want, want));
        }
        // [N, 14] data works too
        let flat = atom14_to_atom37(&aatype, &Tensor::from_fn(&[3, 14], |i| i as f32));
        assert_eq!(flat.shape(), &[3, 37]);
    }
}
