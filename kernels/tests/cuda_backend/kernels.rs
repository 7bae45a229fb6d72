//! Each kernel's own source against the CPU backend, launched directly: fp32 storage within
//! 1e-4, bf16 storage and bf16 tensor-core products within 1e-2 and TF32 tensor-core products
//! within 2e-3, relative to
//! max(1, |reference|), on random inputs with
//! masked keys, fully masked rows and lengths that are not multiples of the kernels' tiles.

use crate::emulator::{emulated, param};
use crate::support::*;
use ferrofold_kernels::cuda::sources::{
    AttentionArgs, AttentionKernel, GATED_ATTENTION, LAYER_NORM, MASKED_SOFTMAX,
};
use ferrofold_kernels::{Backend, CpuBackend, GatedAttention};

#[test]
fn layer_norm_kernels_match_the_cpu_backend() {
    let program = emulated(&LAYER_NORM);
    for (rows, c) in [(37usize, 67usize), (5, 128), (9, 5)] {
        let x = random(rows * c, 1 + c as u64);
        let (gamma, beta) = (random(c, 2), random(c, 3));
        let eps = 1e-5f32;
        for bf16 in [false, true] {
            let input = as_stored(&x, bf16);
            let want = CpuBackend.layer_norm(
                &tensor(&[rows, c], input.clone()),
                &tensor(&[c], gamma.clone()),
                &tensor(&[c], beta.clone()),
                eps,
            );
            let (xs, ys) = (Stored::new(&input, bf16), Stored::zeros(rows * c, bf16));
            let (mut xp, mut yp) = (xs.address(true), ys.address(true));
            let (mut gp, mut bp) = (address(&gamma), address(&beta));
            let (mut rows_arg, mut c_arg, mut eps_arg) = (rows as i64, c as i32, eps);
            let mut params = [
                param(&mut xp),
                param(&mut gp),
                param(&mut bp),
                param(&mut yp),
                param(&mut rows_arg),
                param(&mut c_arg),
                param(&mut eps_arg),
            ];
            let (suffix, tolerance) = storage(bf16);
            let kernel = format!("layer_norm_{suffix}");
            // SAFETY: the parameters are the kernel's, in order; buffers hold rows * c.
            unsafe {
                program.launch(
                    &kernel,
                    grid_for_rows(rows),
                    [ROW_THREADS, 1, 1],
                    &mut params,
                )
            };
            assert_close(
                &ys.values(),
                want.data(),
                tolerance,
                &format!("{kernel} {rows}x{c}"),
            );
        }
    }
}

#[test]
fn masked_softmax_kernels_match_the_cpu_backend() {
    let program = emulated(&MASKED_SOFTMAX);
    let (b, h, q, k) = (2usize, 3usize, 5usize, 45usize);
    let scale = 0.37f32;
    let logits: Vec<f32> = random(b * h * q * k, 11).iter().map(|x| 6.0 * x).collect();
    let bias = random(h * q * k, 12);
    // Batch row 0 keeps about two keys in three; batch row 1 masks every key.
    let mask: Vec<f32> = (0..b * k)
        .map(|i| if i < k && i % 3 != 1 { 1.0 } else { 0.0 })
        .collect();
    for (with_bias, with_mask) in [(true, true), (false, false), (true, false)] {
        for bf16 in [false, true] {
            let (input, bias_in) = (as_stored(&logits, bf16), as_stored(&bias, bf16));
            let mut want = tensor(&[b, h, q, k], input.clone());
            let bias_t = tensor(&[h, q, k], bias_in.clone());
            let mask_t = tensor(&[b, k], mask.clone());
            CpuBackend.masked_softmax(
                &mut want,
                with_bias.then_some(&bias_t),
                with_mask.then_some(&mask_t),
                scale,
            );
            let (xs, bs) = (Stored::new(&input, bf16), Stored::new(&bias_in, bf16));
            let ys = Stored::zeros(input.len(), bf16);
            let (mut xp, mut bp, mut yp) =
                (xs.address(true), bs.address(with_bias), ys.address(true));
            let mut mp = if with_mask { address(&mask) } else { 0 };
            let (mut bi, mut hi, mut qi, mut ki, mut s) =
                (b as i32, h as i32, q as i32, k as i32, scale);
            let mut params = [
                param(&mut xp),
                param(&mut bp),
                param(&mut mp),
                param(&mut yp),
                param(&mut bi),
                param(&mut hi),
                param(&mut qi),
                param(&mut ki),
                param(&mut s),
            ];
            let (suffix, tolerance) = storage(bf16);
            let kernel = format!("masked_softmax_{suffix}");
            // SAFETY: the kernel's parameters in order; buffers of the stated shapes.
            unsafe {
                program.launch(
                    &kernel,
                    grid_for_rows(b * h * q),
                    [ROW_THREADS, 1, 1],
                    &mut params,
                )
            };
            assert_close(
                &ys.values(),
                want.data(),
                tolerance,
                &format!("{kernel} bias={with_bias} mask={with_mask}"),
            );
        }
    }
}

