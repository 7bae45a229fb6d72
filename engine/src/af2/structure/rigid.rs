//! Rigid transforms as the official code uses them: `quat_affine.QuatAffine` (unit quaternion
//! (w, x, y, z) + translation, the backbone frames of Alg 20/23) and `r3.Rigids` (rotation
//! matrix + translation, the side-chain frames of Alg 24).
//!
//! Column-vector convention throughout: `global = R local + t`; `rot[r][c]` is the official
//! `rotation[r][c]` (`xx xy xz / yx yy yz / zx zy zz`). Sums run in the official order.

/// A 3-vector `(x, y, z)`.
pub type Vec3 = [f32; 3];
/// A rotation matrix, `rot[row][col]`.
pub type Rot3 = [[f32; 3]; 3];

/// `quat_affine.QUAT_TO_ROT` [4, 4, 9]: `R[k] = sum_ij T[i][j][k] q_i q_j`.
#[rustfmt::skip]
const QUAT_TO_ROT: [[[f32; 9]; 4]; 4] = {
    let mut t = [[[0.0; 9]; 4]; 4];
    t[0][0] = [1., 0., 0., 0., 1., 0., 0., 0., 1.]; // rr
    t[1][1] = [1., 0., 0., 0., -1., 0., 0., 0., -1.]; // ii
    t[2][2] = [-1., 0., 0., 0., 1., 0., 0., 0., -1.]; // jj
    t[3][3] = [-1., 0., 0., 0., -1., 0., 0., 0., 1.]; // kk
    t[1][2] = [0., 2., 0., 2., 0., 0., 0., 0., 0.]; // ij
    t[1][3] = [0., 0., 2., 0., 0., 0., 2., 0., 0.]; // ik
    t[2][3] = [0., 0., 0., 0., 0., 2., 0., 2., 0.]; // jk
    t[0][1] = [0., 0., 0., 0., 0., -2., 0., 2., 0.]; // ir
    t[0][2] = [0., 0., 2., 0., 0., 0., -2., 0., 0.]; // jr
    t[0][3] = [0., -2., 0., 2., 0., 0., 0., 0., 0.]; // kr
    t
};

/// `quat_affine.QUAT_MULTIPLY` [4, 4, 4]: `(q1 q2)[k] = sum_ij M[i][j][k] q1_i q2_j`.
#[rustfmt::skip]
const QUAT_MULTIPLY: [[[f32; 4]; 4]; 4] = [
    [[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.], [0., 0., 0., 1.]],
    [[0., 1., 0., 0.], [-1., 0., 0., 0.], [0., 0., 0., 1.], [0., 0., -1., 0.]],
    [[0., 0., 1., 0.], [0., 0., 0., -1.], [-1., 0., 0., 0.], [0., 1., 0., 0.]],
    [[0., 0., 0., 1.], [0., 0., 1., 0.], [0., -1., 0., 0.], [-1., 0., 0., 0.]],
];

/// `quat_affine.quat_to_rot`: rotation of a normalised quaternion (w, x, y, z).
pub fn quat_to_rot(q: &[f32; 4]) -> Rot3 {
    let mut r = [0f32; 9];
    for (i, ti) in QUAT_TO_ROT.iter().enumerate() {
        for (j, tij) in ti.iter().enumerate() {
            for (k, &t) in tij.iter().enumerate() {
                if t != 0.0 {
                    r[k] += t * q[i] * q[j];
                }
            }
        }
    }
    [[r[0], r[1], r[2]], [r[3], r[4], r[5]], [r[6], r[7], r[8]]]
}

/// `quat_affine.quat_multiply`: Hamilton product `q1 q2`.
pub fn quat_multiply(q1: &[f32; 4], q2: &[f32; 4]) -> [f32; 4] {
    let mut out = [0f32; 4];
    for (i, mi) in QUAT_MULTIPLY.iter().enumerate() {
        for (j, mij) in mi.iter().enumerate() {
            for (k, &m) in mij.iter().enumerate() {
                if m != 0.0 {
                    out[k] += m * q1[i] * q2[j];
                }
            }
        }
    }
    out
}

