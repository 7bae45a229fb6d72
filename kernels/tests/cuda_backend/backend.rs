//! Every op of the CUDA backend against the CPU backend (launch shapes, argument order,
//! strides, the GEMMs' transposes) within the fp32 tolerance, and with bf16 storage within the
//! bf16 one: on the emulated device always, and on GPU 0 where there is one (`FERROFOLD_REQUIRE_GPU=1` makes its absence a failure, for
//! `benches/gpu_check.sh`, where `FERROFOLD_GPU_ONLY=1` also leaves the emulated device out).

use crate::emulator::device::with_room;
use crate::emulator::EmulatedDevice;
use crate::support::{
    assert_close, assert_close_to_scale, random, tensor, BF16_TOLERANCE, FP32_TOLERANCE,
    TF32_TOLERANCE,
};
use std::sync::OnceLock;

use ferrofold_kernels::cuda::{AttentionPath, CudaBackend, CudaDevice, Storage};
use ferrofold_kernels::{
    catch_device_failure, Activation, AttentionParams, Backend, CpuBackend, GatedAttention,
    LinearParams, MatView, NormParams, OuterProductMeanParams, PairMasking, PointAttention, Tensor,
    TriangleDirection, TriangleMultiplicationParams, OUTER_PRODUCT_NORM_EPS,
};

/// A CUDA backend to check, and how close to the CPU backend its results must be.
struct Checked {
    name: &'static str,
    backend: Box<dyn Backend>,
    tolerance: Tolerance,
}

#[derive(Clone, Copy)]
enum Tolerance {
    /// [`FP32_TOLERANCE`] of each value (at least 1).
    Fp32,
    /// [`BF16_MODULE_TOLERANCE`] of each value or of the result's RMS, whichever is larger.
    Bf16,
}

/// A module op in bf16 storage rounds each intermediate (up to four in a row: the layer norm,
/// the projections, the products, the output) to bf16 and sums hundreds of rounded products:
/// measured up to 1.9e-2 of the result's scale with these tests' unscaled random weights. Each
/// kernel alone stays within [`BF16_TOLERANCE`] (`kernels.rs`).
const BF16_MODULE_TOLERANCE: f32 = 3e-2;

/// The CUDA backends to check, in fp32 and in bf16 storage: the emulated device, and GPU 0
/// when present.
fn backends() -> &'static [Checked] {
    static BACKENDS: OnceLock<Vec<Checked>> = OnceLock::new();
    BACKENDS.get_or_init(|| {
        let mut out = Vec::new();
        let mut both =
            |names: [&'static str; 2], fp32: Box<dyn Backend>, bf16: Box<dyn Backend>| {
                out.push(Checked {
                    name: names[0],
                    backend: fp32,
                    tolerance: Tolerance::Fp32,
                });
                out.push(Checked {
                    name: names[1],
                    backend: bf16,
                    tolerance: Tolerance::Bf16,
                });
            };
        if !std::env::var("FERROFOLD_GPU_ONLY").is_ok_and(|v| v == "1") {
            both(
                ["emulated", "emulated, bf16 storage"],
                Box::new(CudaBackend::new(EmulatedDevice)),
                Box::new(CudaBackend::new(EmulatedDevice).with_storage(Storage::Bf16)),
            );
        }
        match CudaDevice::new(0).and_then(|a| Ok((a, CudaDevice::new(0)?))) {
            Ok((fp32, bf16)) => both(
                ["GPU 0", "GPU 0, bf16 storage"],
                Box::new(CudaBackend::new(fp32)),
                Box::new(CudaBackend::new(bf16).with_storage(Storage::Bf16)),
            ),
            Err(e) => {
                let required = std::env::var("FERROFOLD_REQUIRE_GPU").is_ok_and(|v| v == "1");
                assert!(!required, "FERROFOLD_REQUIRE_GPU=1 but no CUDA device: {e}");
                eprintln!("CUDA backend checked on the emulated device only: {e}");
            }
        }
        out
    })
}