/// One gated attention case: `[B, N, H, D]` tensors (the projections' layout).
struct AttentionCase {
    b: usize,
    h: usize,
    nq: usize,
    nk: usize,
    d: usize,
    bias: bool,
    mask: bool,
    gate: bool,
}

impl AttentionCase {
    fn run(&self, kind: AttentionKernel) {
        let bf16 = matches!(
            kind,
            AttentionKernel::Bf16 | AttentionKernel::TensorCoresBf16Storage
        );
        let AttentionCase {
            b, h, nq, nk, d, ..
        } = *self;
        let seed = (b * 1000 + nq * 100 + nk * 10 + d) as u64;
        let input = |n: usize, seed: u64, scale: f32| {
            let v: Vec<f32> = random(n, seed).iter().map(|x| scale * x).collect();
            as_stored(&v, bf16)
        };
        let q = input(b * nq * h * d, seed, 1.0);
        let k = input(b * nk * h * d, seed + 1, 1.0);
        let v = input(b * nk * h * d, seed + 2, 1.0);
        let gate = input(b * nq * h * d, seed + 3, 1.0);
        let bias = input(h * nq * nk, seed + 4, 3.0);
        // The last batch row masks every key (it attends uniformly, as in AF2); the others
        // about one key in four.
        let mask: Vec<f32> = (0..b * nk)
            .map(|i| {
                if i / nk + 1 == b && b > 1 || i % 4 == 3 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let scale = (d as f32).powf(-0.5);
        let (qt, kt, vt) = (
            tensor(&[b, nq, h, d], q.clone()),
            tensor(&[b, nk, h, d], k.clone()),
            tensor(&[b, nk, h, d], v.clone()),
        );
        let (gt, bt, mt) = (
            tensor(&[b, nq, h, d], gate.clone()),
            tensor(&[h, nq, nk], bias.clone()),
            tensor(&[b, nk], mask.clone()),
        );
        let want = CpuBackend.gated_attention(&GatedAttention {
            q: &qt,
            k: &kt,
            v: &vt,
            bias: self.bias.then_some(&bt),
            mask: self.mask.then_some(&mt),
            gate: self.gate.then_some(&gt),
            scale,
        });
        let kernel = kind.entry(d).expect("d <= 64");
        let stored = |values: &[f32]| Stored::new(values, bf16);
        let (qs, ks, vs, gs, bs) = (
            stored(&q),
            stored(&k),
            stored(&v),
            stored(&gate),
            stored(&bias),
        );
        let out = Stored::zeros(b * nq * h * d, bf16);
        let mut args = AttentionArgs {
            q: qs.address(true),
            k: ks.address(true),
            v: vs.address(true),
            gate: gs.address(self.gate),
            bias: bs.address(self.bias),
            mask: if self.mask { address(&mask) } else { 0 },
            out: out.address(true),
            ..AttentionArgs::projection_layout(b, h, nq, nk, d, scale)
        };
        let (block_queries, threads) = kind.block();
        let (gx, gy, gz) = args.grid(block_queries);
        let block = [threads as u32, 1, 1];
        // SAFETY: the kernel's one parameter; every buffer has the shape its strides say.
        unsafe {
            emulated(&GATED_ATTENTION).launch(kernel, [gx, gy, gz], block, &mut [param(&mut args)])
        };
        let tolerance = match kind {
            AttentionKernel::TensorCoresTf32 => TF32_TOLERANCE,
            AttentionKernel::TensorCoresBf16 | AttentionKernel::TensorCoresBf16Storage => {
                BF16_TOLERANCE
            }
            AttentionKernel::F32 | AttentionKernel::Bf16 => storage(bf16).1,
        };
        assert_close(
            &out.values(),
            want.data(),
            tolerance,
            &format!(
                "{kernel}: B={b} H={h} Q={nq} K={nk} D={d} bias={} mask={} gate={}",
                self.bias, self.mask, self.gate
            ),
        );
    }
}

#[test]
fn gated_attention_kernels_match_the_cpu_backend() {
    let cases = [
        // Tails in both tiles (16 or 64 queries per block, 32 keys per tile), every head
        // width.
        (2, 3, 37, 45, 8, true, true, true),
        (2, 2, 20, 70, 32, true, true, true),
        (1, 2, 17, 33, 48, true, true, true),
        (2, 1, 16, 64, 64, true, true, true),
        // No bias, mask or gate (null pointers).
        (1, 2, 9, 40, 16, false, false, false),
        // Template pointwise attention's shape: one query over four keys.
        (3, 4, 1, 4, 16, false, true, false),
    ];
    for (b, h, nq, nk, d, bias, mask, gate) in cases {
        let case = AttentionCase {
            b,
            h,
            nq,
            nk,
            d,
            bias,
            mask,
            gate,
        };
        for kind in [
            AttentionKernel::F32,
            AttentionKernel::Bf16,
            AttentionKernel::TensorCoresTf32,
            AttentionKernel::TensorCoresBf16,
            AttentionKernel::TensorCoresBf16Storage,
        ] {
            case.run(kind);
        }
    }
}
