//! The CUDA kernels' own source run on the CPU (`emulator/`) against the CPU backend, their
//! reference: fp32 storage within 1e-4 and bf16 storage within 1e-2, relative to
//! max(1, |reference|), on random inputs with masked keys, fully masked rows and lengths that
//! are not multiples of the kernels' tiles. Needs a C++ compiler (`$CXX` or `c++`), no GPU.
#![cfg(feature = "cuda")]

mod emulator;

use emulator::{emulated, param};
use ferrofold_kernels::cuda::sources::{
    gated_attention_kernel, AttentionArgs, ATTENTION_THREADS, GATED_ATTENTION, LAYER_NORM,
    MASKED_SOFTMAX,
};
use ferrofold_kernels::{round_to_bf16, Backend, CpuBackend, GatedAttention, Tensor};

const FP32_TOLERANCE: f32 = 1e-4;
const BF16_TOLERANCE: f32 = 1e-2;
/// Threads per block of the row kernels (four warps, a row each).
const ROW_THREADS: u32 = 128;

/// Deterministic values in [-1, 1).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::new(shape, data).unwrap()
}

/// bf16 storage of values (their upper 16 bits after rounding).
fn bf16_bits(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&x| (round_to_bf16(x).to_bits() >> 16) as u16)
        .collect()
}

fn from_bf16_bits(bits: &[u16]) -> Vec<f32> {
    bits.iter()
        .map(|&b| f32::from_bits((b as u32) << 16))
        .collect()
}

fn rounded(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&x| round_to_bf16(x)).collect()
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (worst, at) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .enumerate()
        .fold((0.0f32, 0), |(m, i), (j, e)| {
            if e > m || e.is_nan() {
                (e, j)
            } else {
                (m, i)
            }
        });
    assert!(
        worst <= tolerance,
        "{what}: error {worst:e} at {at} (got {}, want {}), tolerance {tolerance:e}",
        got[at],
        want[at]
    );
}

/// The pointer of a buffer as a kernel argument (a "device" address).
fn address<T>(buffer: &[T]) -> u64 {
    buffer.as_ptr() as u64
}

fn grid_for_rows(rows: usize) -> [u32; 3] {
    [(rows as u32).div_ceil(ROW_THREADS / 32), 1, 1]
}