/// `op` on every CUDA backend against the CPU backend.
fn check(what: &str, op: impl Fn(&dyn Backend) -> Tensor) {
    let want = op(&CpuBackend);
    for c in backends() {
        let what = format!("{}: {what}", c.name);
        close(&op(c.backend.as_ref()), &want, c.tolerance, &what);
    }
}

fn same(got: &Tensor, want: &Tensor, what: &str) {
    close(got, want, Tolerance::Fp32, what);
}

fn close(got: &Tensor, want: &Tensor, tolerance: Tolerance, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    match tolerance {
        Tolerance::Fp32 => assert_close(got.data(), want.data(), FP32_TOLERANCE, what),
        Tolerance::Bf16 => {
            assert_close_to_scale(got.data(), want.data(), BF16_MODULE_TOLERANCE, what)
        }
    }
}

fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    tensor(shape, random(shape.iter().product(), seed))
}

#[test]
fn linear_and_batched_matmul() {
    let x = random_tensor(&[2, 5, 7], 1);
    let w = random_tensor(&[6, 7], 2);
    let b = random_tensor(&[6], 3);
    check("linear", |be| be.linear(&x, &w, Some(&b)));
    check("linear, no bias", |be| be.linear(&x, &w, None));
    let a = random_tensor(&[3, 4, 9], 4);
    let at = random_tensor(&[3, 9, 4], 5);
    let c = random_tensor(&[3, 9, 6], 6);
    let ct = random_tensor(&[3, 6, 9], 7);
    for (l, r, what) in [
        (MatView::n(&a), MatView::n(&c), "a b"),
        (MatView::t(&at), MatView::n(&c), "a^T b"),
        (MatView::n(&a), MatView::t(&ct), "a b^T"),
        (MatView::t(&at), MatView::t(&ct), "a^T b^T"),
    ] {
        check(what, |be| be.batched_matmul(l, r));
    }
}

#[test]
fn row_ops_and_activations() {
    let x = random_tensor(&[3, 4, 67], 8);
    let gamma = random_tensor(&[67], 9);
    let beta = random_tensor(&[67], 10);
    check("layer norm", |be| be.layer_norm(&x, &gamma, &beta, 1e-5));
    let logits = tensor(
        &[7, 45],
        random(7 * 45, 11).iter().map(|v| 8.0 * v).collect(),
    );
    check("softmax", |be| {
        let mut x = logits.clone();
        be.softmax(&mut x);
        x
    });
    let bias = random_tensor(&[2, 3, 40], 12);
    let mask = tensor(
        &[2, 40],
        (0..80)
            .map(|i| (i % 5 != 0 && i < 40) as u8 as f32)
            .collect(),
    );
    let logits = random_tensor(&[2, 2, 3, 40], 13);
    check("masked softmax", |be| {
        let mut x = logits.clone();
        be.masked_softmax(&mut x, Some(&bias), Some(&mask), 0.5);
        x
    });
    for f in [Activation::Relu, Activation::Gelu, Activation::Sigmoid] {
        let x = tensor(&[1000], random(1000, 14).iter().map(|v| 6.0 * v).collect());
        check(&format!("{f:?}"), |be| {
            let mut y = x.clone();
            be.activate(&mut y, f);
            y
        });
    }
}