/// `quat_affine.quat_multiply_by_vec`: `q (0, v)`.
pub fn quat_multiply_by_vec(q: &[f32; 4], v: &Vec3) -> [f32; 4] {
    quat_multiply(q, &[0.0, v[0], v[1], v[2]])
}

/// `R v` (`apply_rot_to_vec`, `r3.rots_mul_vecs`).
#[inline]
pub fn rot_mul_vec(m: &Rot3, v: &Vec3) -> Vec3 {
    std::array::from_fn(|r| m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2])
}

/// `R^T v` (`apply_inverse_rot_to_vec`).
#[inline]
pub fn rot_inv_mul_vec(m: &Rot3, v: &Vec3) -> Vec3 {
    std::array::from_fn(|c| m[0][c] * v[0] + m[1][c] * v[1] + m[2][c] * v[2])
}

/// `a b` (`r3.rots_mul_rots`: `a` applied to each column of `b`).
pub fn rot_mul_rot(a: &Rot3, b: &Rot3) -> Rot3 {
    let cols: [Vec3; 3] = std::array::from_fn(|c| rot_mul_vec(a, &[b[0][c], b[1][c], b[2][c]]));
    std::array::from_fn(|r| std::array::from_fn(|c| cols[c][r]))
}

#[inline]
fn vec_add(a: &Vec3, b: &Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// `QuatAffine` (backbone frame, Alg 20/23): quaternion (w, x, y, z), its rotation kept in
/// sync, and a translation (nm inside the structure module).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuatAffine {
    pub quaternion: [f32; 4],
    pub rotation: Rot3,
    pub translation: Vec3,
}

impl QuatAffine {
    /// The identity frame at the origin (`generate_new_affine`).
    pub fn identity() -> Self {
        Self::new([1.0, 0.0, 0.0, 0.0], [0.0; 3], false)
    }

    /// `QuatAffine(quaternion, translation, normalize=...)`: the rotation is derived from the
    /// (optionally l2-normalised) quaternion.
    pub fn new(quaternion: [f32; 4], translation: Vec3, normalize: bool) -> Self {
        let quaternion = if normalize {
            let n = quaternion.iter().map(|x| x * x).sum::<f32>().sqrt();
            quaternion.map(|x| x / n)
        } else {
            quaternion
        };
        Self {
            quaternion,
            rotation: quat_to_rot(&quaternion),
            translation,
        }
    }

    /// `QuatAffine.from_tensor` (no normalisation): `t` = (w, x, y, z, tx, ty, tz).
    pub fn from_tensor(t: &[f32]) -> Self {
        assert_eq!(t.len(), 7, "affine tensor is 7 wide");
        Self::new([t[0], t[1], t[2], t[3]], [t[4], t[5], t[6]], false)
    }

    /// `QuatAffine.to_tensor`: (w, x, y, z, tx, ty, tz).
    pub fn to_tensor(&self) -> [f32; 7] {
        let (q, t) = (self.quaternion, self.translation);
        [q[0], q[1], q[2], q[3], t[0], t[1], t[2]]
    }

    /// `QuatAffine.pre_compose` (Alg 23 lines 2-4): `update` = (b, c, d, tx, ty, tz) is applied
    /// first: `q' = q + q (0, b, c, d)`, `t' = t + R t_update`, then `q'` is re-normalised.
    pub fn pre_compose(&self, update: &[f32]) -> Self {
        assert_eq!(update.len(), 6, "affine update is 6 wide");
        let dq = quat_multiply_by_vec(&self.quaternion, &[update[0], update[1], update[2]]);
        let q = std::array::from_fn(|k| self.quaternion[k] + dq[k]);
        let dt = rot_mul_vec(&self.rotation, &[update[3], update[4], update[5]]);
        Self::new(q, vec_add(&self.translation, &dt), true)
    }

