//! IgFold 1.0.1 `gradient_refine`: 80 Adam steps on the raw per-residue frames `(R_i, t_i)`
//! (R an unconstrained 3x3 matrix) minimising
//!
//! ```text
//! loss = kabsch_mse(X, X0) + bond_len + bond_angle + vdw_clash + cis_peptide,  X = ideal @ R + t
//! ```
//!
//! over the N, CA, C, CB atoms. The PyTorch reference gets the gradient from autograd; here each
//! term has a hand-written backward to the atoms (`loss.rs`, `clash.rs`), followed by the (linear)
//! chain rule to `R` and `t`. The atoms are built in `f32` as in the reference; losses and
//! gradients are evaluated in `f64` (cheap, and it removes our own rounding noise, which Adam's
//! normalised steps would otherwise amplify), and the Adam update (`adam.rs`) runs in `f32` with
//! `torch.optim.Adam` semantics. The two kinks (the sign of `|d - ref|` for bond lengths, whether
//! a pair clashes) are decided on the float32 distance as the reference computes it.
//!
//! The refinement is compared with PyTorch at 0.05 Å, and single rounding differences flip
//! its outcome (see `golden.rs`): keep the order of every floating-point operation.

mod adam;
mod clash;
mod kabsch;
mod loss;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod test_frames;

use self::adam::Adam;
use self::loss::Problem;
use super::geometry::{backbone_atoms, Frames, Vec3, IDEAL_BACKBONE};

/// Adam steps of `gradient_refine`.
const REFINE_STEPS: usize = 80;

type V3 = [f64; 3];
type M3 = [[f64; 3]; 3];

/// IgFold's gradient refinement: 80 Adam steps (lr 0.02) on per-residue (R raw 3x3, t).
/// `chain_lens` (chains in order) must sum to the number of residues.
pub fn gradient_refine(frames: &Frames, chain_lens: &[usize]) -> Frames {
    refine_steps(frames, chain_lens, REFINE_STEPS)
}

/// [`gradient_refine`] with a chosen number of Adam steps.
fn refine_steps(frames: &Frames, chain_lens: &[usize], steps: usize) -> Frames {
    let n_res = frames.len();
    let problem = Problem::new(n_res, chain_lens);
    if n_res == 0 {
        return frames.clone();
    }
    let target = flat_atoms_f64(&backbone_atoms(frames));
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
#[cfg(test)]
fn refine_loss(
    frames: &Frames,
    target: &[[Vec3; 4]],
    chain_lens: &[usize],
) -> (loss::RefineLoss, FrameGrad) {
    let n_res = frames.len();
    assert_eq!(target.len(), n_res, "refine_loss: target length");
    let problem = Problem::new(n_res, chain_lens);
    let mut ws = Workspace::new(n_res);
    ws.set_atoms(frames);
    let loss = problem.eval(&ws.x, &flat_atoms_f64(target), &mut ws.aligned, &mut ws.gx);
    atoms_to_frame_grad(&ws.gx, &mut ws.grad);
    (loss, ws.grad)
}

/// Gradient of the refinement loss with respect to the raw frames.
#[derive(Clone, Debug, Default, PartialEq)]
struct FrameGrad {
    rot: Vec<M3>,
    trans: Vec<V3>,
}

impl FrameGrad {
    fn zeros(n_res: usize) -> Self {
        FrameGrad {
            rot: vec![[[0.0; 3]; 3]; n_res],
            trans: vec![[0.0; 3]; n_res],
        }
    }
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
            grad: FrameGrad::zeros(n_res),
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

#[cfg(test)]
mod tests {
    use super::test_frames::{atoms64, frames64, noisy_target, random_frames};
    use super::*;

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
        let mut grad = FrameGrad::zeros(n_res);
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

    #[test]
    #[should_panic(expected = "chain lengths [120, 100] do not sum to 230 residues")]
    fn refinement_checks_chain_lengths() {
        gradient_refine(&random_frames(230, 21), &[120, 100]);
    }
}