#[test]
fn point_attention_weights_with_both_maskings() {
    // 37 residues (not a multiple of the 32 lanes or of the 4 rows per block), 3 heads, 4
    // points per head; residues 5 and 30 masked out, and a run where all but one are.
    let (h, n, c) = (3, 37, 12);
    let x = random_tensor(&[h, n, n], 20);
    let q_points = tensor(
        &[h, n, c],
        random(h * n * c, 21).iter().map(|v| 3.0 * v).collect(),
    );
    let k_points = tensor(
        &[h, n, c],
        random(h * n * c, 22).iter().map(|v| 3.0 * v).collect(),
    );
    let point_weights = tensor(&[h], vec![0.1, 0.25, 0.05]);
    let pair_bias = random_tensor(&[n, n, h], 23);
    let mask = tensor(
        &[n],
        (0..n).map(|i| (i != 5 && i != 30) as u8 as f32).collect(),
    );
    let lone = tensor(&[n], (0..n).map(|i| (i == 7) as u8 as f32).collect());
    for (mask, masking, what) in [
        (None, PairMasking::Shift(-1e5), "unmasked"),
        (Some(&mask), PairMasking::Shift(-1e5), "AF2's shifted mask"),
        (
            Some(&mask),
            PairMasking::Fill(-f32::MAX),
            "IgFold's filled mask",
        ),
        (
            Some(&lone),
            PairMasking::Fill(-f32::MAX),
            "one residue kept, filled",
        ),
        (
            Some(&lone),
            PairMasking::Shift(-1e5),
            "one residue kept, shifted",
        ),
    ] {
        let args = PointAttention {
            q_points: &q_points,
            k_points: &k_points,
            point_weights: &point_weights,
            scalar_scale: 0.4,
            pair_bias: &pair_bias,
            pair_scale: 0.6,
            mask,
            masking,
        };
        check(&format!("point attention, {what}"), |be| {
            let mut y = x.clone();
            be.point_attention_weights(&mut y, &args);
            y
        });
    }
}

/// Random gated attention inputs in the projections' `[B, N, H, D]` layout, with a pair bias
/// `[H, Q, K]`, a gate and a key mask `[B, K]` that keeps the keys `keep` names (flat index).
struct AttentionInputs {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gate: Tensor,
    bias: Tensor,
    mask: Tensor,
    scale: f32,
}

impl AttentionInputs {
    fn new([b, nq, nk, h, d, dv]: [usize; 6], seed: u64, keep: impl Fn(usize) -> bool) -> Self {
        AttentionInputs {
            q: random_tensor(&[b, nq, h, d], seed),
            k: random_tensor(&[b, nk, h, d], seed + 1),
            v: random_tensor(&[b, nk, h, dv], seed + 2),
            gate: random_tensor(&[b, nq, h, dv], seed + 3),
            bias: random_tensor(&[h, nq, nk], seed + 4),
            mask: tensor(
                &[b, nk],
                (0..b * nk).map(|i| keep(i) as u8 as f32).collect(),
            ),
            scale: (d as f32).powf(-0.5),
        }
    }

    fn args(&self) -> GatedAttention<'_> {
        GatedAttention {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            bias: Some(&self.bias),
            mask: Some(&self.mask),
            gate: Some(&self.gate),
            scale: self.scale,
        }
    }
}

#[test]
fn gated_attention_in_the_projection_layout() {
    // [B, N, H, D] with tails in both tiles; the last batch row masks every key.
    for (b, nq, nk, h, d, dv) in [
        (2, 37, 45, 3, 16, 16),
        (1, 5, 70, 2, 32, 32),
        (2, 9, 9, 2, 80, 80),
        (1, 6, 7, 2, 8, 4),
    ] {
        let inputs = AttentionInputs::new([b, nq, nk, h, d, dv], 15, |i| {
            (i / nk + 1 < b || b == 1) && i % 3 != 2
        });
        check(
            &format!("gated attention B={b} Q={nq} K={nk} H={h} D={d} Dv={dv}"),
            |be| be.gated_attention(&inputs.args()),
        );
    }
}