    /// `QuatAffine.scale_translation`.
    pub fn scale_translation(&self, scale: f32) -> Self {
        Self {
            translation: self.translation.map(|x| x * scale),
            ..*self
        }
    }

    /// `QuatAffine.apply_to_point`: `R p + t`.
    #[inline]
    pub fn apply_to_point(&self, p: &Vec3) -> Vec3 {
        vec_add(&rot_mul_vec(&self.rotation, p), &self.translation)
    }

    /// `QuatAffine.invert_point`: `R^T (p - t)`.
    #[inline]
    pub fn invert_point(&self, p: &Vec3) -> Vec3 {
        let t = &self.translation;
        rot_inv_mul_vec(&self.rotation, &[p[0] - t[0], p[1] - t[1], p[2] - t[2]])
    }
}

/// `r3.Rigids` (side-chain frames, Alg 24): rotation matrix and translation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rigid {
    pub rot: Rot3,
    pub trans: Vec3,
}

impl Rigid {
    pub const IDENTITY: Self = Self {
        rot: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        trans: [0.0; 3],
    };

    /// `r3.rigids_from_quataffine`.
    pub fn from_quat_affine(a: &QuatAffine) -> Self {
        Self {
            rot: a.rotation,
            trans: a.translation,
        }
    }

    /// `r3.rigids_from_tensor4x4`: homogeneous `[[R, t], [0, 1]]`.
    pub fn from_tensor4x4(m: &[[f32; 4]; 4]) -> Self {
        Self {
            rot: std::array::from_fn(|r| [m[r][0], m[r][1], m[r][2]]),
            trans: [m[0][3], m[1][3], m[2][3]],
        }
    }

    /// `r3.rigids_mul_rigids`: `self ∘ b`.
    pub fn mul_rigid(&self, b: &Rigid) -> Rigid {
        Rigid {
            rot: rot_mul_rot(&self.rot, &b.rot),
            trans: vec_add(&self.trans, &rot_mul_vec(&self.rot, &b.trans)),
        }
    }

    /// `r3.rigids_mul_rots`: rotate, keep the translation.
    pub fn mul_rot(&self, m: &Rot3) -> Rigid {
        Rigid {
            rot: rot_mul_rot(&self.rot, m),
            trans: self.trans,
        }
    }

    /// `r3.rigids_mul_vecs`: `R v + t`.
    pub fn mul_vec(&self, v: &Vec3) -> Vec3 {
        vec_add(&rot_mul_vec(&self.rot, v), &self.trans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn quaternion_rotation_and_composition() {
        // 90° about z: (cos 45°, 0, 0, sin 45°) maps x to y.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let a = QuatAffine::new([s, 0.0, 0.0, s], [1.0, 2.0, 3.0], false);
        assert!(close(&a.apply_to_point(&[1.0, 0.0, 0.0]), &[1.0, 3.0, 3.0]));
        let p = [0.3, -0.7, 2.0];
        assert!(close(&a.invert_point(&a.apply_to_point(&p)), &p));
        // pre_compose with a zero update is the identity (up to normalisation)
        let b = a.pre_compose(&[0.0; 6]);
        assert!(close(&b.to_tensor(), &a.to_tensor()));
        // pre_compose applies the update first: frame(update)(p) then a
        let u = [0.1, -0.2, 0.3, 0.5, 0.0, -1.0];
        let c = a.pre_compose(&u);
        let upd = QuatAffine::new([1.0, u[0], u[1], u[2]], [u[3], u[4], u[5]], true);
        let want = a.apply_to_point(&upd.apply_to_point(&p));
        assert!(close(&c.apply_to_point(&p), &want));
        // Rigid composition agrees with applying one after the other
        let (ra, rb) = (Rigid::from_quat_affine(&a), Rigid::from_quat_affine(&c));
        assert!(close(
            &ra.mul_rigid(&rb).mul_vec(&p),
            &ra.mul_vec(&rb.mul_vec(&p))
        ));
    }
}
