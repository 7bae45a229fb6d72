//! The optimiser of the refinement: `torch.optim.Adam` on the raw frames.

use super::FrameGrad;
use crate::igfold::geometry::Frames;

/// `torch.optim.Adam(lr=0.02, betas=(0.9, 0.999), eps=1e-8)`, single-tensor CPU path, float32
/// state: `m = lerp(m, g, 1-b1)`, `v = v*b2 + (1-b2) g^2`,
/// `p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)`, bias corrections in double.
pub(super) struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: u32,
}

impl Adam {
    /// Learning rate of IgFold's `gradient_refine`.
    const LR: f64 = 0.02;
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    /// State for `n_res` frames (9 rotation and 3 translation parameters each).
    pub(super) fn new(n_res: usize) -> Self {
        Adam {
            m: vec![0.0; 12 * n_res],
            v: vec![0.0; 12 * n_res],
            t: 0,
        }
    }

    /// One Adam step of `params` along `grad` (cast to f32, as the reference's float32 grads).
    pub(super) fn step(&mut self, params: &mut Frames, grad: &FrameGrad) {
        self.t += 1;
        let step = self.t as f64;
        let bc1 = 1.0 - Self::BETA1.powf(step);
        let bc2 = 1.0 - Self::BETA2.powf(step);
        let step_size = -(Self::LR / bc1) as f32;
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

#[cfg(test)]
mod tests {
    use super::super::test_frames::{random_frames, Rng};
    use super::*;

    /// First Adam step moves every parameter by lr against the sign of its gradient.
    #[test]
    fn first_adam_step_is_signed_lr() {
        let frames = random_frames(4, 1);
        let mut params = frames.clone();
        let mut grad = FrameGrad::zeros(4);
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
        let steps = params
            .rot
            .iter()
            .flatten()
            .flatten()
            .chain(params.trans.iter().flatten())
            .zip(
                frames
                    .rot
                    .iter()
                    .flatten()
                    .flatten()
                    .chain(frames.trans.iter().flatten()),
            )
            .map(|(p, p0)| p - p0);
        let grads = grad
            .rot
            .iter()
            .flatten()
            .flatten()
            .chain(grad.trans.iter().flatten());
        for (step, g) in steps.zip(grads) {
            let want = (-Adam::LR * g / (g.abs() + 1e-8)) as f32;
            assert!((step - want).abs() < 2e-7, "{step} vs {want}");
        }
    }
}