#[test]
fn triangle_multiplication_both_directions() {
    let (l, c, h) = (13, 7, 5);
    let z = random_tensor(&[l, l, c], 20);
    let t = random_tensor;
    let (in_g, in_b, ce_g, ce_b) = (t(&[c], 21), t(&[c], 22), t(&[h], 23), t(&[h], 24));
    let sides: Vec<(Tensor, Tensor)> = (0..4)
        .map(|i| (t(&[h, c], 25 + i), t(&[h], 35 + i)))
        .collect();
    let (op_w, op_b, og_w, og_b) = (t(&[c, h], 45), t(&[c], 46), t(&[c, c], 47), t(&[c], 48));
    let side = |i: usize| LinearParams {
        w: &sides[i].0,
        b: &sides[i].1,
    };
    let p = TriangleMultiplicationParams {
        input_norm: NormParams {
            gamma: &in_g,
            beta: &in_b,
            eps: 1e-5,
        },
        left_proj: side(0),
        left_gate: side(1),
        right_proj: side(2),
        right_gate: side(3),
        center_norm: NormParams {
            gamma: &ce_g,
            beta: &ce_b,
            eps: 1e-5,
        },
        output_proj: LinearParams { w: &op_w, b: &op_b },
        output_gate: LinearParams { w: &og_w, b: &og_b },
    };
    let mask = tensor(
        &[l, l],
        (0..l * l).map(|i| (i % 7 != 3) as u8 as f32).collect(),
    );
    for dir in [TriangleDirection::Outgoing, TriangleDirection::Incoming] {
        for m in [Some(&mask), None] {
            let what = format!("triangle multiplication {dir:?}, mask {}", m.is_some());
            check(&what, |be| be.triangle_multiplication(&z, &p, m, dir));
        }
    }
}

#[test]
fn attention_module_with_projections_on_the_device() {
    // (batch, queries, keys, heads, head width, gated, self-attention)
    for (b, nq, nk, h, d, gated, self_attention) in [
        (3, 21, 21, 4, 8, true, true),
        (2, 6, 40, 2, 16, false, false),
        (1, 5, 5, 2, 80, true, true), // wider than the kernel: the ops one by one
    ] {
        let (c_in, out) = (12, 10);
        let q_data = random_tensor(&[b, nq, c_in], 50);
        let m_data = if self_attention {
            q_data.clone()
        } else {
            random_tensor(&[b, nk, c_in], 51)
        };
        let (query, key, value) = (
            random_tensor(&[h * d, c_in], 52),
            random_tensor(&[h * d, c_in], 53),
            random_tensor(&[h * d, c_in], 54),
        );
        let (gate_w, gate_b) = (
            random_tensor(&[h * d, c_in], 55),
            random_tensor(&[h * d], 56),
        );
        let (out_w, out_b) = (random_tensor(&[out, h * d], 57), random_tensor(&[out], 58));
        let p = AttentionParams {
            query: &query,
            key: &key,
            value: &value,
            gating: gated.then_some(LinearParams {
                w: &gate_w,
                b: &gate_b,
            }),
            output: LinearParams {
                w: &out_w,
                b: &out_b,
            },
            heads: h,
            key_dim: d,
            value_dim: d,
        };
        let mask = tensor(
            &[b, nk],
            (0..b * nk).map(|i| (i % 4 != 1) as u8 as f32).collect(),
        );
        let bias = random_tensor(&[h, nq, nk], 59);
        let m = if self_attention { &q_data } else { &m_data };
        check(
            &format!("attention module B={b} Q={nq} K={nk} H={h} D={d}"),
            |be| be.attention(&p, &q_data, m, Some(&mask), Some(&bias)),
        );
    }
}

#[test]
fn empty_and_degenerate_shapes() {
    let w = random_tensor(&[6, 7], 60);
    let b = random_tensor(&[6], 61);
    let no_rows = Tensor::zeros(&[0, 7]);
    check("linear, no rows", |be| be.linear(&no_rows, &w, Some(&b)));
    let (x0, w0) = (Tensor::zeros(&[5, 0]), Tensor::zeros(&[6, 0]));
    check("linear, no inputs", |be| be.linear(&x0, &w0, Some(&b)));
    let (a0, c0) = (Tensor::zeros(&[2, 3, 0]), Tensor::zeros(&[2, 0, 4]));
    check("batched matmul, k = 0", |be| {
        be.batched_matmul(MatView::n(&a0), MatView::n(&c0))
    });
    let gamma = random_tensor(&[5], 62);
    let empty = Tensor::zeros(&[0, 5]);
    check("layer norm, no rows", |be| {
        be.layer_norm(&empty, &gamma, &gamma, 1e-5)
    });
    check("softmax, no rows", |be| {
        let mut x = empty.clone();
        be.softmax(&mut x);
        x
    });
}

