//! Acceptance against PyTorch IgFold 1.0.1. `tests/data/igfold_<name>.safetensors` (committed)
//! holds per member `m{k}.raw_{rot,trans,coords}` and `m{k}.refined_coords`. The debug dumps
//! `igfold_debug_<name>.safetensors` of `tools/reference/dump_intermediates.py` (not committed;
//! directory `$FERROFOLD_IGFOLD_DEBUG_DIR`) add the step-0 loss terms and gradients of member
//! `igfold_1`; the test that reads them is ignored unless asked for.

use std::path::{Path, PathBuf};

use ferrofold_io::weights::{load_safetensors, TensorStore};

use super::{gradient_refine, refine_loss, refine_steps};
use crate::igfold::geometry::{backbone_atoms, place_o_atoms, quat_to_rot, Frames, Mat3};

struct Golden(TensorStore);

impl Golden {
    fn load(path: &Path) -> Golden {
        Golden(
            load_safetensors(path)
                .unwrap_or_else(|e| panic!("golden file {}: {e}", path.display())),
        )
    }

    fn get(&self, name: &str) -> &[f32] {
        self.0
            .root()
            .get_any(name)
            .unwrap_or_else(|e| panic!("{e}"))
            .data()
    }

    fn scalar(&self, name: &str) -> f64 {
        self.get(name)[0] as f64
    }

    /// Chain lengths from the `sequences` metadata (`{"H": ..., "L": ...}`; chains in key
    /// order, which is H before L).
    fn chain_lens(&self) -> Vec<usize> {
        let seqs: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            self.0
                .metadata()
                .get("sequences")
                .expect("sequences metadata"),
        )
        .expect("sequences metadata is a JSON object");
        seqs.values()
            .map(|s| s.as_str().expect("sequence string").len())
            .collect()
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

    /// Member prefixes `m0.`, `m1.`, ... present in the file.
    fn members(&self) -> Vec<String> {
        let members: Vec<String> = (0..)
            .map(|k| format!("m{k}."))
            .take_while(|p| self.0.root().get_any(&format!("{p}raw_rot")).is_ok())
            .collect();
        assert!(!members.is_empty(), "golden file without members");
        members
    }
}

fn data_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(format!("igfold_{name}.safetensors"))
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

const NAMES: [&str; 3] = ["paired", "nanobody", "trastuzumab"];

#[test]
fn golden_raw_frames_give_raw_coords() {
    for name in NAMES {
        let g = Golden::load(&data_file(name));
        let lens = g.chain_lens();
        for m in g.members() {
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
        let g = Golden::load(&data_file(name));
        let lens = g.chain_lens();
        for m in g.members() {
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
            let backbone = |c: &[f32]| -> Vec<f32> {
                c.chunks_exact(15).flat_map(|r| r[..12].to_vec()).collect()
            };
            let bb_dev = max_atom_dev(&backbone(&got), &backbone(want));
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
#[ignore = "needs tools/reference/dump_intermediates.py output; set FERROFOLD_IGFOLD_DEBUG_DIR"]
fn golden_debug_step0() {
    let dir = std::env::var_os("FERROFOLD_IGFOLD_DEBUG_DIR").expect(
        "set FERROFOLD_IGFOLD_DEBUG_DIR to the folder of tools/reference/dump_intermediates.py's \
         igfold_debug_<name>.safetensors",
    );
    for name in ["paired", "nano"] {
        let g = Golden::load(&Path::new(&dir).join(format!("igfold_debug_{name}.safetensors")));
        let lens = g.chain_lens();
        let frames = g.frames("");
        let n_res = frames.len();
        let q = g.get("str.2.quat");
        let mut worst = 0.0f32;
        for (i, r) in frames.rot.iter().enumerate() {
            let mine: Mat3 = quat_to_rot([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
            for (a, b) in mine.iter().flatten().zip(r.iter().flatten()) {
                worst = worst.max((a - b).abs());
            }
        }
        eprintln!("{name}: quat_to_rot max deviation {worst:.2e}");
        assert!(worst <= 1e-6);
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
        let one = refine_steps(&frames, &lens, 1);
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
