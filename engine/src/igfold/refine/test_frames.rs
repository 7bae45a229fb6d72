//! Deterministic test backbones shared by the refinement's unit tests.

use super::{M3, V3};
use crate::igfold::geometry::{add, norm, quat_to_rot, scale, Frames, Mat3, IDEAL_BACKBONE};

/// Small deterministic generator (SplitMix64) for test data.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[-1, 1)`.
    pub(super) fn sym(&mut self) -> f64 {
        2.0 * self.next() - 1.0
    }
}

/// A crumpled backbone: random rotations, CA roughly 3.8 Å apart along a wobbly path,
/// plus a mildly non-orthogonal perturbation of R (as after some refinement steps).
pub(super) fn random_frames(n: usize, seed: u64) -> Frames {
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

/// `IDEAL_BACKBONE @ R + t` in f64 (no f32 rounding), flat `[4L]`.
pub(super) fn atoms64(rot: &[M3], trans: &[V3]) -> Vec<V3> {
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

/// The frames widened to f64.
pub(super) fn frames64(f: &Frames) -> (Vec<M3>, Vec<V3>) {
    (
        f.rot
            .iter()
            .map(|r| r.map(|row| row.map(f64::from)))
            .collect(),
        f.trans.iter().map(|t| t.map(f64::from)).collect(),
    )
}

/// A target: the same atoms rotated, shifted and noised, so the Kabsch term is non-trivial.
pub(super) fn noisy_target(x: &[V3], seed: u64) -> Vec<V3> {
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