#[test]
fn transition_keeps_its_hidden_activation_on_the_device() {
    let (c, hidden) = (12, 48);
    let x = random_tensor(&[3, 5, c], 70);
    let (gamma, beta) = (random_tensor(&[c], 71), random_tensor(&[c], 72));
    let (w1, b1) = (
        random_tensor(&[hidden, c], 73),
        random_tensor(&[hidden], 74),
    );
    let (w2, b2) = (random_tensor(&[c, hidden], 75), random_tensor(&[c], 76));
    let norm = NormParams {
        gamma: &gamma,
        beta: &beta,
        eps: 1e-5,
    };
    let (first, second) = (
        LinearParams { w: &w1, b: &b1 },
        LinearParams { w: &w2, b: &b2 },
    );
    check("transition", |be| be.transition(&x, &norm, &first, &second));
}

#[test]
fn outer_product_mean_fused_on_the_device() {
    // c_z = 5: in bf16 storage a chunk of 3 rows starts mid-word.
    let (s, l, c_m, c, c_z) = (5, 9, 6, 3, 5);
    let msa = random_tensor(&[s, l, c_m], 80);
    // Row 1 masks two residues, row 3 all of them; residue 4 is masked in every row but 0.
    let mask = tensor(
        &[s, l],
        (0..s * l)
            .map(|i| {
                let (r, j) = (i / l, i % l);
                !(r == 1 && j < 2 || r == 3 || j == 4 && r > 0) as u8 as f32
            })
            .collect(),
    );
    let (gamma, beta) = (random_tensor(&[c_m], 81), random_tensor(&[c_m], 82));
    let (lw, lb) = (random_tensor(&[c, c_m], 83), random_tensor(&[c], 84));
    let (rw, rb) = (random_tensor(&[c, c_m], 85), random_tensor(&[c], 86));
    let (ow, ob) = (random_tensor(&[c_z, c * c], 87), random_tensor(&[c_z], 88));
    let p = OuterProductMeanParams {
        input_norm: NormParams {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
        },
        left: LinearParams { w: &lw, b: &lb },
        right: LinearParams { w: &rw, b: &rb },
        output: LinearParams { w: &ow, b: &ob },
    };
    // Algorithm 10 term by term, in f64, from the CPU backend's projections.
    let x = CpuBackend.layer_norm(&msa, &gamma, &beta, 1e-5);
    let (left, right) = (
        CpuBackend.linear(&x, &lw, Some(&lb)),
        CpuBackend.linear(&x, &rw, Some(&rb)),
    );
    let (ld, rd, md) = (left.data(), right.data(), mask.data());
    let want = Tensor::from_fn(&[l, l, c_z], |at| {
        let (i, j, z) = (at / (l * c_z), (at / c_z) % l, at % c_z);
        let mut sum = ob.data()[z] as f64;
        for a in 0..c {
            for b in 0..c {
                let outer: f64 = (0..s)
                    .map(|r| {
                        (md[r * l + i] * ld[(r * l + i) * c + a]) as f64
                            * (md[r * l + j] * rd[(r * l + j) * c + b]) as f64
                    })
                    .sum();
                sum += outer * ow.data()[z * c * c + a * c + b] as f64;
            }
        }
        let norm: f64 = (0..s).map(|r| (md[r * l + i] * md[r * l + j]) as f64).sum();
        (sum / (OUTER_PRODUCT_NORM_EPS as f64 + norm)) as f32
    });
    assert!(CpuBackend.outer_product_mean(&msa, &mask, &p).is_none());
    // Chunks of 2 and 4 residue rows (the last one shorter), on the emulated device.
    for rows in [2, 3, 4] {
        for (storage, tolerance) in [
            (Storage::F32, Tolerance::Fp32),
            (Storage::Bf16, Tolerance::Bf16),
        ] {
            let chunked = CudaBackend::new(EmulatedDevice)
                .with_storage(storage)
                .with_outer_product_chunk(rows * l * c * c);
            let got = chunked.outer_product_mean(&msa, &mask, &p).expect("fused");
            let what = format!("outer product mean in {storage:?}, chunks of {rows} rows");
            close(&got, &want, tolerance, &what);
        }
    }
    for Checked {
        name,
        backend,
        tolerance,
    } in backends()
    {
        let got = backend
            .outer_product_mean(&msa, &mask, &p)
            .expect("the CUDA backend fuses it");
        close(
            &got,
            &want,
            *tolerance,
            &format!("{name}: outer product mean"),
        );
    }
}

