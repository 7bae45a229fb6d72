//! Times the fused ops on the CPU backend and on GPU 0 (inputs kept on the device after the
//! first call, the result fetched to the host) and checks that they agree: triangle
//! attention's shape (batch L, L queries and keys, 4 heads of 32, pair bias) through cuBLAS in
//! fp32, tf32 and bf16 and through the fused kernel, and the triangle multiplicative update
//! (128 channels) in fp32, tf32 and bf16, each with its TFLOP/s and their share of the H200's bf16 rate.
//! Prints a Markdown table; run by benches/gpu_check.sh on a GPU machine.
//!
//!     cargo run --release --features cuda --example gpu_ops -- [L ...]

use std::time::Instant;

use ferrofold_kernels::cuda::{AttentionPath, CudaBackend, CudaDevice, GemmPrecision, Storage};
use ferrofold_kernels::{
    Backend, CpuBackend, GatedAttention, LinearParams, NormParams, Tensor, TriangleDirection,
    TriangleMultiplicationParams,
};

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Tensor::from_fn(shape, |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

/// Best of three runs, in seconds, and the last result. The result is read on the host
/// inside the timing, so a device op counts until its values are back; the first run (not
/// timed) leaves the inputs on the device, as a model's weights and activations are.
fn time(f: impl Fn() -> Tensor) -> (f64, Tensor) {
    let mut best = f64::INFINITY;
    let mut out = f();
    for _ in 0..3 {
        let t = Instant::now();
        out = f();
        out.data();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, out)
}

/// The H200's dense bf16 matrix rate as measured on this workplace's machines (790 TFLOP/s,
/// an 8192^3 product through PyTorch): the yardstick issue 5 asks the fused ops against.
const BF16_PEAK_TFLOPS: f64 = 790.0;

/// One table row; `flops` is the op's arithmetic (multiply and add counted apart).
fn row(op: &str, l: usize, flops: f64, cpu: &(f64, Tensor), gpu: (f64, Tensor)) {
    let dev = cpu.1.max_abs_diff(&gpu.1);
    let tflops = flops / gpu.0 * 1e-12;
    println!(
        "| {op} | {l} | {:.4} | {:.4} | {:.1}x | {tflops:.1} | {:.2} % | {dev:.1e} |",
        cpu.0,
        gpu.0,
        cpu.0 / gpu.0,
        100.0 * tflops / BF16_PEAK_TFLOPS
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("sizes are residue counts"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![64, 128, 256]
    } else {
        sizes
    };
    let device = CudaDevice::new(0).unwrap_or_else(|e| {
        eprintln!("gpu_ops: {e}");
        std::process::exit(2)
    });
    let info = device.info().clone();
    let gpu = CudaBackend::new(device);
    let open = || CudaDevice::new(0).expect("GPU 0 opened above");
    let tf32 = CudaBackend::new(open().with_precision(GemmPrecision::Tf32));
    let bf16 = CudaBackend::new(open().with_precision(GemmPrecision::Bf16));
    let fused = CudaBackend::new(open()).with_attention(AttentionPath::Fused);
    let tf32_cores = CudaBackend::new(open()).with_attention(AttentionPath::TensorCoresTf32);
    let bf16_cores = CudaBackend::new(open()).with_attention(AttentionPath::TensorCoresBf16);
    let bf16_storage = CudaBackend::new(open()).with_storage(Storage::Bf16);
    let bf16_storage_cores = CudaBackend::new(open())
        .with_storage(Storage::Bf16)
        .with_attention(AttentionPath::TensorCoresBf16);
    println!(
        "{} (compute {}.{}), fp32\n",
        info.name, info.compute_capability.0, info.compute_capability.1
    );
    println!(
        "| op | L | CPU s | GPU s (inputs on the device, result fetched) | CPU / GPU | GPU TFLOP/s \
         | of the bf16 peak | max abs diff |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for &l in &sizes {
        let (h, d, c) = (4, 32, 128);
        let q = random(&[l, l, h, d], 1);
        let k = random(&[l, l, h, d], 2);
        let v = random(&[l, l, h, d], 3);
        let gate = random(&[l, l, h, d], 4);
        let bias = random(&[h, l, l], 5);
        let mask = Tensor::full(&[l, l], 1.0);
        let a = GatedAttention {
            q: &q,
            k: &k,
            v: &v,
            bias: Some(&bias),
            mask: Some(&mask),
            gate: Some(&gate),
            scale: (d as f32).powf(-0.5),
        };
        // q k^T and p v over L rows of L queries and keys, H heads of D.
        let flops = 4.0 * (l * l * l * h * d) as f64;
        let cpu = time(|| CpuBackend.gated_attention(&a));
        for (name, be) in [
            ("triangle attention (GEMMs, fp32)", &gpu),
            ("triangle attention (GEMMs, tf32)", &tf32),
            (
                "triangle attention (GEMMs, bf16 inputs, fp32 storage)",
                &bf16,
            ),
            ("triangle attention (GEMMs, bf16 storage)", &bf16_storage),
            ("triangle attention (fused kernel)", &fused),
            ("triangle attention (fused, TF32 tensor cores)", &tf32_cores),
            ("triangle attention (fused, bf16 tensor cores)", &bf16_cores),
            (
                "triangle attention (fused, bf16 tensor cores, bf16 storage)",
                &bf16_storage_cores,
            ),
        ] {
            row(name, l, flops, &cpu, time(|| be.gated_attention(&a)));
        }
        let z = random(&[l, l, c], 6);
        let ones = Tensor::full(&[c], 1.0);
        let zeros = Tensor::zeros(&[c]);
        let w: Vec<Tensor> = (0..6).map(|i| random(&[c, c], 10 + i)).collect();
        let lin = |i: usize| LinearParams {
            w: &w[i],
            b: &zeros,
        };
        let norm = NormParams {
            gamma: &ones,
            beta: &zeros,
            eps: 1e-5,
        };
        let p = TriangleMultiplicationParams {
            input_norm: norm,
            left_proj: lin(0),
            left_gate: lin(1),
            right_proj: lin(2),
            right_gate: lin(3),
            center_norm: norm,
            output_proj: lin(4),
            output_gate: lin(5),
        };
        let dir = TriangleDirection::Outgoing;
        // six c x c projections per pair, and the per-channel L x L x L products
        let flops = (12 * l * l * c * c + 2 * l * l * l * c) as f64;
        let cpu = time(|| CpuBackend.triangle_multiplication(&z, &p, Some(&mask), dir));
        for (name, be) in [
            ("triangle multiplication (fp32)", &gpu),
            ("triangle multiplication (tf32)", &tf32),
            ("triangle multiplication (bf16 inputs, fp32 storage)", &bf16),
            ("triangle multiplication (bf16 storage)", &bf16_storage),
        ] {
            let gpu_time = time(|| be.triangle_multiplication(&z, &p, Some(&mask), dir));
            row(name, l, flops, &cpu, gpu_time);
        }
    }
}
