//! All-atom construction from backbone frames and torsion angles (`model/all_atom.py`).

use super::residue_constants as rc;
use super::rigid::{Rigid, Vec3};

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
}