#[test]
fn residual_adds_and_swaps_where_the_values_are() {
    let x = random_tensor(&[5, 6, 7], 41);
    let w = random_tensor(&[7, 7], 42);
    let y = random_tensor(&[5, 6, 7], 43);
    // On the host, on the device (a linear's result), and the two mixed.
    check("add, both on the host", |be| {
        let mut r = x.clone();
        be.add_assign(&mut r, &y);
        r
    });
    check("add to a result on the device", |be| {
        let mut r = be.linear(&x, &w, None);
        be.add_assign(&mut r, &y);
        r
    });
    check("add a result on the device", |be| {
        let mut r = y.clone();
        be.add_assign(&mut r, &be.linear(&x, &w, None));
        r
    });
    check("swap on the host", |be| be.swap_leading_axes(&x));
    check("swap on the device", |be| {
        be.swap_leading_axes(&be.linear(&x, &w, None))
    });
}

#[test]
fn device_copies_follow_their_tensors() {
    let x = random_tensor(&[4, 9], 44);
    let w = random_tensor(&[3, 9], 45);
    let want = CpuBackend.linear(&x, &w, None);
    for Checked {
        name,
        backend: be,
        tolerance,
    } in backends()
    {
        // A clone shares the device copy: adding to one leaves the other as it was.
        let a = be.linear(&x, &w, None);
        let mut b = a.clone();
        be.add_assign(&mut b, &a);
        be.activate(&mut b, Activation::Relu);
        close(
            &a,
            &want,
            *tolerance,
            &format!("{name}: the clone's source after an add"),
        );
        // A host tensor's upload is kept, and dropped when the host values change (a tensor
        // of its own: a clone of `x` would share the first backend's copy).
        let mut h = Tensor::new(x.shape(), x.data().to_vec()).unwrap();
        close(
            &be.linear(&h, &w, None),
            &want,
            *tolerance,
            &format!("{name}: first use"),
        );
        h.data_mut().iter_mut().for_each(|v| *v *= 2.0);
        let twice = CpuBackend.linear(&h, &w, None);
        close(
            &be.linear(&h, &w, None),
            &twice,
            *tolerance,
            &format!("{name}: after a host change"),
        );
    }
}