#[test]
fn layer_norm_kernels_match_the_cpu_backend() {
    let program = emulated(&LAYER_NORM);
    for (rows, c) in [(37usize, 67usize), (5, 128), (9, 5)] {
        let x = random(rows * c, 1 + c as u64);
        let gamma = random(c, 2);
        let beta = random(c, 3);
        let eps = 1e-5f32;
        for bf16 in [false, true] {
            let input = if bf16 { rounded(&x) } else { x.clone() };
            let want = CpuBackend.layer_norm(
                &tensor(&[rows, c], input.clone()),
                &tensor(&[c], gamma.clone()),
                &tensor(&[c], beta.clone()),
                eps,
            );
            let (mut rows_arg, mut c_arg, mut eps_arg) = (rows as i64, c as i32, eps);
            let (mut gp, mut bp) = (address(&gamma), address(&beta));
            let got = if bf16 {
                let xs = bf16_bits(&input);
                let ys = vec![0u16; rows * c];
                let (mut xp, mut yp) = (address(&xs), address(&ys));
                let mut params = [
                    param(&mut xp),
                    param(&mut gp),
                    param(&mut bp),
                    param(&mut yp),
                    param(&mut rows_arg),
                    param(&mut c_arg),
                    param(&mut eps_arg),
                ];
                // SAFETY: the parameters are the kernel's, in order; buffers hold rows * c.
                unsafe {
                    program.launch(
                        "layer_norm_bf16",
                        grid_for_rows(rows),
                        [ROW_THREADS, 1, 1],
                        &mut params,
                    )
                };
                from_bf16_bits(&ys)
            } else {
                let ys = vec![0f32; rows * c];
                let (mut xp, mut yp) = (address(&input), address(&ys));
                let mut params = [
                    param(&mut xp),
                    param(&mut gp),
                    param(&mut bp),
                    param(&mut yp),
                    param(&mut rows_arg),
                    param(&mut c_arg),
                    param(&mut eps_arg),
                ];
                // SAFETY: as above.
                unsafe {
                    program.launch(
                        "layer_norm_f32",
                        grid_for_rows(rows),
                        [ROW_THREADS, 1, 1],
                        &mut params,
                    )
                };
                ys
            };
            let tolerance = if bf16 { BF16_TOLERANCE } else { FP32_TOLERANCE };
            assert_close(
                &got,
                want.data(),
                tolerance,
                &format!("layer norm {rows}x{c} bf16={bf16}"),
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
            let input = if bf16 {
                rounded(&logits)
            } else {
                logits.clone()
            };
            let bias_in = if bf16 { rounded(&bias) } else { bias.clone() };
            let mut want = tensor(&[b, h, q, k], input.clone());
            let bias_t = tensor(&[h, q, k], bias_in.clone());
            let mask_t = tensor(&[b, k], mask.clone());
            CpuBackend.masked_softmax(
                &mut want,
                with_bias.then_some(&bias_t),
                with_mask.then_some(&mask_t),
                scale,
            );
            let (mut bi, mut hi, mut qi, mut ki, mut s) =
                (b as i32, h as i32, q as i32, k as i32, scale);
            let mut mp = if with_mask { address(&mask) } else { 0 };
            let rows = b * h * q;
            let got = if bf16 {
                let xs = bf16_bits(&input);
                let bs = bf16_bits(&bias_in);
                let ys = vec![0u16; xs.len()];
                let (mut xp, mut yp) = (address(&xs), address(&ys));
                let mut bp = if with_bias { address(&bs) } else { 0 };
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
                // SAFETY: the kernel's parameters in order; buffers of the stated shapes.
                unsafe {
                    program.launch(
                        "masked_softmax_bf16",
                        grid_for_rows(rows),
                        [ROW_THREADS, 1, 1],
                        &mut params,
                    )
                };
                from_bf16_bits(&ys)
            } else {
                let ys = vec![0f32; input.len()];
                let (mut xp, mut yp) = (address(&input), address(&ys));
                let mut bp = if with_bias { address(&bias_in) } else { 0 };
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
                // SAFETY: as above.
                unsafe {
                    program.launch(
                        "masked_softmax_f32",
                        grid_for_rows(rows),
                        [ROW_THREADS, 1, 1],
                        &mut params,
                    )
                };
                ys
            };
            let tolerance = if bf16 { BF16_TOLERANCE } else { FP32_TOLERANCE };
            assert_close(
                &got,
                want.data(),
                tolerance,
                &format!("masked softmax bias={with_bias} mask={with_mask} bf16={bf16}"),
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
    fn run(&self, bf16: bool) {
        let AttentionCase {
            b, h, nq, nk, d, ..
        } = *self;
        let seed = (b * 1000 + nq * 100 + nk * 10 + d) as u64;
        let store = |v: Vec<f32>| if bf16 { rounded(&v) } else { v };
        let q = store(random(b * nq * h * d, seed));
        let k = store(random(b * nk * h * d, seed + 1));
        let v = store(random(b * nk * h * d, seed + 2));
        let gate = store(random(b * nq * h * d, seed + 3));
        let bias = store(
            random(h * nq * nk, seed + 4)
                .iter()
                .map(|x| 3.0 * x)
                .collect(),
        );
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
        // [B, N, H, D]: batch stride N*H*D, head stride D, row stride H*D.
        let strides = |n: usize| [(n * h * d) as i64, d as i64, (h * d) as i64];
        let kernel = gated_attention_kernel(d, bf16).expect("d <= 64");
        let program = emulated(&GATED_ATTENTION);
        let mut args = AttentionArgs {
            q_s: strides(nq),
            k_s: strides(nk),
            v_s: strides(nk),
            g_s: strides(nq),
            o_s: strides(nq),
            bias_s: [0, (nq * nk) as i64, nk as i64],
            mask_sb: nk as i64,
            batch: b as i32,
            heads: h as i32,
            nq: nq as i32,
            nk: nk as i32,
            d: d as i32,
            scale,
            mask: if self.mask { address(&mask) } else { 0 },
            ..Default::default()
        };
        let (gx, gy, gz) = args.grid();
        let block = [ATTENTION_THREADS as u32, 1, 1];
        let got = if bf16 {
            let (qs, ks, vs, gs, bs) = (
                bf16_bits(&q),
                bf16_bits(&k),
                bf16_bits(&v),
                bf16_bits(&gate),
                bf16_bits(&bias),
            );
            let out = vec![0u16; b * nq * h * d];
            args.q = address(&qs);
            args.k = address(&ks);
            args.v = address(&vs);
            args.gate = if self.gate { address(&gs) } else { 0 };
            args.bias = if self.bias { address(&bs) } else { 0 };
            args.out = address(&out);
            // SAFETY: the kernel's one parameter; every buffer has the shape its strides say.
            unsafe { program.launch(kernel, [gx, gy, gz], block, &mut [param(&mut args)]) };
            from_bf16_bits(&out)
        } else {
            let out = vec![0f32; b * nq * h * d];
            args.q = address(&q);
            args.k = address(&k);
            args.v = address(&v);
            args.gate = if self.gate { address(&gate) } else { 0 };
            args.bias = if self.bias { address(&bias) } else { 0 };
            args.out = address(&out);
            // SAFETY: as above.
            unsafe { program.launch(kernel, [gx, gy, gz], block, &mut [param(&mut args)]) };
            out
        };
        let tolerance = if bf16 { BF16_TOLERANCE } else { FP32_TOLERANCE };
        assert_close(
            &got,
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
        // Tails in both tiles (16 queries per block, 32 keys per tile), every head width.
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
        for bf16 in [false, true] {
            case.run(bf16);
        }
    }
}