#[test]
fn gated_attention_by_gemms_in_chunks_and_by_the_fused_kernel() {
    // Five batch rows, the last with every key masked; logits of one row: H * Q * K.
    let (b, nq, nk, h, d) = (5, 13, 21, 2, 16);
    let inputs = AttentionInputs::new([b, nq, nk, h, d, d], 51, |i| i < (b - 1) * nk && i % 4 != 1);
    let a = inputs.args();
    let want = CpuBackend.gated_attention(&a);
    let per_row = h * nq * nk;
    fn variants<D: ferrofold_kernels::cuda::Device>(
        device: impl Fn() -> D,
        per_row: usize,
    ) -> Vec<(&'static str, CudaBackend<D>)> {
        vec![
            ("GEMMs, one chunk", CudaBackend::new(device())),
            (
                "GEMMs, chunks of two rows",
                CudaBackend::new(device()).with_chunk_elements(2 * per_row),
            ),
            (
                "a row's logits over the chunk: fused kernel",
                CudaBackend::new(device()).with_chunk_elements(per_row - 1),
            ),
            (
                "fused kernel",
                CudaBackend::new(device()).with_attention(AttentionPath::Fused),
            ),
            (
                "fused kernel on TF32 tensor cores",
                CudaBackend::new(device()).with_attention(AttentionPath::TensorCoresTf32),
            ),
            (
                "fused kernel on bf16 tensor cores",
                CudaBackend::new(device()).with_attention(AttentionPath::TensorCoresBf16),
            ),
            (
                "bf16 storage: GEMMs, chunks of two rows",
                CudaBackend::new(device())
                    .with_storage(Storage::Bf16)
                    .with_chunk_elements(2 * per_row),
            ),
            (
                "bf16 storage: a row's logits over the chunk: fused kernel",
                CudaBackend::new(device())
                    .with_storage(Storage::Bf16)
                    .with_chunk_elements(per_row - 1),
            ),
            (
                "bf16 storage: fused kernel on bf16 tensor cores",
                CudaBackend::new(device())
                    .with_storage(Storage::Bf16)
                    .with_attention(AttentionPath::TensorCoresBf16),
            ),
            (
                "bf16 storage: TF32 tensor cores asked for, the bf16 ones",
                CudaBackend::new(device())
                    .with_storage(Storage::Bf16)
                    .with_attention(AttentionPath::TensorCoresTf32),
            ),
        ]
    }
    let check = |be: &dyn Backend, name: String| {
        let got = be.gated_attention(&a);
        // bf16 first: bf16 storage asked for TF32 tensor cores runs bf16 ones.
        let tolerance = if name.contains("bf16") {
            BF16_TOLERANCE
        } else if name.contains("TF32") {
            TF32_TOLERANCE
        } else {
            FP32_TOLERANCE
        };
        assert_eq!(got.shape(), want.shape(), "{name}: shape");
        assert_close(got.data(), want.data(), tolerance, &name);
    };
    if !std::env::var("FERROFOLD_GPU_ONLY").is_ok_and(|v| v == "1") {
        for (name, be) in variants(|| EmulatedDevice, per_row) {
            check(&be, format!("emulated: {name}"));
        }
    }
    if CudaDevice::new(0).is_ok() {
        for (name, be) in variants(|| CudaDevice::new(0).unwrap(), per_row) {
            check(&be, format!("GPU 0: {name}"));
        }
    }
}

#[test]
fn rows_sliced_and_stacked_where_the_values_are() {
    let x = random_tensor(&[6, 3, 5], 61);
    let w = random_tensor(&[5, 5], 62);
    // Rows of 15 values: a bf16 slice or write may start mid-word.
    for Checked {
        name,
        backend: be,
        tolerance,
    } in backends()
    {
        let on_device = be.linear(&x, &w, None);
        let want = CpuBackend.linear(&x, &w, None);
        for (what, t, want) in [("host", &x, &x), ("device", &on_device, &want)] {
            let rows = be.slice_rows(t, 2..5);
            close(
                &rows,
                &want.slice_rows(2..5),
                *tolerance,
                &format!("{name}: rows of a {what} tensor"),
            );
            // Stack the rows back in two parts, into zeros of the backend's own.
            let mut out = be.zeros(&[6, 3, 5]);
            be.write_rows(&mut out, 0, &be.slice_rows(t, 0..2));
            be.write_rows(&mut out, 2, &rows);
            be.write_rows(&mut out, 5, &be.slice_rows(t, 5..6));
            let what = format!("{name}: {what} rows stacked");
            close(&out, want, *tolerance, &what);
        }
    }
}

#[test]
fn a_device_failure_is_an_error_naming_the_op() {
    let be = CudaBackend::new(EmulatedDevice);
    let x = random_tensor(&[20, 30], 70);
    let w = random_tensor(&[40, 30], 71);
    // 20 x 40 outputs do not fit in 100 values; 2 x 40 do.
    let failure = with_room(100, || catch_device_failure(|| be.linear(&x, &w, None))).unwrap_err();
    assert_eq!(failure.op, "linear");
    assert!(failure.message.contains("out of memory"), "{failure}");
    let fits = with_room(100, || {
        catch_device_failure(|| be.linear(&x.slice_rows(0..2), &w, None))
    })
    .unwrap();
    same(
        &fits,
        &CpuBackend.linear(&x.slice_rows(0..2), &w, None),
        "after a failure",
    );
}

#[test]
fn pair_embeddings_by_outer_sum_and_lookup() {
    let (a, b) = (random_tensor(&[13, 7], 80), random_tensor(&[13, 7], 81));
    check("outer sum", |be| be.outer_sum(&a, &b));
    let w = random_tensor(&[5, 9], 82);
    let bias = random_tensor(&[9], 83);
    // Every class and the all-zero one-hot (-1), over a [6, 4] grid of positions.
    let classes = tensor(&[6, 4], (0..24).map(|i| (i % 6) as f32 - 1.0).collect());
    check("one-hot linear", |be| {
        be.one_hot_linear(&classes, &w, &bias)
    });
}

#[test]
fn global_attention_gate_broadcasts_each_batch_rows_values() {
    // 3 batch rows of 5 positions, 7 channels (not a multiple of any block).
    let gate = random_tensor(&[3, 5, 7], 90);
    let values = random_tensor(&[3, 7], 91);
    check("broadcast sigmoid gate", |be| {
        let mut g = gate.clone();
        be.broadcast_sigmoid_gate(&mut g, &values);
        g
    });
}

#[test]
fn softmax_expectations_of_rows_of_bins() {
    // 3 x 5 rows of 37 bins (more than a warp, not a multiple of it), 64 as the confidence
    // heads have them, and 20 (fewer lanes than a warp); one to four value rows; one row with
    // a -inf logit and one all -inf (zeros).
    for (bins, v, seed) in [(37, 3, 92), (64, 2, 94), (20, 1, 96), (50, 4, 98)] {
        let mut logits = random_tensor(&[3, 5, bins], seed);
        let values = random_tensor(&[v, bins], seed + 1);
        let d = logits.data_mut();
        d[3] = f32::NEG_INFINITY;
        d[bins..2 * bins].fill(f32::NEG_INFINITY);
        check("softmax expectations", |be| {
            be.softmax_expectations(&logits, &values)
        });
    }
}

#[test]
fn values_convert_between_storages_on_the_device() {
    // With bf16 storage, a mask made on the device (bf16) is read by a kernel as fp32, and an
    // fp32 result (the expectations) is taken up by a bf16 op.
    let logits = random_tensor(&[3, 2, 5, 7], 80);
    let keep = tensor(&[3, 7], (0..21).map(|i| f32::from(i % 3 != 0)).collect());
    let bins = random_tensor(&[4, 10], 81);
    let values = random_tensor(&[2, 10], 82);
    check("a mask made on the device", |be| {
        let mut mask = be.zeros(&[3, 7]);
        be.add_assign(&mut mask, &keep);
        let mut x = logits.clone();
        be.masked_softmax(&mut x, None, Some(&mask), 0.5);
        x
    });
    check("fp32 expectations taken up by an op", |be| {
        let mut e = be.softmax_expectations(&bins, &values);
        be.activate(&mut e, Activation::Relu);
        e
    });
}
